"""The ``Party`` interface: the one seam between protocol logic and transport.

A protocol role is a plain function ``role(party, *inputs)``. It talks to its peers only
through :meth:`Party.send`, :meth:`Party.recv` and :meth:`Party.gather`; whether those peers are
threads (:func:`mpcml.local.run_local`) or processes on other machines (``parties.transport``)
is invisible to it. Every object is serialised by :mod:`mpcml.codec` on every transport, so the
byte counts in :attr:`Party.stats` are the same everywhere.

Rounds. A party's round counter goes up each time it sends after having received (or sends
for the first time): a protocol step "send to peers, then wait for their answers" costs one
round, however many peers it talks to.
"""

from __future__ import annotations

import abc
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from . import codec
from .csprng import Csprng
from .schema import Spec

DEFAULT_TIMEOUT = 60.0


class PartyTimeout(TimeoutError):
    """One or more peers sent nothing within the receive deadline; ``peers`` names them all, ``peer`` the first."""

    def __init__(self, party_id: str, peer: str | Sequence[str], timeout: float) -> None:
        self.peers = (peer,) if isinstance(peer, str) else tuple(peer)
        self.party_id, self.peer, self.timeout = party_id, self.peers[0], timeout
        names = ", ".join(repr(p) for p in self.peers)
        super().__init__(f"party {party_id!r} timed out after {timeout:g}s waiting for a message from {names}")


class PartyAborted(RuntimeError):
    """The run was aborted because another party failed."""


class Inbox:
    """One party's incoming messages: a FIFO per sender and one condition variable.

    A receiver waits on several senders at once without polling (:meth:`get` with several
    senders returns the earliest arrival among them). :meth:`abort` wakes every waiter, which
    then raises :class:`PartyAborted` with the given reason (or the given exception, e.g. a
    transport's error for a message it could not deliver). Both transports keep their
    received payloads here.
    """

    def __init__(self, senders: Iterable[str]) -> None:
        self._queues: dict[str, deque[tuple[int, Any]]] = {s: deque() for s in senders}
        self._arrivals = itertools.count()
        self._cond = threading.Condition()
        self._aborted: str | Exception | None = None

    def put(self, sender: str, payload: Any) -> None:
        with self._cond:
            self._queues[sender].append((next(self._arrivals), payload))
            self._cond.notify_all()

    def abort(self, reason: str | Exception) -> None:
        """From now on :meth:`get` raises ``reason`` (an exception) or :class:`PartyAborted` with it (a string); the first call counts."""
        with self._cond:
            if self._aborted is None:
                self._aborted = reason
            self._cond.notify_all()

    def get(self, senders: Sequence[str], timeout: float) -> tuple[str, Any]:
        """``(sender, payload)`` of the earliest message from any of ``senders``.

        Raises a bare :class:`TimeoutError` after ``timeout`` seconds (the caller turns it into
        :class:`PartyTimeout` naming the silent peers) and :class:`PartyAborted` once
        :meth:`abort` was called (or the exception given to it).
        """
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                if isinstance(self._aborted, Exception):
                    raise self._aborted
                if self._aborted is not None:
                    raise PartyAborted(self._aborted)
                ready = [s for s in senders if self._queues[s]]
                if ready:
                    sender = min(ready, key=lambda s: self._queues[s][0][0])
                    return sender, self._queues[sender].popleft()[1]
                remaining = end - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self._cond.wait(remaining)


@dataclass
class CommStats:
    """Payload bytes, messages and rounds of one party (codec bytes, transport overhead excluded)."""

    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    rounds: int = 0
    sent_to: dict[str, int] = field(default_factory=dict)
    received_from: dict[str, int] = field(default_factory=dict)
    _last_was_send: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record_send(self, peer: str, nbytes: int) -> None:
        with self._lock:
            self.bytes_sent += nbytes
            self.messages_sent += 1
            self.sent_to[peer] = self.sent_to.get(peer, 0) + nbytes
            if not self._last_was_send:
                self.rounds += 1
            self._last_was_send = True

    def record_recv(self, peer: str, nbytes: int) -> None:
        with self._lock:
            self.bytes_received += nbytes
            self.messages_received += 1
            self.received_from[peer] = self.received_from.get(peer, 0) + nbytes
            self._last_was_send = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "messages_sent": self.messages_sent,
            "messages_received": self.messages_received,
            "rounds": self.rounds,
        }

    def snapshot(self) -> "CommStats":
        with self._lock:
            return CommStats(
                self.bytes_sent, self.bytes_received, self.messages_sent, self.messages_received, self.rounds,
                dict(self.sent_to), dict(self.received_from),
            )

    def __sub__(self, other: "CommStats") -> "CommStats":
        """The traffic between two snapshots (per-peer byte counts included)."""

        def diff(mine: dict[str, int], theirs: dict[str, int]) -> dict[str, int]:
            return {peer: n - theirs.get(peer, 0) for peer, n in mine.items() if n != theirs.get(peer, 0)}

        return CommStats(
            self.bytes_sent - other.bytes_sent,
            self.bytes_received - other.bytes_received,
            self.messages_sent - other.messages_sent,
            self.messages_received - other.messages_received,
            self.rounds - other.rounds,
            diff(self.sent_to, other.sent_to),
            diff(self.received_from, other.received_from),
        )


class Party(abc.ABC):
    """One participant of a protocol run.

    Subclasses implement :meth:`_send_bytes` and :meth:`_recv_any`; everything else
    (validation, codec, statistics) lives here so every transport behaves the same.
    """

    def __init__(self, party_id: str, peers: Iterable[str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        peers = tuple(peers)
        if party_id in peers:
            raise ValueError(f"party {party_id!r} cannot be its own peer")
        if len(set(peers)) != len(peers):
            raise ValueError(f"duplicate peer ids in {peers!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.id = party_id
        self.peers = peers
        self.timeout = float(timeout)
        self.stats = CommStats()
        self.rng = Csprng()

    @property
    def all_ids(self) -> tuple[str, ...]:
        """This party and its peers, sorted: the same tuple at every party."""
        return tuple(sorted((self.id, *self.peers)))

    def check_peer(self, peer: str, what: str = "peer") -> None:
        if peer not in self.peers:
            raise ValueError(f"{what} {peer!r} is not a peer of party {self.id!r}; peers are {list(self.peers)}")

    def send(self, to: str, obj: Any, *, acknowledged: bool = False) -> None:
        """Send ``obj`` to ``to``; see :meth:`send_all`."""
        self.send_all((to,), obj, acknowledged=acknowledged)

    def recv(self, frm: str, timeout: float | None = None, *, expect: Spec | None = None, what: str = "message") -> Any:
        """The next message from ``frm``, checked against ``expect`` (a :mod:`mpcml.schema` spec) if given.

        Raises :class:`PartyTimeout` naming ``frm`` after ``timeout`` seconds (default: the
        party's timeout) and :class:`mpcml.schema.ProtocolError` naming ``frm``, ``what`` and
        the field when the message does not match ``expect``.
        """
        self.check_peer(frm, "sender")
        wait = self.timeout if timeout is None else timeout
        try:
            _, payload = self._recv_any((frm,), wait)
        except TimeoutError:
            raise PartyTimeout(self.id, frm, wait) from None
        return self._decoded(frm, payload, expect, what)

    def gather(
        self,
        senders: Sequence[str],
        *,
        deadline: float | None = None,
        at_least: int | None = None,
        first: int | None = None,
        accept: Callable[[str, Any], bool] | None = None,
        expect: Spec | None = None,
        what: str = "message",
    ) -> dict[str, Any]:
        """One message from each of ``senders``, as ``{sender: message}`` in arrival order.

        Waits on all senders at once (no polling) until every sender has answered, or until
        ``deadline`` (a :func:`time.monotonic` instant; default: now + the party's timeout).
        With ``at_least`` the senders still silent at the deadline are left out (dropouts),
        provided at least ``at_least`` answered; with ``first`` it returns as soon as that many
        have answered (``at_least`` then defaults to ``first``). Otherwise a silent sender
        raises :class:`PartyTimeout` naming every sender still missing. ``accept(sender, msg)``
        returning False discards a message (e.g. a late answer to an earlier round) and keeps
        waiting for that sender; accepted messages are checked against ``expect``.
        """
        senders = tuple(senders)
        for peer in senders:
            self.check_peer(peer, "sender")
        if len(set(senders)) != len(senders):
            raise ValueError(f"senders contains duplicates: {list(senders)}")
        wanted = len(senders) if first is None else first
        needed = at_least if at_least is not None else wanted
        if not 0 <= needed <= wanted <= len(senders):
            raise ValueError(f"need 0 <= at_least <= first <= {len(senders)} senders, got at_least={at_least}, first={first}")
        start = time.monotonic()
        end = start + self.timeout if deadline is None else deadline
        got: dict[str, Any] = {}
        while len(got) < wanted:
            pending = tuple(s for s in senders if s not in got)
            try:
                sender, payload = self._recv_any(pending, max(0.0, end - time.monotonic()))
            except TimeoutError:
                if len(got) >= needed:
                    break
                raise PartyTimeout(self.id, pending, max(0.0, end - start)) from None
            message = self._decoded(sender, payload, None, what)
            if accept is None or accept(sender, message):
                got[sender] = message if expect is None else expect.validate(message, sender, what)
        return got

    def _decoded(self, frm: str, payload: bytes, expect: Spec | None, what: str) -> Any:
        self.stats.record_recv(frm, len(payload))
        message = codec.decode(payload)
        return message if expect is None else expect.validate(message, frm, what)

    def send_all(self, to: Sequence[str], obj: Any, *, acknowledged: bool = False) -> None:
        """Send the same object to each of ``to`` (the codec runs once).

        A transport may return before a message has arrived (pipelining): a message it then
        cannot deliver fails this party's run, raised by its next send, receive or
        :meth:`flush`. With ``acknowledged=True`` each send returns once its recipient has the
        message, and a failure to deliver it is raised here and concerns this send only: for
        protocols that treat an unreachable peer as a dropout.
        """
        for peer in to:
            self.check_peer(peer, "recipient")
        segments = codec.encode_segments(obj)
        size = sum(len(s) for s in segments)
        for peer in to:
            self.stats.record_send(peer, size)
            self._send_bytes(peer, segments, acknowledged)

    def flush(self) -> None:
        """Wait until every message sent so far is accepted by its recipient; raise if one was refused or lost.

        :meth:`send` may return before its message has arrived (a transport that pipelines
        messages); a role's output counts only after :meth:`flush`. In-process parties deliver
        at once, so it does nothing there.
        """

    @abc.abstractmethod
    def _send_bytes(self, to: str, segments: list[memoryview], acknowledged: bool) -> None:
        """Deliver the message made of ``segments`` (codec output viewing the sender's arrays).

        The segments must be copied or fully sent before returning: the caller may change its
        arrays afterwards. ``acknowledged``: as in :meth:`send_all`.
        """

    @abc.abstractmethod
    def _recv_any(self, senders: Sequence[str], timeout: float) -> tuple[str, bytes]:
        """The earliest payload from any of ``senders``: ``(sender, payload)``.

        Raises :class:`TimeoutError` after ``timeout`` seconds and :class:`PartyAborted` when
        the run is aborted; waits on all senders at once.
        """
