"""Fixed-point encoding of real numbers into the ring Z_{2^64}.

A real ``x`` is represented by the integer ``round(x * 2**frac_bits)`` reduced mod 2^64,
stored as ``numpy.uint64`` (negative numbers wrap to the top half of the ring, two's
complement style). Addition in the ring is addition of the reals; a product carries
``2 * frac_bits`` fractional bits and must be truncated by ``frac_bits`` (see
:mod:`mpcml.tensor`).

Range. :func:`encode` accepts ``|x| < 2**(62 - frac_bits)`` so that every encoded value
keeps two bits of headroom below the sign bit, which secure truncation needs. A product of
two encoded values is only meaningful while ``|x * y| < 2**(62 - 2 * frac_bits)``
(``2**30`` at the default 16 fractional bits). Precision: encoding rounds to the nearest
multiple of ``2**-frac_bits`` (error at most ``2**-(frac_bits + 1)``); every truncated
product adds at most one more unit ``2**-frac_bits``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

RING_BITS = 64
DEFAULT_FRAC_BITS = 16
HEADROOM_BITS = 2


def max_abs(frac_bits: int = DEFAULT_FRAC_BITS) -> float:
    """Largest magnitude (exclusive) that :func:`encode` accepts at ``frac_bits``."""
    return float(2 ** (RING_BITS - HEADROOM_BITS - frac_bits))


def check_frac_bits(frac_bits: int) -> int:
    if not isinstance(frac_bits, (int, np.integer)) or not 0 <= frac_bits <= 40:
        raise ValueError(f"frac_bits must be an integer in [0, 40], got {frac_bits!r}")
    return int(frac_bits)


def encode(x: ArrayLike, frac_bits: int = DEFAULT_FRAC_BITS, *, name: str = "x") -> np.ndarray:
    """Encode reals as ring elements; raises ``ValueError`` naming ``name`` on NaN, inf or overflow."""
    frac_bits = check_frac_bits(frac_bits)
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; fixed-point encoding needs finite values")
    limit = max_abs(frac_bits)
    if arr.size and np.max(np.abs(arr)) >= limit:
        raise ValueError(
            f"{name} has a value of magnitude {np.max(np.abs(arr)):.6g}, outside the fixed-point "
            f"range |x| < 2^{RING_BITS - HEADROOM_BITS - frac_bits} at {frac_bits} fractional bits"
        )
    scaled = np.rint(arr * float(2**frac_bits)).astype(np.int64)
    return scaled.view(np.uint64)


def decode(u: ArrayLike, frac_bits: int = DEFAULT_FRAC_BITS) -> np.ndarray:
    """Decode ring elements (uint64, two's complement) back to float64."""
    frac_bits = check_frac_bits(frac_bits)
    return to_signed(u).astype(np.float64) / float(2**frac_bits)


def to_signed(u: ArrayLike) -> np.ndarray:
    """Interpret ring elements as signed 64-bit integers."""
    return np.asarray(u, dtype=np.uint64).view(np.int64)
