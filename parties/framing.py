"""Zero-copy framing of :class:`wire_pb2.Chunk` messages for the hot path.

A chunk's payload is by far its largest field, and going through protobuf objects copies it
three times per side (slice, message, serialisation / parse, arena, ``.data``). These two
functions produce and read exactly the protobuf wire format of ``Chunk`` (any standard
protobuf client or server interoperates, see tests/test_grpc_transport.py) while touching the
payload once: the header fields go through the generated code, the ``data`` field (number 7,
length-delimited) is appended or sliced out as raw bytes.

:func:`split_chunk` is strict: every field must have the wire type the schema gives it, the
data field may appear at most once, and anything truncated or unknown raises :class:`ValueError`.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from . import wire_pb2

DATA_FIELD = wire_pb2.Chunk.DESCRIPTOR.fields_by_name["data"].number
_DATA_TAG = bytes([DATA_FIELD << 3 | 2])
_LENGTH_DELIMITED = {f.number for f in wire_pb2.Chunk.DESCRIPTOR.fields if f.type in (f.TYPE_STRING, f.TYPE_BYTES)}
_VARINT = {f.number for f in wire_pb2.Chunk.DESCRIPTOR.fields} - _LENGTH_DELIMITED


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint in chunk")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def join_chunk(header: wire_pb2.Chunk, *data: memoryview | bytes) -> bytes:
    """The serialised ``Chunk`` with ``header``'s fields and the pieces ``data`` as payload (one copy)."""
    size = sum(len(piece) for piece in data)
    return b"".join((header.SerializeToString(), _DATA_TAG, _varint(size), *data))


def split_chunk(raw: bytes) -> tuple[wire_pb2.Chunk, memoryview]:
    """Parse a serialised ``Chunk``: its header fields (``data`` left empty) and a view of its payload."""
    buf = memoryview(raw)
    pos, data = 0, None
    header_parts: list[memoryview] = []
    while pos < len(buf):
        start = pos
        key, pos = _read_varint(buf, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0 and field in _VARINT:
            _, pos = _read_varint(buf, pos)
        elif wire_type == 2 and (field in _LENGTH_DELIMITED):
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError(f"chunk field {field} is truncated")
            if field == DATA_FIELD:
                if data is not None:
                    raise ValueError("chunk has the data field twice")
                data = buf[pos : pos + length]
                pos += length
                continue
            pos += length
        else:
            raise ValueError(f"chunk has an unknown field {field} or wrong wire type {wire_type}")
        header_parts.append(buf[start:pos])
    try:
        header = wire_pb2.Chunk.FromString(b"".join(header_parts))
    except DecodeError as exc:
        raise ValueError(f"chunk header does not parse: {exc}") from None
    return header, buf[0:0] if data is None else data
