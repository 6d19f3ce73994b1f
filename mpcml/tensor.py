"""``SharedTensor``: secret-shared fixed-point arrays and the arithmetic on them.

A :class:`Session` binds one party to the group of compute parties (``players``), a
:class:`~mpcml.triples.TripleSource` and a fixed-point precision. A :class:`SharedTensor`
holds this party's additive share (uint64, mod 2^64) of a real array encoded with
``session.frac_bits`` fractional bits (see :mod:`mpcml.fixedpoint`). Every compute party runs
the same sequence of operations on its own share (SPMD).

Costs, for compute parties (dealer traffic aside):

- ``+``, ``-``, multiplication by a public integer, indexing, reshaping: local, free.
- ``x * y`` and ``x @ y`` (Beaver): one round opening ``x - a`` and ``y - b``, then
  one round of truncation (below).
- multiplication by a public float: local product, then truncation.
- truncation by ``f`` bits: the dealer's pair ``(r, msb(r), (r mod 2^63) >> f)``; the parties
  open ``c = x + 2^62 + r`` (uniform) and compute ``x >> f`` locally up to one unit in the last
  place, for any number of parties and with no failure probability while ``|x| < 2^62``.

Comparisons (``<``, ``>``, ``<=``, ``>=``), ``relu``, ``sign``, ``argmax``/``max``, ``reciprocal``,
``sqrt``, ``sigmoid`` and ``x / y`` for shared ``y`` are in :mod:`mpcml.nonlinear`.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike

from . import fixedpoint
from .csprng import Csprng, new_seed
from .party import Party
from .ring import ring_matmul
from .triples import TripleSource, matmul_shape

_TWO62 = np.uint64(1 << 62)
_LOW63 = np.uint64((1 << 63) - 1)


class Session:
    """The compute parties' shared context: who the players are, where triples come from, precision."""

    def __init__(
        self,
        party: Party,
        players: Sequence[str],
        triples: TripleSource,
        frac_bits: int = fixedpoint.DEFAULT_FRAC_BITS,
    ) -> None:
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
        if tuple(triples.players) != players:
            raise ValueError(f"the triple source serves {list(triples.players)}, not {list(players)}")
        self.party = party
        self.players = players
        self.triples = triples
        self.frac_bits = fixedpoint.check_frac_bits(frac_bits)
        self.index = players.index(party.id)
        self.is_leader = self.index == 0
        self.others = tuple(p for p in players if p != party.id)

    # --- moving values in and out ---------------------------------------------------------

    def input(self, value: ArrayLike | None, owner: str, *, name: str = "value") -> "SharedTensor":
        """Secret-share ``value`` held by ``owner`` (others pass ``None``).

        The owner encodes (raising on NaN/inf/overflow before anything is sent), gives every
        other player a 32-byte PRG seed and keeps ``x - sum(PRG(seed_j))``.
        """
        return SharedTensor(self, self.input_ring(
            fixedpoint.encode(value, self.frac_bits, name=name) if self.party.id == owner else None, owner
        ))

    def input_ring(self, encoded: np.ndarray | None, owner: str) -> np.ndarray:
        """Share an already encoded uint64 array; returns this party's share."""
        if owner not in self.players:
            raise ValueError(f"owner {owner!r} is not among the players {list(self.players)}")
        if self.party.id == owner:
            encoded = np.asarray(encoded, dtype=np.uint64)
            share = encoded.copy()
            for pid in self.others:
                seed = new_seed()
                self.party.send(pid, [seed, list(encoded.shape)])
                share -= Csprng(seed).random_uint64(encoded.shape)
            return share
        seed, shape = self.party.recv(owner)
        return Csprng(seed).random_uint64(tuple(shape))

    def public(self, value: ArrayLike) -> "SharedTensor":
        """A public value as a (trivially) shared tensor."""
        encoded = fixedpoint.encode(value, self.frac_bits)
        return SharedTensor(self, encoded if self.is_leader else np.zeros_like(encoded))

    def zeros(self, shape: int | tuple[int, ...]) -> "SharedTensor":
        return SharedTensor(self, np.zeros(shape, dtype=np.uint64))

    def open(self, shares: Sequence[np.ndarray], *, binary: bool = False) -> list[np.ndarray]:
        """Reconstruct several shared uint64 arrays at every player in one round."""
        mine = [np.asarray(s, dtype=np.uint64) for s in shares]
        self.party.send_all(self.others, mine)
        totals = [s.copy() for s in mine]
        for pid in self.others:
            theirs = self.party.recv(pid)
            if not isinstance(theirs, list) or len(theirs) != len(mine):
                raise ValueError(f"player {pid!r} sent a malformed share list")
            for total, other in zip(totals, theirs):
                _check_peer_share(pid, other, total.shape)
                if binary:
                    total ^= other
                else:
                    total += other
        return totals

    def open_to(self, share: np.ndarray, to: str) -> np.ndarray | None:
        """Reconstruct a shared uint64 array at player ``to`` only."""
        if to not in self.players:
            raise ValueError(f"recipient {to!r} is not among the players {list(self.players)}")
        if self.party.id != to:
            self.party.send(to, share)
            return None
        total = np.asarray(share, dtype=np.uint64).copy()
        for pid in self.others:
            other = self.party.recv(pid)
            _check_peer_share(pid, other, total.shape)
            total += other
        return total

    def truncate(self, share: np.ndarray, bits: int | None = None, pair: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Shares of ``x >> bits`` (arithmetic shift, up to one unit) from shares of ``x``; one round."""
        bits = self.frac_bits if bits is None else bits
        if bits == 0:
            return share
        r, r_msb, r_low = pair if pair is not None else self.triples.trunc(share.shape, bits)
        shifted = share + r
        if self.is_leader:
            shifted = shifted + _TWO62
        (c,) = self.open([shifted])
        c_msb = c >> np.uint64(63)
        # carry = msb(c) xor msb(r); as shares: r_msb where msb(c)=0, (1 - r_msb) where msb(c)=1
        carry = np.where(c_msb == 1, (np.uint64(1) if self.is_leader else np.uint64(0)) - r_msb, r_msb)
        result = carry * np.uint64(1 << (63 - bits)) - r_low
        if self.is_leader:
            result = result + ((c & _LOW63) >> np.uint64(bits)) - np.uint64(1 << (62 - bits))
        return result

    def mul_shares(self, x: np.ndarray, y: np.ndarray, trunc_bits: int | None = None) -> np.ndarray:
        """Shares of ``x * y`` (elementwise, broadcast) by a Beaver triple, truncated by ``trunc_bits``.

        ``trunc_bits=None`` means ``frac_bits`` (a product of two fixed-point values); 0 keeps the
        exact ring product (e.g. a fixed-point value times a shared integer bit). One round, plus
        one for the truncation.
        """
        bits = self.frac_bits if trunc_bits is None else int(trunc_bits)
        x, y = np.broadcast_arrays(np.asarray(x, dtype=np.uint64), np.asarray(y, dtype=np.uint64))
        a, b, c, *pair = self.triples.mul(x.shape, bits)
        d, e = self.open([x - a, y - b])
        z = c + d * b + e * a
        if self.is_leader:
            z += d * e
        return self.truncate(z, bits, pair=pair) if bits else z

    def close(self) -> None:
        self.triples.close()


def _check_peer_share(pid: str, other: Any, shape: tuple[int, ...]) -> None:
    """Reject a player's share unless it is a uint64 array of ``shape``."""
    if not isinstance(other, np.ndarray) or other.shape != shape or other.dtype != np.uint64:
        got = f"{other.dtype} array of shape {other.shape}" if isinstance(other, np.ndarray) else type(other).__name__
        raise ValueError(f"player {pid!r} sent a share that is a {got}, expected a uint64 array of shape {shape}")


def leader_adds(session: Session, share: np.ndarray, public: Any) -> np.ndarray:
    """Shares of ``secret + public`` (ring addition, broadcast): only the leader adds."""
    public = np.asarray(public, dtype=np.uint64)
    if session.is_leader:
        return share + public
    return np.broadcast_to(share, np.broadcast_shapes(share.shape, public.shape)).copy()


def _is_int_like(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.integer)


class SharedTensor:
    """This party's share of a secret fixed-point array."""

    __array_priority__ = 100  # so numpy defers `ndarray @ SharedTensor` to __rmatmul__

    def __init__(self, session: Session, share: np.ndarray) -> None:
        self.session = session
        self.share = np.asarray(share, dtype=np.uint64)

    # --- shape --------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self.share.shape

    @property
    def ndim(self) -> int:
        return self.share.ndim

    @property
    def size(self) -> int:
        return self.share.size

    def __len__(self) -> int:
        return len(self.share)

    def _new(self, share: np.ndarray) -> "SharedTensor":
        return SharedTensor(self.session, share)

    @property
    def T(self) -> "SharedTensor":
        return self._new(self.share.T)

    def transpose(self, *axes: int) -> "SharedTensor":
        return self._new(self.share.transpose(*axes))

    def reshape(self, *shape: Any) -> "SharedTensor":
        return self._new(self.share.reshape(*shape))

    def flatten(self) -> "SharedTensor":
        return self._new(self.share.reshape(-1))

    def __getitem__(self, index: Any) -> "SharedTensor":
        return self._new(self.share[index])

    def sum(self, axis: int | None = None, keepdims: bool = False) -> "SharedTensor":
        return self._new(self.share.sum(axis=axis, keepdims=keepdims, dtype=np.uint64))

    @staticmethod
    def concatenate(tensors: Sequence["SharedTensor"], axis: int = 0) -> "SharedTensor":
        if not tensors:
            raise ValueError("need at least one tensor to concatenate")
        return SharedTensor(tensors[0].session, np.concatenate([t.share for t in tensors], axis=axis))

    @staticmethod
    def stack(tensors: Sequence["SharedTensor"], axis: int = 0) -> "SharedTensor":
        if not tensors:
            raise ValueError("need at least one tensor to stack")
        return SharedTensor(tensors[0].session, np.stack([t.share for t in tensors], axis=axis))

    # --- linear operations ----------------------------------------------------------------

    def _encode_public(self, value: ArrayLike) -> np.ndarray:
        return fixedpoint.encode(value, self.session.frac_bits, name="public operand")

    def __add__(self, other: Any) -> "SharedTensor":
        if isinstance(other, SharedTensor):
            return self._new(self.share + other.share)
        return self._new(leader_adds(self.session, self.share, self._encode_public(other)))

    __radd__ = __add__

    def __neg__(self) -> "SharedTensor":
        return self._new(np.uint64(0) - self.share)

    def __sub__(self, other: Any) -> "SharedTensor":
        if isinstance(other, SharedTensor):
            return self._new(self.share - other.share)
        return self + (-np.asarray(other, dtype=np.float64))

    def __rsub__(self, other: Any) -> "SharedTensor":
        return (-self) + other

    # --- products ----------------------------------------------------------------------

    def __mul__(self, other: Any) -> "SharedTensor":
        session = self.session
        if isinstance(other, SharedTensor):
            return self._new(session.mul_shares(self.share, other.share))
        if _is_int_like(other):
            return self._new(self.share * np.asarray(other).astype(np.int64).view(np.uint64))
        return self._new(session.truncate(self.share * self._encode_public(other)))

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> "SharedTensor":
        if isinstance(other, SharedTensor):
            return nonlinear.divide(self, other)
        divisor = np.asarray(other, dtype=np.float64)
        if np.any(divisor == 0):
            raise ZeroDivisionError("division of a SharedTensor by a public zero")
        return self * (1.0 / divisor)

    def __matmul__(self, other: Any) -> "SharedTensor":
        session = self.session
        if isinstance(other, SharedTensor):
            matmul_shape(self.shape, other.shape)
            a, b, c, *pair = session.triples.matmul(self.shape, other.shape, session.frac_bits)
            d, e = session.open([self.share - a, other.share - b])
            # z = c + d@b + a@e + d@e = c + d@(b + e) + a@e, with d@e added by the leader only
            z = c + ring_matmul(d, b + e if session.is_leader else b) + ring_matmul(a, e)
            return self._new(session.truncate(z, pair=pair))
        matmul_shape(self.shape, np.shape(other))
        return self._new(session.truncate(ring_matmul(self.share, self._encode_public(other))))

    def __rmatmul__(self, other: Any) -> "SharedTensor":
        matmul_shape(np.shape(other), self.shape)
        encoded = self._encode_public(other)
        return self._new(self.session.truncate(ring_matmul(encoded, self.share)))

    def square(self) -> "SharedTensor":
        return self * self

    # --- non-linear operations (see mpcml.nonlinear) ---------------------------------------

    def __lt__(self, other: Any) -> "SharedTensor":
        return nonlinear.lt(self, other)

    def __gt__(self, other: Any) -> "SharedTensor":
        return nonlinear.gt(self, other)

    def __le__(self, other: Any) -> "SharedTensor":
        return nonlinear.le(self, other)

    def __ge__(self, other: Any) -> "SharedTensor":
        return nonlinear.ge(self, other)

    def relu(self) -> "SharedTensor":
        return nonlinear.relu(self)

    def sign(self) -> "SharedTensor":
        return nonlinear.sign(self)

    def sigmoid(self, method: str = "sqrt") -> "SharedTensor":
        return nonlinear.sigmoid(self, method)

    def argmax(self, axis: int = -1) -> "SharedTensor":
        """Shared one-hot of the maximum along ``axis`` (ties: lowest index)."""
        return nonlinear.argmax(self, axis)

    def max(self, axis: int = -1) -> "SharedTensor":
        return nonlinear.max(self, axis)

    def reciprocal(self, **kwargs: Any) -> "SharedTensor":
        """``1/x``; keyword arguments ``lo``, ``hi``, ``iterations`` as in :func:`mpcml.nonlinear.reciprocal`."""
        return nonlinear.reciprocal(self, **kwargs)

    def sqrt(self, **kwargs: Any) -> "SharedTensor":
        return nonlinear.sqrt(self, **kwargs)

    # --- output ----------------------------------------------------------------------

    def reveal(self, to: str | None = None) -> np.ndarray | None:
        """The plaintext float array at every player (``to=None``) or at player ``to`` only."""
        if to is None:
            (total,) = self.session.open([self.share])
        else:
            total = self.session.open_to(self.share, to)
            if total is None:
                return None
        return fixedpoint.decode(total, self.session.frac_bits)

    def __repr__(self) -> str:
        return f"SharedTensor(shape={self.shape}, party={self.session.party.id!r})"


from . import nonlinear  # noqa: E402 - nonlinear builds on the classes above
