"""Modular exponentiation engines shared by the additively homomorphic schemes, and both cores.

- :class:`FixedBase`: comb tables ``base^(d 2^(w k))`` for a fixed base, one multiplication per
  non-zero ``w``-bit digit of the exponent (encryption randomness, Okamoto–Uchiyama's ``g^m``).
- :func:`multi_exp` (Pippenger's bucket method) and :class:`ColumnPowers` for plaintext-matrix
  by ciphertext-vector products at a few multiplications per non-zero.
- Both cores, chosen by measurement on the 2-core development machine (idle moment, 2048-bit
  operands): ``gmpy2.powmod_base_list`` releases the GIL, so exponentiations of many bases to one
  exponent (decryption, Horner packing) run on two threads at 1.9x; plain ``powmod`` and ``mpz``
  multiplication hold the GIL (two threads: 0.8-1.0x), so comb encryptions and per-element
  exponentiations go to worker processes (1.7-1.9x): fresh interpreters (:mod:`mpcml.he._worker`),
  never forks, so they are safe next to gRPC's threads and do not re-run the caller's ``__main__``.
  Only batches of at least :data:`PROCESS_MIN` items are split; :func:`set_processes` (or
  ``MPCML_HE_PROCESSES``) sets the number of processes, 1 disables the workers. Workers receive
  integers only (bases, exponents, ciphertexts the calling process already validated) through the
  wire codec, never a peer's bytes and never pickle.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import gmpy2
import numpy as np
from gmpy2 import mpz, powmod

ONE = mpz(1)
PARALLEL_MIN = 8
THREAD_MIN_WORK = 1 << 15
PROCESS_MIN = 64
PROCESS_MIN_WORK = 1 << 16
REPEATS = 4
_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="he")
_lock = threading.Lock()
_processes: dict[str, int | None] = {"count": None}


def parallel_powmod(bases: list[mpz], exponent: mpz, modulus: mpz, parallel: bool = True) -> list[mpz]:
    """``[b^exponent mod modulus]``, the list split over two GIL-free ``powmod_base_list`` calls.

    One thread when ``parallel`` is false or :func:`processes` is 1.
    """
    work = len(bases) * int(exponent).bit_length()
    if not (parallel and len(bases) >= PARALLEL_MIN and work >= THREAD_MIN_WORK and processes() > 1):
        return [powmod(b, exponent, modulus) for b in bases]
    half = len(bases) // 2
    fut = _threads.submit(gmpy2.powmod_base_list, bases[half:], exponent, modulus)
    return gmpy2.powmod_base_list(bases[:half], exponent, modulus) + fut.result()


# --- worker processes -------------------------------------------------------------------------


def set_processes(count: int | None) -> None:
    """Use ``count`` processes (this one included) for large batches; ``None``: one per core; 1: a single core
    (no worker processes and no second thread)."""
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValueError(f"count must be None or a positive integer, got {count!r}")
    _processes["count"] = count


def processes() -> int:
    """Processes used for large batches: :func:`set_processes`, else ``MPCML_HE_PROCESSES``, else the cores."""
    count = _processes["count"]
    if count is None:
        env = os.environ.get("MPCML_HE_PROCESSES", "")
        count = int(env) if env.isdigit() and int(env) >= 1 else (os.cpu_count() or 1)
    return count


def split_map(task: str, items: Sequence[Any], *args: Any, work: int, min_items: int | None = None) -> list:
    """``TASKS[task](items, *args)`` (a list, one result per item) in chunks over :func:`processes` processes.

    The calling thread computes the first chunk while idle worker processes compute the others
    (a chunk no worker is free for is computed here too). Batches of fewer than ``min_items``
    items or an estimated ``work`` (modular multiplications) below :data:`PROCESS_MIN_WORK` stay here.
    """
    from . import _worker

    count, func = processes(), TASKS[task]
    if count == 1 or len(items) < max(PROCESS_MIN if min_items is None else min_items, 2) or work < PROCESS_MIN_WORK:
        return func(items, *args)
    pool = _worker.pool(count - 1)
    size = -(-len(items) // count)
    chunks = [list(items[k : k + size]) for k in range(0, len(items), size)]
    sent = []
    for chunk in chunks[1:]:
        worker = pool.take()
        if worker is not None:
            worker.send(task, (chunk, *args))
        sent.append(worker)
    out = func(chunks[0], *args)
    try:
        for chunk, worker in zip(chunks[1:], sent):
            out += func(chunk, *args) if worker is None else worker.receive()
    finally:
        for worker in sent:
            if worker is not None:
                pool.give_back(worker)
    return out


def _powmod_pairs(pairs: Sequence[tuple[int, int]], modulus: int) -> list[mpz]:
    m = mpz(modulus)
    return [mpz(c) if k == 1 else powmod(c, k, m) for c, k in pairs]


def _grouped_powmod(bases: Sequence[mpz], groups: list[tuple[int, list[int]]], modulus: mpz, out: list) -> None:
    for e, where in groups:
        for i, power in zip(where, gmpy2.powmod_base_list([bases[i] for i in where], e, modulus)):
            out[i] = power


def powmod_pairs(bases: Sequence[mpz], exponents: Sequence[int], modulus: mpz) -> list[mpz]:
    """``[b_i^e_i mod modulus]`` (negative ``e_i`` invert), large batches over all cores.

    When exponents repeat (products by small integers: at least :data:`REPEATS` uses per distinct
    value on average), the bases of each exponent go to one GIL-free ``powmod_base_list`` call and
    the groups are split over two threads: no worker process, so nothing is copied.
    """
    work = sum(int(e).bit_length() for e in exponents) * 5 // 4
    if processes() > 1 and len(bases) >= PROCESS_MIN and work >= PROCESS_MIN_WORK:
        by_exponent: dict[int, list[int]] = {}
        for i, e in enumerate(exponents):
            by_exponent.setdefault(int(e), []).append(i)
        if len(by_exponent) * REPEATS <= len(bases):
            groups = list(by_exponent.items())
            out: list = [None] * len(bases)
            fut = _threads.submit(_grouped_powmod, bases, groups[1::2], modulus, out)
            _grouped_powmod(bases, groups[::2], modulus, out)
            fut.result()
            return out
    pairs = list(zip(bases, exponents))
    return [mpz(v) for v in split_map("powmod_pairs", pairs, modulus, work=work)]


# --- fixed-base comb ------------------------------------------------------------------------------


class FixedBase:
    """Comb table ``rows[k][d] = base^(d 2^(window k)) mod modulus``, grown on demand (thread-safe).

    ``power(e)`` costs one multiplication per non-zero ``window``-bit digit of ``e``; the table
    holds ``ceil(bits / window) x 2^window`` residues.
    """

    def __init__(self, base: mpz, modulus: mpz, window: int = 8) -> None:
        if not 1 <= window <= 16:
            raise ValueError(f"window must be in [1, 16], got {window}")
        self.base, self.modulus, self.window = mpz(base), mpz(modulus), window
        self.rows: list[list[mpz]] = []
        self._lock = threading.Lock()

    def ensure(self, bits: int) -> "FixedBase":
        """Grow the table to cover exponents below ``2^bits``."""
        need = -(-bits // self.window)
        if len(self.rows) >= need:
            return self
        with self._lock:
            m, rows = self.modulus, self.rows
            while len(rows) < need:
                step = self.base if not rows else rows[-1][-1] * rows[-1][1] % m
                row = [ONE, step]
                for _ in range(2, 1 << self.window):
                    row.append(row[-1] * step % m)
                rows.append(row)
        return self

    def power(self, e: int) -> mpz:
        """``base^e mod modulus`` for ``0 <= e`` within the table (call :meth:`ensure` first)."""
        rows, m, w = self.rows, self.modulus, self.window
        mask = (1 << w) - 1
        acc = None
        k = 0
        while e:
            d = e & mask
            if d:
                acc = rows[k][d] if acc is None else acc * rows[k][d] % m
            e >>= w
            k += 1
        return ONE if acc is None else acc

    def power_bytes(self, digits: bytes) -> mpz:
        """``base^e`` for an exponent given as little-endian ``window = 8`` digits (fast path)."""
        rows, m = self.rows, self.modulus
        acc = rows[0][digits[0]]
        for row, d in zip(rows[1 : len(digits)], digits[1:]):
            if d:
                acc = acc * row[d] % m
        return acc


_tables: OrderedDict[tuple[int, int, int], FixedBase] = OrderedDict()
MAX_TABLES = 48


def fixed_base(base: mpz, modulus: mpz, window: int) -> FixedBase:
    """The process-wide table of ``base`` mod ``modulus`` (created on first use; the
    :data:`MAX_TABLES` most recently used are kept: an OU key pair uses up to eight, two parties in one
    process and their peers' keys twice that)."""
    key = (int(base), int(modulus), window)
    with _lock:
        table = _tables.get(key)
        if table is None:
            if len(_tables) >= MAX_TABLES:
                _tables.popitem(last=False)
            table = _tables[key] = FixedBase(base, modulus, window)
        _tables.move_to_end(key)
        return table


def random_exponents(count: int, bits: int) -> list[int]:
    """``count`` uniform exponents in ``[0, 2^bits)`` from ``os.urandom``."""
    width = (bits + 7) // 8
    raw = os.urandom(width * count)
    mask = (1 << bits) - 1
    return [int.from_bytes(raw[k : k + width], "little") & mask for k in range(0, width * count, width)]


def _fixed_products(items: Sequence[tuple], bases: Sequence[int], modulus: int, windows: Sequence[int],
                    bits: Sequence[int]) -> list[mpz]:
    """``factor * prod_j bases[j]^e_j mod modulus`` for each item ``(factor, e_0, e_1, ...)`` (factor 1: ``None``)."""
    m = mpz(modulus)
    tables = [fixed_base(mpz(b), m, w).ensure(nb) for b, w, nb in zip(bases, windows, bits)]
    out = []
    for factor, *exps in items:
        acc = ONE if factor is None else mpz(factor)
        for table, e in zip(tables, exps):
            if e:
                acc = acc * table.power(e) % m
        out.append(acc)
    return out


def fixed_products(
    bases: Sequence[mpz], exponents: Sequence[Sequence[int]], modulus: mpz, *, window: int | Sequence[int] = 8,
    factors: Sequence[mpz] | None = None,
) -> list[mpz]:
    """``[factors[i] * prod_j bases[j]^exponents[j][i] mod modulus]`` from comb tables, over all cores.

    Exponents must be non-negative; ``window`` is the comb width, one for all bases or one per base.
    Each process builds (once) its own tables for the bases.
    """
    windows = [window] * len(bases) if isinstance(window, int) else list(window)
    count = len(exponents[0]) if exponents else len(factors or ())
    bits = [max((int(e).bit_length() for e in column), default=1) or 1 for column in exponents]
    facts = [None] * count if factors is None else list(factors)
    items = list(zip(facts, *exponents))
    work = count * sum(-(-b // w) for b, w in zip(bits, windows))
    return [mpz(v) for v in split_map("fixed_products", items, [int(b) for b in bases], int(modulus), windows, bits, work=work)]


# --- products of powers ---------------------------------------------------------------------------


def multi_exp(terms: Sequence[tuple[mpz, int]], modulus: mpz) -> mpz:
    """``prod b^e mod modulus`` for non-negative exponents, by Pippenger's bucket method.

    Per ``w``-bit window: one multiplication per term plus ``2^(w+1)`` to combine the buckets,
    instead of a full exponentiation per term (about 5x fewer multiplications for 20-bit
    exponents and long rows). Short rows fall back to one ``powmod`` per term.
    """
    if len(terms) < 16:  # too short for buckets to pay off
        acc = ONE
        for base, e in terms:
            acc = acc * (base if e == 1 else powmod(base, e, modulus)) % modulus
        return acc
    top = max(e for _, e in terms).bit_length()
    width = max(1, min(top, len(terms).bit_length() - 3, 10))
    digit_mask = (1 << width) - 1
    result = ONE
    for shift in range(((top - 1) // width) * width, -1, -width):
        if result != 1:
            result = powmod(result, 1 << width, modulus)
        buckets: list[mpz | None] = [None] * (digit_mask + 1)
        for base, e in terms:
            d = (e >> shift) & digit_mask
            if d:
                held = buckets[d]
                buckets[d] = base if held is None else held * base % modulus
        running, total = ONE, ONE
        for held in reversed(buckets[1:]):
            if held is not None:
                running = running * held % modulus
            if running != 1:
                total = total * running % modulus
        result = result * total % modulus
    return result


class ColumnPowers:
    """``columns[i] ^ e`` for the exponents of a sparse product, sharing work within a column.

    A column used by at least ``_TABLE_MIN_USES`` non-zeros gets a fixed-base table (window ``w``
    chosen per column to minimise ``uses * ceil(bits/w) + ceil(bits/w) * 2^w`` multiplications:
    ``ceil(bits / w)`` per use instead of a ``bits``-bit exponentiation); the other terms of a row
    go through :func:`multi_exp` (16 or more) or one ``powmod`` each.
    """

    _TABLE_MIN_USES = 8
    _LONG_ROW = 16

    def __init__(self, columns: Sequence[mpz], indices: np.ndarray, data: Sequence[int], modulus: mpz) -> None:
        self.columns, self.modulus = columns, modulus
        top = max((abs(int(e)) for e in data), default=0).bit_length()
        uses = np.bincount(np.asarray(indices, dtype=np.int64), minlength=len(columns)) if len(columns) else np.zeros(0)
        tabled = np.flatnonzero(uses >= self._TABLE_MIN_USES).tolist() if top > 2 else []
        self.tables = {col: FixedBase(columns[col], modulus, self._window(int(uses[col]), top)).ensure(top) for col in tabled}

    @staticmethod
    def _window(uses: int, bits: int) -> int:
        return min(range(2, 9), key=lambda w: -(-bits // w) * (uses + (1 << w)))

    def power(self, col: int, e: int) -> mpz:
        if e == 1:
            return self.columns[col]
        table = self.tables.get(col)
        return powmod(self.columns[col], e, self.modulus) if table is None else table.power(e)

    def product(self, terms: list[tuple[int, int]]) -> mpz:
        """``prod columns[col] ^ e`` over ``(col, e)`` with positive ``e``."""
        m = self.modulus
        rest = [(self.columns[col], e) for col, e in terms if col not in self.tables]
        acc = multi_exp(rest, m) if len(rest) >= self._LONG_ROW else ONE
        for col, e in terms:
            if col in self.tables or len(rest) < self._LONG_ROW:
                acc = acc * self.power(col, e) % m
        return acc


def _combine(columns: Sequence[mpz], rows: Sequence[Sequence[tuple[int, int]]], modulus: int) -> list[mpz]:
    """``out[j] = prod columns[col]^e`` over ``(col, e)`` in ``rows[j]`` (negative ``e``: one inversion)."""
    m = mpz(modulus)
    data = [e for row in rows for _, e in row]
    if all(e == 1 for e in data):  # 0/1 data (one-hot buckets, indicator features): one multiplication per term
        out = []
        for row in rows:
            acc = ONE
            for col, _ in row:
                acc = acc * columns[col] % m
            out.append(acc)
        return out
    indices = np.array([col for row in rows for col, _ in row], dtype=np.int64)
    powers = ColumnPowers(columns, indices, data, m)
    out = []
    for row in rows:
        acc = powers.product([(col, e) for col, e in row if e > 0])
        neg = [(col, -e) for col, e in row if e < 0]
        if neg:
            acc = acc * gmpy2.invert(powers.product(neg), m) % m
        out.append(acc)
    return out


def _combine_task(jobs: Sequence[tuple[Sequence[mpz], Sequence[Sequence[tuple[int, int]]]]], modulus: int) -> list[list[mpz]]:
    return [_combine(columns, rows, modulus) for columns, rows in jobs]


def combine(jobs: Sequence[tuple[Sequence[mpz], Sequence[Sequence[tuple[int, int]]]]], modulus: mpz) -> list[list[mpz]]:
    """:func:`_combine` for each ``(columns, rows)`` job; jobs with many terms spread over all cores.

    Rows of a single large job are split across processes (each receives only the columns it uses).
    """
    binary = all(e == 1 for _, rows in jobs for row in rows for _, e in row)
    work = (1 if binary else 16) * sum(len(row) for _, rows in jobs for row in rows)  # 0/1 data: one product per term
    if processes() == 1 or work < PROCESS_MIN_WORK:
        return _combine_task(jobs, int(modulus))
    if len(jobs) >= processes():
        return [[mpz(v) for v in part] for part in split_map("combine", list(jobs), int(modulus), work=work, min_items=2)]
    pieces, owners = [], []
    for j, (columns, rows) in enumerate(jobs):
        size = -(-len(rows) // processes())
        for start in range(0, len(rows), size):
            part = rows[start : start + size]
            used = sorted({col for row in part for col, _ in row})
            where = {col: k for k, col in enumerate(used)}
            pieces.append(([columns[col] for col in used], [[(where[col], e) for col, e in row] for row in part]))
            owners.append(j)
    done = [[mpz(v) for v in part] for part in split_map("combine", pieces, int(modulus), work=work, min_items=2)]
    out: list[list[mpz]] = [[] for _ in jobs]
    for j, part in zip(owners, done):
        out[j] += part
    return out


TASKS = {"powmod_pairs": _powmod_pairs, "fixed_products": _fixed_products, "combine": _combine_task}
