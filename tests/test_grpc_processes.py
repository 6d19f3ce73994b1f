"""The same app roles over run_local and over real party processes on loopback with mutual TLS."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

from parties.apps import load_app, run_app_local, write_csv
from parties.config import load_federation
from parties.launcher import (
    ProcessesFailed, last_line, parties_running, run_processes, wait_for_log, write_loopback_federation,
)
from parties.netem import parse_network, shaped_federation

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


@pytest.mark.parametrize("network", [None, "1gbit:1ms"], ids=["loopback", "emulated"])
def test_killed_party_makes_the_others_fail_naming_it(tmp_path, network):
    """Also through emulating relays (parties.netem): a relay passes the dead party's closed connections on."""
    deadline = 3.0
    app = load_app("matpower")
    options = {"n": "8", "rounds": "100000"}
    data = app.demo_data(tmp_path, 0, options)
    federation = write_loopback_federation(app.DEMO_PARTIES, tmp_path, timeout=deadline)
    with contextlib.ExitStack() as stack:
        shaped = stack.enter_context(shaped_federation(load_federation(federation), parse_network(network))) if network else None
        procs = stack.enter_context(parties_running("matpower", data, options, work_dir=tmp_path, federation=federation,
                                                    extra_args=["--verbose"], listen=shaped and shaped.listen))
        wait_for_log(tmp_path / "bob.log", "running matpower", procs["bob"], timeout=60)
        time.sleep(0.3)  # well inside the 100000 steps (about 200000 rounds)
        killed_at = time.monotonic()
        procs["bob"].kill()
        for pid in ("alice", "dealer"):
            assert procs[pid].wait(timeout=deadline + 10) != 0
            assert time.monotonic() - killed_at < deadline + 5
            line = last_line(tmp_path / f"{pid}.log")
            assert "'bob'" in line and ("timed out" in line or "could not reach" in line), line


def test_failed_process_is_reported_with_its_error(tmp_path):
    app = load_app("matmul")
    data = app.demo_data(tmp_path, 0, {"n": "4", "k": "3", "m": "2"})
    data["bob"] = tmp_path / "missing.csv"
    with pytest.raises(ProcessesFailed) as err:
        run_processes("matmul", data, work_dir=tmp_path / "run", timeout=3)
    assert "cannot read data file" in err.value.errors["bob"]
    assert set(err.value.errors) == {"alice", "bob", "dealer"}
