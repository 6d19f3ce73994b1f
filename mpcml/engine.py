"""The engine interface: how a :class:`~mpcml.session.Session` represents and combines shares.

A :class:`~mpcml.tensor.SharedTensor` is engine-agnostic: it holds this party's *raw share* of a
secret array over Z_2^64 and asks its session's engine for every interactive step. Two engines
implement :class:`Engine`:

- ``"beaver"`` (:class:`mpcml.beaver.BeaverEngine`): additive shares among ``k >= 2`` players;
  products, truncation and comparisons use correlated randomness from a
  :class:`~mpcml.triples.TripleSource` (a dealer, or Paillier triples for two players). A raw
  share has the shape of the value.
- ``"rss3"`` (:class:`mpcml.rss3.RSS3Engine`): replicated secret sharing among exactly three
  players with an honest majority; no dealer. A raw share is ``(2, *shape)``: this party's two
  of the three additive components.

:attr:`Engine.lead` is the number of leading axes a raw share has before the value's axes (0
or 1), which is all :class:`~mpcml.tensor.SharedTensor` needs to know to index, reshape, sum,
concatenate and broadcast shares locally (every local operation is linear on each component).
Raw shares of integers (bits, indices) and of fixed-point values look the same: the engine
works in the ring, :class:`~mpcml.session.Session` and :mod:`mpcml.fixedpoint` give the meaning.
"""

from __future__ import annotations

import abc
import functools
from typing import Any, Callable, Mapping, Sequence, TypeVar, Union

import numpy as np

from .party import Party

Shape = tuple[int, ...]
Multiplicands = Union[Sequence[np.ndarray], Callable[[list[np.ndarray]], Sequence[np.ndarray]]]
"""What :meth:`Engine.ltz` multiplies its bits by: raw shares, or a function of the truncated raw shares."""
ENGINES = ("beaver", "rss3")
"""The engine names :class:`~mpcml.session.Session` and :func:`~mpcml.session.make_session` accept."""


_Method = TypeVar("_Method", bound=Callable[..., Any])


def ring_arithmetic(method: _Method) -> _Method:
    """Run ``method`` with numpy's integer overflow warnings off: uint64 arithmetic wraps mod 2^64
    by design, and numpy warns when it does so on scalars (the components of 0-d values)."""

    @functools.wraps(method)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(over="ignore"):
            return method(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def check_players(party: Party, players: Sequence[str]) -> tuple[str, ...]:
    """``players`` as a tuple, after checking it names distinct peers of ``party`` and ``party`` itself."""
    players = tuple(players)
    if len(players) < 2:
        raise ValueError(f"players must name at least two compute parties, got {list(players)}")
    if len(set(players)) != len(players):
        raise ValueError(f"players contains duplicates: {list(players)}")
    if party.id not in players:
        raise ValueError(f"party {party.id!r} is not among the players {list(players)}")
    for pid in players:
        if pid != party.id:
            party.check_peer(pid, "player")
    return players


def check_trunc_bits(bits: Any) -> int:
    """A truncation width in ``[0, 62]`` (the ring keeps two bits of headroom below the sign)."""
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, (int, np.integer)) or not 0 <= bits <= 62:
        raise ValueError(f"truncation bits must be an integer in [0, 62], got {bits!r}")
    return int(bits)


_TWO62 = np.uint64(1 << 62)
_LOW63 = np.uint64((1 << 63) - 1)


@ring_arithmetic
def truncation_secret(bits: int, r_msb: np.ndarray, r_low: np.ndarray, leader: bool, c_msb: int) -> np.ndarray:
    """The part of :func:`truncation_share` that does not depend on ``c`` beyond ``msb(c) = c_msb``:
    the share of ``carry 2^(63 - bits) - (r mod 2^63) >> bits``. Known before ``c`` is opened for
    each value of ``msb(c)``, which lets a later value that depends on the truncation be opened in
    the same round (once per value of the bit, with independent masks)."""
    carry = ((np.uint64(1) if leader else np.uint64(0)) - r_msb) if c_msb else r_msb
    return carry * np.uint64(1 << (63 - bits)) - r_low


def truncation_public(c: np.ndarray, bits: int) -> np.ndarray:
    """The leader's public term of :func:`truncation_share`: ``(c mod 2^63) >> bits - 2^(62 - bits)``."""
    with np.errstate(over="ignore"):
        return ((c & _LOW63) >> np.uint64(bits)) - np.uint64(1 << (62 - bits))


@ring_arithmetic
def truncation_share(c: np.ndarray, bits: int, r_msb: np.ndarray, r_low: np.ndarray, leader: bool) -> np.ndarray:
    """A player's additive share of ``x >> bits`` (up to one unit, for ``|x| < 2^62``) from the opened
    ``c = x + 2^62 + r`` and its shares of ``msb(r)`` and ``(r mod 2^63) >> bits`` (the leader adds
    the public terms). ``x + 2^62`` and ``r mod 2^63`` sum to ``c mod 2^63`` plus ``2^63`` times the
    carry ``msb(c) xor msb(r)``, so ``x >> bits = (c mod 2^63) >> bits - (r mod 2^63) >> bits +
    carry 2^(63 - bits) - 2^(62 - bits)``, off by at most one unit (the two floors)."""
    # carry = msb(c) xor msb(r); as shares: r_msb where msb(c)=0, (1 - r_msb) where msb(c)=1
    result = np.where(c >> np.uint64(63) == 1, truncation_secret(bits, r_msb, r_low, leader, 1),
                      truncation_secret(bits, r_msb, r_low, leader, 0))
    return result + truncation_public(c, bits) if leader else result


def widen(bits: np.ndarray, shape: Shape) -> np.ndarray:
    """Per-element ``bits`` broadcast over the trailing axes of ``shape`` (a multiplicand's value shape)."""
    return np.broadcast_to(bits.reshape(bits.shape + (1,) * (len(shape) - bits.ndim)), shape)


class Engine(abc.ABC):
    """One party's side of a secret-sharing scheme over Z_2^64 (all methods work on raw shares).

    Every player calls the same methods in the same order with the same public arguments (SPMD).
    Interactive methods name their cost in rounds between players; local ones send nothing.
    """

    name: str
    lead: int
    """Leading axes of a raw share ahead of the value's axes."""

    def __init__(self, party: Party, players: Sequence[str]) -> None:
        self.party = party
        self.players = check_players(party, players)
        self.index = self.players.index(party.id)
        self.others = tuple(p for p in self.players if p != party.id)

    def check_owner(self, owner: str, what: str = "owner") -> None:
        if owner not in self.players:
            raise ValueError(f"{what} {owner!r} is not among the players {list(self.players)}")

    # --- local -------------------------------------------------------------------------------

    def check_share(self, share: Any) -> np.ndarray:
        """A raw share as a uint64 array; ``ValueError`` if it cannot be one of this engine."""
        share = np.asarray(share, dtype=np.uint64)
        if share.ndim < self.lead:
            raise ValueError(f"a {self.name} share needs at least {self.lead} leading axes, got shape {share.shape}")
        return share

    def zeros(self, shape: Shape) -> np.ndarray:
        """The sharing of zeros (every component zero)."""
        return np.zeros(self.share_shape(shape), dtype=np.uint64)

    @abc.abstractmethod
    def share_shape(self, shape: Shape) -> Shape:
        """The raw-share shape of a value of ``shape``."""

    @abc.abstractmethod
    def public(self, values: np.ndarray) -> np.ndarray:
        """A trivial sharing of the public ring array ``values``."""

    @abc.abstractmethod
    def add_public(self, share: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Shares of ``secret + values`` (ring addition, broadcast to the common shape)."""

    @abc.abstractmethod
    def additive_part(self, share: np.ndarray) -> np.ndarray:
        """This player's term of an additive sharing of the secret (the players' terms sum to it).

        What a player sends to a party outside the players that should learn the value.
        """

    # --- interactive -------------------------------------------------------------------------

    @abc.abstractmethod
    def input(self, encoded: np.ndarray | None, owner: str) -> np.ndarray:
        """Share the ring array ``encoded`` held by player ``owner`` (others pass ``None``); one round."""

    @abc.abstractmethod
    def from_additive(self, mine: np.ndarray) -> np.ndarray:
        """Shares of the sum of every player's private ring array ``mine`` (equal shapes)."""

    @abc.abstractmethod
    def open(self, shares: Sequence[np.ndarray], binary: bool | Sequence[bool] = False) -> list[np.ndarray]:
        """The secrets of several raw shares at every player, in one round (``binary``: XOR shares;
        one flag for all or one per share)."""

    @abc.abstractmethod
    def open_to(self, share: np.ndarray, to: str) -> np.ndarray | None:
        """The secret at player ``to`` only (``None`` elsewhere); one round."""

    @abc.abstractmethod
    def open_to_each(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """Open ``parts[p]`` to player ``p`` for every player at once; returns this player's secret; one round."""

    @abc.abstractmethod
    def truncate(self, share: np.ndarray, bits: int) -> np.ndarray:
        """Shares of ``x >> bits`` (arithmetic shift, up to one unit) for ``|x| < 2^62``."""

    @abc.abstractmethod
    def truncate_update(self, x: np.ndarray, bits: int, base: np.ndarray, factor: np.ndarray, out_bits: int
                        ) -> np.ndarray:
        """Shares of ``(base - (x >> bits) * factor) >> out_bits`` for public ring integers ``factor``
        (broadcast to ``x``): both truncations (each up to one unit, values below ``2^62``) in the
        rounds of one."""

    @abc.abstractmethod
    def mul(self, x: np.ndarray, y: np.ndarray, trunc_bits: int) -> np.ndarray:
        """Elementwise ``x * y`` for shares of equal value shapes, then truncated by ``trunc_bits`` (0: exact)."""

    @abc.abstractmethod
    def matmul(self, x: np.ndarray, y: np.ndarray, trunc_bits: int) -> np.ndarray:
        """``x @ y`` (1-D or 2-D values, shapes checked by the caller), then truncated by ``trunc_bits``."""

    @abc.abstractmethod
    def ltz(self, x: np.ndarray, times: Multiplicands = (), truncate: Sequence[tuple[np.ndarray, int]] = ()
            ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """``(bits, products, truncated)``: shares of the integer bits ``[x < 0]`` (x as a signed ring
        element, exact on the whole ring) and, in the same rounds, ``truncated``: each ``(share,
        bits)`` of ``truncate`` shifted right (as :meth:`truncate`), and ``products``: the exact ring
        products ``[x < 0] * v`` for each multiplicand ``v`` of ``times`` (raw shares whose value
        shape is ``x``'s plus trailing axes, the bit broadcast over them), or of ``times(truncated)``."""

    @abc.abstractmethod
    def prepare_matrix(self, x: np.ndarray) -> Any:
        """Set-up for many products with the same shared 2-D matrix (see :class:`mpcml.masked.MaskedMatrix`)."""

    @abc.abstractmethod
    def matrix_product(
        self, prepared: Any, v: np.ndarray, rows: np.ndarray | None, transpose: bool, trunc_bits: int
    ) -> np.ndarray:
        """Shares of ``X[rows] @ v`` (or ``X[rows].T @ v``) for a prepared matrix."""

    @abc.abstractmethod
    def release_matrix(self, prepared: Any) -> None:
        """Forget a prepared matrix."""

    def close(self) -> None:
        """Release resources (e.g. end the dealer session); the default does nothing."""
