"""The wire codec: every object a party sends goes through :func:`encode` and :func:`decode`.

Supported values: ``None``, ``bool``, ``int`` of any size (including ``gmpy2.mpz`` and numpy
integers, decoded as ``int``), ``float``, ``str``, ``bytes``, numpy arrays of numeric or bool
dtype, and ``list``/``tuple``/``dict`` of those (dict keys likewise). Lists whose items are
all non-negative ints (ciphertexts) use a compact fixed-width form.

There is no pickle and nothing is evaluated: :func:`decode` reads a tagged, length-prefixed
format and rejects anything malformed, truncated, too deeply nested, or with trailing bytes
with :class:`CodecError`.
"""

from __future__ import annotations

import numbers
import struct
from typing import Any

import numpy as np

MAX_DEPTH = 64

_DTYPE_BY_CODE = [
    np.dtype(name) for name in ("?", "<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8", "<f4", "<f8", "<c16")
]
_CODE_BY_DTYPE = {dtype: code for code, dtype in enumerate(_DTYPE_BY_CODE)}


class CodecError(ValueError):
    """Raised when bytes received from a peer are not a valid encoding."""


def encode(obj: Any) -> bytes:
    return b"".join(encode_segments(obj))


def encode_segments(obj: Any) -> list[memoryview]:
    """The encoding of ``obj`` as byte segments to be sent in order (``encode`` joins them).

    Array data is not copied: the segments view the arrays, which must not change until the
    segments have been sent.
    """
    out: list[Any] = []
    _encode(obj, out, 0)
    return [memoryview(part).cast("B") for part in out]


def decode(data: bytes | bytearray | memoryview) -> Any:
    """The value encoded in ``data``.

    Arrays are copied out of immutable ``bytes``; from a writable buffer (a ``bytearray`` the
    caller hands over) aligned arrays are returned as views into it, without a copy.
    """
    return _read(data, materialize=True)


def validate(data: bytes | bytearray | memoryview) -> None:
    """Raise :class:`CodecError` unless ``data`` decodes; builds no arrays or integer lists."""
    _read(data, materialize=False)


def _read(data: Any, materialize: bool) -> Any:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    reader = _Reader(memoryview(data), materialize)
    obj = reader.value(0)
    if reader.pos != len(reader.buf):
        raise CodecError(f"{len(reader.buf) - reader.pos} trailing bytes after the encoded value")
    return obj


def _u32(n: int) -> bytes:
    return struct.pack("<I", n)


def _u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def _is_int(obj: Any) -> bool:
    return isinstance(obj, numbers.Integral) and not isinstance(obj, (bool, np.bool_))


def _encode(obj: Any, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"object nested deeper than {MAX_DEPTH} levels")
    if obj is None:
        out.append(b"N")
    elif obj is True or obj is False or isinstance(obj, np.bool_):
        out.append(b"T" if obj else b"F")
    elif _is_int(obj):
        value = int(obj)
        magnitude = abs(value)
        raw = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "little")
        out += [b"i", b"-" if value < 0 else b"+", _u32(len(raw)), raw]
    elif isinstance(obj, (float, np.floating)):
        out += [b"f", struct.pack("<d", float(obj))]
    elif isinstance(obj, str):
        raw = obj.encode("utf-8")
        out += [b"s", _u64(len(raw)), raw]
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        raw = bytes(obj)
        out += [b"b", _u64(len(raw)), raw]
    elif isinstance(obj, np.ndarray):
        arr = obj if obj.flags.c_contiguous else np.ascontiguousarray(obj)  # (ascontiguousarray makes 0-d 1-d)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        code = _CODE_BY_DTYPE.get(arr.dtype)
        if code is None:
            raise TypeError(f"cannot send numpy arrays of dtype {arr.dtype}")
        out += [b"a", bytes([code, arr.ndim]), struct.pack(f"<{arr.ndim}Q", *arr.shape), arr.reshape(-1).view(np.uint8)]
    elif isinstance(obj, list) and obj and all(_is_int(v) and v >= 0 for v in obj):
        width = (max(int(v) for v in obj).bit_length() + 7) // 8 or 1
        out += [b"I", _u64(len(obj)), _u32(width)]
        out.append(b"".join(int(v).to_bytes(width, "little") for v in obj))
    elif isinstance(obj, (list, tuple)):
        out += [b"l" if isinstance(obj, list) else b"t", _u64(len(obj))]
        for item in obj:
            _encode(item, out, depth + 1)
    elif isinstance(obj, dict):
        out += [b"d", _u64(len(obj))]
        for key, value in obj.items():
            _encode(key, out, depth + 1)
            _encode(value, out, depth + 1)
    else:
        raise TypeError(f"cannot send objects of type {type(obj).__name__} through the mpcml codec")


class _Reader:
    def __init__(self, buf: memoryview, materialize: bool) -> None:
        self.buf = buf
        self.pos = 0
        self.materialize = materialize

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise CodecError(f"truncated message: needed {n} bytes at offset {self.pos}, have {len(self.buf) - self.pos}")
        chunk = self.buf[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def count(self, min_item_bytes: int) -> int:
        n = self.u64()
        if n * min_item_bytes > len(self.buf) - self.pos:
            raise CodecError(f"declared length {n} exceeds the message size")
        return n

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise CodecError(f"message nested deeper than {MAX_DEPTH} levels")
        tag = bytes(self.take(1))
        if tag == b"N":
            return None
        if tag == b"T":
            return True
        if tag == b"F":
            return False
        if tag == b"i":
            sign = bytes(self.take(1))
            if sign not in (b"+", b"-"):
                raise CodecError("bad integer sign byte")
            value = int.from_bytes(self.take(self.u32()), "little")
            return -value if sign == b"-" else value
        if tag == b"f":
            return struct.unpack("<d", self.take(8))[0]
        if tag == b"s":
            try:
                return str(self.take(self.count(1)), "utf-8")
            except UnicodeDecodeError as exc:
                raise CodecError(f"invalid UTF-8 string: {exc}") from None
        if tag == b"b":
            return bytes(self.take(self.count(1)))
        if tag == b"a":
            code, ndim = self.take(2)
            if code >= len(_DTYPE_BY_CODE):
                raise CodecError(f"unknown array dtype code {code}")
            dtype = _DTYPE_BY_CODE[code]
            shape = struct.unpack(f"<{ndim}Q", self.take(8 * ndim))
            size = 1
            for dim in shape:
                size *= dim
            raw = self.take(size * dtype.itemsize)
            if not self.materialize:
                return []  # unhashable, like the array it stands for
            arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
            return arr if arr.flags.writeable and arr.flags.aligned else arr.copy()
        if tag == b"I":
            n = self.u64()
            width = self.u32()
            if width == 0:
                raise CodecError("zero integer width")
            raw = self.take(n * width)
            if not self.materialize:
                return []
            raw = bytes(raw)
            return [int.from_bytes(raw[k : k + width], "little") for k in range(0, n * width, width)]
        if tag in (b"l", b"t"):
            items = [self.value(depth + 1) for _ in range(self.count(1))]
            return items if tag == b"l" else tuple(items)
        if tag == b"d":
            result = {}
            for _ in range(self.count(2)):
                key = self.value(depth + 1)
                value = self.value(depth + 1)
                try:
                    result[key] = value
                except TypeError:
                    raise CodecError(f"unhashable dict key of type {type(key).__name__}") from None
            return result
        raise CodecError(f"unknown type tag {tag!r} at offset {self.pos - 1}")
