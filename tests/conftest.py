"""Shared test fixtures."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from mpcml import DealerTriples, RunOutputs, Session, run_dealer, run_local


def run_players(n: int, body: Callable[[Session], Any], *, frac_bits: int = 16, timeout: float = 30.0) -> RunOutputs:
    """Run ``body(session)`` at ``n`` compute parties ``p0..p{n-1}`` with a dealer; ``{pid: output}`` of the players."""
    players = tuple(f"p{i}" for i in range(n))

    def compute(party):
        session = Session(party, players, DealerTriples(party, players, dealer="dealer"), frac_bits)
        result = body(session)
        session.close()
        return result

    roles: dict[str, Callable] = {pid: compute for pid in players}
    roles["dealer"] = lambda party: run_dealer(party, players)
    outputs = run_local(roles, timeout=timeout)
    outputs.pop("dealer")  # its stats stay in outputs.stats
    return outputs


@pytest.fixture
def spmd() -> Callable[..., RunOutputs]:
    """``spmd(n, body)``: run ``body(session)`` SPMD at n compute parties plus a dealer."""
    return run_players


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
