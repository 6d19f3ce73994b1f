"""``Session``: the compute parties' shared context for :class:`~mpcml.tensor.SharedTensor`.

A :class:`Session` binds one party to the group of compute parties (``players``), a
secret-sharing engine (:mod:`mpcml.engine`: ``"beaver"`` with a :class:`~mpcml.triples.TripleSource`,
or ``"rss3"``) and a fixed-point precision; :func:`make_session` builds either. It inputs values
(from a player, or from a party outside the players through :func:`send_input`), makes public
and zero tensors, opens to each party, and prefetches the dealer's randomness for repeated steps
(:class:`Prefetched`). The arithmetic on the shares is :class:`~mpcml.tensor.SharedTensor`'s.
"""


from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from . import fixedpoint
from .beaver import BeaverEngine
from .csprng import SEED_BYTES, Csprng, new_seed
from .engine import ENGINES, Engine, check_players, check_trunc_bits
from .party import Party
from .rss3 import RSS3Engine
from .schema import Array, Bytes, Int, ListOf, Tuple
from .triples import DealerTriples, TripleSource
from .tensor import SharedTensor, _ring, _shared


_SEED_SHARE = Tuple(Bytes(SEED_BYTES), ListOf(Int(low=0)))
_ARRAY_SHARE = Array(np.uint64)


def _make_engine(party: Party, players: tuple[str, ...], triples: TripleSource | None, engine: str | None) -> Engine:
    if engine is None or engine == "beaver":
        if triples is None:
            raise TypeError("the beaver engine needs a TripleSource (e.g. DealerTriples) as triples")
        return BeaverEngine(party, players, triples)
    if engine == "rss3":
        if triples is not None:
            raise ValueError("the rss3 engine makes its own randomness; pass no triple source")
        return RSS3Engine(party, players)
    raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")


class Session:
    """The compute parties' shared context: who the players are, the engine, the precision.

    ``Session(party, players, triples, frac_bits)`` uses the ``"beaver"`` engine with that
    :class:`~mpcml.triples.TripleSource`; ``Session(party, players, engine="rss3")`` the
    replicated three-party engine (its constructor runs a one-round key exchange).
    """

    def __init__(
        self,
        party: Party,
        players: Sequence[str],
        triples: TripleSource | None = None,
        frac_bits: int = fixedpoint.DEFAULT_FRAC_BITS,
        *,
        engine: str | None = None,
    ) -> None:
        players = check_players(party, players)
        self.frac_bits = fixedpoint.check_frac_bits(frac_bits)
        self.engine = _make_engine(party, players, triples, engine)
        self.party = party
        self.players = players
        self.index = players.index(party.id)
        self.is_leader = self.index == 0
        self.others = tuple(p for p in players if p != party.id)

    @property
    def triples(self) -> TripleSource:
        """The triple source of a ``"beaver"`` session."""
        if not isinstance(self.engine, BeaverEngine):
            raise AttributeError(f"a {self.engine.name!r} session has no triple source")
        return self.engine.triples

    def _wrap(self, share: np.ndarray) -> "SharedTensor":
        return SharedTensor(self, share)

    # --- moving values in and out ---------------------------------------------------------

    def input(self, value: ArrayLike | None, owner: str, *, name: str = "value") -> "SharedTensor":
        """Secret-share ``value`` held by player ``owner`` (others pass ``None``).

        The owner encodes (raising on NaN/inf/overflow before anything is sent). ``"beaver"``:
        32-byte PRG seeds to the other players; ``"rss3"``: one message of the value's size.
        """
        self.engine.check_owner(owner)
        encoded = fixedpoint.encode(value, self.frac_bits, name=name) if self.party.id == owner else None
        return self._wrap(self.engine.input(encoded, owner))

    def input_ring(self, encoded: np.ndarray | None, owner: str) -> np.ndarray:
        """Share an already encoded uint64 array (e.g. integers) held by ``owner``; returns the raw share."""
        return self.engine.input(encoded, owner)

    def input_external(self, owner: str, *, name: str = "value") -> "SharedTensor":
        """Shares of an array input by ``owner``, a party that is not a player (it runs :func:`send_input`).

        The players receive additive terms (a seed, or the last player an array) and the engine
        turns them into its sharing (:meth:`from_additive`).
        """
        if owner in self.players:
            raise ValueError(f"owner {owner!r} is a player: use Session.input")
        self.party.check_peer(owner, "input owner")
        if self.index < len(self.players) - 1:
            seed, shape = self.party.recv(owner, expect=_SEED_SHARE, what=f"share seed of {name}")
            term = Csprng(seed).random_uint64(tuple(shape))
        else:
            term = self.party.recv(owner, expect=_ARRAY_SHARE, what=f"share of {name}")
        return self.from_additive(term)

    def from_additive(self, mine: np.ndarray) -> "SharedTensor":
        """Shares of the sum of every player's private uint64 array ``mine`` (equal shapes at all players).

        ``"beaver"``: no message (the arrays are additive shares); ``"rss3"``: one re-sharing round.
        Serves outside inputs and sums of private contributions (e.g. one indicator per player).
        """
        return self._wrap(self.engine.from_additive(np.asarray(mine, dtype=np.uint64)))

    def public(self, value: ArrayLike) -> "SharedTensor":
        """A public value as a (trivially) shared fixed-point tensor."""
        return self._wrap(self.engine.public(fixedpoint.encode(value, self.frac_bits)))

    def public_ring(self, values: ArrayLike) -> "SharedTensor":
        """Public ring integers (e.g. an all-ones selection) as a trivially shared tensor."""
        return self._wrap(self.engine.public(_ring(values)))

    def zeros(self, shape: int | tuple[int, ...]) -> "SharedTensor":
        return self._wrap(self.engine.zeros((shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)))

    def open(self, shares: Sequence[np.ndarray], *, binary: bool = False) -> list[np.ndarray]:
        """Reconstruct several raw shares at every player in one round."""
        return self.engine.open([self.engine.check_share(s) for s in shares], binary)

    def open_to(self, share: np.ndarray, to: str) -> np.ndarray | None:
        """Reconstruct a raw share at player ``to`` only."""
        return self.engine.open_to(self.engine.check_share(share), to)

    def open_to_each(self, parts: Mapping[str, "SharedTensor"]) -> np.ndarray:
        """Open ``parts[p]`` to player ``p``, for every player at once (one round); returns this
        player's ring values. E.g. each player's columns of a shared one-hot."""
        if set(parts) != set(self.players):
            raise ValueError(f"parts must name every player {list(self.players)}, got {sorted(parts)}")
        return self.engine.open_to_each({pid: _shared(t, f"parts[{pid!r}]", self).share for pid, t in parts.items()})

    def truncate(self, share: np.ndarray, bits: int | None = None, pair: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Raw shares of ``x >> bits`` (default ``frac_bits``; arithmetic shift, up to one unit).

        ``pair`` (``"beaver"`` only) supplies the truncation pair of a triple drawn with it.
        """
        bits = check_trunc_bits(self.frac_bits if bits is None else bits)
        share = self.engine.check_share(share)
        if pair is not None:
            if not isinstance(self.engine, BeaverEngine):
                raise ValueError("a truncation pair applies to the beaver engine only")
            return self.engine.truncate(share, bits, pair)
        return self.engine.truncate(share, bits)

    def mul_shares(self, x: np.ndarray, y: np.ndarray, trunc_bits: int | None = None) -> np.ndarray:
        """Raw shares of ``x * y`` (elementwise, broadcast), truncated by ``trunc_bits``.

        ``trunc_bits=None`` means ``frac_bits`` (a product of two fixed-point values); 0 keeps the
        exact ring product (e.g. a fixed-point value times a shared integer bit).
        """
        return self._wrap(x).mul(self._wrap(y), trunc_bits).share

    def prefetched(self, steps: Iterable[tuple]) -> "Prefetched":
        """``steps`` (tuples starting ``(key, rows)``) to run one by one, with the dealer's randomness for
        each step requested in one message one step ahead: see :class:`Prefetched`."""
        return Prefetched(self, steps)

    def close(self) -> None:
        self.engine.close()


class Prefetched:
    """Repeated steps (e.g. training iterations) whose correlated randomness the dealer sends ahead.

    Iterating yields the given steps (tuples starting ``(key, rows)``) for the caller to run. The
    first step of each ``key`` runs as is while its requests to the dealer are recorded; a later
    step with that ``key`` is prefetched (the recording, with a masked matrix's row selection
    replaced by the step's ``rows``) in one message while the step before it runs, so it costs no
    round trip to the dealer. A step that draws anything else than its key's recording raises
    ``RuntimeError``. Call :meth:`close` after the last step run (a step prefetched but not run,
    e.g. after early stopping, is then drawn and discarded). Only the ``"beaver"`` engine with a
    dealer (:class:`~mpcml.triples.DealerTriples`) has anything to prefetch; on other engines the
    steps are simply yielded. Every player must run the same steps.
    """

    def __init__(self, session: "Session", steps: Iterable[tuple]) -> None:
        self._source = session.engine.triples if isinstance(session.engine, BeaverEngine) else None
        self._steps = steps

    def __iter__(self) -> Iterator[tuple]:
        source, patterns = self._source, {}
        items = iter(self._steps)
        current, queued = next(items, None), False
        while current is not None:
            following = next(items, None)
            key, rows = current[0], current[1]
            if source is None:
                yield current
            elif key in patterns:
                if not queued:
                    source.prefetch(_bind_rows(patterns[key], rows))
                queued = following is not None and following[0] in patterns
                if queued:
                    source.prefetch(_bind_rows(patterns[following[0]], following[1]))
                yield current
            else:
                with source.recording() as drawn:
                    yield current
                if drawn is not None:
                    patterns[key] = [_unbind_rows(request, rows) for request in drawn]
                queued = False
            current = following

    def close(self) -> None:
        """Draw and discard what was prefetched for a step that did not run (keeps every party's
        streams in step with the dealer's)."""
        if self._source is not None:
            self._source.discard()


_ROWS = "<rows>"


def _unbind_rows(request: tuple[str, tuple], rows: np.ndarray | None) -> tuple:
    """A recorded request as a template: a masked-matrix product's row selection equal to ``rows`` marked."""
    kind, args = request
    if kind == "matmul_fixed" and rows is not None and args[2] is not None and np.array_equal(args[2], rows):
        args = (*args[:2], _ROWS, *args[3:])
    return (kind, *args)


def _bind_rows(pattern: list[tuple], rows: np.ndarray | None) -> list[tuple]:
    return [tuple(rows if a is _ROWS else a for a in request) for request in pattern]


def make_session(
    party: Party,
    players: Sequence[str],
    engine: str = "beaver",
    *,
    dealer: str = "dealer",
    triples: TripleSource | None = None,
    frac_bits: int = fixedpoint.DEFAULT_FRAC_BITS,
) -> Session:
    """A session on ``engine``: ``"beaver"`` with ``triples`` (default: from ``dealer``, which runs
    :func:`mpcml.triples.run_dealer`), or ``"rss3"`` (three players, no dealer, no ``triples``)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    players = check_players(party, players)
    fixedpoint.check_frac_bits(frac_bits)
    if engine == "beaver":
        return Session(party, players, triples or DealerTriples(party, players, dealer=dealer), frac_bits)
    if triples is not None:
        raise ValueError(f"the {engine} engine makes its own randomness; pass no triple source")
    return Session(party, players, frac_bits=frac_bits, engine=engine)


def send_input(party: Party, players: Sequence[str], encoded: np.ndarray) -> None:
    """Role of a party outside the players that inputs ``encoded`` (uint64): it splits it into
    additive terms, sending a 32-byte PRG seed to each player but the last and the rest to the
    last; the players call :meth:`Session.input_external`. Same on both engines."""
    rest = np.asarray(encoded, dtype=np.uint64).copy()
    for pid in players[:-1]:
        seed = new_seed()
        party.send(pid, [seed, list(rest.shape)])
        rest -= Csprng(seed).random_uint64(rest.shape)
    party.send(players[-1], rest)


def receive_revealed(party: Party, players: Sequence[str], frac_bits: int | None = None) -> np.ndarray:
    """Role of a party outside the players receiving a value the players send with
    :meth:`SharedTensor.reveal_outside`: the sum of their terms, decoded unless ``frac_bits`` is None."""
    terms = party.gather(players, expect=_ARRAY_SHARE, what="output term")
    total = None
    for pid in players:
        term = terms[pid]
        if total is not None and term.shape != total.shape:
            raise ValueError(f"compute party {pid!r} sent an output term of shape {term.shape}, expected {total.shape}")
        total = term.copy() if total is None else total + term
    return total if frac_bits is None else fixedpoint.decode(total, frac_bits)
