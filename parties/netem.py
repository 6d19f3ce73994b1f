"""Emulated network links: a userspace TCP relay that delays and paces bytes like a LAN or WAN link.

A :class:`Relay` listens on one address and forwards every accepted TCP connection to a target
address (a party's gRPC server). Each direction of each connection behaves like a dedicated
link of :class:`LinkProfile` ``(bandwidth B, one-way latency d)``: a piece of ``n`` bytes read
at time ``t`` starts transmitting at ``s = max(t, f)``, where ``f`` is when the link finishes
the bytes before it, occupies the link until ``f' = s + 8n / B`` and reaches the far side at
``f' + d`` (a FIFO queue, store and forward per piece of at most ``bandwidth x 0.5 ms``). The
relay only moves TCP bytes: TLS stays end to end between the two parties and the relay never
holds a key or sees plaintext. It needs no privileges (loopback sockets and threads), so it
runs the same on a laptop as on a server.

Every link is independent and symmetric: a party talking to three peers has three links of
the profile's bandwidth (a full mesh of dedicated lines, not a shared access link).

What it does not emulate: packet loss and retransmission, jitter and reordering, TCP slow
start and congestion control on the emulated path (the two real hops are loopback TCP, whose
windows open at once), a shared bottleneck between links, and the round trip of TCP's own
connection handshake (connections are set up before a party's clock starts). Its own cost is
one extra loopback hop and a thread wake-up per piece; ``benchmarks/bench_network.py``
measures the relay's floor (round-trip overhead and throughput ceiling) on the machine at hand
and docs/parties.md gives the figures on the development machine.

Run from the command line as ``mpcml relay --listen HOST:PORT --to HOST:PORT --network wan``
(in front of one party's server), or for a whole loopback federation through
``parties.launcher.run_processes(..., network="wan")`` and ``mpcml demo NAME --network wan``.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import math
import os
import re
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Iterator

from .config import Federation, split_address

logger = logging.getLogger(__name__)

READ_BYTES = 1 << 18         # largest single read from a socket
PIECE_SECONDS = 0.0005        # pieces carry at most bandwidth x 0.5 ms of bytes (smooth pacing)
MIN_PIECE = 4096              # ...but at least 4 KiB (fewer wake-ups on slow links)
MIN_BUFFER = 4 << 20          # bytes a direction may hold in flight before it stops reading
CONNECT_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
PR_SET_TIMERSLACK = 29          # prctl option (Linux)
FD_SETSIZE = 1024

LIMITATIONS = ("not emulated: packet loss, jitter, TCP slow start/congestion control on the emulated path, "
               "a bottleneck shared between links (each link has the full bandwidth)")

_UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
_DELAYS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_CUSTOM = re.compile(r"^\s*(?:(?P<rate>[0-9.]+(?:e[0-9]+)?)\s*(?P<unit>bit|kbit|mbit|gbit)|(?P<unlimited>unlimited))"
                     r"\s*:\s*(?P<delay>[0-9.]+(?:e-?[0-9]+)?)\s*(?P<dunit>us|ms|s)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class LinkProfile:
    """A link: ``bandwidth`` in bit/s (``math.inf`` = unlimited) and one-way ``latency`` in seconds."""

    name: str
    bandwidth: float
    latency: float

    def __post_init__(self) -> None:
        if not isinstance(self.bandwidth, (int, float)) or not self.bandwidth > 0:
            raise ValueError(f"bandwidth must be a positive number of bit/s, got {self.bandwidth!r}")
        if not isinstance(self.latency, (int, float)) or not 0 <= self.latency <= 10:
            raise ValueError(f"latency must be between 0 and 10 seconds, got {self.latency!r}")

    @property
    def rtt(self) -> float:
        """Round-trip time the profile adds: twice the one-way latency."""
        return 2 * self.latency

    def transfer_seconds(self, nbytes: float) -> float:
        """Time ``nbytes`` occupy the link (0 when the bandwidth is unlimited)."""
        return 8 * nbytes / self.bandwidth

    def describe(self) -> str:
        rate = "unlimited" if math.isinf(self.bandwidth) else format_rate(self.bandwidth)
        return f"{self.name}: {rate}, {format_delay(self.latency)} one way ({format_delay(self.rtt)} round trip) per link"


PROFILES: dict[str, LinkProfile] = {
    "lan": LinkProfile("lan", 10e9, 0.1e-3),
    "dc": LinkProfile("dc", 1e9, 1e-3),
    "wan": LinkProfile("wan", 100e6, 10e-3),
    "slow": LinkProfile("slow", 10e6, 40e-3),
}
LOOPBACK = "loopback"


def format_rate(bits_per_second: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits_per_second >= scale:
            return f"{bits_per_second / scale:.4g} {unit}"
    return f"{bits_per_second:.4g} bit/s"


def format_delay(seconds: float) -> str:
    return f"{seconds * 1e3:g} ms"


def parse_network(spec: str | LinkProfile | None) -> LinkProfile | None:
    """``"lan"``, ``"dc"``, ``"wan"``, ``"slow"``, ``"RATE:DELAY"`` (``"50mbit:20ms"``, ``"unlimited:5ms"``)
    -> :class:`LinkProfile`; ``None`` or ``"loopback"`` -> ``None`` (no emulation). ``ValueError`` otherwise."""
    if spec is None or isinstance(spec, LinkProfile):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"network must be a profile name or 'RATE:DELAY', got {type(spec).__name__}")
    name = spec.strip().lower()
    if name == LOOPBACK:
        return None
    if name in PROFILES:
        return PROFILES[name]
    match = _CUSTOM.match(name)
    if match is None:
        raise ValueError(f"network {spec!r} is not one of {LOOPBACK}, {', '.join(PROFILES)} nor RATE:DELAY "
                         "such as 50mbit:20ms (rate units bit, kbit, mbit, gbit or 'unlimited'; delay units us, ms, s; "
                         "the delay is one way)")
    bandwidth = math.inf if match["unlimited"] else float(match["rate"]) * _UNITS[match["unit"].lower()]
    return LinkProfile(name, bandwidth, float(match["delay"]) * _DELAYS[match["dunit"].lower()])


class _Link:
    """One direction of a relayed connection: the FIFO of pieces in flight from ``src`` to ``dst``."""

    def __init__(self, src: socket.socket, dst: socket.socket, profile: LinkProfile) -> None:
        self.src, self.dst, self.profile = src, dst, profile
        rate = profile.bandwidth / 8
        self.piece = READ_BYTES if math.isinf(rate) else int(min(READ_BYTES, max(MIN_PIECE, rate * PIECE_SECONDS)))
        self.limit = MIN_BUFFER if math.isinf(rate) else int(max(MIN_BUFFER, 4 * rate * profile.latency))
        self.queue: collections.deque[tuple[float, memoryview | None]] = collections.deque()
        self.in_flight = 0
        self.link_free = 0.0
        self.eof = False       # the sender closed its side (the end of stream is queued like a byte)
        self.done = False      # ...and it has been delivered
        self.blocked = False   # the receiver's socket buffer is full: wait until it is writable
        self.bytes = 0

    @property
    def wants_read(self) -> bool:
        return not self.eof and self.in_flight < self.limit

    def read(self, arrived: float) -> None:
        """1. read what the sender has written, timestamped on arrival, and schedule it."""
        try:
            data = self.src.recv(READ_BYTES)
        except BlockingIOError:
            return
        if not data:
            self.eof = True
            self.queue.append((max(arrived, self.link_free) + self.profile.latency, None))
            return
        self.bytes += len(data)
        self.in_flight += len(data)
        view = memoryview(data)
        for offset in range(0, len(view), self.piece):
            # 2. a piece occupies the link for 8n/B once the link is free, then travels the one-way latency
            piece = view[offset:offset + self.piece]
            self.link_free = max(arrived, self.link_free) + self.profile.transfer_seconds(len(piece))
            self.queue.append((self.link_free + self.profile.latency, piece))

    def deliver(self, now: float, timed: bool) -> tuple[float | None, bool]:
        """3. hand the receiver every piece due by ``now`` plus the wake-up allowance.

        Returns the seconds until the next piece is due (``None``: nothing waits) and whether
        ``timed`` is still pending: after a wake-up by timeout, the first piece handed over
        teaches :class:`_WakeTimer` how late it reached the receiver's socket.
        """
        early = _WAKE.for_latency(self.profile.latency)
        while self.queue and not self.blocked:
            due, piece = self.queue[0]
            if due - early > now:
                return due - early - now, timed
            if piece is None:
                self.queue.popleft()
                self.dst.shutdown(socket.SHUT_WR)
                self.done = True
                return None, timed
            try:
                sent = self.dst.send(piece)
            except BlockingIOError:
                sent = 0
            if timed:
                if len(piece) <= _WakeTimer.LEARN_BYTES:
                    _WAKE.learn(time.monotonic() - due)
                timed = False
            self.in_flight -= sent
            if sent < len(piece):
                self.queue[0] = (due, piece[sent:])
                self.blocked = True
            else:
                self.queue.popleft()
        return None, timed


class _WakeTimer:
    """How early to wake so that a piece reaches the receiver's socket when it is due.

    A timed ``select`` returns some tens of microseconds late (timer slack, scheduling; more in a
    VM or on a loaded machine), and handing a piece to the receiver's socket takes some more
    (``send`` returns once the bytes are in it: that is the piece's arrival at the far side).
    Each time a thread woke because its timeout expired and then handed over a small piece (at
    most ``LEARN_BYTES``, so that copying a large piece does not count as lateness), ``early``
    moves by an eighth of how late that piece arrived, at most 10 us per step (so a descheduled
    thread's long delays do not throw it off). One estimate serves every relay in the process:
    it is a property of the machine, and a new connection need not learn it again. Each link
    uses at most its latency less 10 us, so it always has a wait to learn from and no piece
    leaves before it arrived.
    """

    GAIN = 0.125
    MAX_STEP = 10e-6
    MIN_WAIT = 10e-6
    LEARN_BYTES = 16384

    def __init__(self) -> None:
        self.early = 0.0

    def for_latency(self, latency: float) -> float:
        return min(self.early, max(0.0, latency - self.MIN_WAIT))

    def learn(self, lateness: float) -> None:
        self.early = max(0.0, self.early + min(self.MAX_STEP, max(-self.MAX_STEP, self.GAIN * lateness)))


_WAKE = _WakeTimer()


class _Connection:
    """One relayed TCP connection: a thread moving both directions with non-blocking sockets and ``select``.

    ``select`` is used for its microsecond timeout (``poll`` and ``epoll`` round up to a
    millisecond in CPython), with 1 ns timer slack on the thread so it wakes when a piece is due.
    """

    def __init__(self, client: socket.socket, upstream: socket.socket, profile: LinkProfile, label: str, on_close) -> None:
        self.sockets = (client, upstream)
        self.links = (_Link(client, upstream, profile), _Link(upstream, client, profile))
        self._on_close = on_close
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"netem-{label}", daemon=True)

    def start(self) -> None:
        for sock in self.sockets:
            sock.setblocking(False)
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def abort(self) -> None:
        self._stopped = True
        for sock in self.sockets:
            _shutdown(sock)

    def _run(self) -> None:
        precise_timers()
        prompt_wakeups()
        try:
            timed = False  # the last wake-up was a timeout: the next piece handed over measures the timer
            while not self._stopped:
                now = time.monotonic()
                readers, writers, timeout = [], [], None
                for link in self.links:
                    wait, timed = link.deliver(now, timed)
                    if wait is not None:
                        timeout = wait if timeout is None else min(timeout, wait)
                    if link.blocked:
                        writers.append(link.dst)
                    if link.wants_read:
                        readers.append(link.src)
                if all(link.done for link in self.links):
                    break
                readable, writable, _ = _select(readers, writers, timeout)
                arrived = time.monotonic()
                timed = timeout is not None and not readable and not writable
                for link in self.links:
                    if link.blocked and link.dst in writable:
                        link.blocked = False
                    if link.src in readable:
                        link.read(arrived)
        except OSError as exc:  # a reset on either side ends both directions, as on a real path
            logger.debug("relayed connection ended: %s", exc)
        finally:
            for sock in self.sockets:
                _shutdown(sock)
                sock.close()
            self._on_close(self)


def _select(readers: list[socket.socket], writers: list[socket.socket], timeout: float | None):
    """``select.select`` (microsecond timeout); ``poll`` (millisecond) if a descriptor is beyond FD_SETSIZE."""
    if all(sock.fileno() < FD_SETSIZE for sock in (*readers, *writers)):
        return select.select(readers, writers, [], timeout)
    poller = select.poll()
    for sock in {*readers, *writers}:
        poller.register(sock, (select.POLLIN if sock in readers else 0) | (select.POLLOUT if sock in writers else 0))
    events = dict(poller.poll(None if timeout is None else math.ceil(timeout * 1e3)))

    def ready(socks: list[socket.socket], mask: int) -> list[socket.socket]:
        return [sock for sock in socks if events.get(sock.fileno(), 0) & (mask | select.POLLERR | select.POLLHUP)]

    return ready(readers, select.POLLIN), ready(writers, select.POLLOUT), []


def precise_timers() -> None:
    """Ask Linux for 1 ns timer slack on this thread (default 50 us), so waits end when due; no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)


def prompt_wakeups() -> bool:
    """Run this thread under ``SCHED_FIFO`` priority 1 if the process may (root or CAP_SYS_NICE); else leave it.

    The relay plays the network: on a machine crowded with other processes a normal thread's
    wake-up can be milliseconds late, which would add to every emulated latency. A real-time
    thread preempts ordinary ones when its timer fires; the relay only ever sleeps in ``select``,
    and Linux caps real-time threads at 95% of each second in any case. Returns whether it applied.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (OSError, AttributeError):
        return False
    return True


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


@dataclass
class RelayStats:
    """Bytes the relay carried towards the target (``upstream``) and back (``downstream``), and connections accepted."""

    upstream: int = 0
    downstream: int = 0
    connections: int = 0


class Relay:
    """Listen on ``listen`` and forward each connection to ``target`` through two links of ``profile``.

    Binds at construction (``OSError`` naming the address if it is in use); :meth:`start` begins
    accepting; :meth:`stop` closes the listener and every connection. A connection whose target
    refuses is closed at once, so a client sees the same failure as without the relay.
    """

    def __init__(self, listen: str, target: str, profile: LinkProfile, *, name: str = "relay") -> None:
        if not isinstance(profile, LinkProfile):
            raise TypeError(f"profile must be a LinkProfile, got {type(profile).__name__}")
        self.profile, self.name = profile, name
        self._target = split_address(target)
        host, port = _listen_address(listen)
        try:
            self._listener = socket.create_server((host, port), family=_family(host), backlog=64)
        except OSError as exc:
            raise OSError(exc.errno, f"relay {name!r} cannot listen on {listen}: {exc.strerror or exc}") from None
        self.address = f"{host}:{self._listener.getsockname()[1]}" if ":" not in host else f"[{host}]:{self._listener.getsockname()[1]}"
        self._connections: set[_Connection] = set()
        self._closed_stats = RelayStats()
        self._lock = threading.Lock()
        self._stopping = False
        self._acceptor = threading.Thread(target=self._accept, name=f"netem-accept-{name}", daemon=True)

    def start(self) -> "Relay":
        self._acceptor.start()
        return self

    def __enter__(self) -> "Relay":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stats(self) -> RelayStats:
        with self._lock:
            stats = RelayStats(self._closed_stats.upstream, self._closed_stats.downstream, self._closed_stats.connections)
            for conn in self._connections:
                stats.upstream += conn.links[0].bytes
                stats.downstream += conn.links[1].bytes
        return stats

    def _accept(self) -> None:
        count = 0
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=CONNECT_TIMEOUT)
            except OSError as exc:
                logger.debug("%s: target %s:%d refused a connection: %s", self.name, *self._target, exc)
                client.close()
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            count += 1
            conn = _Connection(client, upstream, self.profile, f"{self.name}-{count}", self._closed)
            with self._lock:
                if self._stopping:
                    conn.abort()
                    client.close()
                    upstream.close()
                    return
                self._connections.add(conn)
                self._closed_stats.connections += 1
            conn.start()

    def _closed(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)
            self._closed_stats.upstream += conn.links[0].bytes
            self._closed_stats.downstream += conn.links[1].bytes

    def stop(self) -> None:
        """Stop accepting, cut every connection and wait (bounded) for the relay threads."""
        with self._lock:
            self._stopping = True
            connections = list(self._connections)
        _shutdown(self._listener)
        self._listener.close()
        for conn in connections:
            conn.abort()
        if self._acceptor.is_alive():
            self._acceptor.join(STOP_TIMEOUT)
        for conn in connections:
            conn.join(STOP_TIMEOUT)


def _listen_address(listen: str) -> tuple[str, int]:
    """``host:port`` to listen on; port 0 picks a free one."""
    host, sep, port = listen.rpartition(":") if isinstance(listen, str) else ("", "", "")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"relay listen address {listen!r} must be host:port (port 0 = any free port)")
    return host.strip("[]"), int(port)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def loopback_address() -> str:
    """A free loopback ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@dataclass
class ShapedFederation:
    """The relays of an emulated federation: ``listen[party_id]`` is where that party's server must listen."""

    profile: LinkProfile
    relays: dict[str, Relay]
    listen: dict[str, str]

    def stats(self) -> dict[str, RelayStats]:
        """Bytes each party's relay carried (to the party, from the party) and connections it accepted."""
        return {pid: relay.stats for pid, relay in self.relays.items()}


@contextlib.contextmanager
def shaped_federation(federation: Federation, profile: LinkProfile) -> Iterator[ShapedFederation]:
    """Put a relay of ``profile`` on every party's federation address, forwarding to a fresh loopback port.

    Peers dial the federation address as usual and reach the party through its relay, so every
    connection (one per ordered pair of parties, carrying both directions) is shaped exactly
    once. Each party must listen on ``listen[party_id]`` (``mpcml party --listen``).
    """
    listen = {pid: loopback_address() for pid in federation.parties}
    with contextlib.ExitStack() as stack:
        relays = {pid: stack.enter_context(Relay(spec.address, listen[pid], profile, name=pid))
                  for pid, spec in federation.parties.items()}
        logger.info("emulated network %s", profile.describe())
        yield ShapedFederation(profile, relays, listen)
