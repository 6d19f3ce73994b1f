"""The ``Party`` interface: the one seam between protocol logic and transport.

A protocol role is a plain function ``role(party, *inputs)``. It talks to its peers only
through :meth:`Party.send` and :meth:`Party.recv`; whether those peers are threads
(:func:`mpcml.local.run_local`) or processes on other machines (``parties.grpc_party``) is
invisible to it. Every object is serialised by :mod:`mpcml.codec` on every transport, so the
byte counts in :attr:`Party.stats` are the same everywhere.

Rounds. A party's round counter goes up each time it sends after having received (or sends
for the first time): a protocol step "send to peers, then wait for their answers" costs one
round, however many peers it talks to.
"""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from . import codec
from .csprng import Csprng

DEFAULT_TIMEOUT = 60.0


class PartyTimeout(TimeoutError):
    """A peer sent nothing within the receive deadline."""

    def __init__(self, party_id: str, peer: str, timeout: float) -> None:
        self.party_id, self.peer, self.timeout = party_id, peer, timeout
        super().__init__(f"party {party_id!r} timed out after {timeout:g}s waiting for a message from {peer!r}")


class PartyAborted(RuntimeError):
    """The run was aborted because another party failed."""


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

    Subclasses implement :meth:`_send_bytes` and :meth:`_recv_bytes`; everything else
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

    def send(self, to: str, obj: Any) -> None:
        self.send_all((to,), obj)

    def recv(self, frm: str, timeout: float | None = None) -> Any:
        self.check_peer(frm, "sender")
        payload = self._recv_bytes(frm, self.timeout if timeout is None else timeout)
        self.stats.record_recv(frm, len(payload))
        return codec.decode(payload)

    def send_all(self, to: Sequence[str], obj: Any) -> None:
        """Send the same object to each of ``to`` (the codec runs once)."""
        for peer in to:
            self.check_peer(peer, "recipient")
        segments = codec.encode_segments(obj)
        size = sum(len(s) for s in segments)
        for peer in to:
            self.stats.record_send(peer, size)
            self._send_bytes(peer, segments)

    def recv_all(self, frm: Sequence[str]) -> dict[str, Any]:
        return {peer: self.recv(peer) for peer in frm}

    @abc.abstractmethod
    def _send_bytes(self, to: str, segments: list[memoryview]) -> None:
        """Deliver the message made of ``segments`` (codec output viewing the sender's arrays).

        The segments must be copied or fully sent before returning: the caller may change its
        arrays afterwards.
        """

    @abc.abstractmethod
    def _recv_bytes(self, frm: str, timeout: float) -> bytes: ...
