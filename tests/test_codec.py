"""The wire codec: round trips of every supported type, and malformed input rejected."""

from __future__ import annotations

import pickle
import struct

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcml import codec
from mpcml.codec import CodecError

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**4000), max_value=2**4000),
    st.floats(allow_nan=False), st.text(), st.binary(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(st.one_of(st.text(), st.integers()), inner, max_size=5),
    ),
    max_leaves=25,
)


@settings(max_examples=60, deadline=None)
@given(values)
def test_roundtrip(obj):
    assert codec.decode(codec.encode(obj)) == obj


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(12, dtype=np.uint64).reshape(3, 4), np.array(3.5), np.zeros((0, 3)), np.array([True, False]),
        np.array([[1 + 2j]]), np.arange(20).reshape(4, 5)[:, ::2], np.arange(6, dtype=">i4"),
        np.array([-1, 2], dtype=np.int8), np.ones((2, 1, 2), dtype=np.float32),
    ],
)
def test_arrays_keep_dtype_shape_and_values(arr):
    got = codec.decode(codec.encode(arr))
    assert got.shape == arr.shape and got.dtype == arr.dtype.newbyteorder("<")
    np.testing.assert_array_equal(got, arr)
    assert got.flags.writeable


def test_big_ints_and_ciphertext_lists():
    n = 2**2048 + 12345
    assert codec.decode(codec.encode([n, 0, 7, n - 1])) == [n, 0, 7, n - 1]
    assert codec.decode(codec.encode(gmpy2.mpz(n))) == n
    assert codec.decode(codec.encode(np.int64(-5))) == -5
    assert codec.decode(codec.encode([-1, 2])) == [-1, 2]
    nested = {"key": [np.arange(3), (b"x", None, 1.5)], 7: "seven"}
    out = codec.decode(codec.encode(nested))
    np.testing.assert_array_equal(out["key"][0], np.arange(3))
    assert out["key"][1] == (b"x", None, 1.5) and out[7] == "seven"


def test_exact_sizes():
    """The sizes the communication accounting relies on."""
    assert len(codec.encode(np.zeros((3, 4), np.uint64))) == 3 + 8 * 2 + 8 * 12
    assert len(codec.encode([np.zeros(2, np.uint64)])) == 1 + 8 + 3 + 8 + 16
    assert len(codec.encode(b"abc")) == 1 + 8 + 3


@pytest.mark.parametrize(
    "obj, kind", [(object(), TypeError), ({1, 2}, TypeError), (np.array(["a"]), TypeError), (np.array([None]), TypeError)]
)
def test_unsupported_types_raise(obj, kind):
    with pytest.raises(kind):
        codec.encode(obj)


def test_too_deep_nesting_raises_both_ways():
    deep = []
    for _ in range(codec.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(ValueError, match="deeper"):
        codec.encode(deep)
    payload = b"l" + struct.pack("<Q", 1)
    with pytest.raises(CodecError, match="deeper"):
        codec.decode(payload * (codec.MAX_DEPTH + 2) + b"N")


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "truncated"),
        (b"Z", "unknown type tag"),
        (b"NN", "trailing"),
        (b"i*" + struct.pack("<I", 0), "sign"),
        (b"i+" + struct.pack("<I", 10) + b"\x01", "truncated"),
        (b"s" + struct.pack("<Q", 2) + b"\xff\xfe", "UTF-8"),
        (b"b" + struct.pack("<Q", 2**60), "exceeds"),
        (b"a" + bytes([99, 1]) + struct.pack("<Q", 1) + bytes(8), "dtype code"),
        (b"a" + bytes([8, 1]) + struct.pack("<Q", 10) + bytes(8), "truncated"),
        (b"l" + struct.pack("<Q", 2**50), "exceeds"),
        (b"I" + struct.pack("<Q", 1) + struct.pack("<I", 0), "zero integer width"),
        (b"d" + struct.pack("<Q", 1) + b"l" + struct.pack("<Q", 0) + b"N", "unhashable"),
    ],
)
def test_malformed_bytes_raise_codec_error(payload, message):
    with pytest.raises(CodecError, match=message):
        codec.decode(payload)


def test_pickle_is_never_interpreted():
    with pytest.raises(CodecError):
        codec.decode(pickle.dumps({"a": 1}))
    with pytest.raises(CodecError, match="expected bytes"):
        codec.decode("not bytes")


@given(st.binary(max_size=64))
def test_random_bytes_never_crash_with_other_errors(data):
    try:
        codec.decode(data)
    except CodecError:
        pass
