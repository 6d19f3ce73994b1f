"""Instrumented parties: the rounds on a computation's critical path.

``party.stats.rounds`` counts a party's own send-after-receive turns, which undercounts a party
that only sends in a step (the helper of :mod:`mpcml.rss3`'s truncation sends and moves on).
:class:`RecordingParty` measures latency instead: every message carries its sender's *depth* and
the receiver moves to ``max(own depth, sender's depth + 1)`` (Lamport clocks), so the largest
depth growth over the parties during a step is the number of message hops on its critical path.
Hops to or from ``free`` parties (a dealer) count zero, so depth counts rounds between players.
For tests and benchmarks: it keeps a side table of depths, no bytes on the wire, on any transport.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterable, Mapping, Sequence

from .local import RunOutputs, run_local


class RecordingParty:
    """A :class:`~mpcml.party.Party` proxy that keeps the message depth.

    ``depth`` is the critical-path round count described in the module docstring. Every other
    attribute is the wrapped party's.
    """

    def __init__(self, party: Any, stamps: Mapping[tuple[str, str], collections.deque], free: Iterable[str] = ()) -> None:
        self._party = party
        self._stamps = stamps
        self._free = set(free)
        self.depth = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._party, name)

    def send(self, to: str, obj: Any, *, acknowledged: bool = False) -> None:
        self.send_all((to,), obj, acknowledged=acknowledged)

    def send_all(self, to: Sequence[str], obj: Any, *, acknowledged: bool = False) -> None:
        for peer in to:
            self._party.check_peer(peer, "recipient")
        for peer in to:
            hop = 0 if self.id in self._free or peer in self._free else 1
            self._stamps[(self.id, peer)].append(self.depth + hop)  # before the message can arrive
        self._party.send_all(to, obj, acknowledged=acknowledged)

    def _arrived(self, frm: str) -> None:
        self.depth = max(self.depth, self._stamps[(frm, self.id)].popleft())

    def recv(self, frm: str, timeout: float | None = None, **kwargs: Any) -> Any:
        obj = self._party.recv(frm, timeout, **kwargs)
        self._arrived(frm)
        return obj

    def gather(self, senders: Sequence[str], **kwargs: Any) -> dict[str, Any]:
        got = self._party.gather(senders, **kwargs)
        for frm in got:
            self._arrived(frm)
        return got


def recorded_run(
    roles: Mapping[str, Callable[..., Any]],
    inputs: Mapping[str, Any] | None = None,
    *,
    free: Iterable[str] = ("dealer",),
    timeout: float = 60.0,
    runner: Callable[..., RunOutputs] = run_local,
) -> RunOutputs:
    """``runner`` (:func:`mpcml.run_local`, or any runner with its contract such as
    ``parties.loopback.run_loopback``) with every party a :class:`RecordingParty` (one shared stamp table)."""
    ids = list(roles)
    stamps = {(a, b): collections.deque() for a in ids for b in ids if a != b}
    free = tuple(free)

    def wrap(role: Callable[..., Any]) -> Callable[..., Any]:
        return lambda party, *args: role(RecordingParty(party, stamps, free), *args)

    return runner({pid: wrap(role) for pid, role in roles.items()}, inputs, timeout=timeout)
