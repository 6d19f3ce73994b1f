"""The dealt comparison: ``msb(x)`` from an opened ``c = x + r`` in one more round, with tables from a helper.

Both engines compare this way when a helper can deal correlated randomness (``"beaver"``: the
dealer, :class:`mpcml.triples.DealerTriples`; ``"rss3"``: one of the three players for the other
two). The helper draws ``r`` uniform in Z_2^64; the players open ``c = x + r`` (uniform) and
need ``msb(x) = msb(c - r) = c_63 xor r_63 xor [c' < r']`` with ``c' = c mod 2^63`` public and
``r' = r mod 2^63`` secret: a comparison of a public with a secret 63-bit value.

**Tables.** ``r'`` is split into :data:`CHUNKS` chunks of 8 bits (the top one 7 bits). For each
chunk ``j`` the helper deals XOR shares of the 256-bit table ``T_j[v] = [v < r'_j]``; with the
public chunk ``c'_j`` every player looks up its shares of ``lt_j = T_j[c'_j]`` and of
``eq_j = [c'_j = r'_j] = T_j[c'_j - 1] xor T_j[c'_j]`` (``T_j[-1] = 1``) locally, no message.

**One round to combine.** ``[c' < r'] = XOR_j lt_j eq_{j+1} ... eq_7`` (at most one term is 1).
The players open the 16 bits ``d = (lt, eq) xor m`` masked by 16 random mask bits ``m`` (one
``uint16`` per element; uniform), and each term, a product of the variables ``V_j =
{lt_j, eq_{j+1}, ..., eq_7}``, expands as ``prod (d_v xor m_v) = XOR_{S <= V_j} prod_{v not in S}
d_v * M_S`` with ``M_S = prod_{v in S} m_v``: the helper deals XOR shares of ``M_S`` for the
:data:`PRODUCTS` non-empty subsets involved (382 bits: 6 words per element), and the public
coefficients of every ``M_S`` are a function of ``d`` alone, read from a precomputed table
(:func:`_coefficients`: 2^16 rows of 384 bits). So ``msb(x)`` comes out XOR-shared after two
rounds (open ``c``, open ``d``), exact on the whole ring, with no failure probability.

Dealt per element: ``r`` (arithmetic), ``r_63``, the tables (32 words), the mask products (6
words), the masks (a word, of which 16 bits are used): the last two and ``r`` can come from the
pairwise PRG streams, the rest is derived (39 words, 312 bytes, sent to one player).
Security: ``c`` is uniform (``r`` uniform), ``d`` is uniform (``m`` uniform and independent of
everything else); the tables and products are XOR-shared, so any one share is uniform.
"""

from __future__ import annotations

import functools

import numpy as np

CHUNK_BITS = 8
CHUNKS = 8
"""63 bits of ``r'`` in chunks of 8 (the top chunk has 7 bits)."""
TABLE_WORDS = (1 << CHUNK_BITS) // 64
MASK_BITS = 2 * CHUNKS
"""Variables per element: ``lt_0..lt_7`` (bits 0-7 of ``d``) and ``eq_0..eq_7`` (bits 8-15)."""
_ONES = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
_LOW63 = np.uint64((1 << 63) - 1)
_MASK16 = np.uint64(0xFFFF)


def _terms() -> list[int]:
    """The variable sets ``V_j = {lt_j, eq_{j+1}, ..., eq_7}`` as bitmasks over the 16 variables."""
    return [(1 << j) | sum(1 << (CHUNKS + k) for k in range(j + 1, CHUNKS)) for j in range(CHUNKS)]


def _subsets(mask: int) -> list[int]:
    """Every subset of the bitmask ``mask`` (the empty set included)."""
    out, sub = [], mask
    while True:
        out.append(sub)
        if sub == 0:
            return out
        sub = (sub - 1) & mask


@functools.cache
def _family() -> tuple[int, ...]:
    """The non-empty subsets ``S`` of some ``V_j``, sorted: the order of the dealt products ``M_S``."""
    return tuple(sorted({s for v in _terms() for s in _subsets(v) if s}))


PRODUCTS = len(_family())
PRODUCT_WORDS = -(-PRODUCTS // 64)


def _pack(rows: np.ndarray) -> np.ndarray:
    """``(PRODUCTS, n)`` booleans (one row per product) as ``(n, PRODUCT_WORDS)`` uint64 words (bit ``p``
    in word ``p // 64``)."""
    words = np.zeros((PRODUCT_WORDS, rows.shape[1]), dtype=np.uint64)
    for p, row in enumerate(rows):
        words[p // 64] |= row.astype(np.uint64) << np.uint64(p % 64)
    return np.ascontiguousarray(words.T)


@functools.cache
def _variables() -> np.ndarray:
    """``(16, 2^16)`` booleans: bit ``v`` of every 16-bit word."""
    words = np.arange(1 << MASK_BITS, dtype=np.uint32)
    return ((words[None, :] >> np.arange(MASK_BITS, dtype=np.uint32)[:, None]) & 1).astype(bool)


def _monomials(masks: list[int]) -> dict[int, np.ndarray]:
    """``prod_{v in S} bit_v(w)`` for every 16-bit word ``w`` and every ``S`` in ``masks`` and their prefixes."""
    bits = _variables()
    memo: dict[int, np.ndarray] = {0: np.ones(bits.shape[1], dtype=bool)}

    def product(mask: int) -> np.ndarray:
        if mask not in memo:
            low = mask & -mask
            memo[mask] = product(mask ^ low) & bits[low.bit_length() - 1]
        return memo[mask]

    for mask in masks:
        product(mask)
    return memo


@functools.cache
def _coefficients() -> tuple[np.ndarray, np.ndarray]:
    """``(COEF, CONST)`` for every opened 16-bit ``d``: the packed public coefficient of each ``M_S``
    (``XOR_{j: S <= V_j} prod_{v in V_j - S} d_v``) and the constant term ``XOR_j prod_{v in V_j} d_v``."""
    family = _family()
    position = {s: p for p, s in enumerate(family)}
    terms = _terms()
    products = _monomials([t ^ s for t in terms for s in _subsets(t)])
    coef = np.zeros((len(family), 1 << MASK_BITS), dtype=bool)
    const = np.zeros(1 << MASK_BITS, dtype=bool)
    for term in terms:
        for s in _subsets(term):
            if s:
                coef[position[s]] ^= products[term ^ s]
            else:
                const ^= products[term]
    return _pack(coef), const.astype(np.uint64)


@functools.cache
def _mask_products() -> np.ndarray:
    """For every 16-bit mask word ``m``: the packed ``M_S = prod_{v in S} m_v`` in :func:`_family` order."""
    family = _family()
    products = _monomials(list(family))
    return _pack(np.stack([products[s] for s in family]))


def _chunks(values: np.ndarray) -> np.ndarray:
    """The :data:`CHUNKS` chunks of ``values mod 2^63`` (a new last axis): its little-endian bytes."""
    low = np.ascontiguousarray(np.asarray(values, dtype=np.uint64) & _LOW63)
    return low.astype("<u8", copy=False).view(np.uint8).reshape(low.shape + (CHUNKS,))


@functools.cache
def _unary() -> np.ndarray:
    """``(256, TABLE_WORDS)`` words: row ``v`` has its first ``v`` bits set (the table ``[u < v]``)."""
    bits = np.arange(1 << CHUNK_BITS)[None, :] < np.arange(1 << CHUNK_BITS)[:, None]
    return np.packbits(bits, axis=1, bitorder="little").view("<u8").astype(np.uint64)


def deal(r: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The helper's derived values for the random ``r`` and mask words ``masks`` (low 16 bits used):
    ``(r_63, tables (..., CHUNKS, TABLE_WORDS), mask products (..., PRODUCT_WORDS))``, all to be XOR-shared."""
    r = np.asarray(r, dtype=np.uint64)
    tables = _unary()[_chunks(r)]
    products = _mask_products()[(np.asarray(masks, dtype=np.uint64) & _MASK16).astype(np.intp)]
    return r >> np.uint64(63), tables, products


def _entries(tables: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Bit ``index[..., j]`` of chunk ``j``'s table share, for every chunk, as uint8 0/1."""
    table_bytes = np.ascontiguousarray(tables).astype("<u8", copy=False).view(np.uint8).reshape(-1)
    rows = np.arange(index.size, dtype=np.intp) * (TABLE_WORDS * 8)
    picked = table_bytes[rows + (index.reshape(-1) >> 3)]
    return ((picked >> (index.reshape(-1) & 7)) & 1).reshape(index.shape)


def masked_bits(c: np.ndarray, tables: np.ndarray, masks: np.ndarray, leader: bool) -> np.ndarray:
    """This player's share of ``d = (lt, eq) xor m`` (uint16), from the public ``c`` and its shares."""
    chunk = _chunks(c).astype(np.intp)
    lt = _entries(tables, chunk)
    le = _entries(tables, np.maximum(chunk - 1, 0))
    le[chunk == 0] = 1 if leader else 0  # T_j[-1] = 1, a public constant
    packed = np.packbits(np.concatenate([lt, lt ^ le], axis=-1).astype(bool), axis=-1, bitorder="little")
    word = packed.astype("<u1").view("<u2")[..., 0].astype(np.uint16)
    return word ^ (np.asarray(masks, dtype=np.uint64) & _MASK16).astype(np.uint16)


def msb(c: np.ndarray, d: np.ndarray, r63: np.ndarray, products: np.ndarray, leader: bool) -> np.ndarray:
    """This player's XOR share (uint64 0/1) of ``msb(c - r)`` from the public ``c`` and opened ``d``."""
    coef, const = _coefficients()
    index = np.asarray(d, dtype=np.intp)
    share = np.bitwise_xor.reduce(coef[index] & products, axis=-1)
    share = (np.bitwise_count(share) & 1).astype(np.uint64) ^ (r63 & np.uint64(1))
    if leader:
        share ^= const[index] ^ (np.asarray(c, dtype=np.uint64) >> np.uint64(63))
    return share
