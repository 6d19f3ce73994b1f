"""When a party fails: who failed and why, and what a party is waiting for.

A party that fails tells every peer it can reach (``Abort``: the failed party, the reason);
a party that learns of a failure stops at once, tells its peers too (so a failure reaches
parties the failed one could not reach), and exits naming the failed party. A party whose
receive times out does not simply blame the peer it waited for, which may itself be waiting
on the party that died: it asks every peer what it is waiting for (``Status``) and follows
who waits on whom from the silent peers to the first party that does not answer
(:func:`find_culprit`). :class:`RunState` holds what this party waits for (its server
answers the probes from it) and the first failure it knows of, and wakes every thread of
the party waiting on it when a failure arrives.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from mpcml.party import PartyAborted

MAX_REASON = 1000  # characters of a peer's reason kept


@dataclass(frozen=True)
class Failure:
    """Party ``culprit`` failed because of ``reason``; ``reporter`` told us (the culprit itself, or who found it)."""

    culprit: str
    reason: str
    reporter: str

    def describe(self) -> str:
        source = "" if self.reporter == self.culprit else f" (reported by {self.reporter!r})"
        return f"party {self.culprit!r} failed: {self.reason}{source}"


class RunAborted(RuntimeError):
    """This party stopped because a party of the run (maybe itself) failed; ``failure`` names it."""

    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        super().__init__(failure.describe())


@dataclass(frozen=True)
class PeerView:
    """A peer's answer to a probe (``reachable`` False: no answer within the probe deadline)."""

    reachable: bool
    waiting_for: tuple[str, ...] = ()
    failure: Failure | None = None


def find_culprit(me: str, suspects: Sequence[str], views: Mapping[str, PeerView], symptom: str) -> Failure:
    """The party that failed, given the peers ``me`` waited on in vain (``suspects``) and every peer's probe.

    1. a peer that knows of a failure: that failure (relayed);
    2. else, following who waits on whom from the suspects (breadth first), the first party
       that does not answer: dead, or cut off;
    3. else the first that answers but waits for no one: alive, but stuck or busy for longer
       than the deadline;
    4. else everyone waits on someone (a cycle: a protocol bug or a lost message): the first suspect.
    """
    for view in views.values():
        if view.failure is not None:
            return view.failure
    parents: dict[str, str] = {suspect: me for suspect in suspects}
    order, queue = [], deque(suspects)
    while queue:
        party = queue.popleft()
        order.append(party)
        for nxt in views.get(party, PeerView(False)).waiting_for:
            if nxt not in parents and nxt != me:
                parents[nxt] = party
                queue.append(nxt)

    def chain(party: str) -> str:
        links = []
        while party != me:
            links.append(party)
            party = parents[party]
        names = [me, *reversed(links)]
        return ", ".join(f"{a!r} waits for {b!r}" for a, b in zip(names, names[1:]))

    for party in order:
        if not views.get(party, PeerView(False)).reachable:
            return Failure(party, f"does not answer (dead, or the network to it is cut); {chain(party)}; {symptom}", me)
    for party in order:
        if not views[party].waiting_for:
            return Failure(party, f"answers but sends nothing and waits for no one (stuck or busy); {chain(party)}; {symptom}", me)
    return Failure(suspects[0], f"every party waits for another (deadlock); {symptom}", me)


class RunState:
    """What this party waits for, and the first failure it knows of (see the module docstring).

    Threads of the party wait with :meth:`wait`, which returns early once a failure is
    recorded; hooks registered with :meth:`on_failure` run once, when it is (e.g. wake the
    inbox, cancel sends in flight).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: Counter[str] = Counter()
        self._timed_out: tuple[str, ...] = ()
        self._failure: Failure | None = None
        self._hooks: list[Callable[[Failure], None]] = []
        self._greeted: set[str] = set()

    @contextlib.contextmanager
    def waiting(self, peers: Iterable[str]) -> Iterator[None]:
        """Mark ``peers`` as waited on (receiving from them, or sending to them) for the duration.

        A wait that ends in a timeout leaves its peers marked until the next wait begins: the
        party is about to fail and name them, or (a protocol tolerating dropouts) to move on.
        """
        peers = tuple(peers)
        with self._cond:
            self._waiting.update(peers)
            self._timed_out = ()
        try:
            yield
        except TimeoutError:
            with self._cond:
                self._timed_out = peers
            raise
        finally:
            with self._cond:
                self._waiting.subtract(peers)

    def waiting_for(self) -> list[str]:
        """The peers this party waits for, or timed out waiting for in its last wait."""
        with self._cond:
            return sorted({peer for peer, count in self._waiting.items() if count > 0} | set(self._timed_out))

    @property
    def failure(self) -> Failure | None:
        with self._cond:
            return self._failure

    def fail(self, failure: Failure) -> Failure:
        """Record ``failure`` unless one is known already; returns the one that counts (the first)."""
        with self._cond:
            if self._failure is not None:
                return self._failure
            self._failure = failure
            hooks = list(self._hooks)
            self._cond.notify_all()
        for hook in hooks:
            hook(failure)
        return failure

    def on_failure(self, hook: Callable[[Failure], None]) -> None:
        with self._cond:
            self._hooks.append(hook)

    def greeted_by(self, peer: str) -> None:
        """Record that ``peer`` compared its configuration with this party's (its ``Hello`` arrived)."""
        with self._cond:
            self._greeted.add(peer)
            self._cond.notify_all()

    def greeted(self) -> frozenset[str]:
        """The peers whose ``Hello`` arrived: a party must not stop serving before every peer's has."""
        with self._cond:
            return frozenset(self._greeted)

    def notify(self, *_: object) -> None:
        """Wake :meth:`wait` to re-check its condition (usable as a future's done-callback)."""
        with self._cond:
            self._cond.notify_all()

    def wait(self, done: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until ``done()`` (re-checked on :meth:`notify`) or ``timeout`` (``None``: no limit); returns ``done()``.

        Raises :class:`~mpcml.party.PartyAborted` describing the failure as soon as one is recorded.
        """
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._failure is not None:
                    raise PartyAborted(self._failure.describe())
                if done():
                    return True
                remaining = None if end is None else end - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
