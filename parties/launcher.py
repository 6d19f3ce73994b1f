"""Spawn every party of an app as its own process on loopback (``mpcml demo``, tests).

Each party is a fresh interpreter (``python -m parties.cli party ...`` through
:mod:`subprocess`, never a fork of this process), so the run exercises exactly what separate
machines would: a federation file, certificates, gRPC with mutual TLS, and codec-encoded
results handed back through files.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from mpcml.local import RunOutputs

from .apps import load_app
from .certs import write_federation_certs
from .config import federation_toml, load_federation
from .netem import LIMITATIONS, LinkProfile, RelayStats, parse_network, shaped_federation
from .node import PartyResult

_REPO_ROOT = Path(__file__).resolve().parent.parent
ERROR_PREFIX = "mpcml: error: "


class ProcessesFailed(RuntimeError):
    """One or more party processes exited non-zero; ``errors`` maps party id -> its last error line."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{pid}: {line}" for pid, line in sorted(self.errors.items())))


@dataclass
class ProcessRun:
    """Outputs and statistics of a multi-process run (``outputs.stats`` as from ``run_local``)."""

    outputs: RunOutputs
    transport: dict[str, dict[str, int]]
    seconds: dict[str, float]
    wall_seconds: float
    network: LinkProfile | None = None
    relayed: dict[str, RelayStats] | None = None  # per party: bytes its relay carried (emulated network only)
    started: dict[str, float] | None = None       # per party: time.monotonic() when its clock started

    @property
    def span_seconds(self) -> float:
        """From the moment the last party was connected to all its peers to the moment the last one finished.

        Unlike the slowest party's own time, this leaves out how long parties waited for peers still
        starting (process start-up, gRPC's reconnect back-off); work a party did before the last
        one was connected is left out too.
        """
        return max(self.started[p] + self.seconds[p] for p in self.seconds) - max(self.started.values())


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that are free right now."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def write_loopback_federation(
    roles: Mapping[str, str], work_dir: Path, *, timeout: float, with_certs: bool = True, buffer_mib: int | None = None
) -> Path:
    """A federation file (and certificates under ``work_dir/certs``) for ``{party_id: role}`` on free loopback ports
    (``buffer_mib``: the ``[limits]`` value, default the federation default)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    ports = free_ports(len(roles))
    parties = {pid: (f"127.0.0.1:{port}", role) for (pid, role), port in zip(roles.items(), ports)}
    path = work_dir / "federation.toml"
    path.write_text(federation_toml(parties, session=secrets.token_hex(8), timeout=timeout, buffer_mib=buffer_mib),
                    encoding="utf-8")
    if with_certs:
        write_federation_certs(load_federation(path))
    return path


def party_command(
    federation: Path, party_id: str, protocol: str, data: Path | None, options: Mapping[str, str], output: Path,
    *, secure: bool = True,
) -> list[str]:
    """The ``mpcml party`` command line for one party."""
    command = [sys.executable, "-m", "parties.cli", "party", "--federation", str(Path(federation).resolve()),
               "--id", party_id, "--protocol", protocol, "--output", str(Path(output).resolve())]
    if data is not None:
        command += ["--data", str(Path(data).resolve())]
    for key, value in options.items():
        command += ["--option", f"{key}={value}"]
    if not secure:
        command.append("--insecure")
    return command


def spawn(command: list[str], log: Path) -> subprocess.Popen:
    """Start one party process with stdout and stderr going to ``log``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(_REPO_ROOT), os.environ.get("PYTHONPATH")])))
    with log.open("wb") as handle:
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)


def last_line(log: Path) -> str:
    """A party's error line from its log (else its last line; gRPC's own log lines may follow the error)."""
    lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    errors = [line.removeprefix(ERROR_PREFIX) for line in lines if line.startswith(ERROR_PREFIX)]
    return (errors or lines or ["(no output)"])[-1]


def start_parties(
    protocol: str,
    data: Mapping[str, Path],
    options: Mapping[str, str],
    *,
    work_dir: Path,
    federation: Path,
    secure: bool = True,
    extra_args: Sequence[str] = (),
    listen: Mapping[str, str] | None = None,
) -> dict[str, subprocess.Popen]:
    """Spawn one ``mpcml party`` process per party of ``federation``; output to ``work_dir/<id>.out``, log to ``<id>.log``.

    ``listen`` maps party ids to the address their server binds instead of the federation's (``--listen``).
    """
    listen = dict(listen or {})
    return {
        pid: spawn([*party_command(federation, pid, protocol, data.get(pid), options, work_dir / f"{pid}.out", secure=secure),
                    *(["--listen", listen[pid]] if pid in listen else []), *extra_args], work_dir / f"{pid}.log")
        for pid in load_federation(federation).parties
    }


@contextlib.contextmanager
def parties_running(*args: Any, **kwargs: Any) -> Iterator[dict[str, subprocess.Popen]]:
    """:func:`start_parties` as a context manager that kills whatever still runs on exit (for fault tests)."""
    procs = start_parties(*args, **kwargs)
    try:
        yield procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def run_processes(
    protocol: str,
    data: Mapping[str, Path],
    options: Mapping[str, str] | None = None,
    *,
    work_dir: Path,
    federation: Path | None = None,
    secure: bool = True,
    timeout: float = 60.0,
    network: str | LinkProfile | None = None,
) -> ProcessRun:
    """Run app ``protocol`` with one process per party of ``federation`` (default: its demo parties on loopback).

    ``network`` (``"lan"``, ``"dc"``, ``"wan"``, ``"slow"``, ``"50mbit:20ms"`` or a
    :class:`~parties.netem.LinkProfile`; default loopback) puts an emulating relay in front of every
    party (:func:`parties.netem.shaped_federation`); the federation's addresses must be on this host.
    Raises :class:`ProcessesFailed` with each failed party's error line if any process fails;
    every process is bounded by the federation timeout, so this never hangs.
    """
    options = dict(options or {})
    work_dir = Path(work_dir)
    profile = parse_network(network)
    if federation is None:
        federation = write_loopback_federation(load_app(protocol).DEMO_PARTIES, work_dir, timeout=timeout, with_certs=secure)
    with contextlib.ExitStack() as stack:
        shaped = None if profile is None else stack.enter_context(shaped_federation(load_federation(federation), profile))
        start = time.perf_counter()
        with parties_running(protocol, data, options, work_dir=work_dir, federation=federation, secure=secure,
                             listen=None if shaped is None else shaped.listen) as procs:
            errors = {pid: last_line(work_dir / f"{pid}.log") for pid, proc in procs.items() if proc.wait() != 0}
        wall = time.perf_counter() - start
        relayed = None if shaped is None else shaped.stats()
    if errors:
        raise ProcessesFailed(errors)
    results = {pid: PartyResult.from_bytes((work_dir / f"{pid}.out").read_bytes()) for pid in procs}
    outputs = RunOutputs({pid: r.output for pid, r in results.items()})
    outputs.stats = {pid: r.stats for pid, r in results.items()}
    return ProcessRun(outputs, {pid: r.transport for pid, r in results.items()},
                      {pid: r.seconds for pid, r in results.items()}, wall, profile, relayed,
                      {pid: r.started for pid, r in results.items()})


def demo(
    protocol: str,
    options: Mapping[str, str] | None = None,
    *,
    secure: bool = True,
    timeout: float = 60.0,
    seed: int = 0,
    keep: Path | None = None,
    out: Callable[[str], None] = print,
    network: str | LinkProfile | None = None,
) -> bool:
    """Make data, certificates and a loopback federation, run every party as a process, check and print.

    ``network`` emulates every link (see :func:`run_processes`); the profile in effect is printed.
    """
    app = load_app(protocol)
    options = dict(options or {})
    with tempfile.TemporaryDirectory(prefix=f"mpcml-demo-{protocol}-") as tmp:
        work_dir = Path(keep) if keep is not None else Path(tmp)
        work_dir.mkdir(parents=True, exist_ok=True)
        data = app.demo_data(work_dir, seed, options)
        run = run_processes(protocol, data, options, work_dir=work_dir, secure=secure, timeout=timeout, network=network)
        result = app.check(run.outputs, data, options)
    out(f"{protocol}: {app.DESCRIPTION}")
    out(f"  {len(run.outputs)} party processes on loopback, {'mutual TLS' if secure else 'INSECURE plaintext'}, "
        f"{run.wall_seconds:.2f} s wall (including process start-up)")
    if run.network is None:
        out("  network: loopback, no emulation (--network lan|dc|wan|slow|RATE:DELAY to emulate links)")
    else:
        out(f"  network: {run.network.describe()}, emulated by a userspace relay in front of each party")
        out(f"  {LIMITATIONS}")
    out(f"  result: {result.summary} -> {'OK' if result.ok else 'MISMATCH'}")
    for pid in sorted(run.outputs.stats):
        s, t = run.outputs.stats[pid], run.transport[pid]
        out(f"  {pid:>10}: protocol {run.seconds[pid]:.3f} s, sent {s.bytes_sent} B in {s.messages_sent} messages, "
            f"received {s.bytes_received} B, {s.rounds} rounds; transport overhead {t['envelope_bytes_sent']} B "
            f"in {t['chunks_sent']} chunks")
    return result.ok
