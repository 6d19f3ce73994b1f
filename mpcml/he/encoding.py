"""Fixed-point and integer encoding of numpy inputs for additively homomorphic arrays.

A real ``x`` is encrypted as the integer ``round(x * 2^frac_bits)``; integer (and bool) inputs are
exact. Every helper returns object arrays of Python ints, the form all schemes encrypt.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np

MAX_FRAC_BITS = 512


def check_frac_bits(frac_bits: Any, name: str = "frac_bits") -> int:
    """``frac_bits`` as an int in ``[0, MAX_FRAC_BITS]``; ``ValueError`` naming ``name`` otherwise."""
    if not isinstance(frac_bits, (int, np.integer)) or isinstance(frac_bits, bool) or not 0 <= frac_bits <= MAX_FRAC_BITS:
        raise ValueError(f"{name} must be an integer in [0, {MAX_FRAC_BITS}], got {frac_bits!r}")
    return int(frac_bits)


def numeric(values: Any, name: str) -> np.ndarray:
    """``values`` as a real numeric ndarray (object arrays must hold Python ints); ``TypeError`` otherwise."""
    arr = np.asarray(values)
    if arr.dtype == object:
        if not all(type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, bool)) for v in arr.flat):
            raise TypeError(f"{name} of dtype object must hold Python integers only")
        return arr
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    return arr


def is_exact(arr: np.ndarray) -> bool:
    """Whether ``arr`` holds integers (encoded exactly, at scale 0)."""
    return arr.dtype == object or arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)


def to_ints(values: Any, frac_bits: int, name: str) -> tuple[np.ndarray, int]:
    """Integer-valued object array and the scale it carries: integers exact, floats fixed point."""
    arr = numeric(values, name)
    if is_exact(arr):
        if arr.dtype != object:  # numpy integers to Python ints in C (bools first to 0/1)
            return (arr.astype(np.int64) if arr.dtype == bool else arr).astype(object), 0
        return object_array([int(v) for v in arr.flat], arr.shape), 0
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; fixed-point encoding needs finite values")
    with np.errstate(over="ignore"):
        scaled = np.asarray(np.rint(np.ldexp(arr, frac_bits)))
    if not np.all(np.isfinite(scaled)):
        raise ValueError(f"{name} has a value too large to encode with {frac_bits} fractional bits (exceeds max_int)")
    if scaled.size and np.max(np.abs(scaled)) < 2.0**62:
        return np.asarray(scaled.astype(np.int64), dtype=object), frac_bits
    return object_array([int(v) for v in scaled.flat], arr.shape), frac_bits


def values_at_scale(values: Any, frac_bits: int, name: str) -> np.ndarray:
    """``round(x * 2^frac_bits)`` as an object array of ints, for integer and real inputs alike."""
    arr = numeric(values, name)
    ints, added = to_ints(arr, frac_bits, name)
    if added != frac_bits:
        ints = np.asarray(ints * (1 << frac_bits), dtype=object)
    return ints


def object_array(items: Sequence[Any], shape: tuple[int, ...] | None = None) -> np.ndarray:
    """An object ndarray of ``shape`` (default: 1-D) holding ``items`` (no conversion of big integers).

    ``np.fromiter``: ``np.array`` and slice assignment probe each ``gmpy2.mpz`` for the sequence
    protocol, about 1.3 us per item (100x slower).
    """
    arr = np.fromiter(items, dtype=object, count=len(items))
    return arr if shape is None else arr.reshape(shape)
