"""Arithmetic in Z_{2^64} on uint64 arrays, with a fast exact matrix product.

numpy's native uint64 ``@`` does not use BLAS and runs about 25-40x slower than float64.
:func:`ring_matmul` writes each operand in three *balanced* (signed) limbs,
``x = l0 + 2^22 l1 + 2^43 l2 (mod 2^64)`` with ``|l0| <= 2^21`` and ``|l1|, |l2| <= 2^20``, so
every limb product has magnitude at most ``2^42`` and a float64 BLAS product over an inner
dimension of up to 2048 stays within ``2^53``: exact. Only the six limb pairs whose offset is
below 64 contribute mod 2^64, so one ring product costs six float64 BLAS products plus
conversions; products at the same offset (``a_1 b_1`` at 44 counts twice at 43) are summed in
float64 before the costly conversion back to integers whenever the sum provably stays exact
(inner dimension up to 1365: three conversions instead of six). Thin products such as
matrix-vector use numpy's native (wrapping) uint64 loop instead, which is faster there.
"""

from __future__ import annotations

import numpy as np

_WIDTHS = (22, 21, 21)  # limb i sits at bit offset 0, 22, 43
_EXACT = 2**53
# (offset, [(i, j, factor)]): a_i b_j contributes factor * 2^offset; offsets >= 64 vanish mod 2^64
_GROUPS = (
    (0, [(0, 0, 1)]),
    (22, [(0, 1, 1), (1, 0, 1)]),
    (43, [(0, 2, 1), (2, 0, 1), (1, 1, 2)]),  # a_1 b_1 sits at 44 = 43 + 1
)


def _limb_bound(i: int, j: int) -> int:
    """Largest ``|a_i * b_j|`` for balanced limbs."""
    return 2 ** (_WIDTHS[i] - 1) * 2 ** (_WIDTHS[j] - 1)


# numpy's native uint64 matmul costs ~1.3 ns per multiply-add; the limb method ~0.25 ns plus
# ~20 ns per operand/result element (limbs and conversions): native wins below this ratio
_NATIVE_FACTOR = 19
_CHUNK = _EXACT // _limb_bound(0, 0)  # 2048: every single limb product sums exactly


def _limbs(x: np.ndarray) -> list[np.ndarray]:
    """Balanced limbs of ``x`` as float64 arrays (exact small integers).

    Limb ``i`` is the sign-extended low ``w_i`` bits of what is left; the sign's borrow is
    carried into the rest by rounding: ``rest <- (rest + 2^(w_i - 1)) >> w_i``.
    """
    limbs = []
    rest = x
    for width in _WIDTHS:
        signed = (rest << np.uint64(64 - width)).view(np.int64)
        signed >>= np.int64(64 - width)
        limbs.append(signed.astype(np.float64))
        if len(limbs) < len(_WIDTHS):
            rest = rest + np.uint64(1 << (width - 1))
            rest >>= np.uint64(width)
    return limbs


def _to_ring(values: np.ndarray) -> np.ndarray:
    """Exact float64 integers (``|v| < 2^63``) to uint64 mod 2^64."""
    return values.astype(np.int64).view(np.uint64)


def ring_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` mod 2^64 for uint64 arrays (2-D, or 1-D vectors as numpy treats them)."""
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("ring_matmul needs arrays of at least one dimension")
    inner = a.shape[-1]
    if inner != (b.shape[0] if b.ndim == 1 else b.shape[-2]):
        raise ValueError(f"matmul shape mismatch: {a.shape} @ {b.shape}")
    rows = int(np.prod(a.shape[:-1], dtype=np.int64))
    cols = b.shape[-1] if b.ndim > 1 else 1
    if rows * inner * cols < _NATIVE_FACTOR * (rows * inner + inner * cols + rows * cols):
        return a @ b  # thin products (matrix-vector): numpy's integer loop beats limb conversion
    return limb_matmul(a, b)


def limb_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The limb method of :func:`ring_matmul` for checked uint64 operands, whatever their shapes."""
    inner = a.shape[-1]
    result = np.zeros(a.shape[:-1] + (b.shape[-1:] if b.ndim > 1 else ()), np.uint64)
    for start in range(0, inner, _CHUNK):
        stop = min(start + _CHUNK, inner)
        a_limbs = _limbs(a[..., start:stop])
        b_limbs = _limbs(b[start:stop] if b.ndim == 1 else b[..., start:stop, :])
        for offset, pairs in _GROUPS:
            products = [(a_limbs[i] @ b_limbs[j]) * f if f != 1 else a_limbs[i] @ b_limbs[j] for i, j, f in pairs]
            if (stop - start) * sum(f * _limb_bound(i, j) for i, j, f in pairs) <= _EXACT:
                products = [sum(products[1:], products[0])]  # one float64 sum, still exact
            for product in products:
                result += _to_ring(product) << np.uint64(offset)
    return result
