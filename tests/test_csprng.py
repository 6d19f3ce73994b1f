"""The AES-CTR CSPRNG: determinism under a seed, uniformity, and argument checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mpcml.csprng import SEED_BYTES, Csprng, new_seed


def test_seeded_streams_are_reproducible_and_independent_of_chunking():
    seed = new_seed()
    assert len(seed) == SEED_BYTES
    whole = Csprng(seed).random_uint64(300_000)
    rng = Csprng(seed)
    parts = np.concatenate([rng.random_uint64(7), rng.random_uint64((1000, 3)).ravel(), rng.random_uint64(296_993)])
    np.testing.assert_array_equal(whole, parts)
    as_bytes = np.frombuffer(Csprng(seed).random_bytes(8 * 300_000), dtype=np.uint64)
    np.testing.assert_array_equal(whole, as_bytes)
    assert not np.array_equal(Csprng(new_seed()).random_uint64(8), Csprng(new_seed()).random_uint64(8))
    assert not np.array_equal(Csprng().random_uint64(8), Csprng().random_uint64(8))


def test_shapes():
    rng = Csprng()
    assert rng.random_uint64((2, 3, 4)).shape == (2, 3, 4)
    assert rng.random_uint64(0).shape == (0,)
    out = rng.random_uint64((5, 0))
    assert out.shape == (5, 0) and out.dtype == np.uint64
    with pytest.raises(ValueError, match="negative"):
        rng.random_uint64((3, -1))


def test_bits_and_bytes_are_uniform():
    words = Csprng().random_uint64(1 << 16)
    n = words.size
    ones = np.array([np.count_nonzero((words >> np.uint64(b)) & np.uint64(1)) for b in range(64)])
    assert np.max(np.abs(ones - n / 2) / np.sqrt(n / 4)) < 5.5
    byte_counts = np.bincount(words.view(np.uint8), minlength=256)
    assert stats.chisquare(byte_counts).pvalue > 1e-6
    bits = Csprng().random_bits(1 << 14)
    assert set(np.unique(bits)) == {0, 1}
    assert abs(bits.mean() - 0.5) < 5.5 * 0.5 / np.sqrt(bits.size)


def test_randbelow():
    rng = Csprng()
    big = 2**1024 + 12345
    assert all(0 <= rng.randbelow(big) < big for _ in range(50))
    draws = [rng.randbelow(6) for _ in range(6000)]
    assert stats.chisquare(np.bincount(draws, minlength=6)).pvalue > 1e-6
    with pytest.raises(ValueError, match="positive"):
        rng.randbelow(0)


def test_bad_seed():
    for bad in (b"short", "x" * 32, 42):
        with pytest.raises(ValueError, match="seed"):
            Csprng(bad)
