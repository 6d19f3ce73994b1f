"""The ``"beaver"`` engine: additive sharing over Z_2^64 among ``k >= 2`` players with correlated randomness.

A secret ``x`` is ``sum_i x_i mod 2^64`` with player ``i`` holding ``x_i`` (a raw share has the
value's shape). Products, truncation and comparisons draw correlated randomness from a
:class:`~mpcml.triples.TripleSource`: by default a dealer that must not collude with any player
(:class:`~mpcml.triples.DealerTriples`, the server-aided model of Chen et al. 2020), or
dealer-free Paillier triples for two players (:class:`~mpcml.paillier_triples.PaillierTriples`).

Threat model: semi-honest players, any ``k - 1`` of them together learn nothing (every opened
value is masked by fresh uniform randomness: ``x - a`` for Beaver products, ``x + 2^62 + r``
for truncation, ``x + r``, ``w XOR a`` and ``bit XOR b`` in comparisons); with a dealer, the
dealer learns only shapes and the order of operations and must not collude with a player.

- ``x * y`` / ``x @ y`` (Beaver, 1957/1991): open ``d = x - a`` and ``e = y - b`` for a triple
  ``(a, b, c = ab)``; ``xy = c + d b + a e + d e`` (the leader adds ``d e``). One round.
- truncation by ``f`` bits: a pair ``(r, msb(r), (r mod 2^63) >> f)``; open
  ``c = x + 2^62 + r`` (uniform) and compute ``x >> f`` locally up to one unit, for any number of
  players and with no failure probability while ``|x| < 2^62``. One round.
- comparison ``[x < 0]``: open ``c = x + r`` for a random ``r`` and get XOR shares of
  ``msb(x) = msb(c - r)``: with a dealer (:attr:`TripleSource.deals_tables`), from dealt tables
  in one more round (:mod:`mpcml.comparison`); otherwise ``r`` is an edaBit (shared
  arithmetically and bitwise; Escudero et al., CRYPTO 2020) and ``msb(c + ~r + 1)`` comes from a
  Kogge-Stone carry circuit on whole uint64 words (public ``c`` makes the first level local): 6
  rounds of XOR-shared Beaver ANDs (:data:`AND_WORDS` word-triples per element). The XOR-shared
  bit becomes arithmetic with a random bit shared both ways (open ``e = msb ^ b``;
  ``[msb] = e + [b] - 2e[b]``), and in the same round every requested product ``[msb] v`` is
  ``e v + (1 - 2e) [b v]`` with a Beaver product ``[b v]`` (open ``b - a`` and ``v - b'``).
  3 rounds with a dealer (8 without) for any array size, exact on every ring element; a
  truncation requested alongside opens in the first round.
- masked matrices (SecureML, Mohassel and Zhang, S&P 2017, section 4.1): open ``X - A`` once for
  a stored mask ``A``, then each product with a fresh vector opens only the vector's mask.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from . import comparison
from .csprng import Csprng, new_seed
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
from .triples import TripleSource, matmul_shape

_TWO62 = np.uint64(1 << 62)
_ONES = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
_ONE = np.uint64(1)
_KS_SHIFTS = (1, 2, 4, 8, 16, 32)
AND_WORDS = 2 * (len(_KS_SHIFTS) - 1) + 1
"""Binary AND word-triples per element of one comparison (two per Kogge-Stone level, one at the last)."""


def check_peer_share(pid: str, other: Any, shape: tuple[int, ...], dtype: Any = np.uint64) -> None:
    """Reject a player's share unless it is a ``dtype`` (uint64) array of ``shape``."""
    dtype = np.dtype(dtype)
    if not isinstance(other, np.ndarray) or other.shape != shape or other.dtype != dtype:
        got = f"{other.dtype} array of shape {other.shape}" if isinstance(other, np.ndarray) else type(other).__name__
        raise ValueError(f"player {pid!r} sent a share that is a {got}, expected a {dtype} array of shape {shape}")


class BeaverEngine(Engine):
    """Additive shares among the players, correlated randomness from ``triples``."""

    name = "beaver"
    lead = 0

    def __init__(self, party: Party, players: Sequence[str], triples: TripleSource) -> None:
        super().__init__(party, players)
        if not isinstance(triples, TripleSource):
            raise TypeError(f"the beaver engine needs a TripleSource, got {type(triples).__name__}")
        if tuple(triples.players) != self.players:
            raise ValueError(f"the triple source serves {list(triples.players)}, not {list(self.players)}")
        self.triples = triples
        self.is_leader = self.index == 0

    # --- local -------------------------------------------------------------------------------

    def share_shape(self, shape: Shape) -> Shape:
        return tuple(shape)

    def public(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.uint64)
        return values.copy() if self.is_leader else np.zeros_like(values)

    @ring_arithmetic
    def add_public(self, share: np.ndarray, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.uint64)
        if self.is_leader:
            return share + values
        return np.broadcast_to(share, np.broadcast_shapes(share.shape, values.shape)).copy()

    def additive_part(self, share: np.ndarray) -> np.ndarray:
        return share

    # --- moving values in and out --------------------------------------------------------------

    @ring_arithmetic
    def input(self, encoded: np.ndarray | None, owner: str) -> np.ndarray:
        """The owner gives every other player a 32-byte PRG seed and keeps ``x - sum(PRG(seed_j))``."""
        self.check_owner(owner)
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

    def from_additive(self, mine: np.ndarray) -> np.ndarray:
        """Additive shares already: each player's private array is its share of the sum (no message)."""
        return np.asarray(mine, dtype=np.uint64)

    @ring_arithmetic
    def open(self, shares: Sequence[np.ndarray], binary: bool | Sequence[bool] = False) -> list[np.ndarray]:
        mine = [s if isinstance(s, np.ndarray) and s.dtype.kind == "u" else np.asarray(s, dtype=np.uint64) for s in shares]
        modes = [binary] * len(mine) if isinstance(binary, bool) else list(binary)
        self.party.send_all(self.others, mine)
        totals = [s.copy() for s in mine]
        for pid in self.others:
            theirs = self.party.recv(pid)
            if not isinstance(theirs, list) or len(theirs) != len(mine):
                raise ValueError(f"player {pid!r} sent a malformed share list")
            for total, other, xor in zip(totals, theirs, modes):
                check_peer_share(pid, other, total.shape, total.dtype)
                if xor:
                    total ^= other
                else:
                    total += other
        return totals

    @ring_arithmetic
    def open_to(self, share: np.ndarray, to: str) -> np.ndarray | None:
        self.check_owner(to, "recipient")
        if self.party.id != to:
            self.party.send(to, share)
            return None
        total = np.asarray(share, dtype=np.uint64).copy()
        for pid in self.others:
            other = self.party.recv(pid)
            check_peer_share(pid, other, total.shape)
            total += other
        return total

    @ring_arithmetic
    def open_to_each(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        for pid in self.others:
            self.party.send(pid, np.asarray(parts[pid], dtype=np.uint64))
        total = np.asarray(parts[self.party.id], dtype=np.uint64).copy()
        for pid in self.others:
            other = self.party.recv(pid)
            check_peer_share(pid, other, total.shape)
            total += other
        return total

    # --- products and truncation ------------------------------------------------------------

    def _truncated(self, c: np.ndarray, bits: int, pair: Sequence[np.ndarray]) -> np.ndarray:
        """Shares of ``x >> bits`` from the opened ``c = x + 2^62 + r`` and the pair ``(r, msb(r), (r mod 2^63) >> bits)``."""
        return truncation_share(c, bits, pair[1], pair[2], self.is_leader)

    @ring_arithmetic
    def truncate(self, share: np.ndarray, bits: int, pair: Sequence[np.ndarray] | None = None) -> np.ndarray:
        if bits == 0:
            return share
        pair = pair if pair is not None else self.triples.trunc(share.shape, bits)
        shifted = share + pair[0]
        if self.is_leader:
            shifted = shifted + _TWO62
        (c,) = self.open([shifted])
        return self._truncated(c, bits, pair)

    @ring_arithmetic
    def truncate_update(self, x: np.ndarray, bits: int, base: np.ndarray, factor: np.ndarray, out_bits: int
                        ) -> np.ndarray:
        """One round: open ``c1 = x + 2^62 + r1`` and, for both values ``v`` of ``msb(c1)``,
        ``c2_v = base - S_v factor + 2^62 + r2_v`` where ``S_v`` is the part of ``x >> bits`` known
        before ``c1`` (:func:`truncation_secret`) and ``r2_0``, ``r2_1`` are independent pairs (so
        all three are uniform). With ``v = msb(c1)``, ``c2_v - P(c1) factor`` (``P``: the public
        part) is ``base - (x >> bits) factor + 2^62 + r2_v``, truncated with ``r2_v``'s pair."""
        factor = np.asarray(factor, dtype=np.uint64)
        self._bundle(("trunc", x.shape, bits), ("trunc", base.shape, out_bits), ("trunc", base.shape, out_bits))
        first = self.triples.trunc(x.shape, bits)
        second = [self.triples.trunc(base.shape, out_bits) for _ in range(2)]
        lead = _TWO62 if self.is_leader else np.uint64(0)
        masked = [x + first[0] + lead]
        for v, (r, _, _) in enumerate(second):
            masked.append(base - truncation_secret(bits, first[1], first[2], self.is_leader, v) * factor + lead + r)
        c1, *c2 = self.open(masked)
        high = (c1 >> np.uint64(63)) == 1
        c_out = np.where(high, c2[1], c2[0]) - truncation_public(c1, bits) * factor
        pick = [np.where(high, second[1][k], second[0][k]) for k in (1, 2)]
        return truncation_share(c_out, out_bits, pick[0], pick[1], self.is_leader)

    def _bundle(self, *requests: tuple) -> None:
        """Ask for an operation's randomness in one request, unless the players prefetched already."""
        if not self.triples.prefetched:
            self.triples.prefetch(requests)

    @ring_arithmetic
    def mul(self, x: np.ndarray, y: np.ndarray, trunc_bits: int) -> np.ndarray:
        a, b, c, *pair = self.triples.mul(x.shape, trunc_bits)
        d, e = self.open([x - a, y - b])
        z = c + d * b + e * a
        if self.is_leader:
            z += d * e
        return self.truncate(z, trunc_bits, pair=pair) if trunc_bits else z

    @ring_arithmetic
    def matmul(self, x: np.ndarray, y: np.ndarray, trunc_bits: int) -> np.ndarray:
        a, b, c, *pair = self.triples.matmul(x.shape, y.shape, trunc_bits)
        d, e = self.open([x - a, y - b])
        # z = c + d@b + a@e + d@e = c + d@(b + e) + a@e, with d@e added by the leader only
        z = c + ring_matmul(d, b + e if self.is_leader else b) + ring_matmul(a, e)
        return self.truncate(z, trunc_bits, pair=pair) if trunc_bits else z

    # --- comparison ------------------------------------------------------------------------

    def _and(self, x: np.ndarray, y: np.ndarray, triple: tuple[np.ndarray, ...]) -> np.ndarray:
        """XOR shares of ``x & y`` from XOR shares, with a word-triple ``(a, b, a & b)``; one round."""
        a, b, c = triple
        d, e = self.open([x ^ a, y ^ b], binary=True)
        z = c ^ (d & b) ^ (e & a)
        if self.is_leader:
            z ^= d & e
        return z

    def _carry_msb(self, c: np.ndarray, r_bits: np.ndarray, ta: np.ndarray, tb: np.ndarray, tc: np.ndarray) -> np.ndarray:
        """XOR shares of ``msb(c - r)`` for public ``c`` and an edaBit's bits ``r_bits``: the Kogge-Stone circuit (6 rounds)."""
        not_r = r_bits ^ _ONES if self.is_leader else r_bits
        generate = c & not_r
        propagate = not_r ^ c if self.is_leader else not_r
        # the "+1" of c - r = c + ~r + 1 is a carry into bit 0: fold it into bit 0's generate
        g = generate ^ (propagate & _ONE)
        p = propagate & ~_ONE
        used = 0
        for shift in _KS_SHIFTS:
            s = np.uint64(shift)
            if shift != _KS_SHIFTS[-1]:
                k = slice(used, used + 2)
                z = self._and(np.stack([p, p]), np.stack([g << s, p << s]), (ta[k], tb[k], tc[k]))
                g, p = g ^ z[0], z[1]
                used += 2
            else:
                k = slice(used, used + 1)
                g = g ^ self._and(p[None], (g << s)[None], (ta[k], tb[k], tc[k]))[0]
        return ((propagate >> np.uint64(63)) ^ (g >> np.uint64(62))) & _ONE

    def _open_truncations(self, masked: Sequence[np.ndarray], truncate: Sequence[tuple[np.ndarray, int]]
                          ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Open ``masked`` and, in the same round, truncate each ``(share, bits)``; ``(opened, truncated)``."""
        pairs = [self.triples.trunc(share.shape, bits) for share, bits in truncate]
        shifted = [share + r + (_TWO62 if self.is_leader else np.uint64(0)) for (share, _), (r, _, _) in zip(truncate, pairs)]
        opened = self.open([*masked, *shifted])
        truncated = [self._truncated(c, bits, pair) for c, (_, bits), pair in zip(opened[len(masked):], truncate, pairs)]
        return opened[: len(masked)], truncated

    @ring_arithmetic
    def ltz(self, x: np.ndarray, times: Multiplicands = (), truncate: Sequence[tuple[np.ndarray, int]] = ()
            ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        x = np.asarray(x, dtype=np.uint64)
        # 1. open c = x + r (and the truncations' masked values); 2. XOR shares of msb(c - r)
        if self.triples.deals_tables:
            listed = [] if callable(times) else [("mul", np.shape(v), 0) for v in times]
            self._bundle(("table", x.shape), ("bit", x.shape), *[("trunc", s.shape, b) for s, b in truncate], *listed)
            r, masks, r63, tables, products = self.triples.table(x.shape)
            bit_arith, bit_xor = self.triples.random_bit(x.shape)
            (c,), truncated = self._open_truncations([x + r], truncate)
            (d,) = self.open([comparison.masked_bits(c, tables, masks, self.is_leader)], binary=True)
            msb = comparison.msb(c, d, r63, products, self.is_leader)
        else:
            r, r_bits, ta, tb, tc, bit_arith, bit_xor = self.triples.comparison(x.shape, AND_WORDS)
            (c,), truncated = self._open_truncations([x + r], truncate)
            msb = self._carry_msb(c, r_bits, ta, tb, tc)
        # 3. one round: the bit to arithmetic (open e = msb ^ b) and every product [msb] v
        values = [np.asarray(v, dtype=np.uint64) for v in (times(truncated) if callable(times) else times)]
        triples = [self.triples.mul(v.shape, 0) for v in values]
        masked = [m for v, (a, b, _) in zip(values, triples) for m in (widen(bit_arith, v.shape) - a, v - b)]
        e, *opened = self.open([msb ^ (bit_xor & _ONE), *masked], binary=[True] + [False] * len(masked))
        bits = self.add_public(bit_arith - (e << _ONE) * bit_arith, e)
        out = []
        for v, (a, b, c_ab), f, g in zip(values, triples, opened[0::2], opened[1::2]):
            bv = c_ab + f * b + a * g + (f * g if self.is_leader else np.uint64(0))  # shares of b * v
            ew = widen(e, v.shape)
            out.append(ew * v + (np.uint64(1) - (ew << _ONE)) * bv)
        return bits, out, truncated

    # --- masked matrices ---------------------------------------------------------------------

    def prepare_matrix(self, x: np.ndarray) -> tuple[int, np.ndarray]:
        """Draw a stored mask ``A`` and open ``X - A`` (one round, ``X.size`` elements per player)."""
        handle, mask_share = self.triples.mask(x.shape)
        (opened,) = self.open([x - mask_share])
        return handle, opened

    @ring_arithmetic
    def matrix_product(
        self, prepared: tuple[int, np.ndarray], v: np.ndarray, rows: np.ndarray | None, transpose: bool, trunc_bits: int
    ) -> np.ndarray:
        """``X' @ v = E' @ v + A' @ F + A' @ b`` with ``F = v - b`` opened (one round, ``|v|`` elements)."""
        handle, opened = prepared
        public = opened if rows is None else opened[rows]
        if transpose:
            public = public.T
        if trunc_bits:
            out_shape = matmul_shape(public.shape, v.shape)
            self._bundle(("matmul_fixed", handle, v.shape, rows, transpose), ("trunc", out_shape, trunc_bits))
        a, b, c = self.triples.matmul_fixed(handle, v.shape, rows, transpose)
        (f,) = self.open([v - b])
        z = c + ring_matmul(public, v) + ring_matmul(a, f)
        return self.truncate(z, trunc_bits) if trunc_bits else z

    def release_matrix(self, prepared: tuple[int, np.ndarray]) -> None:
        self.triples.release(prepared[0])

    def close(self) -> None:
        self.triples.close()
