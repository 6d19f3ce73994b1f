"""Measure a TCP path: ping-pong round trip and bulk throughput, to check the emulated links of :mod:`parties.netem`.

A :class:`Sink` is a loopback TCP server in this process that answers a one-byte ping with one
byte and swallows bulk transfers while timestamping them. :func:`measure_path` connects to an
address (the sink itself, or a relay in front of it) and returns the median ping-pong round
trip and the receiver-side throughput of a bulk transfer: bytes after the first read divided by
the time from the first to the last read at the sink, so neither latency nor connection set-up
enters the bandwidth figure (infinite if the whole transfer arrived in one read). Sender and sink share one clock (same process).
"""

from __future__ import annotations

import math
import socket
import statistics
import threading
import time
from dataclasses import dataclass

from .netem import READ_BYTES

PING = b"p"
BULK = b"b"
_DONE = b"d"


@dataclass(frozen=True)
class PathMeasurement:
    """Median round trip (s) over ``pings`` and bulk throughput (bit/s) of ``bulk_bytes``."""

    rtt: float
    bandwidth: float
    pings: int
    bulk_bytes: int


class Sink:
    """Loopback server: echoes pings, receives bulk transfers (``b`` + 8-byte length + data) and answers ``d``."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self.last_bulk: tuple[int, float] | None = None  # (bytes after the first read, seconds first->last read)
        self._thread = threading.Thread(target=self._serve, name="linkcheck-sink", daemon=True)
        self._thread.start()

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), name="linkcheck-conn", daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            try:
                while (kind := conn.recv(1)) and kind in (PING, BULK):
                    if kind == PING:
                        conn.sendall(PING)
                        continue
                    size = int.from_bytes(_exactly(conn, 8), "little")
                    buffer = bytearray(READ_BYTES)
                    first = conn.recv_into(buffer)
                    start = end = time.perf_counter()
                    received = first
                    while received < size:
                        n = conn.recv_into(buffer, min(len(buffer), size - received))
                        if n == 0:
                            return
                        received += n
                        end = time.perf_counter()
                    self.last_bulk = (size - first, end - start)
                    conn.sendall(_DONE)
            except OSError:
                return


def _exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-message")
        data += chunk
    return data


def _connect(address: str, timeout: float) -> socket.socket:
    host, _, port = address.rpartition(":")
    conn = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def measure_path(address: str, sink: Sink, *, pings: int = 20, bulk_bytes: int = 4 << 20, timeout: float = 60.0) -> PathMeasurement:
    """Ping-pong ``pings`` times then send ``bulk_bytes`` through ``address`` (which must lead to ``sink``)."""
    with _connect(address, timeout) as conn:
        times = []
        for _ in range(pings + 1):
            start = time.perf_counter()
            conn.sendall(PING)
            if conn.recv(1) != PING:
                raise ConnectionError(f"no ping reply through {address}")
            times.append(time.perf_counter() - start)
        payload = memoryview(bytes(bulk_bytes))
        conn.sendall(BULK + bulk_bytes.to_bytes(8, "little"))
        conn.sendall(payload)
        if conn.recv(1) != _DONE or sink.last_bulk is None:
            raise ConnectionError(f"bulk transfer through {address} was not acknowledged")
        nbytes, seconds = sink.last_bulk
    return PathMeasurement(statistics.median(times[1:]), 8 * nbytes / seconds if seconds > 0 else math.inf, pings, bulk_bytes)
