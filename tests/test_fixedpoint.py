"""Fixed-point encoding into Z_2^64."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mpcml.fixedpoint import decode, encode, max_abs, to_signed


@given(
    x=arrays(np.float64, st.integers(0, 20), elements=st.floats(-(2.0**45), 2.0**45, allow_nan=False)),
    frac_bits=st.integers(0, 16),
)
def test_roundtrip_within_half_a_unit(x, frac_bits):
    got = decode(encode(x, frac_bits), frac_bits)
    assert got.dtype == np.float64 and got.shape == x.shape
    assert np.all(np.abs(got - x) <= 2.0 ** -(frac_bits + 1) * (1 + 1e-9) + np.abs(x) * 2**-52)


def test_negative_values_wrap_two_complement():
    enc = encode(np.array([-1.0, 1.0, -0.5]), 16)
    assert enc.dtype == np.uint64
    assert enc[0] == np.uint64(2**64 - 2**16) and enc[1] == np.uint64(2**16)
    np.testing.assert_array_equal(to_signed(enc), [-(2**16), 2**16, -(2**15)])
    # ring addition is real addition
    np.testing.assert_array_equal(decode(enc[:1] + enc[1:2]), [0.0])


def test_range_limit_is_exclusive():
    limit = max_abs(16)
    assert limit == 2.0**46
    encode(np.array([np.nextafter(limit, 0), -np.nextafter(limit, 0)]), 16)
    for bad in (limit, -limit, 1e300):
        with pytest.raises(ValueError, match="outside the fixed-point range"):
            encode(np.array([bad]), 16)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_rejected_naming_the_argument(bad):
    with pytest.raises(ValueError, match="weights contains NaN or inf"):
        encode(np.array([1.0, bad]), name="weights")


def test_type_and_frac_bits_errors():
    with pytest.raises(TypeError, match="numeric"):
        encode(np.array(["1.0"]))
    with pytest.raises(TypeError, match="numeric"):
        encode(None)
    for bad in (-1, 41, 2.5, "16"):
        with pytest.raises(ValueError, match="frac_bits"):
            encode(1.0, bad)
    np.testing.assert_array_equal(decode(encode(np.array([True, False]))), [1.0, 0.0])
