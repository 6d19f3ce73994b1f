"""What one authenticated peer may make a party's server hold: RPC slots, buffered bytes, time.

:class:`PeerBudget` counts, per peer, the RPCs open at once and the payload bytes received
and not yet read by the protocol (messages still arriving included); a message that does not
fit waits until the protocol reads (back-pressure through HTTP/2 flow control, since the
server stops reading the stream) and is refused with a clear status at its deadline.
:class:`Deadlines` cancels RPCs whose client leaves them idle between two chunks, or which
take longer than the message deadline in all. The figures come from
:class:`parties.config.Limits` (federation file, ``[limits]``); docs/parties.md, "Limits",
explains each.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import threading
import time
from typing import Callable, Iterator

from .config import MIB, Limits


class LimitExceeded(Exception):
    """A peer went past a limit; ``message`` is the one line its RPC is refused with."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class MessageTooLarge(LimitExceeded):
    """A message larger than the whole buffer: it can never fit, however quickly the protocol reads."""


def _mib(nbytes: int) -> str:
    return f"{nbytes / MIB:.4g} MiB"


class PeerBudget:
    """Per peer: RPCs open and bytes buffered, against :class:`~parties.config.Limits`."""

    def __init__(self, owner: str, peers: tuple[str, ...], limits: Limits) -> None:
        self._owner, self._limits = owner, limits
        self._open = dict.fromkeys(peers, 0)
        self._buffered = dict.fromkeys(peers, 0)
        self._cond = threading.Condition()
        self._closed = False

    @contextlib.contextmanager
    def rpc(self, peer: str) -> Iterator[None]:
        """Hold one of ``peer``'s RPC slots; :class:`LimitExceeded` at once if it has none left."""
        with self._cond:
            if self._open[peer] >= self._limits.streams:
                raise LimitExceeded(f"{peer!r} already has {self._open[peer]} RPCs open at {self._owner!r} "
                                    f"(limits.streams = {self._limits.streams})")
            self._open[peer] += 1
        try:
            yield
        finally:
            with self._cond:
                self._open[peer] -= 1

    def reserve(self, peer: str, nbytes: int, deadline: float) -> None:
        """Count ``nbytes`` of ``peer``'s against its buffer, waiting (until ``deadline``, monotonic) for room.

        :class:`MessageTooLarge` at once for a message larger than the whole buffer; :class:`LimitExceeded` at the
        deadline if the protocol does not read ``peer``'s earlier messages, or when the server stops.
        """
        limit = self._limits.buffer_bytes
        if nbytes > limit:
            raise MessageTooLarge(f"a message of {_mib(nbytes)} from {peer!r} exceeds the {_mib(limit)} {self._owner!r} "
                                "buffers per peer (limits.buffer_mib)")
        with self._cond:
            while self._buffered[peer] + nbytes > limit:
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    raise LimitExceeded(f"{self._owner!r} still holds {_mib(self._buffered[peer])} from {peer!r} unread "
                                        f"(limits.buffer_mib = {limit // MIB}); a message of {_mib(nbytes)} did not fit in time")
                self._cond.wait(remaining)
            self._buffered[peer] += nbytes

    def release(self, peer: str, nbytes: int) -> None:
        """``nbytes`` of ``peer``'s were read (or their message was refused)."""
        with self._cond:
            self._buffered[peer] -= nbytes
            self._cond.notify_all()

    def buffered(self, peer: str) -> int:
        with self._cond:
            return self._buffered[peer]

    def open_rpcs(self, peer: str) -> int:
        with self._cond:
            return self._open[peer]

    def close(self) -> None:
        """Refuse every message still waiting for room (the server is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Deadlines:
    """One thread that cancels RPCs idle longer than ``idle`` seconds or older than ``total`` seconds.

    A handler :meth:`watch`\\ es its RPC, calls :meth:`Watch.waiting` before it blocks on the
    client's next chunk and :meth:`Watch.received` after it; the idle clock runs only while it
    waits for the client. While the server itself waits (for buffer room, :meth:`Watch.holding`)
    the RPC is not cancelled: the wait ends at the same deadline with a refusal that says why.
    """

    def __init__(self, idle: float, total: float) -> None:
        self.idle, self.total = idle, total
        self._cond = threading.Condition()
        self._calls: dict[int, list] = {}  # token -> [idle deadline, total deadline, cancel, expired reason, server waits]
        self._heap: list[tuple[float, int]] = []
        self._tokens = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="mpcml-deadlines", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def watch(self, cancel: Callable[[], None]) -> Iterator["Watch"]:
        now = time.monotonic()
        token = next(self._tokens)
        with self._cond:
            self._calls[token] = [math.inf, now + self.total, cancel, None, False]
            self._push(now + self.total, token)
        try:
            yield Watch(self, token, now)
        finally:
            with self._cond:
                del self._calls[token]

    def _push(self, deadline: float, token: int) -> None:
        heapq.heappush(self._heap, (deadline, token))
        if self._heap[0][1] == token:  # earlier than the thread's next wake-up
            self._cond.notify()

    def _set_idle(self, token: int, waiting: bool) -> None:
        with self._cond:
            call = self._calls[token]
            call[0] = time.monotonic() + self.idle if waiting else math.inf
            if waiting:
                self._push(call[0], token)

    def _set_holding(self, token: int, holding: bool) -> None:
        with self._cond:
            self._calls[token][4] = holding

    def _expired(self, token: int) -> str | None:
        with self._cond:
            return self._calls[token][3]

    def _run(self) -> None:
        while True:
            cancels = []
            with self._cond:
                if self._stopped:
                    return
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, token = heapq.heappop(self._heap)
                    call = self._calls.get(token)
                    if call is None or call[3] is not None or call[4]:
                        continue  # finished, cancelled already, or the server is the one waiting
                    if call[1] <= now:
                        call[3] = f"took longer than {self.total:g}s in all (limits.message_timeout)"
                    elif call[0] <= now:
                        call[3] = f"sent no chunk for {self.idle:g}s (limits.idle_timeout)"
                    else:
                        continue  # an idle deadline that has moved on since
                    cancels.append(call[2])
                if not cancels:
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
            for cancel in cancels:
                cancel()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join()


class Watch:
    """One watched RPC (see :class:`Deadlines`)."""

    def __init__(self, deadlines: Deadlines, token: int, started: float) -> None:
        self._deadlines, self._token = deadlines, token
        self.started = started  # time.monotonic() when the RPC began

    def waiting(self) -> None:
        """The handler is about to wait for the client's next chunk: the idle clock starts."""
        self._deadlines._set_idle(self._token, True)

    def received(self) -> None:
        self._deadlines._set_idle(self._token, False)

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """The server, not the client, is waiting: do not cancel the RPC meanwhile."""
        self._deadlines._set_holding(self._token, True)
        try:
            yield
        finally:
            self._deadlines._set_holding(self._token, False)

    @property
    def expired(self) -> str | None:
        """Why the RPC was cancelled (``None`` if it was not)."""
        return self._deadlines._expired(self._token)
