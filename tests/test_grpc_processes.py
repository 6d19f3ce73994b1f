"""The same app roles over run_local and over real party processes on loopback with mutual TLS."""

from __future__ import annotations

import contextlib
import threading
import re
import signal
import time

import numpy as np
import pytest

from parties.apps import load_app, run_app_local, write_csv
from parties.config import load_federation
from parties.launcher import (
    ERROR_PREFIX, ProcessesFailed, last_line, parties_running, party_command, run_processes, spawn,
    write_loopback_federation,
)
from parties.transport import CONTROL_TIMEOUT
from parties.netem import parse_network, shaped_federation
from tests.conftest import wait_for_log

CASES = [
    ("matmul", {"frac_bits": "0"}, True),
    ("matpower", {"frac_bits": "0", "rounds": "4"}, True),
    ("matpower", {"n": "16", "rounds": "6"}, False),
]


def stats_view(stats):
    return {pid: (s.as_dict(), s.sent_to, s.received_from) for pid, s in stats.items()}


def integer_data(tmp_path, protocol):
    """Small integer inputs: with ``frac_bits=0`` the ring arithmetic is exact, so every run must give the same output."""
    rng = np.random.default_rng(5)
    if protocol == "matmul":
        left, right = rng.integers(-50, 50, size=(7, 5)), rng.integers(-50, 50, size=(5, 3))
        expected = left @ right
    else:
        left, right = rng.integers(0, 3, size=(6, 6)), rng.integers(-9, 9, size=(6, 1))
        expected = np.linalg.matrix_power(left, 4) @ right
    return {"alice": write_csv(tmp_path / "alice.csv", left), "bob": write_csv(tmp_path / "bob.csv", right)}, expected


@pytest.mark.parametrize("protocol, options, exact", CASES, ids=["matmul-ring", "matpower-ring", "matpower-fixed"])
def test_processes_match_run_local(tmp_path, protocol, options, exact):
    """Same roles, same inputs: run_local and mTLS processes give identical stats and identical (exact) or agreeing (fixed-point) outputs."""
    app = load_app(protocol)
    if exact:
        data, expected = integer_data(tmp_path, protocol)
    else:
        data = app.demo_data(tmp_path, 3, options)
    local = run_app_local(protocol, data, options, timeout=20)
    remote = run_processes(protocol, data, options, work_dir=tmp_path / "run", secure=True, timeout=20)

    # payload bytes, messages, rounds and per-peer bytes are identical
    assert stats_view(remote.outputs.stats) == stats_view(local.stats)
    assert remote.outputs["dealer"] == local["dealer"]
    assert all(t["rpcs"] == remote.outputs.stats[pid].messages_sent for pid, t in remote.transport.items())
    for pid in ("alice", "bob"):
        assert remote.outputs[pid].shape == local[pid].shape
        if exact:
            np.testing.assert_array_equal(local[pid], expected)
            np.testing.assert_array_equal(remote.outputs[pid], local[pid])
        else:
            # fixed-point truncation rounds by one unit depending on each run's fresh CSPRNG masks
            np.testing.assert_allclose(remote.outputs[pid], local[pid], rtol=0, atol=2.0 ** -12)
    for outputs in (local, remote.outputs):
        result = app.check(outputs, data, options)
        assert result.ok, result.summary


def error_lines(tmp_path, pids):
    return {pid: last_line(tmp_path / f"{pid}.log") for pid in pids}


@contextlib.contextmanager
def matpower_running(tmp_path, deadline, network=None):
    """matpower's three parties on loopback (through emulating relays for ``network``), long enough to be
    stopped mid-run; yields the processes once all run."""
    app = load_app("matpower")
    options = {"n": "8", "rounds": "100000"}
    data = app.demo_data(tmp_path, 0, options)
    federation = write_loopback_federation(app.DEMO_PARTIES, tmp_path, timeout=deadline)
    with contextlib.ExitStack() as stack:
        shaped = stack.enter_context(shaped_federation(load_federation(federation), parse_network(network))) if network else None
        procs = stack.enter_context(parties_running("matpower", data, options, work_dir=tmp_path, federation=federation,
                                                    extra_args=["--verbose"], listen=shaped and shaped.listen))
        for pid, proc in procs.items():
            wait_for_log(tmp_path / f"{pid}.log", "running matpower", proc, timeout=60)
        time.sleep(0.3)  # well inside the 100000 steps (about 200000 rounds)
        yield procs


def named_within(tmp_path, procs, pids, since, limit):
    """Seconds from ``since`` until each of ``pids`` logs its error line (it has named the failure and told its
    peers), each within ``limit``; then each exits non-zero (interpreter shutdown is not timed: on a busy
    2-core machine it takes 1-2 s with scikit-learn loaded)."""
    seconds, end = {}, since + limit + 30
    while len(seconds) < len(pids) and time.monotonic() < end:
        for pid in pids:
            if pid not in seconds and ERROR_PREFIX in (tmp_path / f"{pid}.log").read_text(errors="replace"):
                seconds[pid] = time.monotonic() - since
        time.sleep(0.02)
    assert len(seconds) == len(pids) and max(seconds.values()) < limit, seconds
    for pid in pids:
        assert procs[pid].wait(timeout=60) != 0
    return seconds


@pytest.mark.parametrize(("victim", "network"), [("bob", None), ("dealer", None), ("bob", "1gbit:1ms")],
                         ids=["bob", "dealer", "bob-emulated"])
def test_a_killed_party_is_named_by_every_other_party_within_the_deadline(tmp_path, victim, network):
    """Before: with the dealer killed, alice said it timed out waiting for 'bob' (3.5 s with a 3 s deadline).
    Also through emulating relays (parties.netem), which pass the dead party's closed connections on.

    A send in flight to the killed process fails at once; a receive waits out its deadline, then the
    probe finds the dead process at once (connection refused). Slack: process shutdown on a busy machine.
    """
    deadline = 3.0
    with matpower_running(tmp_path, deadline, network) as procs:
        killed_at = time.monotonic()
        procs[victim].kill()
        others = [pid for pid in procs if pid != victim]
        named_within(tmp_path, procs, others, killed_at, deadline + 1)
        for pid, line in error_lines(tmp_path, others).items():
            assert line.startswith(f"party {victim!r} failed: does not answer"), (pid, line)


@pytest.mark.parametrize("victim", ["dealer"])  # the dealer: the others wait on it through each other
def test_a_frozen_party_is_named_within_the_deadline_and_a_probe(tmp_path, victim):
    """A frozen process (SIGSTOP) keeps its connections: the others time out, probe every peer, follow who
    waits on whom to the party that does not answer, and tell each other. Before: 8.6 s with a 3 s deadline,
    and alice named 'bob' when the dealer froze."""
    deadline = 3.0
    with matpower_running(tmp_path, deadline) as procs:
        frozen_at = time.monotonic()
        procs[victim].send_signal(signal.SIGSTOP)
        try:
            others = [pid for pid in procs if pid != victim]
            named_within(tmp_path, procs, others, frozen_at, deadline + min(deadline / 4, CONTROL_TIMEOUT) + 1)
        finally:
            procs[victim].send_signal(signal.SIGCONT)
        for pid, line in error_lines(tmp_path, others).items():
            assert line.startswith(f"party {victim!r} failed: does not answer"), (pid, line)


def test_an_interrupted_party_tells_the_others_why(tmp_path):
    deadline = 10.0
    with matpower_running(tmp_path, deadline) as procs:
        stopped_at = time.monotonic()
        procs["bob"].send_signal(signal.SIGINT)
        assert procs["bob"].wait(timeout=10) == 130
        named_within(tmp_path, procs, ["alice", "dealer"], stopped_at, deadline / 2)  # before: 10.3 s, 'dealer' timed out waiting for 'bob'
        for line in error_lines(tmp_path, ["alice", "dealer"]).values():
            assert re.fullmatch(r"party 'bob' failed: interrupted by its operator( \(reported by '\w+'\))?", line), line  # or relayed


def test_a_party_failing_at_set_up_tells_the_others_why(tmp_path):
    """Before: alice and the dealer waited out the 20 s deadline, then said they could not reach 'bob'."""
    deadline = 20.0
    app = load_app("matmul")
    data = app.demo_data(tmp_path, 0, {"n": "4", "k": "3", "m": "2"})
    data["bob"] = tmp_path / "missing.csv"
    federation = write_loopback_federation(app.DEMO_PARTIES, tmp_path, timeout=deadline)
    with parties_running("matmul", data, {}, work_dir=tmp_path, federation=federation) as procs:
        assert procs["bob"].wait(timeout=deadline + 30) != 0
        bob_done = time.monotonic()
        named_within(tmp_path, procs, ["alice", "dealer"], bob_done, deadline / 4)
    for line in error_lines(tmp_path, procs).values():
        assert line.startswith("party 'bob' failed: ValueError: cannot read data file"), line


def test_failed_process_is_reported_with_its_error(tmp_path):
    app = load_app("matmul")
    data = app.demo_data(tmp_path, 0, {"n": "4", "k": "3", "m": "2"})
    data["bob"] = tmp_path / "missing.csv"
    with pytest.raises(ProcessesFailed) as err:
        run_processes("matmul", data, work_dir=tmp_path / "run", timeout=3)
    assert set(err.value.errors) == {"alice", "bob", "dealer"}
    assert all("cannot read data file" in line for line in err.value.errors.values()), err.value.errors


def test_parties_started_with_different_options_fail_at_set_up_naming_the_option(tmp_path):
    """alice is started with rounds=5, the others with rounds=4: every party names the option and both values,
    and none starts the protocol. Before: they ran it and one timed out after the deadline."""
    app = load_app("matpower")
    options = {"n": "6", "rounds": "4"}
    data = app.demo_data(tmp_path, 0, options)
    federation = write_loopback_federation(app.DEMO_PARTIES, tmp_path, timeout=20)
    procs = {pid: spawn([*party_command(federation, pid, "matpower", data.get(pid),
                                        dict(options, rounds="5") if pid == "alice" else options, tmp_path / f"{pid}.out"),
                         "--verbose"], tmp_path / f"{pid}.log")
             for pid in app.DEMO_PARTIES}
    try:
        for proc in procs.values():
            assert proc.wait(timeout=120) != 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    for pid in procs:
        assert "running matpower" not in (tmp_path / f"{pid}.log").read_text(errors="replace"), pid
    for pid, line in error_lines(tmp_path, procs).items():  # each names the option and both values (its own check, or a peer's abort)
        assert re.search(r"configuration differs from '\w+': option 'rounds' is '[45]' at '\w+' and '[45]' at '\w+'", line), line
        assert "'5' at 'alice'" in line and re.search(r"'4' at '(bob|dealer)'", line), line


def test_an_idle_party_keeps_serving_until_every_peer_has_compared_configurations(tmp_path, monkeypatch):
    """Under rss3 the regression dealer has nothing to do. Before: it returned and stopped serving while a
    slow peer (here carol, 3 s building its role; a loaded machine did it in the full suite) had not yet
    sent its Hello, and carol failed naming the dealer ('does not answer')."""
    import parties.node
    from parties.node import run_party

    app = load_app("regression")
    options = {"epochs": "1", "batch_size": "64", "random_state": "3", "engine": "rss3"}
    data = app.demo_data(tmp_path, 0, options)
    federation = load_federation(write_loopback_federation(app.DEMO_PARTIES, tmp_path, timeout=20))
    build_role = parties.node.build_role

    def slow_for_carol(app, party_id, *args, **kwargs):
        if party_id == "carol":
            time.sleep(3)
        return build_role(app, party_id, *args, **kwargs)

    monkeypatch.setattr(parties.node, "build_role", slow_for_carol)
    outcomes: dict[str, object] = {}

    def run(pid):
        try:
            outcomes[pid] = run_party(federation, pid, "regression", data.get(pid), options)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcomes[pid] = exc

    threads = [threading.Thread(target=run, args=(pid,)) for pid in app.DEMO_PARTIES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(isinstance(o, Exception) for o in outcomes.values()) and len(outcomes) == 4, outcomes
    assert app.check({pid: o.output for pid, o in outcomes.items()}, data, options).ok
