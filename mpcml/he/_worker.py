"""Worker processes for the exponentiations that hold the GIL (see :mod:`mpcml.he._modexp`).

Each worker is a fresh interpreter started as ``python -m mpcml.he._worker`` (never a fork, so it
is safe next to gRPC's threads, and the caller's ``__main__`` is not re-imported). Requests and
replies are length-prefixed :mod:`mpcml.codec` frames on the worker's stdin/stdout: a task name
from :data:`mpcml.he._modexp.TASKS` and its integer arguments, the items and the results as
fixed-width byte strings where they are plain integers (:func:`pack`); no pickle, nothing
evaluated.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO, Sequence

from gmpy2 import mpz

from .. import codec

log = logging.getLogger(__name__)
_INTS = (int, type(mpz(0)))
_HEADER = struct.Struct("<Q")
_PACKED = "packed-ints"


def _column(values: Sequence[Any]) -> list | None:
    """``[width, magnitudes, signs]`` of ints (fixed-width little-endian magnitudes, one byte per sign, ``b""`` if none
    is negative), ``[0, b"", b""]`` if all are ``None``; ``None`` for anything else."""
    if all(v is None for v in values):
        return [0, b"", b""]
    if not all(isinstance(v, _INTS) for v in values):
        return None
    width = max(1, (max(abs(int(v)).bit_length() for v in values) + 7) // 8)
    signs = bytes(v < 0 for v in values) if any(v < 0 for v in values) else b""
    return [width, b"".join(abs(int(v)).to_bytes(width, "little") for v in values), signs]


def pack(obj: Any) -> Any:
    """A list of ints, or of equal-length tuples of them (a column may be all ``None``), as one fixed-width byte
    string per column: a fraction of the codec's per-integer cost. Anything else unchanged."""
    if not isinstance(obj, list) or not obj:
        return obj
    tuples = isinstance(obj[0], tuple)
    if tuples and any(not isinstance(row, tuple) or len(row) != len(obj[0]) for row in obj):
        return obj
    columns = [_column(column) for column in (zip(*obj) if tuples else [obj])]
    if any(column is None for column in columns):
        return obj
    return {_PACKED: columns, "rows": len(obj), "tuples": tuples}


def unpack(obj: Any) -> Any:
    """The inverse of :func:`pack` (integers come back as ``mpz``)."""
    if not isinstance(obj, dict) or _PACKED not in obj:
        return obj
    rows = obj["rows"]
    columns = []
    for width, data, signs in obj[_PACKED]:
        if len(data) != rows * width or len(signs) not in (0, rows):
            raise ValueError(f"a packed column of {len(data)} bytes and {len(signs)} signs does not hold {rows} values "
                             f"of {width} bytes")
        values = [None] * rows if width == 0 else [mpz(int.from_bytes(data[k : k + width], "little"))
                                                   for k in range(0, rows * width, width)]
        columns.append([-v if negative else v for v, negative in zip(values, signs)] if signs else values)
    return list(zip(*columns)) if obj["tuples"] else columns[0]


def _write(stream: BinaryIO, obj: Any) -> None:
    data = codec.encode(obj)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) != _HEADER.size:
        raise EOFError("the stream ended")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("the stream ended inside a frame")
    return codec.decode(data)


class Worker:
    """One worker process; :meth:`send` a task, then :meth:`receive` its result (one task at a time)."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # the worker runs this very mpcml, wherever it was imported from
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mpcml.he._worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path}, cwd=root,
        )
        log.debug("started HE worker process %d", self.process.pid)

    def send(self, task: str, args: tuple) -> None:
        """Start ``task`` on ``args`` (its items, the first argument, travel :func:`pack`\ ed)."""
        items, *rest = args
        _write(self.process.stdin, [task, [pack(items), *rest]])

    def receive(self) -> Any:
        try:
            status, value = _read(self.process.stdout)
        except (EOFError, codec.CodecError) as exc:
            raise RuntimeError(f"HE worker process {self.process.pid} stopped: {exc}") from None
        if status != "ok":
            raise RuntimeError(f"HE worker process {self.process.pid} failed: {value}")
        return unpack(value)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Pool:
    """``count`` idle workers, started on first use; a caller takes one only if one is free."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._idle: queue.SimpleQueue[Worker] = queue.SimpleQueue()
        self._all: list[Worker] = []
        self._lock = threading.Lock()

    def take(self) -> Worker | None:
        """An idle worker (started if fewer than ``count`` exist), or ``None`` if all are busy."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self._all) >= self.count:
                return None
            worker = Worker()
            self._all.append(worker)
            return worker

    def give_back(self, worker: Worker) -> None:
        if worker.process.poll() is None:
            self._idle.put(worker)
        else:
            with self._lock:
                self._all.remove(worker)

    def close(self) -> None:
        with self._lock:
            workers, self._all = self._all, []
        for worker in workers:
            worker.close()


_pools: dict[str, Pool | None] = {"pool": None}
_pool_lock = threading.Lock()


def pool(count: int) -> Pool:
    """The process-wide pool of ``count`` workers (replaced if ``count`` changed)."""
    with _pool_lock:
        current = _pools["pool"]
        if current is None or current.count != count:
            if current is not None:
                current.close()
            current = _pools["pool"] = Pool(count)
        return current


@atexit.register
def close_pool() -> None:
    with _pool_lock:
        current, _pools["pool"] = _pools["pool"], None
    if current is not None:
        current.close()


def main() -> None:
    """Serve tasks on stdin/stdout until stdin closes."""
    from . import _modexp

    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            task, args = _read(source)
        except EOFError:
            return
        try:
            items, *rest = args
            reply = ["ok", pack(_modexp.TASKS[task](unpack(items), *rest))]
        except Exception as exc:  # reported to the caller, which raises it there
            reply = ["error", f"{type(exc).__name__}: {exc}"]
        _write(sink, reply)


if __name__ == "__main__":
    main()
