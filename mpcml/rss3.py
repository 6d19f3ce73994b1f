"""The ``"rss3"`` engine: replicated secret sharing over Z_2^64 for three players, honest majority.

Araki, Furukawa, Lindell, Nof and Ohara, "High-throughput semi-honest secure three-party
computation with an honest majority", CCS 2016; Mohassel and Rindal, "ABY3: a mixed protocol
framework for machine learning", CCS 2018. No dealer and no public-key operation after set-up.

**Sharing.** ``x = x_0 + x_1 + x_2 mod 2^64``; player ``i`` (its index in ``players``) holds the
two components ``(x_i, x_{i+1})`` (indices mod 3), so a raw share is ``(2, *shape)`` and any two
players together hold all three components. XOR ("binary") sharing of words is the same with
``^``.

**Threat model.** Semi-honest, honest majority: any *single* player's view (its components, its
pairwise seeds and every message it receives) is independent of the secrets beyond the outputs
revealed to it; *two* colluding players hold all three components and learn everything. Every
message a player receives is uniformly distributed (masked by a PRG stream it does not know or by
a helper's private randomness), except the openings of outputs: ``tests/test_wire_view.py``
records each player's received arrays and checks them with bit-balance and chi-square tests.

**Set-up (one round).** Each pair ``(P_i, P_{i+1})`` agrees on a 32-byte seed ``k_i`` by X25519
key exchange (RFC 7748) and HKDF-SHA256 (RFC 5869); ``P_i`` keeps AES-CTR streams of ``k_i``
("next") and ``k_{i-1}`` ("prev") (:class:`~mpcml.csprng.Csprng`). Both holders of a seed draw
the same amounts in the same order, so a pair can produce common randomness without messages:
a *random* sharing (component ``i+1`` from ``k_i``), and *zero sharings*
``alpha_i = F(k_i) - F(k_{i-1})`` (``alpha_0 + alpha_1 + alpha_2 = 0``) that re-randomise a
three-out-of-three sharing. Private randomness (the helper's, below) comes from the party's
own CSPRNG.

**Operations** (``n``: elements of the result; rounds between players):

- input by player ``j``: components ``x_{j-1} = 0``, ``x_j = F(k_{j-1})`` (known to ``P_{j-1}``
  and ``P_j``), ``x_{j+1} = x - x_j`` sent to ``P_{j+1}``: 1 round, ``n`` elements. A party that
  is not a player splits its value additively among the players (:func:`mpcml.session.send_input`)
  and they re-share the three terms (:meth:`from_additive`): 1 round, ``n`` elements each.
- ``+``, ``-``, products by public integers: local; a public constant is added to ``x_0``.
- ``x * y``, ``x @ y``: ``z_i = x_i y_i + x_i y_{i+1} + x_{i+1} y_i + alpha_i`` (two local
  products, ``x_i (y_i + y_{i+1}) + x_{i+1} y_i``) is a three-out-of-three sharing of ``xy``;
  ``P_i`` sends ``z_i`` to ``P_{i-1}``: 1 round, one message of ``n`` elements per player,
  whatever the inner dimension of a matrix product.
- truncation by ``f`` bits (after a product, or of a shared value re-randomised by ``alpha``):
  exact up to one unit, **no failure probability** while ``|x| < 2^62``, the same guarantee as the
  dealer engine (Escudero et al., CRYPTO 2020, section 5.1; the "helper" arrangement of
  SecretFlow SPU's ``TruncAPr``). A helper ``h`` (rotating) draws a private ``r`` and plays the
  dealer for the other two players ``a = h+1``, ``b = h+2``, who never see ``r``:
  1. ``h`` sends ``z_h + 2^62 + r`` to ``a`` and ``b``, and ``b`` its additive shares of
     ``msb(r)`` and ``(r mod 2^63) >> f`` (``a``'s come from ``k_h``); ``a`` and ``b`` swap
     ``z_a``, ``z_b``, so both know ``c = x + 2^62 + r`` (uniform);
  2. ``a`` and ``b`` compute two-out-of-two shares ``T_a + T_b = x >> f`` locally (the dealer
     engine's formula with ``carry = msb(c) xor msb(r)``);
  3. back to replicated shares: ``x_a = F(k_h)``, ``x_h = F(k_b)`` (the helper's components are
     pure PRG output), ``x_b = T_a + T_b - x_a - x_h`` from one swap between ``a`` and ``b``.
  2 rounds (a product with truncation: 2 rounds in all), ``8n`` elements in total.
  The helper receives nothing; ``a`` and ``b`` receive only values masked by ``r`` or by a
  stream they do not hold.
- two truncations in one (:meth:`RSS3Engine.truncate_update`, ``(base - (x >> f) g) >> F``): the
  helper blinds its term of ``base`` twice, folding in the part of ``x >> f`` it knows for each
  value of ``msb(c)``, so ``a`` and ``b`` learn everything in one swap; 2 rounds.
- comparison ``[x < 0]``: the dealt comparison of :mod:`mpcml.comparison` with the helper as the
  dealer of ``a`` and ``b``. 1. The helper blinds its term of ``x`` with ``r`` and deals (to ``b``;
  ``a``'s shares come from ``k_h``) the tables of ``r mod 2^63``, the mask products, a random bit
  and a Beaver triple per multiplicand; ``a`` and ``b`` swap terms and learn ``c = x + r``.
  2. They swap the masked table bits (16 bits per element) and hold XOR shares of ``msb(x)``.
  3. They open ``e = msb ^ bit`` (and the Beaver differences of each requested product
  ``[x < 0] v``): 2-out-of-2 arithmetic shares of the bit and the products. 4. One swap makes
  them replicated. 4 rounds for any array size, exact on every ring element; a truncation
  requested alongside (:meth:`RSS3Engine.ltz`) is blinded in step 1 and made replicated in
  step 2. The helper sends 312 bytes per element to ``b`` (the tables).
- reveal to all: ``P_i`` sends ``x_i`` to ``P_{i+1}`` (1 round); to one player ``j``: ``P_{j-1}``
  sends ``x_{j-1}``; to a party outside the players: every player sends ``x_i``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import comparison
from .csprng import SEED_BYTES, Csprng
from .engine import (
    Engine,
    Multiplicands,
    Shape,
    ring_arithmetic,
    truncation_public,
    truncation_secret,
    truncation_share,
    widen,
)
from .party import Party
from .ring import ring_matmul
from .schema import Array, Bytes, Int, ListOf, Tuple

PLAYERS = 3
_TWO62 = np.uint64(1 << 62)
_LOW63 = np.uint64((1 << 63) - 1)
_ONE = np.uint64(1)
_KS_SHIFTS = (1, 2, 4, 8, 16, 32)
_PUBLIC_KEY = Bytes(32)
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw
_BUFFER_WORDS = 1 << 13


def pair_seed(secret: bytes, first: str, second: str) -> bytes:
    """The 32-byte PRG seed of the ordered pair ``(first, second)`` from their X25519 shared secret."""
    info = f"mpcml rss3 pair seed {first!r} -> {second!r}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=SEED_BYTES, salt=None, info=info).derive(secret)


class _PairStream:
    """A pairwise PRG stream (AES-CTR from the pair's seed) that serves small draws from a buffer.

    Both holders of a seed draw the same sizes in the same order, so buffering keeps them in
    step; it only saves the per-call cost of the cipher for the many small arrays of a protocol.
    """

    def __init__(self, seed: bytes) -> None:
        self._prg = Csprng(seed)
        self._buffer = np.empty(0, np.uint64)
        self._used = 0

    def random_uint64(self, shape: Shape) -> np.ndarray:
        shape = tuple(shape)
        count = int(np.prod(shape, dtype=np.int64))
        if count > _BUFFER_WORDS // 2:
            return self._prg.random_uint64(shape)
        if self._used + count > self._buffer.size:
            self._buffer, self._used = self._prg.random_uint64(_BUFFER_WORDS), 0
        self._used += count
        return self._buffer[self._used - count : self._used].reshape(shape).copy()


@dataclass(frozen=True)
class _Pair:
    """This player's part in one helper protocol: ``role`` 0 (the helper ``h``), 1 (``a = h + 1``, the
    pair's leader for public constants) or 2 (``b = h + 2``); ``partner`` is the other of ``a``/``b``."""

    role: int
    partner: str
    helper: str


def _size(shape: Shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _uint64(shape: Shape) -> Array:
    return Array(np.uint64, shape=tuple(shape))


class RSS3Engine(Engine):
    """Replicated shares among exactly three players; the constructor runs the key exchange (one round)."""

    name = "rss3"
    lead = 1

    def __init__(self, party: Party, players: Sequence[str]) -> None:
        super().__init__(party, players)
        if len(self.players) != PLAYERS:
            raise ValueError(f"the rss3 engine needs exactly three players, got {list(self.players)}")
        i = self.index
        self.next_id = self.players[(i + 1) % PLAYERS]
        self.prev_id = self.players[(i - 1) % PLAYERS]
        self._helper_turn = 0
        self._from_helper: list[np.ndarray] = []  # b's dealt shares of the current helper protocol
        # set-up: X25519 with both neighbours, one round
        key = X25519PrivateKey.generate()
        party.send_all((self.next_id, self.prev_id), key.public_key().public_bytes(*_RAW))
        keys = party.gather((self.next_id, self.prev_id), expect=_PUBLIC_KEY, what="X25519 public key")

        def secret(peer: str) -> bytes:
            return key.exchange(X25519PublicKey.from_public_bytes(keys[peer]))

        self._next = _PairStream(pair_seed(secret(self.next_id), party.id, self.next_id))
        self._prev = _PairStream(pair_seed(secret(self.prev_id), self.prev_id, party.id))

    # --- local -------------------------------------------------------------------------------

    def check_share(self, share: Any) -> np.ndarray:
        share = super().check_share(share)
        if share.shape[0] != 2:
            raise ValueError(f"an rss3 share is (2, *shape), got shape {share.shape}")
        return share

    def share_shape(self, shape: Shape) -> Shape:
        return (2, *shape)

    def public(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.uint64)
        return self.add_public(self.zeros(values.shape), values)

    @ring_arithmetic
    def add_public(self, share: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The constant goes into component ``x_0``, held by players 0 (first) and 2 (second)."""
        values = np.asarray(values, dtype=np.uint64)
        shape = np.broadcast_shapes(share.shape[1:], values.shape)
        lifted = share.reshape((2,) + (1,) * (len(shape) + 1 - share.ndim) + share.shape[1:])
        out = np.broadcast_to(lifted, (2, *shape)).copy()
        if self.index == 0:
            out[0] += values
        elif self.index == 2:
            out[1] += values
        return out

    def additive_part(self, share: np.ndarray) -> np.ndarray:
        return np.asarray(share[0])

    def _zeros3(self, shape: Shape, binary: bool = False) -> np.ndarray:
        """This player's term of a fresh zero sharing ``F(k_i) - F(k_{i-1})`` (XOR for binary)."""
        mine, theirs = self._next.random_uint64(shape), self._prev.random_uint64(shape)
        return mine ^ theirs if binary else mine - theirs

    # --- messages ------------------------------------------------------------------------------

    def _reshare(self, z: np.ndarray) -> np.ndarray:
        """Replicated shares from this player's re-randomised term ``z`` of a 3-out-of-3 sharing; one round."""
        self.party.send(self.prev_id, np.asarray(z))
        theirs = self.party.recv(self.next_id, expect=_uint64(z.shape), what="re-shared term")
        return np.stack([z, theirs])

    @ring_arithmetic
    def input(self, encoded: np.ndarray | None, owner: str) -> np.ndarray:
        self.check_owner(owner)
        role = (self.index - self.players.index(owner)) % PLAYERS
        if role == 0:
            encoded = np.asarray(encoded, dtype=np.uint64)
            mine = self._prev.random_uint64(encoded.shape)
            rest = encoded - mine
            self.party.send(self.next_id, rest)
            self.party.send(self.prev_id, list(encoded.shape))
            return np.stack([mine, rest])
        if role == 1:
            rest = self.party.recv(owner, expect=Array(np.uint64), what="input share")
            return np.stack([rest, np.zeros_like(rest)])
        shape = tuple(self.party.recv(owner, expect=ListOf(Int(low=0)), what="input shape"))
        mine = self._next.random_uint64(shape)
        return np.stack([np.zeros_like(mine), mine])

    @ring_arithmetic
    def from_additive(self, mine: np.ndarray) -> np.ndarray:
        mine = np.asarray(mine, dtype=np.uint64)
        return self._reshare(mine + self._zeros3(mine.shape))

    @ring_arithmetic
    def open(self, shares: Sequence[np.ndarray], binary: bool = False) -> list[np.ndarray]:
        self.party.send(self.next_id, [np.asarray(s[0]) for s in shares])
        spec = Tuple(*[_uint64(s.shape[1:]) for s in shares])
        theirs = self.party.recv(self.prev_id, expect=spec, what="list of opened components")
        if binary:
            return [s[0] ^ s[1] ^ t for s, t in zip(shares, theirs)]
        return [s[0] + s[1] + t for s, t in zip(shares, theirs)]

    @ring_arithmetic
    def open_to(self, share: np.ndarray, to: str) -> np.ndarray | None:
        self.check_owner(to, "recipient")
        if self.next_id == to:
            self.party.send(to, np.asarray(share[0]))
        if self.party.id != to:
            return None
        theirs = self.party.recv(self.prev_id, expect=_uint64(share.shape[1:]), what="opened component")
        return share[0] + share[1] + theirs

    @ring_arithmetic
    def open_to_each(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        self.party.send(self.next_id, np.asarray(parts[self.next_id][0]))
        mine = parts[self.party.id]
        theirs = self.party.recv(self.prev_id, expect=_uint64(mine.shape[1:]), what="opened component")
        return mine[0] + mine[1] + theirs

    # --- the helper arrangement: one player deals, the other two compute on 2-out-of-2 shares -----

    def _pair(self) -> _Pair:
        """The roles of the next helper protocol (the helper rotates over the players)."""
        helper = self._helper_turn
        self._helper_turn = (helper + 1) % PLAYERS
        role = (self.index - helper) % PLAYERS
        return _Pair(role, self.next_id if role == 1 else self.prev_id, self.players[helper])

    def _dealt_to_b(self, values: Sequence[np.ndarray], binary: Sequence[bool]) -> list[np.ndarray]:
        """Helper: ``b``'s 2-out-of-2 shares of ``values`` (``a``'s are the stream ``k_h``, drawn in order)."""
        out = []
        for value, xor in zip(values, binary):
            mine = self._next.random_uint64(value.shape)
            out.append(value ^ mine if xor else value - mine)
        return out

    def _dealt_to_a(self, shapes: Sequence[Shape]) -> list[np.ndarray]:
        """``a``: its 2-out-of-2 shares of dealt values, from the stream ``k_h`` (in the helper's order)."""
        return [self._prev.random_uint64(shape) for shape in shapes]

    def _pads(self, pair: _Pair, shape: Shape) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The stream components of a replicated sharing made from a 2-out-of-2 one (``_replicate``):
        ``x_a = F(k_h)``, ``x_h = F(k_b)``; the helper returns its share ``(x_h, x_a)``, a and b their pad."""
        if pair.role == 0:
            x_h = self._prev.random_uint64(shape)
            return np.stack([x_h, self._next.random_uint64(shape)])
        return (self._prev if pair.role == 1 else self._next).random_uint64(shape)

    def _replicated(self, pair: _Pair, t: np.ndarray, pad: np.ndarray, theirs: np.ndarray) -> np.ndarray:
        """``a``/``b``: replicated shares of ``T_a + T_b`` from its ``t``, its pad and the partner's ``t - pad``:
        ``x_b = T_a + T_b - x_a - x_h``."""
        x_b = t - pad + theirs
        return np.stack([pad, x_b]) if pair.role == 1 else np.stack([x_b, pad])

    def _replicate(self, pair: _Pair, t: np.ndarray | None, shape: Shape) -> np.ndarray:
        """Replicated shares of ``T_a + T_b`` (2-out-of-2 at ``a`` and ``b``); one swap between them."""
        pad = self._pads(pair, shape)
        if pair.role == 0:
            return pad
        self.party.send(pair.partner, np.asarray(t - pad))
        theirs = self.party.recv(pair.partner, expect=_uint64(shape), what="2-out-of-2 term")
        return self._replicated(pair, t, pad, theirs)

    def _blinded(self, pair: _Pair, pieces: Sequence[np.ndarray], blinds: Sequence[np.ndarray],
                 to_b: Sequence[np.ndarray], which: Sequence[int] | None = None) -> list[np.ndarray]:
        """Round 1: the helper sends its terms plus ``blinds`` to ``a`` and ``b`` (and ``to_b`` to ``b``);
        ``a`` and ``b`` swap their terms and return ``c = x + blind`` for each 3-out-of-3 sharing ``x``.
        Blind ``i`` goes with ``pieces[which[i]]`` (default: one blind per piece); ``a`` and ``b`` swap
        each piece once."""
        which = list(range(len(pieces))) if which is None else list(which)
        if pair.role == 0:
            masked = [np.asarray(pieces[i] + r) for i, r in zip(which, blinds)]
            self.party.send(self.next_id, masked)
            self.party.send(self.prev_id, [masked, list(to_b)])
            return []
        self.party.send(pair.partner, [np.asarray(p) for p in pieces])
        spec = Tuple(*[_uint64(pieces[i].shape) for i in which])
        if pair.role == 1:
            masked = self.party.recv(pair.helper, expect=spec, what="blinded terms")
        else:
            masked, self._from_helper = self.party.recv(
                pair.helper, expect=Tuple(spec, ListOf(Array(np.uint64))), what="blinded terms and dealt shares")
        others = self.party.recv(pair.partner, expect=Tuple(*[_uint64(p.shape) for p in pieces]), what="3-out-of-3 terms")
        return [pieces[i] + others[i] + m for i, m in zip(which, masked)]

    def _take(self, shapes: Sequence[Shape]) -> list[np.ndarray]:
        """``b``: the next dealt shares the helper sent in round 1, checked against ``shapes``."""
        got, self._from_helper = self._from_helper[: len(shapes)], self._from_helper[len(shapes):]
        for array, shape in zip(got, shapes):
            if array.shape != tuple(shape):
                raise ValueError(f"the helper sent a dealt share of shape {array.shape}, expected {tuple(shape)}")
        if len(got) != len(shapes):
            raise ValueError("the helper sent too few dealt shares")
        return got

    def _shares(self, pair: _Pair, shapes: Sequence[Shape]) -> list[np.ndarray]:
        """``a`` or ``b``: its 2-out-of-2 shares of the next dealt values of ``shapes``."""
        return self._dealt_to_a(shapes) if pair.role == 1 else self._take(shapes)

    # --- truncation and comparison ---------------------------------------------------------------

    @staticmethod
    def _trunc_deal(rng: Csprng, shape: Shape, bits: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """A truncation pair: the blind ``r + 2^62`` and ``[msb(r), (r mod 2^63) >> bits]`` (arithmetic)."""
        r = rng.random_uint64(shape)
        return r + _TWO62, [r >> np.uint64(63), (r & _LOW63) >> np.uint64(bits)]

    @ring_arithmetic
    def _truncate3(self, z: np.ndarray, bits: int) -> np.ndarray:
        """Replicated shares of ``x >> bits`` from this player's re-randomised term ``z`` of ``x``; 2 rounds.

        1. The helper blinds its term with ``r + 2^62`` and deals ``msb(r)``, ``(r mod 2^63) >> bits``;
           ``a`` and ``b`` swap terms and learn ``c = x + 2^62 + r``.
        2. ``a`` and ``b`` compute 2-out-of-2 shares of ``x >> bits`` (:func:`truncation_share`) and
           make them replicated with one swap.
        """
        pair = self._pair()
        shapes = [z.shape, z.shape]
        if pair.role == 0:
            blind, corr = self._trunc_deal(self.party.rng, z.shape, bits)
            self._blinded(pair, [z], [blind], self._dealt_to_b(corr, [False, False]))
            return self._replicate(pair, None, z.shape)
        dealt = self._dealt_to_a(shapes) if pair.role == 1 else []
        (c,) = self._blinded(pair, [z], [], [])
        r_msb, r_low = dealt or self._take(shapes)
        t = truncation_share(c, bits, r_msb, r_low, pair.role == 1)
        return self._replicate(pair, t, z.shape)

    @ring_arithmetic
    def truncate_update(self, x: np.ndarray, bits: int, base: np.ndarray, factor: np.ndarray, out_bits: int
                        ) -> np.ndarray:
        """2 rounds. 1. The helper blinds its term of ``x`` with ``r1 + 2^62`` and, twice, its term of
        ``base`` with ``r2_v + 2^62 - S_v factor``, where ``S_v`` is the part of ``x >> bits`` known
        before ``c1 = x + 2^62 + r1`` for ``msb(c1) = v`` (:func:`truncation_secret`; the helper
        knows ``r1``); it deals the pairs of ``r2_0`` and ``r2_1``. ``a`` and ``b`` learn ``c1``,
        ``c2_0``, ``c2_1`` (uniform: three independent blinds); with ``v = msb(c1)``,
        ``c2_v - P(c1) factor = base - (x >> bits) factor + 2^62 + r2_v``. 2. They truncate it with
        ``r2_v``'s pair (2-out-of-2) and make the result replicated."""
        factor = np.asarray(factor, dtype=np.uint64)
        shape = x.shape[1:]
        pair = self._pair()
        pieces = [x[0] + self._zeros3(shape), base[0] + self._zeros3(shape)]
        corr_shapes = [shape] * 4
        if pair.role == 0:
            r1 = self.party.rng.random_uint64(shape)
            r1_msb, r1_low = r1 >> np.uint64(63), (r1 & _LOW63) >> np.uint64(bits)
            blinds, corr = [r1 + _TWO62], []
            for v in (0, 1):
                blind, values = self._trunc_deal(self.party.rng, shape, out_bits)
                blinds.append(blind - truncation_secret(bits, r1_msb, r1_low, True, v) * factor)
                corr += values
            self._blinded(pair, pieces, blinds, self._dealt_to_b(corr, [False] * 4), which=(0, 1, 1))
            return self._replicate(pair, None, shape)
        dealt = self._dealt_to_a(corr_shapes) if pair.role == 1 else []
        c1, *c2 = self._blinded(pair, pieces, [], [], which=(0, 1, 1))
        msb0, low0, msb1, low1 = dealt or self._take(corr_shapes)
        high = (c1 >> np.uint64(63)) == 1
        c_out = np.where(high, c2[1], c2[0]) - truncation_public(c1, bits) * factor
        t = truncation_share(c_out, out_bits, np.where(high, msb1, msb0), np.where(high, low1, low0), pair.role == 1)
        return self._replicate(pair, t, shape)

    @ring_arithmetic
    def truncate(self, share: np.ndarray, bits: int) -> np.ndarray:
        if bits == 0:
            return share
        return self._truncate3(share[0] + self._zeros3(share.shape[1:]), bits)

    def _finish(self, z: np.ndarray, trunc_bits: int) -> np.ndarray:
        z += self._zeros3(z.shape)
        return self._truncate3(z, trunc_bits) if trunc_bits else self._reshare(z)

    @ring_arithmetic
    def mul(self, x: np.ndarray, y: np.ndarray, trunc_bits: int) -> np.ndarray:
        return self._finish(x[0] * (y[0] + y[1]) + x[1] * y[0], trunc_bits)

    @ring_arithmetic
    def matmul(self, x: np.ndarray, y: np.ndarray, trunc_bits: int) -> np.ndarray:
        return self._finish(ring_matmul(x[0], y[0] + y[1]) + ring_matmul(x[1], y[0]), trunc_bits)

    @ring_arithmetic
    def ltz(self, x: np.ndarray, times: Multiplicands = (), truncate: Sequence[tuple[np.ndarray, int]] = ()
            ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """The dealt comparison (:mod:`mpcml.comparison`) with the helper as dealer; 4 rounds.

        1. The helper blinds its terms of ``x`` (with ``r``) and of each value to truncate, and deals
           the comparison's tables, the truncation pairs and, for the last step, a random bit ``b``
           and a Beaver triple per multiplicand; ``a`` and ``b`` swap terms and learn every ``c``.
        2. ``a`` and ``b`` swap the masked table bits ``d`` (and the truncations' 2-out-of-2 terms,
           which become replicated) and hold XOR shares of ``msb(x)``.
        3. They open ``e = msb ^ b`` and each multiplicand's Beaver differences; the bits and the
           products are 2-out-of-2 arithmetic shares.
        4. One swap makes them replicated.
        """
        shape = x.shape[1:]
        pair = self._pair()
        pieces = [x[0] + self._zeros3(shape)] + [s[0] + self._zeros3(s.shape[1:]) for s, _ in truncate]
        table_shapes = [shape, shape, (*shape, comparison.CHUNKS, comparison.TABLE_WORDS), (*shape, comparison.PRODUCT_WORDS)]
        trunc_shapes = [s.shape[1:] for s, _ in truncate for _ in range(2)]
        if pair.role == 0:
            # 1. the helper's blinds and dealt values; it knows its replicated shares of the truncations at once
            r, masks = self.party.rng.random_uint64(shape), self.party.rng.random_uint64(shape)
            blinds, corr, binary = [r], [masks, *comparison.deal(r, masks)], [True] * 4
            for s, bits in truncate:
                blind, pair_values = self._trunc_deal(self.party.rng, s.shape[1:], bits)
                blinds.append(blind)
                corr += pair_values
                binary += [False, False]
            to_b = self._dealt_to_b(corr, binary)
            truncated = [self._pads(pair, s.shape[1:]) for s, _ in truncate]
            values = [np.asarray(v, dtype=np.uint64) for v in (times(truncated) if callable(times) else times)]
            bit = self.party.rng.random_bits(shape)
            products = [bit, bit]
            for v in values:
                a, b = self.party.rng.random_uint64(v.shape[1:]), self.party.rng.random_uint64(v.shape[1:])
                products += [a, b, a * b]
            to_b += self._dealt_to_b(products, [False, True] + [False] * (3 * len(values)))
            self._blinded(pair, pieces, blinds, to_b)
            outputs = [shape] + [v.shape[1:] for v in values]
            return self._unflatten(self._pads(pair, (sum(_size(o) for o in outputs),)), outputs, truncated)
        leader = pair.role == 1
        dealt = self._shares(pair, table_shapes + trunc_shapes) if leader else None
        c_x, *c_trunc = self._blinded(pair, pieces, [], [])
        masks, r63, tables, products = dealt[:4] if leader else self._take(table_shapes)
        trunc_corr = dealt[4:] if leader else self._take(trunc_shapes)
        # 2. masked table bits and the truncations' terms, in one swap
        d = comparison.masked_bits(c_x, tables, masks, leader)
        terms = [truncation_share(c, bits, trunc_corr[2 * i], trunc_corr[2 * i + 1], leader)
                 for i, (c, (_, bits)) in enumerate(zip(c_trunc, truncate))]
        pads = [self._pads(pair, t.shape) for t in terms]
        self.party.send(pair.partner, [d, *[np.asarray(t - p) for t, p in zip(terms, pads)]])
        theirs = self.party.recv(pair.partner, expect=Tuple(Array(np.uint16, shape=shape), *[_uint64(t.shape) for t in terms]),
                                 what="masked table bits and truncation terms")
        d = d ^ theirs[0]
        truncated = [self._replicated(pair, t, p, o) for t, p, o in zip(terms, pads, theirs[1:])]
        msb = comparison.msb(c_x, d, r63, products, leader)
        # 3. the bit to arithmetic and the products, on 2-out-of-2 shares
        values = [np.asarray(v, dtype=np.uint64) for v in (times(truncated) if callable(times) else times)]
        mul_shapes = [v.shape[1:] for v in values for _ in range(3)]
        bit_arith, bit_xor, *abc = self._shares(pair, [shape, shape, *mul_shapes])
        halves = [v[0] + v[1] if leader else v[1] for v in values]
        masked = [m for h, (a, b) in zip(halves, zip(abc[0::3], abc[1::3])) for m in (widen(bit_arith, h.shape) - a, h - b)]
        mine = [msb ^ (bit_xor & _ONE), *masked]
        self.party.send(pair.partner, mine)
        theirs = self.party.recv(pair.partner, expect=Tuple(*[_uint64(m.shape) for m in mine]), what="openings")
        e, *opened = [m ^ t if i == 0 else m + t for i, (m, t) in enumerate(zip(mine, theirs))]
        bits = bit_arith - (e << _ONE) * bit_arith + (e if leader else np.uint64(0))
        out = [bits]
        for h, a, b, c_ab, f, g in zip(halves, abc[0::3], abc[1::3], abc[2::3], opened[0::2], opened[1::2]):
            bv = c_ab + f * b + a * g + (f * g if leader else np.uint64(0))
            ew = widen(e, h.shape)
            out.append(ew * h + (np.uint64(1) - (ew << _ONE)) * bv)
        # 4. replicated again, one swap for all
        flat = np.concatenate([o.ravel() for o in out])
        return self._unflatten(self._replicate(pair, flat, flat.shape), [o.shape for o in out], truncated)

    @staticmethod
    def _unflatten(flat: np.ndarray, shapes: Sequence[Shape], truncated: list[np.ndarray]
                   ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """``(bits, products, truncated)`` from the replicated concatenation of the bits and the products."""
        parts = np.split(flat, np.cumsum([_size(s) for s in shapes])[:-1], axis=1)
        results = [part.reshape((2, *shape)) for part, shape in zip(parts, shapes)]
        return results[0], results[1:], truncated

    # --- matrices used many times ------------------------------------------------------------

    def prepare_matrix(self, x: np.ndarray) -> np.ndarray:
        """Nothing to prepare: a replicated product already sends only its result (no masked opening)."""
        return x

    @ring_arithmetic
    def matrix_product(
        self, prepared: np.ndarray, v: np.ndarray, rows: np.ndarray | None, transpose: bool, trunc_bits: int
    ) -> np.ndarray:
        m = prepared if rows is None else prepared[:, rows]
        return self.matmul(np.swapaxes(m, 1, 2) if transpose else m, v, trunc_bits)

    def release_matrix(self, prepared: np.ndarray) -> None:
        """Nothing stored beyond the caller's reference."""
