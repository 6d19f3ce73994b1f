"""Additive secret sharing over Z_{2^64} (arithmetic) and over bit vectors (XOR, "binary").

A secret ``x`` is split into ``n`` shares with ``x = sum(shares) mod 2^64``; any ``n - 1``
shares are uniformly distributed and independent of ``x``. Binary shares satisfy
``x = xor(shares)`` bitwise on uint64 words.
"""

from __future__ import annotations

from functools import reduce

import numpy as np
from numpy.typing import ArrayLike

from .csprng import Csprng


def share(secret: ArrayLike, n: int, rng: Csprng, *, binary: bool = False) -> list[np.ndarray]:
    """Split a uint64 array into ``n >= 2`` additive (or XOR) shares drawn from ``rng``."""
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    secret = np.asarray(secret, dtype=np.uint64)
    shares = [rng.random_uint64(secret.shape) for _ in range(n - 1)]
    if binary:
        last = reduce(np.bitwise_xor, shares, secret.copy())
    else:
        last = secret - reduce(np.add, shares)
    return [*shares, last]


def reconstruct(shares: list[ArrayLike], *, binary: bool = False) -> np.ndarray:
    """Recombine shares produced by :func:`share`."""
    if len(shares) < 1:
        raise ValueError("need at least one share")
    arrays = [np.asarray(s, dtype=np.uint64) for s in shares]
    return reduce(np.bitwise_xor if binary else np.add, arrays)
