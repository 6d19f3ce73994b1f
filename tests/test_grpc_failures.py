"""Naming the party that failed (issue 15, item 2): the culprit search, the configuration check, and Abort
on the transport in one process. tests/test_grpc_processes.py kills, freezes and interrupts real processes."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from mpcml import PartyAborted
from parties.agreement import Agreement, ConfigurationMismatch
from parties.config import MIB, Limits
from parties.failures import Failure, PeerView, RunState, find_culprit

from .test_grpc_transport import SESSION, make_federation, running

ROLES = {"alice": "left", "bob": "right", "dealer": "dealer"}


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    return make_federation(tmp_path_factory.mktemp("fed"))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """alice and bob only."""
    return make_federation(tmp_path_factory.mktemp("pair"), ids=("alice", "bob"))


# who failed: follow who waits on whom

def test_the_party_at_the_end_of_the_waits_is_named_not_the_silent_peer():
    """alice timed out waiting for bob; bob waits for the dealer, which does not answer: the dealer failed."""
    views = {"bob": PeerView(True, ("dealer",)), "dealer": PeerView(False)}
    failure = find_culprit("alice", ("bob",), views, "party 'alice' timed out after 3s waiting for a message from 'bob'")
    assert failure.culprit == "dealer" and failure.reporter == "alice"
    assert failure.describe() == ("party 'dealer' failed: does not answer (dead, or the network to it is cut); 'alice' waits "
                                  "for 'bob', 'bob' waits for 'dealer'; party 'alice' timed out after 3s waiting for a "
                                  "message from 'bob' (reported by 'alice')")


def test_a_failure_a_peer_knows_of_is_relayed():
    told = Failure("dealer", "ValueError: bad data", "bob")
    views = {"bob": PeerView(True, (), told), "dealer": PeerView(False)}
    assert find_culprit("alice", ("bob",), views, "timeout") == told


def test_a_dead_party_is_preferred_to_a_busy_one():
    views = {"bob": PeerView(True, ()), "carol": PeerView(True, ("dave",)), "dave": PeerView(False)}
    assert find_culprit("alice", ("bob", "carol"), views, "timeout").culprit == "dave"


def test_a_live_party_waiting_for_no_one_is_named_busy():
    failure = find_culprit("alice", ("bob",), {"bob": PeerView(True, ())}, "timeout")
    assert failure.culprit == "bob" and "stuck or busy" in failure.reason


def test_a_cycle_of_waits_is_a_deadlock_naming_the_silent_peer():
    views = {"bob": PeerView(True, ("carol",)), "carol": PeerView(True, ("bob", "alice"))}
    failure = find_culprit("alice", ("bob",), views, "timeout")
    assert failure.culprit == "bob" and "deadlock" in failure.reason


def test_a_party_that_timed_out_still_says_whom_it_waited_for_until_its_next_wait():
    """Between a timeout and naming the failure (or a dropout-tolerant protocol moving on), a probe must
    still find the trail: otherwise a peer probing in that gap blames this live party."""
    state = RunState()
    with pytest.raises(TimeoutError), state.waiting(("dealer",)):
        raise TimeoutError
    assert state.waiting_for() == ["dealer"]
    with state.waiting(("bob",)):
        assert state.waiting_for() == ["bob"]
    assert state.waiting_for() == []


# the configuration every party must agree on

def test_the_digest_covers_protocol_session_roles_and_public_options_only():
    base = Agreement.of("regression", "run-1", ROLES, {"epochs": "10", "model_dir": "/a"}, local_options={"model_dir"})
    assert base.digest == Agreement.of("regression", "run-1", dict(reversed(ROLES.items())), {"model_dir": "/b", "epochs": "10"},
                                       local_options={"model_dir"}).digest
    for other in (Agreement.of("regression", "run-1", ROLES, {"epochs": "2"}), Agreement.of("caesar", "run-1", ROLES, {"epochs": "10"}),
                  Agreement.of("regression", "run-2", ROLES, {"epochs": "10"}),
                  Agreement.of("regression", "run-1", {**ROLES, "bob": "left"}, {"epochs": "10"})):
        assert other.digest != base.digest


def test_differences_name_the_key_and_both_values():
    mine = Agreement.of("regression", "s", ROLES, {"epochs": "2", "l2": "0.1"})
    theirs = Agreement.of("regression", "s", {**ROLES, "bob": "left"}, {"epochs": "10", "alpha": "1"})
    assert mine.differences(theirs.text, "alice", "bob") == (
        "role of party 'bob' is 'right' at 'alice' and 'left' at 'bob'; option 'alpha' is not given at 'alice' and '1' at 'bob'; "
        "option 'epochs' is '2' at 'alice' and '10' at 'bob'; option 'l2' is '0.1' at 'alice' and not given at 'bob'")
    assert mine.differences("{not json", "alice", "bob").startswith("'bob' sent a configuration that does not parse")


def test_hello_fails_at_set_up_on_both_sides_naming_the_option(pair):
    roles = {"alice": "left", "bob": "right"}
    agreements = {"alice": Agreement.of("matpower", SESSION, roles, {"rounds": "2"}),
                  "bob": Agreement.of("matpower", SESSION, roles, {"rounds": "10"})}
    results = {}

    def agree(party):
        with pytest.raises(ConfigurationMismatch) as err:
            party.agree()
        results[party.id] = str(err.value)

    with running(pair, "alice", agreement=agreements["alice"]) as (alice,), running(pair, "bob", agreement=agreements["bob"]) as (bob,):
        threads = [threading.Thread(target=agree, args=(party,)) for party in (alice, bob)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert results == {
        "alice": "configuration differs from 'bob': option 'rounds' is '2' at 'alice' and '10' at 'bob'",
        "bob": "configuration differs from 'alice': option 'rounds' is '10' at 'bob' and '2' at 'alice'",
    }


def test_hello_passes_when_the_configurations_agree(pair):
    agreement = Agreement.of("matpower", SESSION, {"alice": "left", "bob": "right"}, {"rounds": "2"})
    with running(pair, "alice", agreement=agreement) as (alice,), running(pair, "bob", agreement=agreement) as (bob,):
        alice.agree()
        bob.agree()


# Abort on the transport

def test_an_abort_wakes_a_receive_at_once_naming_the_failed_party(federation):
    with running(federation, "alice", timeout=30) as (alice,), running(federation, "dealer") as (dealer,):
        begin = time.monotonic()
        threading.Timer(0.3, dealer.tell_failure, args=(Failure("dealer", "ValueError: bad triple", "dealer"),)).start()
        with pytest.raises(PartyAborted, match=r"^party 'dealer' failed: ValueError: bad triple$"):
            alice.recv("bob")  # bob never sends: without the abort this waits 30 s
        assert time.monotonic() - begin < 2
        assert alice.state.failure == Failure("dealer", "ValueError: bad triple", "dealer")


def test_an_abort_cancels_a_send_held_back_by_a_full_buffer(federation):
    limits = Limits(buffer_bytes=4 * MIB, streams=4, idle_timeout=30, message_timeout=30)
    with running(federation, "alice", limits=limits, timeout=30) as (alice,), \
            running(federation, "bob", timeout=30) as (bob,), running(federation, "dealer") as (dealer,):
        bob.send("alice", np.zeros(3 * MIB // 8))  # alice never reads it: the next one waits for room
        begin = time.monotonic()
        threading.Timer(0.3, dealer.tell_failure, args=(Failure("alice", "does not read", "dealer"),)).start()
        with pytest.raises(PartyAborted, match=r"^party 'alice' failed: does not read \(reported by 'dealer'\)$"):
            bob.send("alice", np.zeros(3 * MIB // 8))
        assert time.monotonic() - begin < 2


def test_status_tells_what_a_party_waits_for_and_the_failure_it_knows(pair):
    with running(pair, "alice", timeout=5) as (alice,), running(pair, "bob") as (bob,):
        outcome = []
        waiter = threading.Thread(target=lambda: outcome.append(pytest.raises(PartyAborted, alice.recv, "bob")))
        waiter.start()
        time.sleep(0.3)
        assert bob.probe() == {"alice": PeerView(True, ("bob",), None)}
        alice.state.fail(Failure("bob", "gone", "alice"))
        waiter.join(5)
        assert outcome and bob.probe() == {"alice": PeerView(True, (), Failure("bob", "gone", "alice"))}


def test_a_message_too_large_for_the_peer_is_the_senders_failure_not_a_liveness_puzzle():
    """Found by a 4,000-row dense regression: bob refused alice's 610 MiB opening (buffer_mib 512), and alice, reading
    RESOURCE_EXHAUSTED as "bob did not read", probed the wait chain and blamed the busy dealer, which was never told.
    A message larger than the peer's whole buffer is now INVALID_ARGUMENT: the sender's own failure, named at once."""
    from types import SimpleNamespace

    from parties.node import name_failure
    from parties.transport import PeerRefused

    refusal = PeerRefused("alice", "bob", "INVALID_ARGUMENT",
                          "'bob' refused: a message of 610.4 MiB from 'alice' exceeds the 512 MiB 'bob' buffers per peer")
    party = SimpleNamespace(id="alice", state=RunState(), probe=lambda: pytest.fail("no probe: the refusal says it all"))
    failure, unreachable = name_failure(party, refusal)
    assert failure.culprit == "alice" and "exceeds the 512 MiB 'bob' buffers per peer" in failure.reason
    assert unreachable == frozenset()
