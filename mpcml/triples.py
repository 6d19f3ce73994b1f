"""Correlated randomness for secret-shared arithmetic: Beaver triples and friends.

:class:`TripleSource` is the pluggable interface :class:`mpcml.session.Session` draws from
(in the spirit of CrypTen's triple providers). Every method returns *this party's* shares.

:class:`DealerTriples` is the default: a non-colluding helper party (the "dealer", the server
of the server-aided model in Chen et al., "Secret sharing based secure regressions with
applications", 2020) generates the randomness. At start-up the dealer sends each compute
party a 32-byte PRG seed; every share a party can draw from its seed it draws locally, so only
the *last* compute party talks to the dealer afterwards: it sends the (public) shape of each
request and receives its shares of the derived values (``c = a * b`` and so on). The dealer
never receives anything derived from the data: it learns only the shapes and the order of the
operations. Security needs the dealer not to collude with any compute party: a dealer plus a
party together learn every other party's inputs.

Dealer traffic per request: the request (kind and shapes, tens of bytes) and one codec list of
the last party's shares of the derived arrays (for a matmul: ``c``, ``msb(r)`` and the shifted
``r``; for a comparison: ``msb(r)``, the tables and the mask products of
:mod:`mpcml.comparison`, 39 words per element): 8 bytes per element plus 3 + 8·ndim bytes of
header per array and 9 per list.

**Requests in bulk.** Each request is a round trip between the last party and the dealer. The
players can instead *prefetch* a known sequence of requests (:meth:`DealerTriples.prefetch`,
the same call at every player): the last party sends them in one message and the dealer answers
with one message, which the last party reads when the first of them is drawn; every draw then
checks it is the next prefetched request. Sent one step ahead (e.g. the next training
iteration's requests, recorded once with :meth:`DealerTriples.recording`:
:class:`mpcml.session.Prefetched`), the reply is there before it is needed and the dealer costs
no round. The dealer still learns only the shapes and the order of operations.

A dealer-free source (e.g. Paillier-based, for two parties) implements the same methods (without
:meth:`TripleSource.table`, so the beaver engine compares with a carry circuit instead).
"""

from __future__ import annotations

import abc
import collections
import contextlib
import functools
import itertools
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import comparison
from .csprng import SEED_BYTES, Csprng, new_seed
from .party import Party
from .ring import ring_matmul
from .schema import Array, Bytes, ListOf
from .sharing import reconstruct

Shape = tuple[int, ...]
Request = tuple[str, tuple]
"""A normalised request: ``(kind, args)``."""
_LOW63 = np.uint64((1 << 63) - 1)
_REPLY = ListOf(Array(np.uint64))
_BATCH_REPLY = ListOf(_REPLY)


def _shape(shape: Any) -> Shape:
    dims = tuple(int(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    if any(d < 0 for d in dims):
        raise ValueError(f"negative dimension in shape {dims}")
    return dims


def matmul_shape(shape_a: Shape, shape_b: Shape) -> Shape:
    """Result shape of ``a @ b`` for 1-D or 2-D operands."""
    if len(shape_a) == 0 or len(shape_b) == 0:
        raise ValueError("matmul operands must have at least one dimension")
    inner_b = shape_b[0] if len(shape_b) == 1 else shape_b[-2]
    if shape_a[-1] != inner_b:
        raise ValueError(f"matmul shape mismatch: {shape_a} @ {shape_b}")
    return tuple(shape_a[:-1]) + (tuple(shape_b[-1:]) if len(shape_b) > 1 else ())


class TripleSource(abc.ABC):
    """Correlated randomness for the compute parties ``players``; all methods return this party's shares."""

    players: tuple[str, ...]
    deals_tables = False
    """Whether :meth:`table` is available (the dealt comparison of :mod:`mpcml.comparison`)."""

    @abc.abstractmethod
    def mul(self, shape: Shape, trunc_bits: int = 0) -> tuple[np.ndarray, ...]:
        """Elementwise triple ``(a, b, c = a*b)``, followed by a truncation pair if ``trunc_bits``."""

    @abc.abstractmethod
    def matmul(self, shape_a: Shape, shape_b: Shape, trunc_bits: int = 0) -> tuple[np.ndarray, ...]:
        """Matrix triple ``(a, b, c = a@b)``, followed by a truncation pair if ``trunc_bits``."""

    @abc.abstractmethod
    def trunc(self, shape: Shape, trunc_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Truncation pair: ``r``, ``msb(r)`` and ``(r mod 2^63) >> trunc_bits``, all arithmetic."""

    @abc.abstractmethod
    def binary_and(self, shape: Shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """XOR-shared word triple ``(a, b, c = a & b)``."""

    @abc.abstractmethod
    def random_bit(self, shape: Shape) -> tuple[np.ndarray, np.ndarray]:
        """A random bit, shared arithmetically and by XOR."""

    @abc.abstractmethod
    def edabit(self, shape: Shape) -> tuple[np.ndarray, np.ndarray]:
        """A random ring element ``r``, shared arithmetically and (its bits) by XOR."""

    @abc.abstractmethod
    def mask(self, shape: Shape) -> tuple[int, np.ndarray]:
        """A random arithmetic mask ``A`` kept for reuse; returns ``(handle, share of A)``."""

    @abc.abstractmethod
    def matmul_fixed(
        self, handle: int, shape_b: Shape, rows: np.ndarray | None = None, transpose: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Triple ``(A', b, c = A' @ b)`` with ``A' = A[rows]`` (then ``.T`` if ``transpose``) for a stored mask.

        This is the SecureML trick: ``X - A`` is opened once and reused for every product with X.
        """

    @abc.abstractmethod
    def release(self, handle: int) -> None:
        """Forget the stored mask ``handle`` (its products are no longer needed)."""

    def comparison(self, shape: Shape, and_words: int) -> tuple[np.ndarray, ...]:
        """Everything one secure comparison needs, in one request.

        Returns ``(r, r_bits, a, b, c, bit_arith, bit_xor)``: an :meth:`edabit` of ``shape``, a
        :meth:`binary_and` triple of shape ``(and_words, *shape)`` and a :meth:`random_bit` of
        ``shape``. The default draws them separately; a source may batch them.
        """
        return (*self.edabit(shape), *self.binary_and((int(and_words), *_shape(shape))), *self.random_bit(shape))

    def table(self, shape: Shape) -> tuple[np.ndarray, ...]:
        """The dealt comparison's randomness (:mod:`mpcml.comparison`), where :attr:`deals_tables`.

        Returns ``(r, masks, r_63, tables, products)``: ``r`` arithmetic, the rest XOR shares.
        """
        raise NotImplementedError(f"{type(self).__name__} deals no comparison tables")

    def prefetch(self, requests: Sequence[tuple]) -> None:
        """Announce the next draws (``(kind, *args)`` tuples as :meth:`DealerTriples.prefetch`); the
        default draws each on demand and ignores the announcement."""

    @property
    def prefetched(self) -> int:
        """Requests announced and not yet drawn (0 where the source does not prefetch)."""
        return 0

    def discard(self) -> None:
        """Draw and drop every announced request not drawn yet (the default has none)."""

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[Request] | None]:
        """Record the draws made inside the block (``None`` where the source cannot prefetch)."""
        yield None

    def close(self) -> None:
        """Release resources (the dealer session); the default does nothing."""


class NoTriples(TripleSource):
    """The triple source of a beaver session that only inputs, adds and reveals (e.g. a secure sum):
    no dealer, no messages; a product, truncation or comparison raises ``RuntimeError`` naming it."""

    def __init__(self, players: Sequence[str]) -> None:
        self.players = tuple(players)

    def _refuse(self, kind: str) -> Any:
        raise RuntimeError(f"this session has no source of correlated randomness: it cannot serve a {kind} "
                           "(use DealerTriples or another TripleSource for products and comparisons)")

    def mul(self, shape: Shape, trunc_bits: int = 0) -> tuple[np.ndarray, ...]:
        return self._refuse("multiplication triple")

    def matmul(self, shape_a: Shape, shape_b: Shape, trunc_bits: int = 0) -> tuple[np.ndarray, ...]:
        return self._refuse("matrix triple")

    def trunc(self, shape: Shape, trunc_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._refuse("truncation pair")

    def binary_and(self, shape: Shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._refuse("binary AND triple")

    def random_bit(self, shape: Shape) -> tuple[np.ndarray, np.ndarray]:
        return self._refuse("random bit")

    def edabit(self, shape: Shape) -> tuple[np.ndarray, np.ndarray]:
        return self._refuse("edaBit")

    def mask(self, shape: Shape) -> tuple[int, np.ndarray]:
        return self._refuse("reusable mask")

    def matmul_fixed(
        self, handle: int, shape_b: Shape, rows: np.ndarray | None = None, transpose: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._refuse("masked-matrix triple")

    def release(self, handle: int) -> None:
        self._refuse("masked-matrix release")


# --- correlation recipes, run identically by the dealer and by each party ------------------


class _Builder(abc.ABC):
    @abc.abstractmethod
    def random(self, shape: Shape, binary: bool = False) -> np.ndarray: ...

    @abc.abstractmethod
    def derived(self, shape: Shape, compute: Callable[[], np.ndarray], binary: bool = False) -> np.ndarray: ...

    @abc.abstractmethod
    def private(self, compute: Callable[[Csprng], np.ndarray]) -> np.ndarray | None: ...


def _with_trunc(g: _Builder, shape: Shape, trunc_bits: int) -> tuple[np.ndarray, ...]:
    return _trunc(g, {}, shape, trunc_bits) if trunc_bits else ()


def _mul(g: _Builder, store: dict, shape: Shape, trunc_bits: int) -> tuple[np.ndarray, ...]:
    a, b = g.random(shape), g.random(shape)
    return (a, b, g.derived(shape, lambda: a * b), *_with_trunc(g, shape, trunc_bits))


def _matmul(g: _Builder, store: dict, shape_a: Shape, shape_b: Shape, trunc_bits: int) -> tuple[np.ndarray, ...]:
    a, b = g.random(shape_a), g.random(shape_b)
    out = matmul_shape(shape_a, shape_b)
    return (a, b, g.derived(out, lambda: ring_matmul(a, b)), *_with_trunc(g, out, trunc_bits))


def _trunc(g: _Builder, store: dict, shape: Shape, trunc_bits: int) -> tuple[np.ndarray, ...]:
    r = g.random(shape)
    msb = g.derived(shape, lambda: r >> np.uint64(63))
    low = g.derived(shape, lambda: (r & _LOW63) >> np.uint64(trunc_bits))
    return r, msb, low


def _binary_and(g: _Builder, store: dict, shape: Shape) -> tuple[np.ndarray, ...]:
    a, b = g.random(shape, binary=True), g.random(shape, binary=True)
    return a, b, g.derived(shape, lambda: a & b, binary=True)


def _random_bit(g: _Builder, store: dict, shape: Shape) -> tuple[np.ndarray, ...]:
    bits = g.private(lambda rng: rng.random_bits(shape))
    return g.derived(shape, lambda: bits), g.derived(shape, lambda: bits, binary=True)


def _edabit(g: _Builder, store: dict, shape: Shape) -> tuple[np.ndarray, ...]:
    r = g.random(shape)
    return r, g.derived(shape, lambda: r, binary=True)


def _table(g: _Builder, store: dict, shape: Shape) -> tuple[np.ndarray, ...]:
    r, masks = g.random(shape), g.random(shape, binary=True)
    dealt = functools.cache(lambda: comparison.deal(r, masks))  # computed at the dealer only
    r63 = g.derived(shape, lambda: dealt()[0], binary=True)
    tables = g.derived((*shape, comparison.CHUNKS, comparison.TABLE_WORDS), lambda: dealt()[1], binary=True)
    products = g.derived((*shape, comparison.PRODUCT_WORDS), lambda: dealt()[2], binary=True)
    return r, masks, r63, tables, products


def _mask(g: _Builder, store: dict, handle: int, shape: Shape) -> tuple[np.ndarray, ...]:
    store[handle] = g.random(shape)
    return (store[handle],)


def _matmul_fixed(
    g: _Builder, store: dict, handle: int, shape_b: Shape, rows: np.ndarray | None, transpose: bool
) -> tuple[np.ndarray, ...]:
    if handle not in store:
        raise ValueError(f"unknown mask handle {handle}")
    a = store[handle] if rows is None else store[handle][rows]
    if transpose:
        a = a.T
    b = g.random(shape_b)
    return a, b, g.derived(matmul_shape(a.shape, shape_b), lambda: ring_matmul(a, b))


def _release(g: _Builder, store: dict, handle: int) -> tuple[np.ndarray, ...]:
    store.pop(handle, None)
    return ()


_RECIPES: dict[str, Callable[..., tuple[np.ndarray, ...]]] = {
    "mul": _mul,
    "matmul": _matmul,
    "trunc": _trunc,
    "and": _binary_and,
    "bit": _random_bit,
    "edabit": _edabit,
    "table": _table,
    "mask": _mask,
    "matmul_fixed": _matmul_fixed,
    "release": _release,
}


class _PartyBuilder(_Builder):
    def __init__(self, prg: Csprng, from_dealer: list[np.ndarray] | None) -> None:
        self._prg = prg
        self._from_dealer = iter(from_dealer) if from_dealer is not None else None

    def random(self, shape: Shape, binary: bool = False) -> np.ndarray:
        return self._prg.random_uint64(shape)

    def derived(self, shape: Shape, compute: Callable[[], np.ndarray], binary: bool = False) -> np.ndarray:
        if self._from_dealer is None:
            return self._prg.random_uint64(shape)
        share = np.asarray(next(self._from_dealer), dtype=np.uint64)
        if share.shape != tuple(shape):
            raise ValueError(f"dealer sent a share of shape {share.shape}, expected {tuple(shape)}")
        return share

    def private(self, compute: Callable[[Csprng], np.ndarray]) -> None:
        return None


class _DealerBuilder(_Builder):
    def __init__(self, prgs: list[Csprng], rng: Csprng) -> None:
        self._prgs = prgs
        self._rng = rng
        self.for_last: list[np.ndarray] = []

    def random(self, shape: Shape, binary: bool = False) -> np.ndarray:
        shares = [prg.random_uint64(shape) for prg in self._prgs]
        return reconstruct(shares, binary=binary)

    def derived(self, shape: Shape, compute: Callable[[], np.ndarray], binary: bool = False) -> np.ndarray:
        value = np.asarray(compute(), dtype=np.uint64)
        others = [prg.random_uint64(shape) for prg in self._prgs[:-1]]
        rest = reconstruct(others, binary=binary)  # players >= 2, so others is never empty
        self.for_last.append(value ^ rest if binary else value - rest)
        return value

    def private(self, compute: Callable[[Csprng], np.ndarray]) -> np.ndarray:
        return compute(self._rng)


def _request_args(kind: str, args: tuple) -> tuple:
    """Normalise request arguments so party and dealer run the recipe on identical values."""
    if kind in ("mul", "trunc", "and", "bit", "edabit", "table"):
        return (_shape(args[0]), *[int(a) for a in args[1:]])
    if kind == "matmul":
        return (_shape(args[0]), _shape(args[1]), int(args[2]))
    if kind == "mask":
        return (int(args[0]), _shape(args[1]))
    if kind == "matmul_fixed":
        rows = None if args[2] is None else np.asarray(args[2], dtype=np.int64)
        return (int(args[0]), _shape(args[1]), rows, bool(args[3]))
    if kind == "release":
        return (int(args[0]),)
    raise ValueError(f"unknown correlated-randomness request {kind!r}")


def _same_request(a: Request, b: Request) -> bool:
    """Whether two normalised requests are equal (row arrays compared by value)."""
    if a[0] != b[0] or len(a[1]) != len(b[1]):
        return False
    for x, y in zip(a[1], b[1]):
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and np.array_equal(x, y)):
                return False
        elif x != y:
            return False
    return True


def _wire(request: Request) -> list:
    return [request[0], list(request[1])]


class DealerTriples(TripleSource):
    """Compute-party side of the dealer (server-aided) triple source.

    Construct it at every compute party with the same ``players`` order while the dealer runs
    :func:`run_dealer` with the same order. :meth:`prefetch` announces the next draws in bulk
    (the same call at every player); :meth:`recording` lists the draws of a block of code.
    """

    deals_tables = True

    def __init__(self, party: Party, players: Sequence[str], dealer: str) -> None:
        self.players = tuple(players)
        if party.id not in self.players:
            raise ValueError(f"party {party.id!r} is not among the players {list(self.players)}")
        if dealer in self.players:
            raise ValueError(f"the dealer {dealer!r} cannot also be a compute party")
        party.check_peer(dealer, "dealer")
        self._party = party
        self._dealer = dealer
        self._is_last = party.id == self.players[-1]
        self._prg = Csprng(party.recv(dealer, expect=Bytes(SEED_BYTES), what="dealer seed"))
        self._store: dict[int, np.ndarray] = {}
        self._handles = itertools.count()
        self._closed = False
        self._queue: collections.deque[Request] = collections.deque()  # prefetched, not yet drawn
        self._batches: collections.deque[int] = collections.deque()  # sizes of the replies not yet read
        self._replies: collections.deque[list] = collections.deque()  # read, not yet drawn
        self._recordings: list[list[Request]] = []

    def _receive_batch(self) -> None:
        size = self._batches.popleft()
        batch = self._party.recv(self._dealer, expect=_BATCH_REPLY, what="prefetched correlated randomness")
        if len(batch) != size:
            raise ValueError(f"the dealer answered {len(batch)} prefetched requests, expected {size}")
        self._replies.extend(batch)

    def _reply(self) -> list:
        """The dealer's derived shares for the next prefetched request (the last player only)."""
        if not self._replies:
            self._receive_batch()
        return self._replies.popleft()

    def _draw(self, kind: str, *args: Any) -> tuple[np.ndarray, ...]:
        if self._closed:
            raise RuntimeError("the triple source is closed")
        request = (kind, _request_args(kind, args))
        for recording in self._recordings:
            recording.append(request)
        from_dealer = None
        if self._queue:
            expected = self._queue.popleft()
            if not _same_request(expected, request):
                raise RuntimeError(f"correlated randomness drawn out of the prefetched order: {kind!r} requested, "
                                   f"{expected[0]!r} prefetched (every player must prefetch and draw the same sequence)")
            if self._is_last:
                from_dealer = self._reply()
        elif self._is_last:
            self._party.send(self._dealer, _wire(request))
            from_dealer = self._party.recv(self._dealer, expect=_REPLY, what=f"shares of a {kind!r} request")
        return _RECIPES[kind](_PartyBuilder(self._prg, from_dealer), self._store, *request[1])

    def prefetch(self, requests: Sequence[tuple]) -> None:
        """Announce the next draws, ``(kind, *args)`` each with the arguments of the method that draws
        them (e.g. ``("mul", shape, trunc_bits)``; :meth:`recording` lists them in this form, normalised).

        The last player sends them to the dealer in one message (no wait); each later draw must be
        the next announced request, in order, or a ``RuntimeError`` names the mismatch.
        """
        if self._closed:
            raise RuntimeError("the triple source is closed")
        batch = [(kind, _request_args(kind, tuple(args))) for kind, *args in requests]
        if not batch:
            return
        self._queue.extend(batch)
        if self._is_last:
            # read the replies already requested first: they are due now, and a send, a receive and a
            # send again would cost this player a round of its own
            while self._batches:
                self._receive_batch()
            self._party.send(self._dealer, ["batch", [_wire(r) for r in batch]])
            self._batches.append(len(batch))

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[Request]]:
        """The draws made inside the block, as normalised ``(kind, args)`` requests."""
        drawn: list[Request] = []
        self._recordings.append(drawn)
        try:
            yield drawn
        finally:
            self._recordings.remove(drawn)

    @property
    def prefetched(self) -> int:
        """Requests announced and not yet drawn."""
        return len(self._queue)

    def discard(self) -> None:
        """Draw and drop every prefetched request not drawn yet, so the streams stay in step with the dealer's."""
        while self._queue:
            kind, args = self._queue[0]
            self._draw(kind, *args)

    def mul(self, shape: Shape, trunc_bits: int = 0) -> tuple[np.ndarray, ...]:
        return self._draw("mul", shape, trunc_bits)

    def matmul(self, shape_a: Shape, shape_b: Shape, trunc_bits: int = 0) -> tuple[np.ndarray, ...]:
        return self._draw("matmul", shape_a, shape_b, trunc_bits)

    def trunc(self, shape: Shape, trunc_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._draw("trunc", shape, trunc_bits)

    def binary_and(self, shape: Shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._draw("and", shape)

    def random_bit(self, shape: Shape) -> tuple[np.ndarray, np.ndarray]:
        return self._draw("bit", shape)

    def edabit(self, shape: Shape) -> tuple[np.ndarray, np.ndarray]:
        return self._draw("edabit", shape)

    def table(self, shape: Shape) -> tuple[np.ndarray, ...]:
        return self._draw("table", shape)

    def mask(self, shape: Shape) -> tuple[int, np.ndarray]:
        handle = next(self._handles)
        return handle, self._draw("mask", handle, shape)[0]

    def matmul_fixed(
        self, handle: int, shape_b: Shape, rows: np.ndarray | None = None, transpose: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._draw("matmul_fixed", handle, shape_b, rows, transpose)

    def release(self, handle: int) -> None:
        """Forget a stored mask at this party and at the dealer."""
        self._draw("release", handle)

    def close(self) -> None:
        """End the dealer session; replies to prefetched requests that were never drawn are read first."""
        if not self._closed and self._is_last:
            while self._batches:
                self._receive_batch()
            self._party.send(self._dealer, ["close", []])
        self._closed = True


def _serve(party: Party, last: str, request: Any, prgs: list[Csprng], store: dict) -> tuple[str, list]:
    """Run one request's recipe at the dealer; ``(kind, the last player's derived shares)``."""
    if not (isinstance(request, list) and len(request) == 2 and isinstance(request[0], str)
            and isinstance(request[1], list)):
        raise ValueError(f"malformed request from {last!r}")
    kind, args = request
    try:
        normalised = _request_args(kind, tuple(args))
    except (TypeError, IndexError, ValueError) as exc:
        raise ValueError(f"malformed {kind!r} request from {last!r}: {exc}") from None
    builder = _DealerBuilder(prgs, party.rng)
    _RECIPES[kind](builder, store, *normalised)
    return kind, builder.for_last


def run_dealer(party: Party, players: Sequence[str], *, idle_timeout: float | None = None) -> dict[str, int]:
    """The dealer's role: seed every compute party, then answer the last party until it closes.

    Answers single requests and prefetched batches (one reply holding each request's shares).
    Returns the number of requests served per kind. ``idle_timeout`` bounds the wait between
    requests (default: the party's timeout).
    """
    players = tuple(players)
    if len(players) < 2:
        raise ValueError(f"need at least two compute parties, got {list(players)}")
    for pid in players:
        party.check_peer(pid, "compute party")
    seeds = [new_seed() for _ in players]
    for pid, seed in zip(players, seeds):
        party.send(pid, seed)
    prgs = [Csprng(seed) for seed in seeds]
    store: dict[int, np.ndarray] = {}
    served: dict[str, int] = {}
    last = players[-1]
    while True:
        request = party.recv(last, timeout=idle_timeout)
        if isinstance(request, list) and len(request) == 2 and request[0] == "close":
            return served
        if isinstance(request, list) and len(request) == 2 and request[0] == "batch":
            if not isinstance(request[1], list):
                raise ValueError(f"malformed batch of requests from {last!r}")
            answers = [_serve(party, last, item, prgs, store) for item in request[1]]
            party.send(last, [shares for _, shares in answers])
        else:
            answers = [_serve(party, last, request, prgs, store)]
            party.send(last, answers[0][1])
        for kind, _ in answers:
            served[kind] = served.get(kind, 0) + 1
