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
import re
import struct
from typing import Any

import numpy as np

MAX_DEPTH = 64
MAX_NDIM = 64  # numpy's limit on array dimensions

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
    """Raise :class:`CodecError` unless ``data`` decodes; builds no arrays, integers or lists.

    Exactly the payloads :func:`decode` rejects are rejected. The cost is linear in the size:
    runs of one-byte constants (``None``, ``True``, ``False``) are skipped at C speed, every
    other value takes at least four bytes and one step of the reader.
    """
    _read(data, materialize=False)


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


def _read(data: Any, materialize: bool) -> Any:
    """Decode ``data`` (``materialize``) or only check it (returns None).

    One iterative pass with a stack of the open containers serves both, so validation accepts
    exactly what decoding accepts. Validating, a value stands for itself by whether it is
    hashable (an unhashable dict key is the one error that depends on a value rather than on
    the bytes), so no integer, string, list or array is built. Two shortcuts keep the cost per
    byte small for long lists of small items: a run of the one-byte constants ``N``/``T``/``F``
    inside a container is read at once by a regular expression, and when validating, once
    :data:`_UNIFORM_AFTER` items in a row of a list or tuple had the same fixed-size layout,
    the following items with the same header bytes are checked at once by numpy
    (:func:`_uniform_run`).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    buf = memoryview(data)
    if buf.format != "B" or buf.ndim != 1:
        if not buf.c_contiguous:
            raise CodecError("expected a contiguous buffer")
        buf = buf.cast("B")
    end = len(buf)
    pos = 0
    # open containers: [tag, values still to read (a dict counts keys and values), items | dict | hashable,
    #                   last key (dict) | layout (tag, size) of the last item (list, tuple), items in a row with it]
    stack: list[list[Any]] = []
    while True:
        value: Any = _OPEN
        if stack and pos + 1 < end and buf[pos] in _CONSTANT_TAGS and buf[pos + 1] in _CONSTANT_TAGS:
            frame = stack[-1]
            if frame[0] != _DICT or frame[1] % 2 == 0:  # in a dict, whole pairs from a key on
                run = _CONSTANT_RUN.match(buf, pos, pos + frame[1]).end() - pos
                if frame[0] == _DICT:
                    run -= run % 2
                if materialize and run:
                    values = map(_CONSTANT_VALUE.__getitem__, buf[pos : pos + run])
                    if frame[0] == _DICT:
                        frame[2].update(zip(values, values))
                    else:
                        frame[2] += values
                pos += run
                frame[1] -= run
                if frame[0] != _DICT:
                    frame[3] = 0  # no run of same-layout values continues across constants
                if not frame[1]:
                    value = _close(stack, materialize)
        if value is _OPEN:
            if pos >= end:
                raise _truncated(pos, 1, end)
            start = pos
            tag = buf[pos]
            pos += 1
            header = 0  # bytes at the start of a fixed-size value that decide whether it is valid
            if tag in _CONSTANT_TAGS:
                value = _CONSTANT_VALUE[tag] if materialize else True
            elif tag == _FLOAT:
                if pos + 8 > end:
                    raise _truncated(pos, 8, end)
                value = _F64.unpack_from(buf, pos)[0] if materialize else True
                pos += 8
                header = 1
            elif tag == _INT:
                if pos + 5 > end:
                    raise _truncated(pos, 5, end)
                sign, size = _INT_HEADER.unpack_from(buf, pos)
                if sign != _PLUS and sign != _MINUS:
                    raise CodecError("bad integer sign byte")
                pos += 5
                if pos + size > end:
                    raise _truncated(pos, size, end)
                value = True
                if materialize:
                    value = int.from_bytes(buf[pos : pos + size], "little")
                    value = -value if sign == _MINUS else value
                pos += size
                header = 6
            elif tag == _STR or tag == _BYTES:
                if pos + 8 > end:
                    raise _truncated(pos, 8, end)
                size = _U64.unpack_from(buf, pos)[0]
                pos += 8
                if size > end - pos:
                    raise CodecError(f"declared length {size} exceeds the message size")
                raw = buf[pos : pos + size]
                pos += size
                value = True
                header = 9
                if tag == _BYTES:
                    if materialize:
                        value = bytes(raw)
                else:
                    try:
                        text = str(raw, "utf-8")
                    except UnicodeDecodeError as exc:
                        raise CodecError(f"invalid UTF-8 string: {exc}") from None
                    if materialize:
                        value = text
            elif tag == _ARRAY:
                if pos + 2 > end:
                    raise _truncated(pos, 2, end)
                code, ndim = buf[pos], buf[pos + 1]
                pos += 2
                if code >= len(_DTYPE_BY_CODE):
                    raise CodecError(f"unknown array dtype code {code}")
                dtype = _DTYPE_BY_CODE[code]
                size = dtype.itemsize
                shape: tuple[int, ...] = ()
                if ndim:
                    if pos + 8 * ndim > end:
                        raise _truncated(pos, 8 * ndim, end)
                    shape = _SHAPE[ndim].unpack_from(buf, pos)
                    pos += 8 * ndim
                    problem = array_shape_error(shape, size)
                    if problem is not None:
                        raise CodecError(problem)
                    for dim in shape:
                        size *= dim
                if pos + size > end:
                    raise _truncated(pos, size, end)
                value = False
                if materialize:
                    arr = np.frombuffer(buf[pos : pos + size], dtype=dtype).reshape(shape)
                    value = arr if arr.flags.writeable and arr.flags.aligned else arr.copy()
                pos += size
                header = 3 + 8 * ndim
            elif tag == _UINTS:
                if pos + 12 > end:
                    raise _truncated(pos, 12, end)
                n, width = _UINT_LIST_HEADER.unpack_from(buf, pos)
                pos += 12
                if width == 0:
                    raise CodecError("zero integer width")
                if pos + n * width > end:
                    raise _truncated(pos, n * width, end)
                value = False
                if materialize:
                    raw = bytes(buf[pos : pos + n * width])
                    value = [int.from_bytes(raw[k : k + width], "little") for k in range(0, n * width, width)]
                pos += n * width
                header = 13
            elif tag == _LIST or tag == _TUPLE or tag == _DICT:
                if pos + 8 > end:
                    raise _truncated(pos, 8, end)
                n = _U64.unpack_from(buf, pos)[0]
                pos += 8
                values = 2 * n if tag == _DICT else n  # each value takes at least one byte
                if values > end - pos:
                    raise CodecError(f"declared length {n} exceeds the message size")
                if not values:
                    value = (({} if tag == _DICT else [] if tag == _LIST else ()) if materialize else tag == _TUPLE)
                    header = 9
                elif len(stack) >= MAX_DEPTH:
                    raise CodecError(f"message nested deeper than {MAX_DEPTH} levels")
                else:
                    stack.append([tag, values, ({} if tag == _DICT else []) if materialize else tag == _TUPLE, None, 0])
                    continue
            else:
                raise CodecError(f"unknown type tag {bytes([tag])!r} at offset {pos - 1}")
            if stack and not materialize and stack[-1][0] != _DICT:
                frame = stack[-1]
                layout = (pos - start) << 8 | tag if header else 0
                frame[4] = frame[4] + 1 if layout and frame[3] == layout else 1
                frame[3] = layout
                if layout and frame[4] >= _UNIFORM_AFTER and frame[1] > 1:
                    run = _uniform_run(buf, start, pos - start, header, tag, frame[1] - 1)
                    pos += run * (pos - start)
                    frame[1] -= run
                    frame[4] = 0

        # hand the value to the containers it completes
        while value is not _OPEN:
            if not stack:
                if pos != end:
                    raise CodecError(f"{end - pos} trailing bytes after the encoded value")
                return value if materialize else None
            frame = stack[-1]
            left = frame[1]
            if frame[0] != _DICT:
                if materialize:
                    frame[2].append(value)
                elif not value:
                    frame[2] = False
            elif left % 2 == 0:
                frame[3] = value
            elif materialize:
                try:
                    frame[2][frame[3]] = value
                except TypeError:
                    raise CodecError(f"unhashable dict key of type {type(frame[3]).__name__}") from None
            elif not frame[3]:
                raise CodecError("unhashable dict key")
            frame[1] = left - 1
            value = _OPEN if left > 1 else _close(stack, materialize)


def _uniform_run(buf: memoryview, start: int, size: int, header: int, tag: int, limit: int) -> int:
    """How many values right after the valid one at ``start`` (``size`` bytes, type ``tag``) are valid
    for the same reason, up to ``limit``: the same first ``header`` bytes (an integer's sign byte may
    differ) and, for strings, valid UTF-8.

    Windows double from 64 values, so the work is proportional to the run found. A string run is
    checked as one UTF-8 decode of the whole window, which is exact when the headers are ASCII
    (an ASCII byte cannot end or continue a multi-byte sequence), so only then.
    """
    expected = np.frombuffer(buf, np.uint8, count=header, offset=start)
    if tag == _STR and expected.max() >= 0x80:
        return 0
    pos, found, window = start + size, 0, 64
    while found < limit:
        rows = min(window, limit - found, (len(buf) - pos) // size)
        if rows == 0:
            break
        block = np.frombuffer(buf, np.uint8, count=rows * size, offset=pos).reshape(rows, size)[:, :header]
        same = block == expected
        if tag == _INT:
            same[:, 1] = (block[:, 1] == _PLUS) | (block[:, 1] == _MINUS)
        good = same.all(axis=1)
        rows = rows if good.all() else int(good.argmin())
        if tag == _STR and rows:
            try:
                str(buf[pos : pos + rows * size], "utf-8")
            except UnicodeDecodeError:
                return found  # the value-by-value reader finds the bad string
        found, pos = found + rows, pos + rows * size
        if not good.all():
            break
        window *= 2
    return found


def _close(stack: list[list[Any]], materialize: bool) -> Any:
    """Pop the completed container: its value (decoding) or whether it is hashable (validating)."""
    tag, _, contents, _, _ = stack.pop()
    if not materialize:
        return contents  # False for lists and dicts, True for a tuple of hashable items
    return tuple(contents) if tag == _TUPLE else contents


_OPEN = object()  # "no value yet": a container was opened
_UNIFORM_AFTER = 16  # same-layout values in a row after which validation checks the following ones at once
_MAX_INTP = 2**63 - 1  # numpy's largest array size in bytes
_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")
_INT_HEADER = struct.Struct("<BI")
_UINT_LIST_HEADER = struct.Struct("<QI")
_SHAPE = [struct.Struct(f"<{ndim}Q") for ndim in range(256)]
_NONE, _TRUE, _FALSE, _INT, _FLOAT, _STR, _BYTES, _ARRAY, _UINTS, _LIST, _TUPLE, _DICT = b"NTFifsbaIltd"
_PLUS, _MINUS = b"+-"
_CONSTANT_TAGS = frozenset((_NONE, _TRUE, _FALSE))
_CONSTANT_VALUE: tuple[Any, ...] = tuple({_NONE: None, _TRUE: True, _FALSE: False}.get(b) for b in range(256))
_CONSTANT_RUN = re.compile(b"[NTF]*")


def array_shape_error(shape: tuple[int, ...], itemsize: int) -> str | None:
    """Why numpy cannot make an array of this shape (``None`` if it can).

    numpy allows at most :data:`MAX_NDIM` dimensions, and the product of the non-zero
    dimensions times the item size must fit in a signed 64-bit integer (``np.empty`` and
    ``reshape`` refuse larger shapes even when another dimension is 0).
    """
    if len(shape) > MAX_NDIM:
        return f"array has {len(shape)} dimensions, more than numpy's {MAX_NDIM}"
    nbytes = itemsize
    for dim in shape:
        nbytes *= dim or 1
    if nbytes > _MAX_INTP:
        return f"array of shape {shape} and {itemsize}-byte items is too large for numpy"
    return None


def _truncated(pos: int, needed: int, end: int) -> CodecError:
    return CodecError(f"truncated message: needed {needed} bytes at offset {pos}, have {end - pos}")
