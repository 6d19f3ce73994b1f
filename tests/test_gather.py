"""``Party.gather`` and declared message shapes, on the in-process and the gRPC transport alike."""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import pytest

from mpcml import PartyTimeout, make_local_parties
from mpcml.schema import Array, Bytes, Int, ListOf, ProtocolError, Record, Str, Tuple
from parties.config import federation_from_dict
from parties.launcher import free_ports
from parties.server import PartyServer
from parties.transport import GrpcParty

IDS = ("hub", "a", "b", "c")


@contextlib.contextmanager
def grpc_parties(tmp_path, timeout):
    """Plaintext gRPC parties on loopback (mTLS is covered by test_grpc_transport)."""
    ports = free_ports(len(IDS))
    federation = federation_from_dict(
        {"session": "s", "parties": {p: {"address": f"127.0.0.1:{port}"} for p, port in zip(IDS, ports)}}, tmp_path
    )
    started = {}
    try:
        for pid in IDS:
            peers = {p: s.address for p, s in federation.parties.items() if p != pid}
            server = PartyServer(pid, federation.parties[pid].address, peers, "s", tls=None).start()
            started[pid] = (GrpcParty(pid, peers, server, "s", tls=None, timeout=timeout), server)
        yield {pid: party for pid, (party, _) in started.items()}
    finally:
        for party, server in started.values():
            party.close()
            server.stop(0)


@contextlib.contextmanager
def local_parties(tmp_path, timeout):
    yield make_local_parties(IDS, timeout=timeout)


@pytest.fixture(params=["local", "grpc"])
def parties(request, tmp_path):
    make = local_parties if request.param == "local" else grpc_parties
    with make(tmp_path, 1.5) as made:
        yield made


def later(seconds, fn, *args):
    timer = threading.Timer(seconds, fn, args)
    timer.start()
    return timer


def test_gather_returns_in_arrival_order_without_waiting_on_slow_senders_first(parties):
    hub = parties["hub"]
    later(0.3, parties["a"].send, "hub", "from a")
    parties["b"].send("hub", "from b")
    later(0.15, parties["c"].send, "hub", "from c")
    start = time.monotonic()
    got = hub.gather(["a", "b", "c"])
    assert list(got) == ["b", "c", "a"] and got["a"] == "from a"
    assert time.monotonic() - start < 1.0
    assert hub.stats.messages_received == 3


def test_gather_names_every_silent_sender(parties):
    parties["b"].send("hub", 1)
    start = time.monotonic()
    with pytest.raises(PartyTimeout, match="'a', 'c'") as info:
        parties["hub"].gather(["a", "b", "c"], deadline=time.monotonic() + 0.3)
    assert info.value.peers == ("a", "c") and time.monotonic() - start < 1.0


def test_gather_at_least_keeps_dropouts_out_and_first_returns_early(parties):
    hub = parties["hub"]
    parties["a"].send("hub", 1)
    parties["c"].send("hub", 3)
    assert hub.gather(["a", "b", "c"], at_least=2, deadline=time.monotonic() + 0.2) == {"a": 1, "c": 3}
    parties["b"].send("hub", 2)  # late answer of the dropout, then two fresh ones
    parties["a"].send("hub", 4)
    start = time.monotonic()
    got = hub.gather(["a", "b", "c"], first=2)
    assert got == {"b": 2, "a": 4} and time.monotonic() - start < 0.5
    with pytest.raises(PartyTimeout, match="'a', 'b', 'c'"):
        hub.gather(["a", "b", "c"], at_least=1, deadline=time.monotonic() + 0.1)


def test_gather_skips_messages_not_accepted(parties):
    for rnd in (0, 1):
        parties["a"].send("hub", {"round": rnd})
    parties["b"].send("hub", {"round": 1})
    got = parties["hub"].gather(["a", "b"], accept=lambda sender, msg: msg["round"] == 1)
    assert got == {"a": {"round": 1}, "b": {"round": 1}}


def test_malformed_messages_name_sender_message_and_field(parties):
    hub = parties["hub"]
    shape = Record(rows=Int(low=1), cols=Int(low=1))
    parties["a"].send("hub", {"rows": 3, "cols": 0})
    with pytest.raises(ProtocolError, match=r"party 'a' sent a malformed block shape: cols must lie in \[1, None\], got 0"):
        hub.recv("a", expect=shape, what="block shape")
    parties["b"].send("hub", {"rows": 3})
    with pytest.raises(ProtocolError, match=r"'b' sent a malformed block shape: .*lacks \['cols'\]"):
        hub.gather(["b"], expect=shape, what="block shape")
    parties["c"].send("hub", [b"x" * 32, [2, "3"]])
    with pytest.raises(ProtocolError, match=r"\[1\]\[1\] must be an integer, got str"):
        hub.recv("c", expect=Tuple(Bytes(32), ListOf(Int(low=0))), what="share seed")


def test_specs_accept_what_they_declare():
    spec = Record(kind=Str(["a", "b"]), share=Array(np.uint64, shape=(None, 2)), optional={"note": Str()})
    message = {"kind": "a", "share": np.zeros((5, 2), np.uint64)}
    assert spec.validate(message, "p", "m") is not None
    for bad in ({**message, "kind": "c"}, {**message, "share": np.zeros((5, 3), np.uint64)},
                {**message, "share": np.zeros((5, 2), np.int64)}, {**message, "extra": 1}):
        with pytest.raises(ProtocolError):
            spec.validate(bad, "p", "m")


def test_gather_refuses_bad_arguments_before_waiting():
    hub = make_local_parties(IDS)["hub"]
    with pytest.raises(ValueError, match="not a peer"):
        hub.gather(["a", "zed"])
    with pytest.raises(ValueError, match="duplicates"):
        hub.gather(["a", "a"])
    with pytest.raises(ValueError, match="at_least"):
        hub.gather(["a", "b"], at_least=3)
