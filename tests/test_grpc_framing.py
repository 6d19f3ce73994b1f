"""parties.framing reads and writes exactly protobuf's encoding of Chunk, and rejects malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parties import wire_pb2
from parties.framing import join_chunk, split_chunk

u64, u32 = st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1)
text = st.text(max_size=40)


@settings(max_examples=60, deadline=None)
@given(sender=text, session=text, seq=u64, index=u32, count=u32, total=u64, data=st.binary(max_size=3000))
def test_join_and_split_match_protobuf(sender, session, seq, index, count, total, data):
    header = wire_pb2.Chunk(sender=sender, session=session, seq=seq, index=index, count=count, total_size=total)
    full = wire_pb2.Chunk(sender=sender, session=session, seq=seq, index=index, count=count, total_size=total, data=data)
    assert wire_pb2.Chunk.FromString(join_chunk(header, memoryview(data))) == full
    parsed, payload = split_chunk(full.SerializeToString())
    assert bytes(payload) == data and parsed == header


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x18", "truncated or overlong varint"),
        (b"\x3a\x05abc", "field 7 is truncated"),
        (b"\x3a\x01a\x3a\x01b", "data field twice"),
        (b"\x40\x01", "unknown field 8"),
        (b"\x0a\x01", "field 1 is truncated"),
        (b"\x18\x01\x1d\x00\x00\x00\x00", "wrong wire type 5"),
        (b"\x0a\x01\xff", "header does not parse"),
        (b"\x18" + b"\xff" * 11, "overlong varint"),
        (b"\x08\x01", "unknown field 1 or wrong wire type 0"),
    ],
)
def test_malformed_chunks_are_rejected(raw, message):
    with pytest.raises(ValueError, match=message):
        split_chunk(raw)
