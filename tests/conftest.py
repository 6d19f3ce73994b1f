"""Shared test fixtures: SPMD runs of compute parties on either engine, with recorded wire views."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import pytest

from mpcml import RunOutputs, Session, make_session, run_dealer, run_local
from mpcml.engine import ENGINES


class RecordingParty:
    """A :class:`~mpcml.party.Party` proxy that records what it receives and the message depth.

    ``received`` lists ``(sender, object)`` in order. ``depth`` is a Lamport-style count of
    communication rounds on the critical path: a message carries its sender's depth and the
    receiver moves to ``max(own, sent + 1)``, so a helper that sends without waiting does not
    add a round. Messages to and from ``free`` parties (the dealer) add no depth: ``depth``
    counts rounds between players.
    """

    def __init__(self, party: Any, stamps: dict, free: Iterable[str] = ()) -> None:
        self._party = party
        self._stamps = stamps
        self._free = set(free)
        self.depth = 0
        self.received: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._party, name)

    def send(self, to: str, obj: Any) -> None:
        self.send_all((to,), obj)

    def send_all(self, to: Sequence[str], obj: Any) -> None:
        for peer in to:
            self._party.check_peer(peer, "recipient")
        for peer in to:
            hop = 0 if self.id in self._free or peer in self._free else 1
            self._stamps[(self.id, peer)].append(self.depth + hop)
        self._party.send_all(to, obj)

    def _arrived(self, frm: str, obj: Any) -> None:
        self.depth = max(self.depth, self._stamps[(frm, self.id)].popleft())
        self.received.append((frm, obj))

    def recv(self, frm: str, timeout: float | None = None, **kwargs: Any) -> Any:
        obj = self._party.recv(frm, timeout, **kwargs)
        self._arrived(frm, obj)
        return obj

    def gather(self, senders: Sequence[str], **kwargs: Any) -> dict[str, Any]:
        got = self._party.gather(senders, **kwargs)
        for frm, obj in got.items():
            self._arrived(frm, obj)
        return got


def recorded_run(roles: dict[str, Callable], inputs: dict | None = None, *, free: Iterable[str] = ("dealer",),
                 timeout: float = 30.0) -> RunOutputs:
    """:func:`mpcml.run_local` with every party wrapped in a :class:`RecordingParty` (one stamp table)."""
    ids = list(roles)
    stamps = {(a, b): collections.deque() for a in ids for b in ids if a != b}

    def wrap(role: Callable) -> Callable:
        return lambda party, *args: role(RecordingParty(party, stamps, free), *args)

    return run_local({pid: wrap(role) for pid, role in roles.items()}, inputs, timeout=timeout)


def players_of(n: int) -> tuple[str, ...]:
    return tuple(f"p{i}" for i in range(n))


def run_players(n: int, body: Callable[[Session], Any], *, engine: str = "beaver", frac_bits: int = 16,
                timeout: float = 30.0) -> RunOutputs:
    """Run ``body(session)`` at ``n`` compute parties ``p0..p{n-1}`` on ``engine`` (with a dealer
    for ``"beaver"``); ``{pid: output}`` of the players. Parties are :class:`RecordingParty` proxies."""
    players = players_of(n)

    def compute(party):
        session = make_session(party, players, engine, frac_bits=frac_bits)
        result = body(session)
        session.close()
        return result

    roles: dict[str, Callable] = {pid: compute for pid in players}
    if engine == "beaver":
        roles["dealer"] = lambda party: run_dealer(party, players)
    outputs = recorded_run(roles, timeout=timeout)
    outputs.pop("dealer", None)  # its stats stay in outputs.stats
    return outputs


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
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
