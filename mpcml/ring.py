"""Arithmetic in Z_{2^64} on uint64 arrays, with a fast exact matrix product.

numpy's native uint64 ``@`` does not use BLAS and runs about 25-40x slower than float64.
:func:`ring_matmul` splits each operand into three limbs of 22/21/21 bits so that every
limb product is an integer below 2^44; summing at most 512 of them stays below 2^53 and so
is exact in float64. Only the six limb pairs whose offset is below 64 contribute mod 2^64,
so one ring product costs six float64 BLAS products plus conversions.
"""

from __future__ import annotations

import numpy as np

_LIMB_OFFSETS = (0, 22, 43)
_LIMB_MASKS = (np.uint64((1 << 22) - 1), np.uint64((1 << 21) - 1), np.uint64((1 << 21) - 1))
_PAIRS = [(i, j) for i in range(3) for j in range(3) if _LIMB_OFFSETS[i] + _LIMB_OFFSETS[j] < 64]
_MAX_INNER = 512  # 2^44 * 512 = 2^53: float64 sums stay exact


def _limbs(x: np.ndarray) -> list[np.ndarray]:
    return [((x >> np.uint64(off)) & mask).astype(np.float64) for off, mask in zip(_LIMB_OFFSETS, _LIMB_MASKS)]


def ring_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` mod 2^64 for uint64 arrays (2-D, or 1-D vectors as numpy treats them)."""
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("ring_matmul needs arrays of at least one dimension")
    inner = a.shape[-1]
    if inner != (b.shape[0] if b.ndim == 1 else b.shape[-2]):
        raise ValueError(f"matmul shape mismatch: {a.shape} @ {b.shape}")
    result = None
    for start in range(0, max(inner, 1), _MAX_INNER):
        stop = min(start + _MAX_INNER, inner)
        a_limbs = _limbs(a[..., start:stop])
        b_limbs = _limbs(b[start:stop] if b.ndim == 1 else b[..., start:stop, :])
        for i, j in _PAIRS:
            partial = (a_limbs[i] @ b_limbs[j]).astype(np.uint64) << np.uint64(_LIMB_OFFSETS[i] + _LIMB_OFFSETS[j])
            if result is None:
                result = partial
            else:
                result += partial
    if result is None:  # inner dimension zero
        result = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.uint64)
    return result
