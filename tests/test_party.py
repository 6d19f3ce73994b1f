"""The Party runtime: run_local, statistics, timeouts naming the silent peer, failures naming the party."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mpcml import PartyAborted, PartyFailed, PartyTimeout, codec, make_local_parties, run_local


def test_run_local_outputs_inputs_and_exact_stats():
    def alice(party, x, *, scale=1):
        party.send("bob", x * scale)
        return party.recv("bob")

    def bob(party):
        got = party.recv("alice")
        party.send("alice", got.sum())
        return got

    x = np.arange(5.0)
    out = run_local({"alice": alice, "bob": bob}, {"alice": {"x": x, "scale": 2}})
    assert out["alice"] == 20.0
    np.testing.assert_array_equal(out["bob"], 2 * x)
    array_bytes, float_bytes = len(codec.encode(2 * x)), len(codec.encode(20.0))
    a, b = out.stats["alice"], out.stats["bob"]
    assert (a.bytes_sent, a.bytes_received, a.messages_sent, a.messages_received) == (array_bytes, float_bytes, 1, 1)
    assert (b.bytes_sent, b.bytes_received) == (float_bytes, array_bytes)
    assert a.sent_to == {"bob": array_bytes} and b.received_from == {"alice": array_bytes}
    assert a.rounds == 1 and b.rounds == 1
    assert a.as_dict()["bytes_sent"] == array_bytes
    delta = a.snapshot() - type(a)()
    assert (delta.bytes_sent, delta.sent_to, delta.received_from) == (array_bytes, {"bob": array_bytes}, {"bob": float_bytes})


def test_rounds_count_send_after_receive():
    def ping(party, n):
        for i in range(n):
            party.send("pong", i)
            party.send("pong", i)  # a second message in the same round
            party.recv("pong")

    def pong(party, n):
        for _ in range(n):
            party.recv("ping")
            party.recv("ping")
            party.send("ping", 0)

    out = run_local({"ping": ping, "pong": pong}, {"ping": (4,), "pong": (4,)})
    assert out.stats["ping"].rounds == 4 and out.stats["ping"].messages_sent == 8
    assert out.stats["pong"].rounds == 4


def test_recv_from_silent_peer_times_out_naming_it():
    parties = make_local_parties(["alice", "bob", "carol"], timeout=0.3)
    start = time.perf_counter()
    with pytest.raises(PartyTimeout, match="'carol'") as info:
        parties["alice"].recv("carol")
    elapsed = time.perf_counter() - start
    assert 0.25 <= elapsed < 2.0
    assert info.value.peer == "carol" and info.value.party_id == "alice" and info.value.timeout == 0.3
    with pytest.raises(PartyTimeout, match="'bob'"):
        parties["alice"].recv("bob", timeout=0.1)


def test_silent_peer_inside_run_local_raises_party_failed_with_timeout_cause():
    def waiter(party):
        return party.recv("sleeper")

    def sleeper(party):
        return "never sends"

    start = time.perf_counter()
    with pytest.raises(PartyFailed, match="'waiter'") as info:
        run_local({"waiter": waiter, "sleeper": sleeper}, timeout=0.3)
    assert time.perf_counter() - start < 3.0
    assert isinstance(info.value.__cause__, PartyTimeout) and info.value.__cause__.peer == "sleeper"


def test_failing_role_names_the_party_and_aborts_the_others_quickly():
    def broken(party):
        raise KeyError("boom")

    def patient(party):
        return party.recv("broken")  # would wait for the 60 s default timeout without the abort

    start = time.perf_counter()
    with pytest.raises(PartyFailed, match="'broken' failed: KeyError") as info:
        run_local({"broken": broken, "patient": patient, "other": patient})
    assert time.perf_counter() - start < 2.0
    assert info.value.party_id == "broken" and isinstance(info.value.__cause__, KeyError)


def test_abort_is_visible_to_waiting_parties():
    parties = make_local_parties(["a", "b"])
    parties["a"].abort_all("stopped: party 'a' failed")
    with pytest.raises(PartyAborted, match="'a' failed"):
        parties["b"].recv("a")


def test_unknown_peers_and_bad_configuration_raise_before_sending():
    parties = make_local_parties(["alice", "bob"])
    alice = parties["alice"]
    for call in (lambda: alice.send("mallory", 1), lambda: alice.send("alice", 1), lambda: alice.recv("mallory"),
                 lambda: alice.send_all(["bob", "mallory"], 1)):
        with pytest.raises(ValueError, match="is not a peer"):
            call()
    with pytest.raises(TypeError, match="cannot send"):
        alice.send("bob", object())
    assert alice.stats.messages_sent == 0 and alice.stats.bytes_sent == 0
    for ids in (["a", "a"], [], ["a", ""], ["a", 3]):
        with pytest.raises(ValueError):
            make_local_parties(ids)
    with pytest.raises(ValueError, match="timeout"):
        make_local_parties(["a", "b"], timeout=0)
    with pytest.raises(ValueError, match="without a role"):
        run_local({"a": lambda p: None}, {"b": ()})
    with pytest.raises(TypeError, match="not callable"):
        run_local({"a": 5})


def test_send_all_counts_every_copy_and_ids_are_sorted():
    def hub(party):
        party.send_all(["x", "y"], np.zeros(4, np.uint64))
        return party.all_ids

    def leaf(party):
        return party.recv("hub")

    out = run_local({"hub": hub, "x": leaf, "y": leaf})
    size = len(codec.encode(np.zeros(4, np.uint64)))
    assert out.stats["hub"].bytes_sent == 2 * size and out.stats["hub"].messages_sent == 2
    assert out["hub"] == ("hub", "x", "y")
