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
  is not a player splits its value additively among the players (:func:`mpcml.tensor.send_input`)
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
- comparison ``[x < 0]``: bit decomposition in binary sharing. ``x_0 + x_1 + x_2`` is reduced
  to ``s + 2 maj(x_0, x_1, x_2)`` by a carry-save adder (``s`` is the share itself read as XOR
  shares; ``P_i``'s term of ``maj`` is ``x_i & x_{i+1}``: one re-sharing round), then
  ``msb(s + carry)`` by a Kogge-Stone carry circuit on whole words (generate/propagate 1 round,
  5 levels of two ANDs, the last level's AND local), each AND one round
  (``z_i = x_i y_i ^ x_i y_{i+1} ^ x_{i+1} y_i ^ beta_i``); the three-out-of-three msb becomes
  arithmetic with a helper's random bit ``b``: ``a`` and ``b`` learn ``e = msb ^ b`` and set
  ``[msb] = e + [b] - 2e[b]`` (2 rounds, the first merged with the last AND). 9 rounds for any
  array size, exact on every ring element.
- reveal to all: ``P_i`` sends ``x_i`` to ``P_{i+1}`` (1 round); to one player ``j``: ``P_{j-1}``
  sends ``x_{j-1}``; to a party outside the players: every player sends ``x_i``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .csprng import SEED_BYTES, Csprng
from .engine import Engine, Shape, ring_arithmetic
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

    # --- the helper protocols (truncation, bit to arithmetic) ---------------------------------

    def _assisted(
        self, piece: np.ndarray, binary: bool, width: int, draw: Callable[[Csprng], tuple[np.ndarray, np.ndarray]]
    ) -> tuple[int, np.ndarray | None, np.ndarray | None]:
        """Round 1 of a helper protocol on a 3-out-of-3 sharing (``piece`` is this player's term).

        The helper ``h`` (rotating over the players) draws ``(rho, corr) = draw(own CSPRNG)``: ``rho``
        blinds its term, ``corr`` (``width`` arrays) is given to ``a`` and ``b`` as 2-out-of-2 shares
        (``a``'s from ``k_h``, ``b``'s sent). Returns ``(role, c, corr share)`` with role 0 (helper),
        1 (``a``) or 2 (``b``); ``a`` and ``b`` get ``c = sum of terms + rho`` (XOR if ``binary``).
        """
        helper = self._helper_turn
        self._helper_turn = (helper + 1) % PLAYERS
        role = (self.index - helper) % PLAYERS
        shape = piece.shape
        corr_shape = (width, *shape)
        # 1. the helper blinds its term and deals corr; a and b swap their terms
        if role == 0:
            rho, corr = draw(self.party.rng)
            masked = piece ^ rho if binary else piece + rho
            corr_b = corr - self._next.random_uint64(corr_shape)
            self.party.send(self.next_id, np.asarray(masked))
            self.party.send(self.prev_id, [np.asarray(masked), corr_b])
            return role, None, None
        partner, helper_id = (self.next_id, self.prev_id) if role == 1 else (self.prev_id, self.next_id)
        self.party.send(partner, np.asarray(piece))
        if role == 1:
            corr_share = self._prev.random_uint64(corr_shape)
            masked = self.party.recv(helper_id, expect=_uint64(shape), what="blinded term")
        else:
            masked, corr_share = self.party.recv(
                helper_id, expect=Tuple(_uint64(shape), _uint64(corr_shape)), what="blinded term and correlated shares"
            )
        other = self.party.recv(partner, expect=_uint64(shape), what="3-out-of-3 term")
        c = piece ^ other ^ masked if binary else piece + other + masked
        return role, c, corr_share

    def _to_replicated(self, role: int, t: np.ndarray | None, shape: Shape) -> np.ndarray:
        """Replicated shares of ``T_a + T_b`` (2-out-of-2 at ``a`` and ``b``); one swap between them.

        ``x_a = F(k_h)``, ``x_h = F(k_b)``, ``x_b = T_a + T_b - x_a - x_h``.
        """
        if role == 0:
            x_h = self._prev.random_uint64(shape)
            return np.stack([x_h, self._next.random_uint64(shape)])
        partner = self.next_id if role == 1 else self.prev_id
        pad = (self._prev if role == 1 else self._next).random_uint64(shape)
        self.party.send(partner, np.asarray(t - pad))
        x_b = t - pad + self.party.recv(partner, expect=_uint64(shape), what="2-out-of-2 term")
        return np.stack([pad, x_b]) if role == 1 else np.stack([x_b, pad])

    def _truncate3(self, z: np.ndarray, bits: int) -> np.ndarray:
        """Replicated shares of ``x >> bits`` from this player's re-randomised term ``z`` of ``x``; 2 rounds."""

        def draw(rng: Csprng) -> tuple[np.ndarray, np.ndarray]:
            r = rng.random_uint64(z.shape)
            return r + _TWO62, np.stack([r >> np.uint64(63), (r & _LOW63) >> np.uint64(bits)])

        role, c, corr = self._assisted(z, False, 2, draw)
        t = None
        if role:
            # 2. the dealer engine's local truncation, with a as the leader of the pair
            r_msb, r_low = corr
            leader = role == 1
            c_msb = c >> np.uint64(63)
            carry = np.where(c_msb == 1, (_ONE if leader else np.uint64(0)) - r_msb, r_msb)
            t = carry * np.uint64(1 << (63 - bits)) - r_low
            if leader:
                t += ((c & _LOW63) >> np.uint64(bits)) - np.uint64(1 << (62 - bits))
        # 3. back to replicated shares
        return self._to_replicated(role, t, z.shape)

    # --- products and truncation ------------------------------------------------------------

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

    # --- comparison ------------------------------------------------------------------------

    def _and_terms(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """This player's re-randomised term of a 3-out-of-3 XOR sharing of ``x & y`` (local)."""
        return (x[0] & (y[0] ^ y[1])) ^ (x[1] & y[0]) ^ self._zeros3(x.shape[1:], binary=True)

    @ring_arithmetic
    def ltz(self, x: np.ndarray) -> np.ndarray:
        shape = x.shape[1:]
        # 1. carry-save adder: x_0 + x_1 + x_2 = s + 2 maj; s is x read as XOR shares
        carry = self._reshare((x[0] & x[1]) ^ self._zeros3(shape, binary=True)) << _ONE
        # 2. generate and propagate of s + carry
        g = self._reshare(self._and_terms(x, carry))
        p = x ^ carry
        top = p[0] >> np.uint64(63)
        # 3. Kogge-Stone: the group generate of bits 0..62 is the carry into bit 63
        for shift in _KS_SHIFTS[:-1]:
            s = np.uint64(shift)
            z = self._and_terms(np.stack([p, p], axis=1), np.stack([g << s, p << s], axis=1))
            z = self._reshare(z)
            g, p = g ^ z[:, 0], z[:, 1]
        last = g[0] ^ self._and_terms(p, g << np.uint64(_KS_SHIFTS[-1]))
        msb = (top ^ (last >> np.uint64(62))) & _ONE

        # 4. XOR-shared bit to arithmetic with the helper's random bit (e = msb ^ bit at a and b)
        def draw(rng: Csprng) -> tuple[np.ndarray, np.ndarray]:
            bit = rng.random_bits(shape)
            return bit, bit[None]

        role, e, corr = self._assisted(msb, True, 1, draw)
        t = None
        if role:
            t = corr[0] - (e << _ONE) * corr[0]
            if role == 1:
                t += e
        return self._to_replicated(role, t, shape)

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
