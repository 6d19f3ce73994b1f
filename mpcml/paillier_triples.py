"""Dealer-free correlated randomness for two parties: additively homomorphic encryption and OT (no trusted helper).

:class:`PaillierTriples` implements :class:`mpcml.triples.TripleSource` for exactly two compute
parties. Products and bit-level correlations come from random oblivious transfer (:mod:`mpcml.ot`,
IKNP extension; Gilboa's products, CRYPTO 1999, for elements and, as vector OLE, for matrix
products, as in SecureML, Mohassel–Zhang S&P 2017, section 4.2's OT-based variant; ABY's AND
triples), which costs a few AES blocks per bit where HE costs an encryption per element or per
bit (measured: one breast-cancer regression epoch spent 628 of 732 s in HE AND triples). Matrix
products too large for OT's traffic come from additively homomorphic encryption, each party
holding its own key pair of the scheme ``he`` (:mod:`mpcml.he`: Okamoto–Uchiyama by default, or
Paillier): the "HE-based Beaver triple generation" of e.g. SPDZ's precursor in
Damgård–Pastro–Smart–Zakarias, CRYPTO 2012, and SecureML section 4.2.

HE core step (:meth:`PaillierTriples._cross_sum`): party ``i`` sends ``Enc_i(u_i)`` of its private
vector; party ``j`` computes ``Enc_i(f(u_i, v_j))`` for a function linear in ``u_i`` (a product
with its own ``v_j``, a matrix product) with several results packed per ciphertext, adds fresh
statistical masks and randomness (the shared "pack, mask, send, unpack" routine
:class:`mpcml.he.MaskedPacking`: masks uniform in ``[0, 2^(ℓ + σ))`` over the integers, ``σ = 40``)
and keeps ``-m mod 2^64``; party ``i`` decrypts ``f + m`` exactly over the integers and keeps it mod
2^64. Both directions run at once.

# 1. ``matmul``/``matmul_fixed``: random ``a = a_0 + a_1``, ``b = b_0 + b_1`` mod 2^64 (each party
  holds its own shares); ``c_i = a_i b_i + (cross-term shares)`` with cross terms ``a_0 b_1`` and
  ``a_1 b_0``. By default as vector OLE over random OT (Gilboa's product with vectors): party
  ``j``'s ``b_j`` is made of its random choice bits, one OT per bit of each entry ``b_j[k, l]``,
  in which the sender inputs the column ``a_i[:, k] 2^t`` masked by the OT's expanded pads (2
  rounds; ``64 x 8`` bytes per multiply-add of the product, e.g. 2 MB each way for the
  regression's ``128 x 31`` times ``31``). A product whose traffic would exceed
  ``ot_matmul_bytes`` uses the HE core step instead: each party encrypts the smaller operand and
  the peer multiplies it by its plaintext share (2 rounds; little traffic, much more computation).
  ``mul`` (elementwise): Gilboa by random OT, 64 per element each way: the receiver's ``b`` is its
  64 random choice bits, the sender inputs ``a 2^k`` to OT ``k`` (2 rounds).
# 2. ``edabit``/``trunc``/``random_bit``: the ring element ``r = sum_t 2^t (b_{0,t} xor b_{1,t})``
  is uniform and unknown to both, its XOR sharing is the parties' words, and
  ``x xor y = x + y - 2xy`` turns the bit products ``p_t = b_{0,t} b_{1,t}`` into arithmetic shares
  of ``r``, of ``msb(r)`` and of ``(r mod 2^63) >> f`` -- exactly, with no failure probability. Each
  ``p_t`` is one random OT (party ``i`` sends for positions ``t ≡ i mod 2``): the receiver's bit is
  its random choice, the sender corrects with ``r_0 - r_1 + x`` (2 rounds).
# 3. ``binary_and``: one random OT per bit each way, as in ABY (Demmler–Schneider–Zohner, NDSS 2015):
  the sender's ``a`` bit is ``x_0 xor x_1`` and its share of the cross term ``x_0``, the receiver's
  ``b`` bit its choice ``c`` and its share ``x_c`` (1 round).
# 4. ``mask``: each party's own random share (free).

Threat model: semi-honest, two parties; each sees only the other's ciphertexts (semantically
secure under the scheme's assumption, see :mod:`mpcml.he`), plaintexts masked with 40 statistical
bits (leakage at most 2^-40 per value) whose ciphertexts carry fresh randomness hiding how they
were computed (``"subgroup"`` randomness of the scheme), and OT messages (semi-honest IKNP:
computational, 128-bit). A malicious party could bias the randomness (no zero-knowledge proofs,
no OT consistency checks).

Cost per element and party: a matrix product by OT 64 OTs per entry of ``b`` and ``64 x 8`` bytes
per multiply-add (homomorphically at 2048-bit keys: one encryption per entry of the smaller
operand and a few modular multiplications per entry of the larger, fixed-base tables per column,
plus a share of a decryption and of a re-randomiser per output); a ``mul`` triple 64 OTs (each
way), a ``trunc`` pair 32, an AND word 64 (an OT is a few AES blocks and 24 bytes).
The dealer (:class:`mpcml.triples.DealerTriples`) is still far faster when a non-colluding helper
is acceptable.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np
from gmpy2 import mpz

from .he import (
    DEFAULT_SCHEME,
    EncryptedArray,
    MaskedPacking,
    PrivateKey,
    PublicKey,
    check_scheme,
    generate_keypair,
    public_key_from_wire,
    statistical_masks,
)
from .ot import KAPPA, OTExtension
from .party import Party
from .ring import ring_matmul
from .triples import Shape, TripleSource, _shape, matmul_shape

WORD_BITS = 64
OT_MATMUL_BYTES = 64 << 20  # default: matrix triples by OT up to 64 MiB each way, homomorphically beyond
_TWO64 = 1 << 64
_LOW63 = np.uint64((1 << 63) - 1)


def _checked_shape(shape: Any, name: str = "shape") -> Shape:
    """The shape as a tuple of non-negative ints; ``ValueError`` naming ``name`` otherwise."""
    try:
        dims = _shape(shape)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a sequence of ints, got {shape!r}") from None
    if any(d < 0 for d in dims):
        raise ValueError(f"{name} must not have negative dimensions, got {dims}")
    return dims


def _product_dims(shape_a: Shape, shape_b: Shape) -> tuple[int, int, int]:
    """``(rows, inner, cols)`` of ``a @ b`` for 1-D or 2-D operands (a 1-D ``a`` is one row, a 1-D ``b`` one column)."""
    rows = shape_a[0] if len(shape_a) == 2 else 1
    return rows, shape_a[-1], shape_b[1] if len(shape_b) == 2 else 1


def _ot_matmul_traffic(rows: int, inner: int, cols: int) -> int:
    """Bytes each player sends for a ``(rows, inner) @ (inner, cols)`` triple by OT: corrections and OT extension."""
    count = inner * cols * WORD_BITS
    return 8 * count * rows + KAPPA * count // 8


def _bits_to_words(bits: np.ndarray) -> np.ndarray:
    """uint64 words from 0/1 bits, 64 per word (bit ``t`` of a word from column ``t`` of ``bits.reshape(-1, 64)``)."""
    rows = np.asarray(bits, dtype=np.uint64).reshape(-1, WORD_BITS)
    return (rows << np.arange(WORD_BITS, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


class PaillierTriples(TripleSource):
    """Two-party triple source with no dealer; construct it at both players with the same ``players``.

    ``he`` names the additively homomorphic scheme (:data:`mpcml.he.SCHEMES`; both players must use
    the same); ``key_bits`` sets this party's modulus (2048 for ~112-bit security, the floor outside
    tests); ``keypair`` reuses an existing ``(PublicKey, PrivateKey)`` of any scheme instead.
    ``timeout`` bounds each wait for the peer (default: the party's), and must cover the peer's
    homomorphic work on the largest request. ``ot_matmul_bytes``: the most traffic (each way) a
    matrix triple may take by OT; larger ones are made homomorphically (the same at both players,
    checked at set-up).
    """

    def __init__(
        self,
        party: Party,
        players: Sequence[str],
        *,
        he: str = DEFAULT_SCHEME,
        key_bits: int = 2048,
        keypair: tuple[PublicKey, PrivateKey] | None = None,
        timeout: float | None = None,
        ot_matmul_bytes: int = OT_MATMUL_BYTES,
    ) -> None:
        self.players = tuple(players)
        if len(self.players) != 2 or len(set(self.players)) != 2:
            raise ValueError(f"players must name exactly two distinct compute parties, got {list(self.players)}")
        if party.id not in self.players:
            raise ValueError(f"party {party.id!r} is not among the players {list(self.players)}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if not isinstance(ot_matmul_bytes, int) or ot_matmul_bytes < 0:
            raise ValueError(f"ot_matmul_bytes must be a non-negative int, got {ot_matmul_bytes!r}")
        self._ot_matmul_bytes = ot_matmul_bytes
        self._party = party
        self._index = self.players.index(party.id)
        self._peer = self.players[1 - self._index]
        party.check_peer(self._peer, "player")
        self._timeout = timeout
        if keypair is None:
            keypair = generate_keypair(check_scheme(he), key_bits)
        self._pk, self._sk = keypair
        if not isinstance(self._pk, PublicKey) or not isinstance(self._sk, PrivateKey) or self._sk.public_key != self._pk:
            raise ValueError("keypair must be a matching (PublicKey, PrivateKey) from mpcml.he")
        party.send(self._peer, {"pk": self._pk.to_wire(), "ot_matmul_bytes": ot_matmul_bytes})
        hello = self._recv()
        if not isinstance(hello, dict) or set(hello) != {"pk", "ot_matmul_bytes"}:
            raise ValueError(f"player {self._peer!r} sent a malformed set-up message")
        if hello["ot_matmul_bytes"] != ot_matmul_bytes:
            raise ValueError(f"ot_matmul_bytes differs: {ot_matmul_bytes} at {party.id!r}, {hello['ot_matmul_bytes']!r} at "
                             f"{self._peer!r}; start both players with the same")
        self._peer_pk = public_key_from_wire(hello["pk"], self._pk.scheme)
        self._rng = party.rng
        self._store: dict[int, np.ndarray] = {}
        self._ots: OTExtension | None = None
        self._handles = itertools.count()

    def _recv(self) -> Any:
        return self._party.recv(self._peer, timeout=self._timeout)

    # --- the core step ----------------------------------------------------------------------

    def _exchange(self, values: np.ndarray, peer_count: int) -> EncryptedArray:
        """Send ``Enc_mine(values)``; receive the peer's ``peer_count`` ciphertexts under its key."""
        self._party.send(self._peer, self._sk.encrypt_int(np.asarray(values).ravel()).to_wire())
        theirs = EncryptedArray.from_wire(self._peer_pk, self._recv())
        if theirs.shape != (peer_count,):
            raise ValueError(f"peer {self._peer!r} sent {theirs.size} ciphertexts, expected {peer_count}")
        return theirs

    def _cross_sum(self, terms: Sequence[mpz], value_bits: int) -> np.ndarray:
        """HE core step: this party's shares of ``f(mine, peer's) + f(peer's, mine)`` slot by slot.

        ``terms`` are ciphertexts under the peer's key of values in ``[0, 2^value_bits)``; they are
        packed, masked and re-randomised by the shared routine :class:`mpcml.he.MaskedPacking` and sent;
        this party keeps ``-m mod 2^64`` and adds the decrypted ``f + m`` of the peer's terms.
        """
        masks = statistical_masks(self._rng, len(terms), value_bits, signed=False)
        layout = MaskedPacking.for_values(value_bits, signed=False)
        self._party.send(self._peer, layout.seal(self._peer_pk, terms, masks, randomness="subgroup").to_wire())
        received = layout.open(self._sk, EncryptedArray.from_wire(self._pk, self._recv()), len(terms))
        mine = np.array([(-m) % _TWO64 for m in masks], dtype=np.uint64)
        return mine + np.array([v % _TWO64 for v in received], dtype=np.uint64)

    def _matmul(self, a: np.ndarray, shape_b: Shape) -> tuple[np.ndarray, np.ndarray]:
        """``(b, c)``: this party's share of a random ``b`` of ``shape_b`` and of ``a @ b`` (step 1): by OT
        while its traffic stays within ``ot_matmul_bytes``, else homomorphically (both players decide alike)."""
        if _ot_matmul_traffic(*_product_dims(a.shape, shape_b)) <= self._ot_matmul_bytes:
            return self._ot_matmul(a, shape_b)
        b = self._rng.random_uint64(shape_b)
        return b, self._cross_matmul(a, b)

    def _ot_matmul(self, a: np.ndarray, shape_b: Shape) -> tuple[np.ndarray, np.ndarray]:
        """Vector OLE over random OT: ``b`` from this party's choice bits, and its share of ``a @ b``.

        OT ``(k, l, t)`` each way: as sender, with pads ``R_0, R_1`` (the OT's messages expanded to
        ``m`` words), this party sends ``d = R_0 - R_1 + a[:, k] 2^t`` and keeps ``-R_0``; as receiver
        with choice ``c`` it keeps ``R_c + c d``. Summed over ``t`` and ``k`` the receiver's and the
        sender's terms add up to ``(a_i @ b_j)[:, l]`` with ``b_j[k, l] = sum_t 2^t c_(k, l, t)``.
        """
        out_shape = matmul_shape(a.shape, shape_b)
        rows, inner, cols = _product_dims(a.shape, shape_b)
        a2 = a.reshape(rows, inner)
        powers = np.arange(WORD_BITS, dtype=np.uint64)
        inputs = np.broadcast_to((a2.T[:, None, None, :] << powers[None, None, :, None]), (inner, cols, WORD_BITS, rows))
        sent, bits, got = self._ot_products(inputs.reshape(inner * cols * WORD_BITS, rows))
        b = (bits.reshape(inner, cols, WORD_BITS) << powers).sum(axis=2, dtype=np.uint64)
        cross = (sent + got).reshape(inner, cols, WORD_BITS, rows).sum(axis=(0, 2), dtype=np.uint64)
        return b.reshape(shape_b), (ring_matmul(a2, b) + cross.T).reshape(out_shape)

    def _cross_matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """This party's share of ``a @ b`` (both operands additively shared, 1-D or 2-D).

        Each party encrypts the smaller of its two operands (both decide alike from the public
        shapes) and the peer multiplies it homomorphically by its own plaintext share of the other:
        ``a_i @ Enc_j(b_j)`` is one fixed-base table per column of ``Enc_j(b_j)`` and a few
        multiplications per entry of ``a_i`` (:class:`mpcml.he._modexp.ColumnPowers`).
        """
        out_shape = matmul_shape(a.shape, b.shape)
        inner = a.shape[-1]
        a2, b2 = a.reshape(-1, inner), b.reshape(inner, -1)
        if b2.size <= a2.size:
            terms = self._exchange(b2, b2.size).reshape(b2.shape).rmatmul(a2)
        else:
            terms = self._exchange(a2, a2.size).reshape(a2.shape).matmul(b2)
        cross = self._cross_sum(list(terms.ciphertexts.flat), 2 * WORD_BITS + inner.bit_length())
        return ring_matmul(a, b) + cross.reshape(out_shape)

    def _ot(self) -> OTExtension:
        """The OT extension with the peer, set up (128 base OTs each way) on first use."""
        if self._ots is None:
            self._ots = OTExtension(lambda obj: self._party.send(self._peer, obj), self._recv, self._rng)
        return self._ots

    def _ot_products(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shares of ``x c`` mod 2^64 for this party's ``values`` ``x`` (as OT sender) and, the other way,
        of the peer's values times this party's random choice bits ``c`` (one random OT per row, each way).

        ``values`` is ``(count,)`` (one word per OT) or ``(count, width)`` (a vector per OT: vector OLE, the
        OT's messages expanded to ``width`` words by the hash). Returns ``(my shares as sender, my choice
        bits, my shares as receiver)``, shaped as ``values``. Random OT: the sender has ``(r_0, r_1)``, the
        receiver its choice ``c`` and ``r_c``; the sender sends ``d = r_0 - r_1 + x`` and keeps ``-r_0``;
        the receiver keeps ``r_c + c d = r_0 + c x``.
        """
        vectors = values[:, None] if values.ndim == 1 else values
        count, width = vectors.shape
        x0, x1, choices, chosen = self._ot().extend(count, max(1, -(-width // 2)))
        r0, r1, rc = (v.view(np.uint64)[:, :width] for v in (x0, x1, chosen))
        self._party.send(self._peer, {"d": r0 - r1 + vectors})
        message = self._recv()
        theirs = message.get("d") if isinstance(message, dict) else None
        if not isinstance(theirs, np.ndarray) or theirs.dtype != np.uint64 or theirs.shape != (count, width):
            raise ValueError(f"peer {self._peer!r} sent a malformed OT correction")
        chosen_bits = choices.astype(np.uint64)
        return ((np.uint64(0) - r0).reshape(values.shape), chosen_bits,
                (rc + chosen_bits[:, None] * theirs).reshape(values.shape))

    def _bit_products(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``count`` products each way of a random bit of the sender and a random bit of the receiver:
        ``(my sender bits, my shares of their products, my receiver bits, my shares of theirs)``."""
        mine = self._rng.random_bits(count).astype(np.uint64)
        sent_z, got_bits, got_z = self._ot_products(mine)
        return mine, sent_z, got_bits, got_z

    def _random_word(self, shape: Shape, trunc_bits: int | None) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """A random word ``r`` XOR-shared as the parties' words and additively shared, with (``trunc_bits``)
        shares of ``sum_{t>=f} 2^(t-f) p_t`` and ``p_63``, where ``p_t = b_{0,t} b_{1,t}``.

        Party ``i`` is the OT sender for bit positions ``t ≡ i (mod 2)`` (its bits there are its own
        random bits) and the receiver for the others (its bits there are its random OT choices), so
        every ``p_t`` is one random-OT bit product (:meth:`_bit_products`); ``x xor y = x + y - 2xy``.
        """
        size = int(np.prod(shape, dtype=np.int64))
        half = WORD_BITS // 2
        sent_bits, sent_z, got_bits, got_z = self._bit_products(size * half)
        mine_pos = np.arange(self._index, WORD_BITS, 2)
        peer_pos = np.arange(1 - self._index, WORD_BITS, 2)
        bits = np.empty((size, WORD_BITS), dtype=np.uint64)
        z = np.empty((size, WORD_BITS), dtype=np.uint64)
        bits[:, mine_pos], z[:, mine_pos] = sent_bits.reshape(size, half), sent_z.reshape(size, half)
        bits[:, peer_pos], z[:, peer_pos] = got_bits.reshape(size, half), got_z.reshape(size, half)
        words = _bits_to_words(bits)
        powers = np.uint64(1) << np.arange(WORD_BITS, dtype=np.uint64)
        total = (z * powers).sum(axis=1, dtype=np.uint64)
        products = [total]
        if trunc_bits is not None:
            f = int(trunc_bits)
            upper = (z[:, f:] * (np.uint64(1) << np.arange(WORD_BITS - f, dtype=np.uint64))).sum(axis=1, dtype=np.uint64)
            products += [upper, z[:, WORD_BITS - 1]]
        r = words - np.uint64(2) * total
        return words.reshape(shape), r.reshape(shape), [p.reshape(shape) for p in products]

    # --- TripleSource ---------------------------------------------------------------------------

    def mul(self, shape: Shape, trunc_bits: int = 0) -> tuple[np.ndarray, ...]:
        """Gilboa products by random OT, 64 per element each way: this party's ``b`` is built from its 64
        random choice bits ``b = sum_k 2^k c_k``, and as sender it inputs ``a 2^k`` to OT ``k``, so the
        receiver's shares add up to ``sum_k c_k a 2^k = a b`` mod 2^64."""
        shape = _checked_shape(shape)
        size = int(np.prod(shape, dtype=np.int64))
        a = self._rng.random_uint64(size)
        shifted = a[:, None] << np.arange(WORD_BITS, dtype=np.uint64)
        sent_z, choices, got_z = self._ot_products(shifted.ravel())
        b = _bits_to_words(choices)
        cross = sent_z.reshape(size, WORD_BITS).sum(axis=1, dtype=np.uint64) + got_z.reshape(size, WORD_BITS).sum(axis=1, dtype=np.uint64)
        return (a.reshape(shape), b.reshape(shape), (a * b + cross).reshape(shape),
                *(self.trunc(shape, trunc_bits) if trunc_bits else ()))

    def matmul(self, shape_a: Shape, shape_b: Shape, trunc_bits: int = 0) -> tuple[np.ndarray, ...]:
        shape_a, shape_b = _checked_shape(shape_a, "shape_a"), _checked_shape(shape_b, "shape_b")
        out = matmul_shape(shape_a, shape_b)
        a = self._rng.random_uint64(shape_a)
        b, c = self._matmul(a, shape_b)
        return (a, b, c, *(self.trunc(out, trunc_bits) if trunc_bits else ()))

    def trunc(self, shape: Shape, trunc_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(r, msb(r), (r mod 2^63) >> f)`` shares, exact, via the bit products of two random words."""
        shape = _checked_shape(shape)
        if not isinstance(trunc_bits, (int, np.integer)) or not 1 <= trunc_bits <= 62:
            raise ValueError(f"trunc_bits must be an integer in [1, 62], got {trunc_bits!r}")
        f = int(trunc_bits)
        words, r, (_, upper, p63) = self._random_word(shape, f)
        msb = (words >> np.uint64(63)) - np.uint64(2) * p63
        low_products = upper - p63 * np.uint64(1 << (63 - f))
        low = ((words & _LOW63) >> np.uint64(f)) - np.uint64(2) * low_products
        return r, msb, low

    def binary_and(self, shape: Shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """AND triples from random OTs, one per bit each way (as in ABY): as sender of OT ``k`` this
        party's ``a`` bit is ``x_0 xor x_1`` and its share of ``a_i b_j`` is ``x_0``; as receiver its
        ``b`` bit is its choice ``c`` and its share of ``a_j b_i`` is ``x_c``."""
        shape = _checked_shape(shape)
        size = int(np.prod(shape, dtype=np.int64))
        x0, x1, choices, chosen = self._ot().extend(size * WORD_BITS)
        a = _bits_to_words((x0[:, 0] ^ x1[:, 0]) & 1)
        b = _bits_to_words(choices)
        cross = _bits_to_words(x0[:, 0] & 1) ^ _bits_to_words(chosen[:, 0] & 1)
        return a.reshape(shape), b.reshape(shape), ((a & b) ^ cross).reshape(shape)

    def random_bit(self, shape: Shape) -> tuple[np.ndarray, np.ndarray]:
        shape = _checked_shape(shape)
        size = int(np.prod(shape, dtype=np.int64))
        sent_bits, sent_z, got_bits, got_z = self._bit_products(size)
        bits, product = (sent_bits, sent_z) if self._index == 0 else (got_bits, got_z)
        bits = bits.astype(np.uint64)
        return (bits - np.uint64(2) * product).reshape(shape), bits.reshape(shape)

    def edabit(self, shape: Shape) -> tuple[np.ndarray, np.ndarray]:
        words, r, _ = self._random_word(_checked_shape(shape), None)
        return r, words

    def mask(self, shape: Shape) -> tuple[int, np.ndarray]:
        handle = next(self._handles)
        self._store[handle] = self._rng.random_uint64(_checked_shape(shape))
        return handle, self._store[handle]

    def matmul_fixed(
        self, handle: int, shape_b: Shape, rows: np.ndarray | None = None, transpose: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if handle not in self._store:
            raise ValueError(f"unknown mask handle {handle}")
        a = self._store[handle] if rows is None else self._store[handle][np.asarray(rows, dtype=np.int64)]
        if transpose:
            a = a.T
        shape_b = _checked_shape(shape_b, "shape_b")
        matmul_shape(a.shape, shape_b)  # refuses a mismatch before any message
        b, c = self._matmul(np.ascontiguousarray(a), shape_b)
        return a, b, c

    def release(self, handle: int) -> None:
        """Forget a stored mask (local only: nothing is sent)."""
        self._store.pop(handle, None)
