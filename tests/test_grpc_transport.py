"""In-process checks of the gRPC transport: mTLS refusals, sender binding, malformed payloads, chunking, deadlines."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from mpcml import PartyTimeout, codec
from parties import wire_pb2, wire_pb2_grpc
from parties.certs import TlsMaterial, load_tls, write_federation_certs
from parties.config import MIB, Limits, federation_from_dict
from parties.launcher import free_ports
from parties.server import HEADROOM, SERVICE, PartyServer, TransportError, channel_options
from parties.transport import GrpcParty, PeerRefused, PeerUnreachable

IDS = ("alice", "bob", "dealer")
SESSION = "test-session"


def make_federation(base: Path, ids=IDS):
    ports = free_ports(len(ids))
    data = {"session": SESSION, "parties": {pid: {"address": f"127.0.0.1:{port}"} for pid, port in zip(ids, ports)}}
    federation = federation_from_dict(data, base)
    write_federation_certs(federation)
    return federation


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    return make_federation(tmp_path_factory.mktemp("fed"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    """Same party ids and addresses, certificates from a different CA."""
    return make_federation(tmp_path_factory.mktemp("other"))


def start(federation, pid, *, timeout=3.0, chunk_bytes=2 * MIB, refusals=None, limits=Limits(), agreement=None):
    tls = load_tls(federation, pid)
    peers = {p: s.address for p, s in federation.parties.items() if p != pid}
    server = PartyServer(pid, federation.parties[pid].address, peers, SESSION, tls=tls, chunk_bytes=chunk_bytes,
                         on_refusal=None if refusals is None else refusals.append, limits=limits, timeout=timeout,
                         agreement=agreement).start()
    party = GrpcParty(pid, peers, server, SESSION, tls=tls, timeout=timeout, chunk_bytes=chunk_bytes, agreement=agreement)
    return party, server


@contextlib.contextmanager
def running(federation, *pids, **kwargs):
    """Started parties ``pids`` (servers and channels), shut down on exit."""
    started = [start(federation, pid, **kwargs) for pid in pids]
    try:
        yield [party for party, _ in started]
    finally:
        for party, server in started:
            party.close()
            server.stop(0)


@pytest.fixture
def receiver(federation):
    refusals: list[str] = []
    with running(federation, "alice", refusals=refusals) as (party,):
        yield party, refusals


def raw_stub(federation, tls: TlsMaterial | None, target: str = "alice"):
    """A bare client channel to ``target`` presenting ``tls`` (``cert``/``key`` may be empty: no client certificate)."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=load_tls(federation, target).ca,
        private_key=(tls.key if tls and tls.key else None), certificate_chain=(tls.cert if tls and tls.cert else None),
    )
    channel = grpc.secure_channel(federation.parties[target].address, credentials,
                                  options=[("grpc.ssl_target_name_override", target), *channel_options(2 * MIB)])
    return channel, wire_pb2_grpc.PartyServiceStub(channel)


def chunk(sender: str, seq: int, payload: bytes, session: str = SESSION) -> wire_pb2.Chunk:
    return wire_pb2.Chunk(sender=sender, session=session, seq=seq, index=0, count=1, total_size=len(payload), data=payload)


def assert_still_serving(federation, party, sender="bob", value=None):
    """A legitimate message from ``sender`` still gets through after a refusal."""
    value = np.arange(5.0) if value is None else value
    with running(federation, sender) as (peer,):
        peer.send("alice", value)
        np.testing.assert_array_equal(party.recv(sender), value)


def test_roundtrip_and_payload_stats(federation):
    with running(federation, "alice", "bob") as (a, b):
        message = {"x": np.arange(12, dtype=np.uint64).reshape(3, 4), "ct": [2**100 + 1, 7], "s": "hi"}
        a.send("bob", message)
        got = b.recv("alice")
        np.testing.assert_array_equal(got["x"], message["x"])
        assert got["ct"] == message["ct"] and got["s"] == "hi"
        assert a.stats.bytes_sent == b.stats.bytes_received == len(codec.encode(message))
        assert a.transport.rpcs == 1 and a.transport.envelope_bytes_sent > 0


def test_large_message_is_chunked(federation):
    with running(federation, "alice", "bob", chunk_bytes=MIB) as (a, b):
        big = np.random.default_rng(0).integers(0, 2**63, size=(9 * MIB) // 8 + 3, dtype=np.uint64)
        a.send("bob", big)
        np.testing.assert_array_equal(b.recv("alice"), big)
        assert a.transport.chunks_sent == 10 and a.transport.rpcs == 1
        assert a.stats.bytes_sent == len(codec.encode(big))


def test_concurrent_senders_keep_per_thread_order(federation):
    with running(federation, "alice", "bob") as (a, b):
        threads = [threading.Thread(target=lambda t=t: [a.send("bob", (t, i)) for i in range(15)]) for t in range(4)]
        for thread in threads:
            thread.start()
        got = [b.recv("alice") for _ in range(60)]
        for thread in threads:
            thread.join()
        for t in range(4):
            assert [i for s, i in got if s == t] == list(range(15))
        assert a.transport.as_dict()["rpcs"] == a.stats.messages_sent == 60


def test_message_size_limits_are_explicit():
    assert channel_options(3 * MIB) == [("grpc.max_send_message_length", 3 * MIB + HEADROOM),
                                        ("grpc.max_receive_message_length", 3 * MIB + HEADROOM)]
    with pytest.raises(ValueError, match="chunk_bytes"):
        PartyServer("alice", "127.0.0.1:1", ["bob"], SESSION, tls=None, chunk_bytes=8 * MIB)


def test_recv_deadline_names_the_silent_peer(receiver):
    party, _ = receiver
    start_time = time.monotonic()
    with pytest.raises(PartyTimeout, match="'alice' timed out after 0.3s waiting for a message from 'dealer'"):
        party.recv("dealer", timeout=0.3)
    assert time.monotonic() - start_time < 2


def test_parties_start_in_any_order(federation):
    """bob sends before alice's server exists; wait-for-ready delivers once alice starts."""
    with running(federation, "bob", timeout=5.0) as (b,):
        sender = threading.Thread(target=b.send, args=("alice", "early"))
        sender.start()
        time.sleep(0.5)
        with running(federation, "alice") as (a,):
            assert a.recv("bob") == "early"
            sender.join(5)
            assert not sender.is_alive()


def test_send_to_dead_peer_names_it(federation):
    with running(federation, "bob", timeout=0.5) as (b,):
        with pytest.raises(PeerUnreachable, match="'bob' could not reach 'dealer' within 0.5s"):
            b.send("dealer", 0, acknowledged=True)  # raised here, and this send's failure only
        b.send("alice", 1)  # pipelined: the loss is raised by the next send, receive or flush
        with pytest.raises(PeerUnreachable, match="'bob' could not reach 'alice' within 0.5s"):
            b.flush()
        with pytest.raises(PeerUnreachable, match="'bob' could not reach 'alice'.*no connection"):
            b.connect()


def test_client_without_certificate_is_refused(federation, receiver):
    party, _ = receiver
    channel, stub = raw_stub(federation, None)
    with pytest.raises(grpc.RpcError) as err:
        stub.Deliver(chunk("bob", 0, codec.encode(1)), timeout=2)
    channel.close()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
    assert_still_serving(federation, party)


def test_client_from_another_ca_is_refused(federation, other_ca, receiver):
    party, _ = receiver
    channel, stub = raw_stub(federation, load_tls(other_ca, "bob"))
    with pytest.raises(grpc.RpcError) as err:
        stub.Deliver(chunk("bob", 0, codec.encode(1)), timeout=2)
    channel.close()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert_still_serving(federation, party)


@pytest.mark.parametrize("impostor_cert", ["other-ca", "other-party"])
def test_client_refuses_a_server_that_is_not_the_peer(federation, other_ca, impostor_cert):
    """bob dials 'alice' but reaches a server with another CA's 'alice' certificate, or with dealer's own certificate."""
    owner = (other_ca, "alice") if impostor_cert == "other-ca" else (federation, "dealer")
    impostor_tls = load_tls(*owner)
    address = f"127.0.0.1:{free_ports(1)[0]}"
    impostor = PartyServer(owner[1], address, ["bob"], SESSION, tls=impostor_tls).start()
    bob_tls = load_tls(federation, "bob")
    server = PartyServer("bob", federation.parties["bob"].address, ["alice"], SESSION, tls=bob_tls).start()
    bob = GrpcParty("bob", {"alice": address}, server, SESSION, tls=bob_tls, timeout=1.0)
    try:
        bob.send("alice", 1)
        with pytest.raises(PeerUnreachable, match="'bob' could not reach 'alice'"):
            bob.flush()
    finally:
        bob.close()
        for s in (server, impostor):
            s.stop(0)


def test_sender_must_match_certificate(federation, receiver):
    party, refusals = receiver
    channel, stub = raw_stub(federation, load_tls(federation, "bob"))
    with pytest.raises(grpc.RpcError) as err:
        stub.Deliver(chunk("dealer", 0, codec.encode("forged")), timeout=2)
    channel.close()
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "claimed sender 'dealer' does not match the client certificate ['bob']" in err.value.details()
    assert len(refusals) == 1
    with pytest.raises(PartyTimeout):
        party.recv("dealer", timeout=0.2)
    assert_still_serving(federation, party, sender="dealer", value=np.ones(2))


@pytest.mark.parametrize(
    "payload, reason",
    [(b"\xffnot a codec message", "unknown type tag"), (codec.encode([1, 2])[:-1], "truncated"),
     (codec.encode(1) + b"x", "trailing bytes")],
)
def test_malformed_payload_is_refused_and_server_keeps_serving(federation, receiver, payload, reason):
    party, refusals = receiver
    channel, stub = raw_stub(federation, load_tls(federation, "bob"))
    with pytest.raises(grpc.RpcError) as err:
        stub.Deliver(chunk("bob", 0, payload), timeout=2)
    channel.close()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed payload in message 0 from 'bob'" in err.value.details() and reason in err.value.details()
    assert refusals and "malformed payload" in refusals[0]
    assert_still_serving(federation, party)


def test_malformed_protobuf_is_refused_and_server_keeps_serving(federation, receiver):
    party, _ = receiver
    channel, _ = raw_stub(federation, load_tls(federation, "bob"))
    deliver = channel.unary_unary(f"/{SERVICE}/Deliver")
    with pytest.raises(grpc.RpcError) as err:
        deliver(b"\x3a\x09not nine", timeout=2)
    channel.close()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed chunk: chunk field 7 is truncated" in err.value.details()
    assert_still_serving(federation, party)


def test_bad_chunk_headers_session_and_sequence_are_refused(federation, receiver):
    party, _ = receiver
    channel, stub = raw_stub(federation, load_tls(federation, "bob"))
    good = codec.encode(3)
    cases = [
        (wire_pb2.Chunk(sender="bob", session=SESSION, seq=0, index=0, count=2, total_size=len(good), data=good),
         grpc.StatusCode.INVALID_ARGUMENT),
        (chunk("bob", 0, good, session="another-run"), grpc.StatusCode.FAILED_PRECONDITION),
        (chunk("bob", 5, good), grpc.StatusCode.FAILED_PRECONDITION),
    ]
    for message, code in cases:
        with pytest.raises(grpc.RpcError) as err:
            stub.Deliver(message, timeout=2)
        assert err.value.code() == code
    torn = [wire_pb2.Chunk(sender="bob", session=SESSION, seq=0, index=i, count=3, total_size=3 * MIB, data=b"x" * 10) for i in (0, 2)]
    with pytest.raises(grpc.RpcError) as err:
        stub.Stream(iter(torn), timeout=2)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "inconsistent headers" in err.value.details()
    channel.close()
    assert_still_serving(federation, party)


def test_pipelined_messages_are_handed_over_in_order_and_a_replay_is_refused(federation, receiver):
    """The server's threads may finish a sender's pipelined RPCs in any order: a message ahead of the next one due
    (within limits.streams) is held until those before it arrive; a repeated or far-ahead sequence number is refused."""
    party, _ = receiver
    channel, stub = raw_stub(federation, load_tls(federation, "bob"))
    for seq in (2, 1):
        stub.Deliver(chunk("bob", seq, codec.encode(f"m{seq}")), timeout=2)
    with pytest.raises(PartyTimeout):
        party.recv("bob", timeout=0.2)
    stub.Deliver(chunk("bob", 0, codec.encode("m0")), timeout=2)
    assert [party.recv("bob") for _ in range(3)] == ["m0", "m1", "m2"]
    stub.Deliver(chunk("bob", 4, codec.encode("m4")), timeout=2)
    for seq in (1, 4, 3 + Limits().streams):
        with pytest.raises(grpc.RpcError) as err:
            stub.Deliver(chunk("bob", seq, codec.encode("again")), timeout=2)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "out of sequence" in err.value.details()
    stub.Deliver(chunk("bob", 3, codec.encode("m3")), timeout=2)
    assert [party.recv("bob") for _ in range(2)] == ["m3", "m4"]
    channel.close()


def test_send_returns_before_delivery_and_flush_waits_for_it(federation):
    """A message that fits in a chunk is pipelined: send returns while the receiver still holds it back (its buffer is
    full until its protocol reads), and flush returns only once it has been delivered."""
    limits = Limits(buffer_bytes=2 * MIB, streams=4, idle_timeout=30, message_timeout=30)
    block = np.zeros(200_000, dtype=np.uint64)  # 1.6 MB: one fills bob's 2 MiB buffer
    with running(federation, "alice", "bob", limits=limits, timeout=30) as (a, b):
        a.send("bob", block)
        a.flush()
        start = time.monotonic()
        a.send("bob", block + 1)  # does not fit until bob reads the first
        assert time.monotonic() - start < 0.5
        flushed = threading.Event()
        flusher = threading.Thread(target=lambda: (a.flush(), flushed.set()))
        flusher.start()
        assert not flushed.wait(1.0)
        np.testing.assert_array_equal(b.recv("alice"), block)
        assert flushed.wait(10)
        flusher.join()
        np.testing.assert_array_equal(b.recv("alice"), block + 1)


def test_refusal_reaches_the_sending_party(federation):
    """GrpcParty turns a refusal into PeerRefused naming the refusing peer. A pipelined send returns before the
    refusal arrives: it wakes a receive already waiting (long before its timeout) and is raised by every later
    send, receive and flush of the party."""
    with running(federation, "alice", "bob", timeout=30) as (a, b):
        channel, stub = raw_stub(federation, load_tls(federation, "bob"))
        stub.Deliver(chunk("bob", 0, codec.encode("from another client with bob's key")), timeout=2)
        channel.close()
        refused = "party 'alice' refused a message from 'bob'.*out of sequence"
        b.send("alice", 1)
        start = time.monotonic()
        with pytest.raises(PeerRefused, match=refused):
            b.recv("alice")
        assert time.monotonic() - start < 5
        for later in (lambda: b.send("alice", 2), lambda: b.recv("alice"), b.flush):
            with pytest.raises(PeerRefused, match=refused):
                later()


def test_port_in_use_is_one_clear_error(federation):
    with running(federation, "alice"):
        with pytest.raises(TransportError, match="cannot listen on 127.0.0.1:.*port is in use"):
            PartyServer("alice", federation.parties["alice"].address, ["bob"], SESSION, tls=load_tls(federation, "alice"))
