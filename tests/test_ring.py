"""Exact matrix products in Z_2^64 through float64 BLAS."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcml.csprng import Csprng
from mpcml.ring import limb_matmul, ring_matmul


def reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Python-int product mod 2^64 (slow, obviously right)."""
    return np.array((a.astype(object) @ b.astype(object)) % 2**64, dtype=object)


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 6), k=st.integers(0, 9), n=st.integers(1, 6), seed=st.binary(min_size=32, max_size=32))
def test_random_matrices(m, k, n, seed):
    rng = Csprng(seed)
    a, b = rng.random_uint64((m, k)), rng.random_uint64((k, n))
    for method in (ring_matmul, limb_matmul):
        got = method(a, b)
        assert got.dtype == np.uint64 and got.shape == (m, n)
        np.testing.assert_array_equal(got.astype(object), reference(a, b))


@pytest.mark.parametrize("k", [1365, 1366, 2048, 2049, 4500])
def test_extreme_values_across_chunk_and_merge_boundaries(k):
    """Values whose balanced limbs are all at their extremes, over every exactness threshold."""
    patterns = [2**64 - 1, 1 << 63, (1 << 21) | (1 << 42) | (1 << 63), 0x1F_FFFF | (0xF_FFFF << 22) | (0xF_FFFF << 43)]
    patterns.append((1 << 21) | (1 << 42) | (1 << 62))
    for pa in patterns:
        for pb in patterns[:3]:
            a = np.full((2, k), pa, dtype=np.uint64)
            b = np.full((k, 2), pb, dtype=np.uint64)
            expected = (k * pa * pb) % 2**64
            assert np.all(limb_matmul(a, b) == np.uint64(expected))


@pytest.mark.parametrize("method", [ring_matmul, limb_matmul])
def test_vectors_and_large_random(method):
    rng = Csprng()
    a, b = rng.random_uint64((3, 2100)), rng.random_uint64((2100, 4))
    np.testing.assert_array_equal(method(a, b).astype(object), reference(a, b))
    v = rng.random_uint64(2100)
    np.testing.assert_array_equal(method(a, v).astype(object), reference(a, v))
    np.testing.assert_array_equal(method(v, b).astype(object), reference(v, b))


def test_both_regimes_agree_on_square_products():
    """Square products take the limb path inside ring_matmul; numpy's native loop is the check."""
    rng = Csprng()
    a, b = rng.random_uint64((120, 300)), rng.random_uint64((300, 90))
    np.testing.assert_array_equal(ring_matmul(a, b), a @ b)


def test_signed_fixed_point_semantics():
    x = np.array([[-3, 5]], dtype=np.int64).view(np.uint64)
    y = np.array([[7], [-2]], dtype=np.int64).view(np.uint64)
    assert ring_matmul(x, y).view(np.int64)[0, 0] == -31


def test_shape_errors():
    with pytest.raises(ValueError, match="shape mismatch"):
        ring_matmul(np.zeros((2, 3), np.uint64), np.zeros((4, 2), np.uint64))
    with pytest.raises(ValueError, match="at least one dimension"):
        ring_matmul(np.uint64(3), np.zeros((1, 1), np.uint64))
