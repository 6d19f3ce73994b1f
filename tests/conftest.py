"""Shared test fixtures."""

from __future__ import annotations

import os
from typing import Any, Callable

import pytest

from mpcml.floors import INSECURE_ENV

# The suite uses 1024-bit HE keys and the INSECURE-dsa-1024-160 FE group where only arithmetic is
# tested: lift the security floors for this process and the party processes it launches (tests of
# the floors themselves switch it off with mpcml.floors.insecure_test_keys(False)).
os.environ[INSECURE_ENV] = "1"

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
