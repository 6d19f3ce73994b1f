"""Shared test fixtures: SPMD runs of compute parties on either engine, transports, wire logs."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from mpcml import RunOutputs, Session, make_session, run_dealer
from mpcml.engine import ENGINES
from mpcml.floors import INSECURE_ENV
from mpcml.he import SCHEMES
from mpcml.recording import recorded_run

# The suite uses 1024-bit HE keys and the INSECURE-dsa-1024-160 FE group where only arithmetic is
# tested: lift the security floors for this process and the party processes it launches (tests of
# the floors themselves switch it off with mpcml.floors.insecure_test_keys(False)).
os.environ[INSECURE_ENV] = "1"


def players_of(n: int) -> tuple[str, ...]:
    return tuple(f"p{i}" for i in range(n))


def run_players(n: int, body: Callable[[Session], Any], *, engine: str = "beaver", frac_bits: int = 16,
                timeout: float = 30.0, runner: Callable[..., RunOutputs] | None = None) -> RunOutputs:
    """Run ``body(session)`` at ``n`` compute parties ``p0..p{n-1}`` on ``engine`` (with a dealer
    for ``"beaver"``); ``{pid: output}`` of the players. Parties are :class:`~mpcml.recording.RecordingParty`
    proxies; ``runner`` is :func:`mpcml.run_local` unless given (e.g. ``parties.loopback.run_loopback``)."""
    players = players_of(n)

    def compute(party):
        session = make_session(party, players, engine, frac_bits=frac_bits)
        result = body(session)
        session.close()
        return result

    roles: dict[str, Callable] = {pid: compute for pid in players}
    if engine == "beaver":
        roles["dealer"] = lambda party: run_dealer(party, players)
    outputs = recorded_run(roles, timeout=timeout, **({} if runner is None else {"runner": runner}))
    outputs.pop("dealer", None)  # its stats stay in outputs.stats
    return outputs


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


@pytest.fixture(params=SCHEMES)
def he_scheme(request) -> str:
    """Each additively homomorphic scheme of :mod:`mpcml.he` in turn: HE protocols' correctness tests take it
    as their ``he`` option, so each runs under Okamoto–Uchiyama and under Paillier."""
    return request.param


@pytest.fixture
def spmd(engine) -> Callable[..., RunOutputs]:
    """``spmd(n, body)``: run ``body(session)`` SPMD on ``engine``; ``"beaver"`` at ``n`` compute
    parties plus a dealer, ``"rss3"`` always at three players (whatever ``n``)."""

    def run(n: int, body: Callable[[Session], Any], **kwargs: Any) -> RunOutputs:
        return run_players(3 if engine == "rss3" else n, body, engine=engine, **kwargs)

    return run


@dataclass(frozen=True)
class Setup:
    """One engine at one number of players: ``setup(body)`` runs it."""

    engine: str
    n: int

    def __call__(self, body: Callable[[Session], Any], **kwargs: Any) -> RunOutputs:
        return run_players(self.n, body, engine=self.engine, **kwargs)

    def __str__(self) -> str:
        return f"{self.engine}-{self.n}"


SETUPS = (Setup("beaver", 2), Setup("beaver", 3), Setup("rss3", 3))


@pytest.fixture(params=SETUPS, ids=str)
def mpc(request) -> Setup:
    """Every engine at every number of players it runs: beaver with 2 and 3 players, rss3 with 3."""
    return request.param


def critical_rounds(outputs: RunOutputs, key: str = "depth") -> int:
    """Rounds between players of a step: ``max`` over players of ``(before, after)`` depths."""
    befores, afters = zip(*(out[key] for out in outputs.values()))
    return max(afters) - max(befores)


@pytest.fixture(params=["local", "grpc"])
def transport(request, monkeypatch) -> str:
    """Runs the test body over the in-process transport and over gRPC on loopback (mTLS), one body for both.

    Estimators and helpers that run parties through ``protocols.common.run_local`` use the gRPC
    transport when the parameter is ``"grpc"``.
    """
    if request.param == "grpc":
        import functools

        import protocols.common
        from parties.loopback import run_loopback

        monkeypatch.setattr(protocols.common, "run_local", functools.partial(run_loopback, secure=True))
    return request.param


@pytest.fixture
def wire_log(monkeypatch) -> list:
    """Every message any party receives during the test, as ``(receiver, sender, decoded message)``.

    For wire-view tests: check what each role received against the protocol's leakage statement
    (both transports decode through ``Party._decoded``).
    """
    from mpcml.party import Party

    received: list = []
    original = Party._decoded

    def recording(self, frm, payload, expect, what):
        message = original(self, frm, payload, expect, what)
        received.append((self.id, frm, message))
        return message

    monkeypatch.setattr(Party, "_decoded", recording)
    return received


@pytest.fixture
def runs(monkeypatch) -> list:
    """Records every in-process run an estimator starts (a refusal must come before the first)."""
    import protocols.estimator

    started: list = []
    original = protocols.estimator.run_parties

    def recording(*args, **kwargs):
        started.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(protocols.estimator, "run_parties", recording)
    return started


def wait_for_log(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    """Block until ``text`` appears in ``log``; ``RuntimeError`` with the log if the process exits or time runs out."""
    limit = time.monotonic() + timeout
    while text not in log.read_text(encoding="utf-8", errors="replace"):
        if proc.poll() is not None or time.monotonic() > limit:
            raise RuntimeError(f"{text!r} did not appear in {log}: {log.read_text(encoding='utf-8', errors='replace')}")
        time.sleep(0.02)


def message_leaves(messages: list) -> list:
    """Every value inside ``messages`` that is not a list, tuple or dict (those are opened), in order."""
    out = []
    for m in messages:
        if isinstance(m, (list, tuple)):
            out.extend(message_leaves(list(m)))
        elif isinstance(m, dict):
            out.extend(message_leaves(list(m.values())))
        else:
            out.append(m)
    return out


def bits_balanced(words: np.ndarray) -> bool:
    """Every bit position of the unsigned words (64-bit ring words, 16-bit comparison table bits) set in
    half of them within five standard deviations: what uniformly masked values show."""
    words = np.ascontiguousarray(words)
    balance = np.unpackbits(words.view(np.uint8)).reshape(-1, 8 * words.itemsize).mean(axis=0)
    return bool(np.all(np.abs(balance - 0.5) < 5 * 0.5 / np.sqrt(words.size)))
