"""Paillier encryption on numpy arrays, interoperable with ``phe`` and fast through gmpy2.

Scheme (Paillier, EUROCRYPT 1999) with ``g = n + 1``: ``Enc(m) = (1 + m n) * r^n mod n^2``,
``Dec(c) = L(c^λ mod n^2) * μ mod n``; here decryption runs per prime (mod p^2 and q^2) and
recombines by CRT, exactly as ``phe`` does, so keys and ciphertexts are the same objects:
:class:`PublicKey`/:class:`PrivateKey` wrap ``phe.PaillierPublicKey``/``PaillierPrivateKey``
(attribute ``.phe``) and :meth:`EncryptedArray.to_phe`/:meth:`EncryptedArray.from_phe` convert
to and from ``phe.EncryptedNumber``.

Plaintexts. A signed integer ``v`` with ``|v| <= max_int = n // 3 - 1`` is stored as
``v mod n`` (negatives as ``n - |v|``, as in ``phe``); decryption maps back to the signed value
and raises ``OverflowError`` in the middle third (a homomorphic result that overflowed). Reals
are fixed point: ``round(x * 2^frac_bits)``; every :class:`EncryptedArray` carries its scale
``frac_bits``. Multiplying by a float multiplier encodes it with ``frac_bits`` bits too, so
the scales add; integer (and bool) multipliers are exact and keep the scale.

Fast encryption (Damgård–Jurik–Nielsen, "A generalization of Paillier's public-key system
with applications to electronic voting", IJIS 2010, section 4.2): instead of a full ``r^n``
(a ``|n|``-bit exponentiation mod n^2) the encryptor draws ``hs = h^n`` once for a random
``h = -x^2 mod n`` and uses ``r^n = hs^a`` with a short uniformly random exponent ``a`` of
``short_exponent_bits`` (default 256 = 2 x 128) bits, computed from a fixed-base table with
8-bit windows (one modular multiplication per window). Security rests on decisional composite
residuosity plus the short-exponent indistinguishability assumption (``hs^a`` with a 256-bit
``a`` is indistinguishable from a uniform n-th residue; the best known attack on short
exponents is Pollard's lambda at 2^128 work). ``short_exponent_bits=None`` selects the
textbook uniformly random ``r`` (plain DCR, about 30x slower).

Also here: known-bound decryption (mod p only, :class:`PrivateKey`), conversion of ciphertexts
to additive shares mod 2^64 (:func:`mask_to_share`/:func:`unmask_share`, 40 statistical masking
bits), and packing of many fixed-point values per plaintext for protocols that only add
(:func:`encrypt_packed`/:class:`PackedEncryptedArray`). The dealer-free Beaver triple source
built on all this is :mod:`mpcml.paillier_triples`.

Homomorphic results are *not* re-randomised: ``c^0 = 1`` or a product of known ciphertexts can
reveal a multiplier to the key owner. Call :meth:`EncryptedArray.rerandomize` (or mask, as
:func:`mask_to_share` does) before sending a computed ciphertext to the key owner; both use
uniformly random ``r`` by default, because the key owner knows the factorisation and the DJN
randomness does not hide a computation from it. When every input was a DJN encryption under the
key owner's base (which :meth:`PublicKey.to_wire` ships with the key), ``randomness="subgroup"``
(a long exponent of that base, 7x cheaper) hides the computation as well (see
:meth:`PublicKey.obfuscators`).
"""

from __future__ import annotations

import math
import numbers
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import gmpy2
import numpy as np
import phe
import scipy.sparse as sp
from gmpy2 import mpz, powmod
from numpy.typing import ArrayLike

from .csprng import Csprng
from .fixedpoint import DEFAULT_FRAC_BITS, HEADROOM_BITS, RING_BITS

MASK_SIGMA = 40
SUBGROUP_SIGMA = 64
RANDOMNESS = ("djn", "subgroup", "uniform")
DEFAULT_SHORT_EXPONENT_BITS = 256
MIN_KEY_BITS = 1024
MAX_FRAC_BITS = 512
_WINDOW_BITS = 8
_OWNER_WINDOW_BITS = 10
_PARALLEL_MIN = 8
_ONE = mpz(1)
_TWO64 = 1 << 64
_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="paillier")


def parallel_powmod(bases: list[mpz], exponent: mpz, modulus: mpz, parallel: bool = True) -> list[mpz]:
    """``[b^exponent mod modulus]``, the list split over two GIL-free ``powmod_base_list`` calls."""
    if not (parallel and len(bases) >= _PARALLEL_MIN):
        return [powmod(b, exponent, modulus) for b in bases]
    half = len(bases) // 2
    fut = _pool.submit(gmpy2.powmod_base_list, bases[half:], exponent, modulus)
    return gmpy2.powmod_base_list(bases[:half], exponent, modulus) + fut.result()


def generate_keypair(n_length: int = 2048) -> tuple["PublicKey", "PrivateKey"]:
    """A fresh key pair with an ``n_length``-bit modulus (``phe``'s generator; CSPRNG primes)."""
    if not isinstance(n_length, int) or n_length < MIN_KEY_BITS:
        raise ValueError(f"n_length must be an integer >= {MIN_KEY_BITS}, got {n_length!r}")
    pub, priv = phe.generate_paillier_keypair(n_length=n_length)
    public_key = PublicKey(pub)
    return public_key, PrivateKey(priv, public_key)


def _check_frac_bits(frac_bits: Any, name: str = "frac_bits") -> int:
    if not isinstance(frac_bits, (int, np.integer)) or isinstance(frac_bits, bool) or not 0 <= frac_bits <= MAX_FRAC_BITS:
        raise ValueError(f"{name} must be an integer in [0, {MAX_FRAC_BITS}], got {frac_bits!r}")
    return int(frac_bits)


def _numeric(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == object:
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in arr.flat):
            raise TypeError(f"{name} of dtype object must hold Python integers only")
        return arr
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    return arr


def _is_exact(arr: np.ndarray) -> bool:
    return arr.dtype == object or arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)


def _to_ints(values: Any, frac_bits: int, name: str) -> tuple[np.ndarray, int]:
    """Integer-valued object array and the scale it carries: integers exact, floats fixed point."""
    arr = _numeric(values, name)
    if _is_exact(arr):
        return np.array([int(v) for v in arr.flat], dtype=object).reshape(arr.shape), 0
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; fixed-point encoding needs finite values")
    with np.errstate(over="ignore"):
        scaled = np.asarray(np.rint(np.ldexp(arr, frac_bits)))
    if not np.all(np.isfinite(scaled)):
        raise ValueError(f"{name} has a value too large to encode with {frac_bits} fractional bits (exceeds max_int)")
    if scaled.size and np.max(np.abs(scaled)) < 2.0**62:
        return np.asarray(scaled.astype(np.int64), dtype=object), frac_bits
    return np.array([int(v) for v in scaled.flat], dtype=object).reshape(arr.shape), frac_bits


def _values_at_scale(values: Any, frac_bits: int, name: str) -> np.ndarray:
    """``round(x * 2^frac_bits)`` as an object array of ints, for integer and real inputs alike."""
    arr = _numeric(values, name)
    ints, added = _to_ints(arr, frac_bits, name)
    if added != frac_bits:
        ints = np.asarray(ints * (1 << frac_bits), dtype=object)
    return ints


def multi_exp(terms: Sequence[tuple[mpz, int]], modulus: mpz) -> mpz:
    """``prod b^e mod modulus`` for non-negative exponents, by Pippenger's bucket method.

    Per ``w``-bit window: one multiplication per term plus ``2^(w+1)`` to combine the buckets,
    instead of a full exponentiation per term (about 5x fewer multiplications for 20-bit
    exponents and long rows). Short rows fall back to one ``powmod`` per term.
    """
    if len(terms) < 16:  # too short for buckets to pay off
        acc = _ONE
        for base, e in terms:
            acc = acc * (base if e == 1 else powmod(base, e, modulus)) % modulus
        return acc
    top = max(e for _, e in terms).bit_length()
    width = max(1, min(top, len(terms).bit_length() - 3, 10))
    digit_mask = (1 << width) - 1
    result = _ONE
    for shift in range(((top - 1) // width) * width, -1, -width):
        if result != 1:
            result = powmod(result, 1 << width, modulus)
        buckets: list[mpz | None] = [None] * (digit_mask + 1)
        for base, e in terms:
            d = (e >> shift) & digit_mask
            if d:
                held = buckets[d]
                buckets[d] = base if held is None else held * base % modulus
        running, total = _ONE, _ONE
        for held in reversed(buckets[1:]):
            if held is not None:
                running = running * held % modulus
            if running != 1:
                total = total * running % modulus
        result = result * total % modulus
    return result


class _ColumnPowers:
    """``columns[i] ^ e`` for the exponents of a sparse product, sharing work within a column.

    A column used by at least ``_TABLE_MIN_USES`` non-zeros gets a fixed-base table
    ``c^(d * 2^(4t))`` (``d < 16``): about ``4 * ceil(bits / 4)`` multiplications once, then
    ``ceil(bits / 4) - 1`` per use instead of a ``bits``-bit exponentiation.
    """

    _WIDTH = 4
    _TABLE_MIN_USES = 16
    _LONG_ROW = 16

    def __init__(self, columns: Sequence[mpz], indices: np.ndarray, data: Sequence[int], modulus: mpz) -> None:
        self.columns, self.modulus = columns, modulus
        top = max((abs(int(e)) for e in data), default=0).bit_length()
        self.windows = -(-top // self._WIDTH)
        uses = np.bincount(np.asarray(indices, dtype=np.int64), minlength=len(columns)) if len(columns) else np.zeros(0)
        self.tabled = set(np.flatnonzero(uses >= self._TABLE_MIN_USES).tolist()) if self.windows > 1 else set()
        self.tables: dict[int, list[list[mpz]]] = {}

    def _table(self, col: int) -> list[list[mpz]]:
        table = self.tables.get(col)
        if table is None:
            base, m = self.columns[col], self.modulus
            table = []
            for _ in range(self.windows):
                row = [_ONE, base]
                for _ in range(2, 1 << self._WIDTH):
                    row.append(row[-1] * base % m)
                table.append(row)
                base = row[-1] * base % m
            self.tables[col] = table
        return table

    def power(self, col: int, e: int) -> mpz:
        base, m = self.columns[col], self.modulus
        if e == 1:
            return base
        if col not in self.tabled:
            return powmod(base, e, m)
        acc = None
        digit_mask = (1 << self._WIDTH) - 1
        for row in self._table(col):
            d = e & digit_mask
            if d:
                acc = row[d] if acc is None else acc * row[d] % m
            e >>= self._WIDTH
        return acc

    def product(self, terms: list[tuple[int, int]]) -> mpz:
        """``prod columns[col] ^ e`` over ``(col, e)`` with positive ``e``."""
        if len(terms) >= self._LONG_ROW:
            return multi_exp([(self.columns[col], e) for col, e in terms], self.modulus)
        acc = _ONE
        for col, e in terms:
            acc = acc * self.power(col, e) % self.modulus
        return acc


def _extend_comb(table: list[list[mpz]], base: mpz, modulus: mpz, rows: int, window: int) -> None:
    """Grow the comb ``table[k][d] = base^(d 2^(window k)) mod modulus`` to ``rows`` rows."""
    while len(table) < rows:
        step = base if not table else table[-1][-1] * table[-1][1] % modulus
        row = [_ONE, step]
        for _ in range(2, 1 << window):
            row.append(row[-1] * step % modulus)
        table.append(row)


def _comb_digits(count: int, exponent_bits: int, window: int) -> list[list[int]]:
    """``count`` uniform exponents in ``[0, 2^exponent_bits)`` from ``os.urandom``, as ``window``-bit digits."""
    rows = -(-exponent_bits // window)
    if window == 8:
        raw = os.urandom(rows * count)
        return [list(raw[k : k + rows]) for k in range(0, rows * count, rows)]
    width, mask = (rows * window + 7) // 8, (1 << window) - 1
    raw = os.urandom(width * count)
    return [[(a >> (window * k)) & mask for k in range(rows)]
            for a in (int.from_bytes(raw[i : i + width], "little") for i in range(0, width * count, width))]


def _comb_power(table: list[list[mpz]], digits: Sequence[int], modulus: mpz) -> mpz:
    """``base^a`` for the exponent with these digits (one multiplication per non-zero digit)."""
    acc = table[0][digits[0]]
    for row, d in zip(table[1:], digits[1:]):
        if d:
            acc = acc * row[d] % modulus
    return acc


class PublicKey:
    """Paillier public key (wraps ``phe.PaillierPublicKey``) with fast array encryption."""

    def __init__(
        self, key: phe.PaillierPublicKey | int, short_exponent_bits: int | None = DEFAULT_SHORT_EXPONENT_BITS,
        djn_base: int | None = None,
    ) -> None:
        if isinstance(key, PublicKey):
            key = key.phe
        if not isinstance(key, phe.PaillierPublicKey):
            if not isinstance(key, numbers.Integral) or isinstance(key, bool):
                raise TypeError(f"key must be a phe.PaillierPublicKey or the modulus n, got {type(key).__name__}")
            key = phe.PaillierPublicKey(int(key))
        n = int(key.n)
        if n.bit_length() < MIN_KEY_BITS or n % 2 == 0:
            raise ValueError(f"the modulus n must be odd with at least {MIN_KEY_BITS} bits, got {n.bit_length()} bits")
        if short_exponent_bits is not None and (not isinstance(short_exponent_bits, int) or short_exponent_bits < 160):
            raise ValueError(f"short_exponent_bits must be None or an integer >= 160, got {short_exponent_bits!r}")
        self.phe = key
        self.n = mpz(n)
        self.nsquare = self.n * self.n
        self.max_int = int(key.max_int)
        self.short_exponent_bits = short_exponent_bits
        self._base = None if djn_base is None else self._checked_base(djn_base)
        self._table: list[list[mpz]] = []
        self._lock = threading.Lock()

    @property
    def bits(self) -> int:
        return int(self.n.bit_length())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and self.n == other.n

    def __hash__(self) -> int:
        return hash(int(self.n))

    def __repr__(self) -> str:
        return f"<mpcml PublicKey {self.bits} bits>"

    # --- randomness ---------------------------------------------------------------------

    def _checked_base(self, base: Any) -> mpz:
        if not isinstance(base, numbers.Integral) or isinstance(base, bool):
            raise TypeError(f"djn_base must be an integer, got {type(base).__name__}")
        base = mpz(int(base))
        n2 = self.nsquare
        if not 1 < base < n2 or gmpy2.gcd(base, self.n) != 1 or base * base % n2 == 1:
            raise ValueError("djn_base must be a unit mod n^2 of order above 2")
        return base

    @property
    def djn_base(self) -> mpz:
        """The DJN base ``hs = h^n mod n^2`` (``h = -x^2 mod n``); drawn on first use unless given.

        The key owner's base travels with :meth:`to_wire`, so every party encrypting under one key
        uses the same base: that is what makes ``randomness="subgroup"`` hiding (see :meth:`obfuscators`).
        """
        with self._lock:
            if self._base is None:
                n = self.n
                while True:
                    x = mpz(secrets.randbelow(int(n) - 2) + 2)
                    if gmpy2.gcd(x, n) == 1:
                        break
                self._base = powmod(n - x * x % n, n, self.nsquare)
            return self._base

    def _comb(self, count: int, exponent_bits: int) -> list[mpz]:
        """``count`` values ``hs^a`` with ``a`` uniform in ``[0, 2^exponent_bits)`` (one multiplication per 8 bits)."""
        table, n2 = self._comb_table(exponent_bits), self.nsquare
        return [_comb_power(table, digits, n2) for digits in _comb_digits(count, exponent_bits, _WINDOW_BITS)]

    def _comb_table(self, exponent_bits: int) -> list[list[mpz]]:
        rows, base = -(-exponent_bits // _WINDOW_BITS), self.djn_base
        with self._lock:
            _extend_comb(self._table, base, self.nsquare, rows, _WINDOW_BITS)
            return self._table[:rows]

    def prepare(self, randomness: str = "djn") -> None:
        """Build now the table that ``randomness`` draws from (else built on first use), e.g. during set-up."""
        if randomness not in RANDOMNESS:
            raise ValueError(f"randomness must be one of {RANDOMNESS}, got {randomness!r}")
        if randomness == "subgroup":
            self._comb_table(self.bits + SUBGROUP_SIGMA)
        elif randomness == "djn" and self.short_exponent_bits is not None:
            self._comb_table(self.short_exponent_bits)

    def obfuscators(self, count: int, *, randomness: str = "djn") -> list[mpz]:
        """``count`` fresh random n-th residues ``r^n mod n^2`` (the encryption randomness).

        ``randomness`` (one of :data:`RANDOMNESS`):

        - ``"djn"`` (default): ``hs^a`` with a short ``a`` (``short_exponent_bits``; uniform ``r`` for
          a key built with ``short_exponent_bits=None``). Hides plaintexts from everyone but the key
          owner, yet not a *computation* from the key owner, who knows the factorisation: ``hs^a``
          stays in the cyclic subgroup generated by ``hs``, so the key owner can read which coset of
          it a result's randomness lies in (its Legendre symbols mod p and q, say), and for inputs
          with other randomness that coset depends on the private multipliers applied to them.
        - ``"uniform"``: ``r`` uniform in Z_n^*, a full exponentiation each (two threads): ``r^n`` is
          uniform among all n-th residues even to the key owner. Circuit privacy for any inputs.
        - ``"subgroup"``: ``hs^a`` with ``a`` uniform in ``[0, 2^(|n| + 64))``, from a comb table
          (about ``|n|/8`` multiplications, 7x cheaper than ``"uniform"`` at 2048 bits; the table
          holds ``(|n|+64)/8 x 256`` residues, 35 MB at 2048 bits, built once per key). ``hs^a`` is
          within ``2^-64`` of uniform on the subgroup ``<hs>``, so re-randomising with it hides a
          computation from the key owner exactly when every input's randomness lies in ``<hs>``:
          ciphertexts of ``"djn"`` or ``"subgroup"`` encryptions under this key's base (the key
          owner's, shared by :meth:`to_wire`), sums and plaintext multiples of them. Not for inputs
          from ``phe`` or encrypted with ``"uniform"`` randomness.
        """
        if randomness not in RANDOMNESS:
            raise ValueError(f"randomness must be one of {RANDOMNESS}, got {randomness!r}")
        n, n2 = self.n, self.nsquare
        if randomness == "uniform" or (randomness == "djn" and self.short_exponent_bits is None):
            rs = []
            while len(rs) < count:
                r = mpz(secrets.randbelow(int(n) - 1) + 1)
                if gmpy2.gcd(r, n) == 1:
                    rs.append(r)
            return parallel_powmod(rs, n, n2)
        if randomness == "subgroup":
            return self._comb(count, self.bits + SUBGROUP_SIGMA)
        return self._comb(count, self.short_exponent_bits)

    # --- encryption ---------------------------------------------------------------------

    def _check_range(self, ints: np.ndarray, name: str) -> None:
        if ints.size and max(abs(int(v)) for v in ints.flat) > self.max_int:
            raise ValueError(
                f"{name} has an encoded value of magnitude above max_int = n // 3 - 1 (about 2^{self.max_int.bit_length()}); "
                "it cannot be encrypted without overflow"
            )

    def _plaintexts(self, ints: ArrayLike, name: str) -> tuple[list[mpz], tuple[int, ...]]:
        """``(flat list of v mod n, shape)`` for an integer array within ``max_int`` (raises otherwise)."""
        arr = _numeric(ints, name)
        if not _is_exact(arr):
            raise TypeError(f"{name} must be an integer array (use encrypt for reals), got dtype {arr.dtype}")
        ints_obj, _ = _to_ints(arr, 0, name)
        self._check_range(ints_obj, name)
        n = self.n
        return [mpz(v) % n for v in ints_obj.flat], arr.shape

    def _nude(self, ints: Sequence[int]) -> list[mpz]:
        n = self.n
        return [(mpz(v) % n) * n + 1 for v in ints]

    def encrypt_int(
        self, ints: ArrayLike, *, frac_bits: int = 0, name: str = "ints", randomness: str = "djn"
    ) -> "EncryptedArray":
        """Encrypt an array of signed integers (any size up to ``max_int``), tagged with scale ``frac_bits``.

        ``randomness``: which ``r^n`` (see :meth:`obfuscators`).
        """
        frac_bits = _check_frac_bits(frac_bits)
        flat, shape = self._plaintexts(ints, name)
        n, n2 = self.n, self.nsquare
        rs = self.obfuscators(len(flat), randomness=randomness)
        cts = [(m * n + 1) * r % n2 for m, r in zip(flat, rs)]
        return EncryptedArray(self, _object_array(cts, shape), frac_bits)

    def encrypt(self, values: ArrayLike, frac_bits: int = DEFAULT_FRAC_BITS) -> "EncryptedArray":
        """Encrypt reals as fixed point ``round(x * 2^frac_bits)``; integer arrays are scaled likewise."""
        frac_bits = _check_frac_bits(frac_bits)
        return self.encrypt_int(_values_at_scale(values, frac_bits, "values"), frac_bits=frac_bits, name="values")

    # --- wire ---------------------------------------------------------------------------

    def to_wire(self) -> dict:
        """Codec-friendly form: ``{"n": n, "hs": DJN base}`` (the base so that the peer encrypts with it too)."""
        return {"n": int(self.n), "hs": int(self.djn_base)}

    @classmethod
    def from_wire(cls, obj: Any) -> "PublicKey":
        """Rebuild a key sent by a peer; rejects malformed input with ``ValueError``."""
        if not isinstance(obj, dict) or set(obj) != {"n", "hs"} or not all(isinstance(v, int) for v in obj.values()):
            raise ValueError("public key on the wire must be a dict {'n': int, 'hs': int}")
        return cls(obj["n"], djn_base=obj["hs"])


def _object_array(items: Sequence[Any], shape: tuple[int, ...]) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr.reshape(shape)


class PrivateKey:
    """Paillier private key (wraps ``phe.PaillierPrivateKey``); CRT decryption on two threads.

    ``gmpy2.powmod_base_list`` releases the GIL, so the exponentiations mod p^2 and mod q^2 of
    an array run in parallel on two cores without a process pool (safe alongside gRPC);
    ``parallel=False`` keeps decryption on the calling thread.

    Known-bound decryption: when every plaintext is known to satisfy ``|v| < 2^max_bits`` with
    ``max_bits <= |p| - 2`` (fixed-point values, masked shares), ``v`` is the centred residue
    ``v mod p`` and the mod-q half can be skipped: half the work (Paillier's scheme restricted to
    Z_{p^2}, as in Okamoto–Uchiyama). A plaintext beyond the bound then decrypts to an unrelated
    residue mod p, which lands outside ``2^max_bits`` (and raises ``OverflowError``) except with
    probability about ``2^(max_bits + 1 - |p|)``.
    """

    def __init__(self, key: phe.PaillierPrivateKey, public_key: PublicKey | None = None, *, parallel: bool = True) -> None:
        if not isinstance(key, phe.PaillierPrivateKey):
            raise TypeError(f"key must be a phe.PaillierPrivateKey, got {type(key).__name__}")
        self.parallel = bool(parallel)
        self.phe = key
        self.public_key = public_key if public_key is not None else PublicKey(key.public_key)
        if self.public_key.n != key.public_key.n:
            raise ValueError("public_key does not match the private key")
        self._p, self._q = mpz(key.p), mpz(key.q)
        self._p2, self._q2 = self._p * self._p, self._q * self._q
        self._hp, self._hq = mpz(key.hp), mpz(key.hq)
        self._p_inv = mpz(key.p_inverse)
        self._p2_inv = gmpy2.invert(self._p2, self._q2)
        self._tables: list[list[list[mpz]]] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<mpcml PrivateKey {self.public_key.bits} bits>"

    @property
    def max_bound_bits(self) -> int:
        """Largest ``max_bits`` accepted by known-bound decryption (``|p| - 2``)."""
        return int(self._p.bit_length()) - 2

    def encrypt_int(self, ints: ArrayLike, *, frac_bits: int = 0, name: str = "ints") -> "EncryptedArray":
        """Encrypt as the key owner: :meth:`PublicKey.encrypt_int` (``randomness="djn"``) computed mod p^2 and q^2.

        The same ciphertexts ``(1 + m n) hs^a`` (the key's DJN base, a short exponent ``a``) from two
        half-size fixed-base combs with 10-bit windows and one CRT recombination: about 1.8x faster
        than the public-key comb. The tables (``2 x 26 x 1024`` residues of ``|n|`` bits, 15 MB at
        2048 bits) are built on first use.
        """
        pk = self.public_key
        if pk.short_exponent_bits is None:
            return pk.encrypt_int(ints, frac_bits=frac_bits, name=name)
        frac_bits = _check_frac_bits(frac_bits)
        flat, shape = pk._plaintexts(ints, name)
        table_p, table_q = self._owner_tables()
        n, p2, q2, p2_inv = pk.n, self._p2, self._q2, self._p2_inv
        cts = []
        for m, digits in zip(flat, _comb_digits(len(flat), pk.short_exponent_bits, _OWNER_WINDOW_BITS)):
            nude = m * n + 1
            cp = nude * _comb_power(table_p, digits, p2) % p2
            cq = nude * _comb_power(table_q, digits, q2) % q2
            cts.append(cp + (cq - cp) * p2_inv % q2 * p2)
        return EncryptedArray(pk, _object_array(cts, shape), frac_bits)

    def prepare(self) -> None:
        """Build now the tables of :meth:`encrypt_int` (else built on first use), e.g. during set-up."""
        if self.public_key.short_exponent_bits is not None:
            self._owner_tables()

    def _owner_tables(self) -> list[list[list[mpz]]]:
        base = self.public_key.djn_base
        with self._lock:
            if not self._tables:
                rows = -(-self.public_key.short_exponent_bits // _OWNER_WINDOW_BITS)
                for modulus in (self._p2, self._q2):
                    table: list[list[mpz]] = []
                    _extend_comb(table, base % modulus, modulus, rows, _OWNER_WINDOW_BITS)
                    self._tables.append(table)
            return self._tables

    def raw_decrypt(self, ciphertexts: Sequence[Any]) -> list[mpz]:
        """Plaintexts in ``[0, n)`` of raw ciphertexts (CRT; p- and q-halves on two threads)."""
        cts = [mpz(c) for c in ciphertexts]
        p, q = self._p, self._q
        if self.parallel and len(cts) >= _PARALLEL_MIN:
            fut = _pool.submit(gmpy2.powmod_base_list, cts, q - 1, self._q2)
            xp = gmpy2.powmod_base_list(cts, p - 1, self._p2)
            xq = fut.result()
        else:
            xp = [powmod(c, p - 1, self._p2) for c in cts]
            xq = [powmod(c, q - 1, self._q2) for c in cts]
        hp, hq, p_inv = self._hp, self._hq, self._p_inv
        out = []
        for a, b in zip(xp, xq):
            mp = (a - 1) // p * hp % p
            mq = (b - 1) // q * hq % q
            out.append(mp + (mq - mp) * p_inv % q * p)
        return out

    def _check_key(self, enc: Any, name: str = "enc") -> None:
        if not isinstance(enc, (EncryptedArray, PackedEncryptedArray)):
            raise TypeError(f"{name} must be an EncryptedArray, got {type(enc).__name__}")
        if enc.public_key != self.public_key:
            raise ValueError(f"{name} was encrypted under a different public key")

    def _signed(self, plain: Sequence[mpz]) -> list[int]:
        n, max_int = self.public_key.n, self.public_key.max_int
        out = []
        for m in plain:
            if m <= max_int:
                out.append(int(m))
            elif m >= n - max_int:
                out.append(int(m - n))
            else:
                raise OverflowError("a decrypted value overflowed the plaintext range |v| <= n // 3 (too many homomorphic operations)")
        return out

    def _bounded(self, cts: list[mpz], max_bits: Any) -> list[int]:
        if not isinstance(max_bits, (int, np.integer)) or isinstance(max_bits, bool) or not 1 <= max_bits <= self.max_bound_bits:
            raise ValueError(f"max_bits must be an integer in [1, {self.max_bound_bits}] (|p| - 2), got {max_bits!r}")
        p, hp, half, limit = self._p, self._hp, self._p >> 1, 1 << int(max_bits)
        out = []
        for a in parallel_powmod(cts, p - 1, self._p2, self.parallel):
            m = (a - 1) // p * hp % p
            v = int(m - p) if m > half else int(m)
            if not -limit < v < limit:
                raise OverflowError(f"a decrypted value is outside the promised bound |v| < 2^{max_bits}")
            out.append(v)
        return out

    def decrypt_int(self, enc: "EncryptedArray", *, max_bits: int | None = None) -> np.ndarray:
        """Signed plaintext integers (object array of Python ints), ignoring the scale.

        ``max_bits``: promise ``|v| < 2^max_bits`` to decrypt with the mod-p half only (2x faster).
        """
        self._check_key(enc)
        cts = list(enc.ciphertexts.flat)
        signed = self._signed(self.raw_decrypt(cts)) if max_bits is None else self._bounded(cts, max_bits)
        return _object_array(signed, enc.shape)

    def decrypt(self, enc: "EncryptedArray", *, max_bits: int | None = None) -> np.ndarray:
        """Real values ``v / 2^frac_bits`` as float64 (exact up to float rounding); ``max_bits`` as in :meth:`decrypt_int`."""
        ints = self.decrypt_int(enc, max_bits=max_bits)
        scale = 1 << enc.frac_bits
        return np.array([v / scale for v in ints.flat], dtype=np.float64).reshape(enc.shape)


class EncryptedArray:
    """An array of Paillier ciphertexts (object ndarray of ``gmpy2.mpz``) with a fixed-point scale.

    Operations (``n2 = n^2``): ``+`` multiplies ciphertexts; ``-x`` inverts; ``x * k`` raises to
    ``k``; ``@`` with a dense or scipy.sparse plaintext matrix costs one (short) exponentiation
    per non-zero of the matrix. Operands with different scales are aligned by multiplying the
    lower-scale one by a power of two.
    """

    __array_ufunc__ = None  # ndarray (+, -, *, @) EncryptedArray defers to the reflected methods

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """A 0-d object array holding ``self``, so scipy.sparse defers ``S @ enc`` to :meth:`__rmatmul__`."""
        box = np.empty((), dtype=object)
        box[()] = self
        return box

    def __init__(self, public_key: PublicKey, ciphertexts: np.ndarray, frac_bits: int = DEFAULT_FRAC_BITS) -> None:
        if not isinstance(public_key, PublicKey):
            raise TypeError(f"public_key must be a PublicKey, got {type(public_key).__name__}")
        if not isinstance(ciphertexts, np.ndarray) or ciphertexts.dtype != object:
            raise TypeError("ciphertexts must be an object ndarray of integers")
        self.public_key = public_key
        self.ciphertexts = ciphertexts
        self.frac_bits = _check_frac_bits(frac_bits)

    # --- shape ----------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self.ciphertexts.shape

    @property
    def ndim(self) -> int:
        return self.ciphertexts.ndim

    @property
    def size(self) -> int:
        return self.ciphertexts.size

    def __len__(self) -> int:
        return len(self.ciphertexts)

    def __repr__(self) -> str:
        return f"<EncryptedArray shape={self.shape} frac_bits={self.frac_bits} key={self.public_key.bits} bits>"

    def _like(self, ciphertexts: Any, frac_bits: int | None = None) -> "EncryptedArray":
        cts = ciphertexts if isinstance(ciphertexts, np.ndarray) else _object_array([ciphertexts], ())
        return EncryptedArray(self.public_key, cts, self.frac_bits if frac_bits is None else frac_bits)

    def __getitem__(self, index: Any) -> "EncryptedArray":
        return self._like(self.ciphertexts[index])

    def reshape(self, *shape: Any) -> "EncryptedArray":
        return self._like(self.ciphertexts.reshape(*shape))

    def ravel(self) -> "EncryptedArray":
        return self._like(self.ciphertexts.ravel())

    def transpose(self, *axes: Any) -> "EncryptedArray":
        return self._like(self.ciphertexts.transpose(*axes))

    @property
    def T(self) -> "EncryptedArray":
        return self.transpose()

    @classmethod
    def concatenate(cls, arrays: Sequence["EncryptedArray"], axis: int = 0) -> "EncryptedArray":
        """Join arrays with the same key (scales are aligned to the largest)."""
        if not arrays:
            raise ValueError("arrays must not be empty")
        frac = max(a.frac_bits for a in arrays)
        aligned = [arrays[0]._check_peer(a, "arrays")._rescaled(frac) for a in arrays]
        return arrays[0]._like(np.concatenate([a.ciphertexts for a in aligned], axis=axis), frac)

    # --- arithmetic -------------------------------------------------------------------------

    def _check_peer(self, other: "EncryptedArray", name: str = "other") -> "EncryptedArray":
        if other.public_key != self.public_key:
            raise ValueError(f"{name} was encrypted under a different public key")
        return other

    def _pow(self, exponents: np.ndarray) -> np.ndarray:
        n2 = self.public_key.nsquare
        power = np.frompyfunc(lambda c, k: c if k == 1 else powmod(c, k, n2), 2, 1)
        return power(self.ciphertexts, exponents)

    def _rescaled(self, frac_bits: int) -> "EncryptedArray":
        if frac_bits == self.frac_bits:
            return self
        return self._like(self._pow(np.array(1 << (frac_bits - self.frac_bits), dtype=object)), frac_bits)

    def _mulmod(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray(a * b % self.public_key.nsquare, dtype=object)

    def __add__(self, other: Any) -> "EncryptedArray":
        if isinstance(other, EncryptedArray):
            self._check_peer(other)
            frac = max(self.frac_bits, other.frac_bits)
            a, b = self._rescaled(frac), other._rescaled(frac)
            return self._like(self._mulmod(a.ciphertexts, b.ciphertexts), frac)
        if isinstance(other, PackedEncryptedArray):
            return NotImplemented
        ints = _values_at_scale(other, self.frac_bits, "other")
        self.public_key._check_range(ints, "other")
        nude = _object_array(self.public_key._nude(list(ints.flat)), ints.shape)
        return self._like(self._mulmod(self.ciphertexts, nude))

    __radd__ = __add__

    def __neg__(self) -> "EncryptedArray":
        n2 = self.public_key.nsquare
        return self._like(np.frompyfunc(lambda c: gmpy2.invert(c, n2), 1, 1)(self.ciphertexts))

    def __sub__(self, other: Any) -> "EncryptedArray":
        if isinstance(other, EncryptedArray):
            return self + (-other)
        return self + (-_numeric(other, "other"))

    def __rsub__(self, other: Any) -> "EncryptedArray":
        return (-self) + other

    def mul(self, other: ArrayLike, frac_bits: int = DEFAULT_FRAC_BITS) -> "EncryptedArray":
        """Elementwise product with a plaintext (broadcasting).

        Integer/bool multipliers are exact (scale unchanged); floats are encoded with
        ``frac_bits`` bits and the result's scale is ``self.frac_bits + frac_bits``.
        """
        if isinstance(other, (EncryptedArray, PackedEncryptedArray)):
            raise TypeError("Paillier cannot multiply two ciphertexts; one operand must be plaintext")
        frac_bits = _check_frac_bits(frac_bits)
        ints, added = _to_ints(other, frac_bits, "other")
        return self._like(self._pow(ints), self.frac_bits + added)

    def __mul__(self, other: Any) -> "EncryptedArray":
        if isinstance(other, (EncryptedArray, PackedEncryptedArray)):
            return NotImplemented
        return self.mul(other)

    __rmul__ = __mul__

    def sum(self, axis: int | None = None) -> "EncryptedArray":
        """Homomorphic sum over all entries (``axis=None``) or along ``axis``."""
        if axis is None:
            return self.ravel().sum(0)
        if not isinstance(axis, (int, np.integer)) or not -self.ndim <= axis < self.ndim:
            raise ValueError(f"axis must be None or in [-{self.ndim}, {self.ndim}), got {axis!r}")
        moved = np.moveaxis(self.ciphertexts, axis, 0)
        if moved.shape[0] == 0:
            return self._like(np.full(moved.shape[1:], _ONE, dtype=object))
        acc = moved[0]
        for part in moved[1:]:
            acc = self._mulmod(acc, part)
        return self._like(np.asarray(acc, dtype=object) if moved.ndim > 1 else acc)

    def _combine(self, columns: Sequence[mpz], indptr: np.ndarray, indices: np.ndarray, data: Sequence[int]) -> list[mpz]:
        """``out[j] = prod_t columns[indices[t]] ^ data[t]`` over ``t`` in ``indptr[j]:indptr[j+1]``.

        Long rows use :func:`multi_exp`; short rows raise each base through a fixed-base window
        table of its column when that column is used often enough to pay for the table
        (:class:`_ColumnPowers`), so a sparse product costs a few multiplications per non-zero.
        """
        n2 = self.public_key.nsquare
        powers = _ColumnPowers(columns, indices, data, n2)
        out = []
        for j in range(len(indptr) - 1):
            span = range(indptr[j], indptr[j + 1])
            pos = [(indices[t], data[t]) for t in span if data[t] > 0]
            neg = [(indices[t], -data[t]) for t in span if data[t] < 0]
            acc = powers.product(pos)
            if neg:
                acc = acc * gmpy2.invert(powers.product(neg), n2) % n2
            out.append(acc)
        return out

    @staticmethod
    def _sparse_ints(matrix: Any, frac_bits: int, by_column: bool) -> tuple[sp.spmatrix, list[int], int]:
        """The matrix as CSR (or CSC if ``by_column``) with canonical indices and its integer-encoded data."""
        if not sp.issparse(matrix):
            matrix = _numeric(matrix, "matrix")
            if matrix.ndim != 2:
                raise ValueError(f"matrix must be 2-D, got shape {matrix.shape}")
        mat = sp.csc_matrix(matrix) if by_column else sp.csr_matrix(matrix)
        mat.sum_duplicates()
        mat.sort_indices()
        ints, added = _to_ints(mat.data, _check_frac_bits(frac_bits), "matrix")
        return mat, list(ints), added

    def matmul(self, matrix: Any, frac_bits: int = DEFAULT_FRAC_BITS) -> "EncryptedArray":
        """``self @ matrix`` for a dense or scipy.sparse plaintext matrix; cost ∝ non-zeros x rows of self."""
        if self.ndim not in (1, 2):
            raise ValueError(f"self must be 1-D or 2-D for @, got shape {self.shape}")
        mat, data, added = self._sparse_ints(matrix, frac_bits, by_column=True)
        if mat.shape[0] != self.shape[-1]:
            raise ValueError(f"matmul shape mismatch: {self.shape} @ {mat.shape}")
        rows = self.ciphertexts.reshape(-1, self.shape[-1])
        out = [self._combine(list(row), mat.indptr, mat.indices, data) for row in rows]
        shape = self.shape[:-1] + (mat.shape[1],)
        return self._like(_object_array([c for row in out for c in row], shape), self.frac_bits + added)

    def rmatmul(self, matrix: Any, frac_bits: int = DEFAULT_FRAC_BITS) -> "EncryptedArray":
        """``matrix @ self`` for a dense or scipy.sparse plaintext matrix; cost ∝ non-zeros x columns of self."""
        if self.ndim not in (1, 2):
            raise ValueError(f"self must be 1-D or 2-D for @, got shape {self.shape}")
        mat, data, added = self._sparse_ints(matrix, frac_bits, by_column=False)
        if mat.shape[1] != self.shape[0]:
            raise ValueError(f"matmul shape mismatch: {mat.shape} @ {self.shape}")
        cols = self.ciphertexts.reshape(self.shape[0], -1).T
        out = [self._combine(list(col), mat.indptr, mat.indices, data) for col in cols]
        result = np.empty((mat.shape[0], len(out)), dtype=object)
        for j, col in enumerate(out):
            result[:, j] = col
        return self._like(result.reshape((mat.shape[0],) + self.shape[1:]), self.frac_bits + added)

    def __matmul__(self, other: Any) -> "EncryptedArray":
        if isinstance(other, (EncryptedArray, PackedEncryptedArray)):
            return NotImplemented
        return self.matmul(other)

    def __rmatmul__(self, other: Any) -> "EncryptedArray":
        return self.rmatmul(other)

    # --- randomness, wire, phe --------------------------------------------------------------

    def rerandomize(self, randomness: str = "uniform") -> "EncryptedArray":
        """Same plaintexts, fresh randomness: multiply each ciphertext by a new ``r^n``.

        By default ``r`` is uniform in Z_n^*, so the result reveals nothing about how it was
        computed even to the key owner (a full exponentiation per ciphertext: pack first when
        possible); ``"subgroup"`` does the same 7x faster when every input came from DJN
        encryptions under this key's base; ``"djn"`` hides plaintexts from third parties but not
        the computation from the key owner (see :meth:`PublicKey.obfuscators`).
        """
        rs = _object_array(self.public_key.obfuscators(self.size, randomness=randomness), self.shape)
        return self._like(self._mulmod(self.ciphertexts, rs))

    def to_wire(self) -> dict:
        """Codec-friendly form ``{"shape", "frac_bits", "c"}`` (ciphertexts as a list of ints)."""
        return {"shape": list(self.shape), "frac_bits": self.frac_bits, "c": [int(c) for c in self.ciphertexts.flat]}

    @classmethod
    def from_wire(cls, public_key: PublicKey, obj: Any) -> "EncryptedArray":
        """Rebuild from :meth:`to_wire` output received from a peer; malformed input raises ``ValueError``."""
        if not isinstance(obj, dict) or set(obj) != {"shape", "frac_bits", "c"}:
            raise ValueError("encrypted array on the wire must be a dict with keys shape, frac_bits, c")
        shape, cts = obj["shape"], obj["c"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError("shape must be a list of non-negative ints")
        if not isinstance(cts, list) or len(cts) != math.prod(shape):
            raise ValueError(f"expected {math.prod(shape)} ciphertexts for shape {shape}")
        n2 = public_key.nsquare
        if not all(isinstance(c, int) and 0 < c < n2 for c in cts):
            raise ValueError("every ciphertext must be an int in (0, n^2)")
        return cls(public_key, _object_array([mpz(c) for c in cts], tuple(shape)), _check_frac_bits(obj["frac_bits"]))

    def to_phe(self) -> list[phe.EncryptedNumber]:
        """Flat list of ``phe.EncryptedNumber`` (scale rounded up to a multiple of 4 bits: phe's base is 16)."""
        frac = -(-self.frac_bits // 4) * 4
        aligned = self._rescaled(frac)
        return [phe.EncryptedNumber(self.public_key.phe, int(c), -frac // 4) for c in aligned.ciphertexts.flat]

    @classmethod
    def from_phe(cls, numbers_: Sequence[phe.EncryptedNumber], public_key: PublicKey | None = None) -> "EncryptedArray":
        """1-D array from ``phe.EncryptedNumber`` objects (exponents aligned to the smallest)."""
        if not numbers_ or not all(isinstance(x, phe.EncryptedNumber) for x in numbers_):
            raise TypeError("numbers_ must be a non-empty sequence of phe.EncryptedNumber")
        key = public_key if public_key is not None else PublicKey(numbers_[0].public_key)
        if any(x.public_key.n != key.n for x in numbers_):
            raise ValueError("numbers_ use different public keys")
        low = min(min(x.exponent for x in numbers_), 0)
        n2 = key.nsquare
        cts = [powmod(mpz(x.ciphertext(be_secure=False)), 16 ** (x.exponent - low), n2) for x in numbers_]
        return cls(key, _object_array(cts, (len(cts),)), -4 * low)


# --- HE -> additive secret shares -----------------------------------------------------------


def random_masks(rng: Csprng, count: int, bits: int) -> list[int]:
    """``count`` independent uniform integers in ``[0, 2^bits)`` from ``rng``."""
    width = (bits + 7) // 8
    raw = rng.random_bytes(width * count)
    limit = (1 << bits) - 1
    return [int.from_bytes(raw[k : k + width], "little") & limit for k in range(0, width * count, width)]


def slots_per_ciphertext(public_key: PublicKey, width: int) -> int:
    """How many ``width``-bit non-negative slots fit one plaintext (below ``n / 3``, so no overflow)."""
    slots = (public_key.bits - 4) // width
    if slots < 1:
        raise ValueError(f"{width}-bit slots do not fit a {public_key.bits}-bit key")
    return slots


def pack_ciphertexts(public_key: PublicKey, cts: Sequence[mpz], width: int) -> list[mpz]:
    """Pack ciphertexts of values in ``[0, 2^width)`` into ``Enc(sum_s v_s 2^(width s))`` (Horner).

    Costs ``width`` squarings per packed value, far less than the decryption it saves; all groups
    advance one level at a time through :func:`parallel_powmod` (two GIL-free threads).
    """
    per_ct = slots_per_ciphertext(public_key, width)
    n2, raise_to = public_key.nsquare, mpz(1) << width
    groups = [list(cts[start : start + per_ct]) for start in range(0, len(cts), per_ct)]
    accs = [group[-1] for group in groups]
    for level in range(per_ct - 2, -1, -1):
        active = [k for k, group in enumerate(groups) if level < len(group) - 1]
        raised = parallel_powmod([accs[k] for k in active], raise_to, n2)
        for k, power in zip(active, raised):
            accs[k] = power * groups[k][level] % n2
    return accs


def pack_plain(values: Sequence[int], per_ct: int, width: int) -> list[int]:
    """The plaintext counterpart of :func:`pack_ciphertexts`."""
    return [
        sum(v << (width * s) for s, v in enumerate(values[start : start + per_ct]))
        for start in range(0, len(values), per_ct)
    ]


def unpack_words(words: Sequence[int], per_ct: int, width: int, count: int) -> list[int]:
    """Split decrypted packed words back into ``count`` slots; raises if a word overflows its slots."""
    if len(words) != -(-count // per_ct):
        raise ValueError(f"expected {-(-count // per_ct)} packed values for {count} slots, got {len(words)}")
    slot = (1 << width) - 1
    out: list[int] = []
    for k, word in enumerate(words):
        if word < 0 or word >> (width * per_ct):
            raise ValueError("a packed value lies outside its slots")
        out += [(int(word) >> (width * s)) & slot for s in range(min(per_ct, count - k * per_ct))]
    return out


def _mask_layout(enc: EncryptedArray, frac_bits_out: int, bound_bits: int | None) -> tuple[int, int, int]:
    """``(shift, bound_bits, width)`` shared by :func:`mask_to_share` and :func:`unmask_share`."""
    frac_bits_out = _check_frac_bits(frac_bits_out, "frac_bits_out")
    shift = max(enc.frac_bits - frac_bits_out, 0)
    if bound_bits is None:
        bound_bits = RING_BITS - HEADROOM_BITS + shift
    if not isinstance(bound_bits, int) or bound_bits < 1:
        raise ValueError(f"bound_bits must be a positive integer, got {bound_bits!r}")
    width = bound_bits + MASK_SIGMA + 2
    if width > enc.public_key.bits - 4:
        raise ValueError(
            f"bound_bits + {MASK_SIGMA} masking bits = {bound_bits + MASK_SIGMA} do not fit below n/3 "
            f"for a {enc.public_key.bits}-bit key"
        )
    return shift, bound_bits, width


def mask_to_share(
    enc: EncryptedArray,
    frac_bits_out: int = DEFAULT_FRAC_BITS,
    rng: Csprng | None = None,
    *,
    bound_bits: int | None = None,
    pack: bool = False,
    randomness: str = "uniform",
) -> tuple[EncryptedArray, np.ndarray]:
    """Holder's half of HE -> additive shares mod 2^64: returns ``(masked, my_share)``.

    The holder of ``Enc(x)`` (it lacks the key) draws ``m = 2^ℓ + r`` with ``r`` uniform in
    ``[0, 2^(ℓ + σ))`` over the *integers* (``ℓ = bound_bits``, ``σ = MASK_SIGMA = 40``
    statistical masking bits), sends ``masked = Enc(x) * Enc(m)`` (fresh randomness, so nothing
    of the computation leaks) to the key owner and keeps ``my_share = -floor(m / 2^s) mod 2^64``;
    the key owner's :func:`unmask_share` decrypts ``y = x + m`` and keeps ``floor(y / 2^s) mod 2^64``.

    Why this is correct: ``x`` lives in Z_n, shares live in Z_{2^64}, and ``n`` is not a
    multiple of 2^64, so a mask reduced mod ``n`` would leave a wrap-around of ``n`` in the
    sum that is wrong mod 2^64. Here ``|x| < 2^ℓ`` and ``ℓ + σ + 2 <= |n| - 4`` (checked), so
    ``0 < y < 2^(ℓ+σ+2) < n/3`` is computed exactly over the integers and ``y - m = x`` holds
    over Z, hence mod 2^64. Security: ``y`` is within statistical distance
    ``2^(ℓ+1) / 2^(ℓ+σ) <= 2^-39`` of ``m``, so the key owner learns essentially nothing about
    ``x`` (semi-honest; the holder only ever sees ciphertexts).

    Scales: ``x`` carries ``enc.frac_bits``; the shares carry ``frac_bits_out``. If the output
    scale is larger the holder first multiplies by ``2^(frac_bits_out - enc.frac_bits)``; if
    smaller, both sides shift by ``s = enc.frac_bits - frac_bits_out`` and the reconstructed
    value is ``floor(x / 2^s)`` or one more (one unit in the last place).

    Bound: ``bound_bits`` defaults to ``62 + s``, i.e. the fixed-point range of
    :mod:`mpcml.fixedpoint` (``|x| < 2^(62 - frac_bits_out)`` as a real); the key owner checks
    ``0 < y < 2^(ℓ+σ) + 2^(ℓ+1)`` and raises if a value was out of bound.

    ``pack=True`` packs ``(|n| - 4) // (ℓ + σ + 2)`` masked values per ciphertext (19 at
    2048 bits) so the key owner decrypts that many times fewer ciphertexts; ``masked`` is then a
    1-D array of packed ciphertexts and the key owner passes ``shape=`` to :func:`unmask_share`.

    ``randomness="uniform"`` (default) encrypts the masks with uniformly random ``r`` so that
    ``masked`` is a fresh encryption even in the eyes of the key owner (circuit privacy); it costs a
    full exponentiation per sent ciphertext, 19x fewer with ``pack=True``. ``"subgroup"`` gives
    the same guarantee 7x cheaper when ``enc`` was computed from DJN encryptions under the key's
    base; ``"djn"`` does not hide the computation from the key owner (see
    :meth:`PublicKey.obfuscators`): only for callers who re-randomise ``masked`` themselves.
    """
    if not isinstance(enc, EncryptedArray):
        raise TypeError(f"enc must be an EncryptedArray, got {type(enc).__name__}")
    if frac_bits_out > enc.frac_bits:
        enc = enc._rescaled(_check_frac_bits(frac_bits_out, "frac_bits_out"))
    shift, bound_bits, width = _mask_layout(enc, frac_bits_out, bound_bits)
    rng = rng if rng is not None else Csprng()
    pk = enc.public_key
    masks = [m + (1 << bound_bits) for m in random_masks(rng, enc.size, bound_bits + MASK_SIGMA)]
    mine = np.array([(-(m >> shift)) % _TWO64 for m in masks], dtype=np.uint64).reshape(enc.shape)
    if not pack:
        fresh = pk.encrypt_int(_object_array(masks, enc.shape), frac_bits=enc.frac_bits, randomness=randomness)
        return enc + fresh, mine
    per_ct = slots_per_ciphertext(pk, width)
    packed = pack_ciphertexts(pk, list(enc.ciphertexts.flat), width)
    count = len(packed)
    masked = EncryptedArray(pk, _object_array(packed, (count,)), enc.frac_bits)
    plain = _object_array(pack_plain(masks, per_ct, width), (count,))
    return masked + pk.encrypt_int(plain, frac_bits=enc.frac_bits, randomness=randomness), mine


def unmask_share(
    private_key: PrivateKey,
    masked: EncryptedArray,
    frac_bits_out: int = DEFAULT_FRAC_BITS,
    *,
    bound_bits: int | None = None,
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Key owner's half of :func:`mask_to_share`: decrypt ``y = x + m``, return ``floor(y / 2^s) mod 2^64``.

    Pass the same ``frac_bits_out`` and ``bound_bits`` as the holder, and the original
    ``shape`` if the holder used ``pack=True``. Raises ``ValueError`` if a decrypted ``y`` lies
    outside ``(0, 2^(ℓ+σ) + 2^(ℓ+1))`` (the holder's value was out of bound).
    """
    private_key._check_key(masked, "masked")
    shift, bound_bits, width = _mask_layout(masked, frac_bits_out, bound_bits)
    if shape is None:  # 0 < y < 2^width is far below p/2: the mod-p half of decryption suffices
        ys = list(private_key.decrypt_int(masked, max_bits=private_key.max_bound_bits).flat)
    else:
        ys = list(private_key.decrypt_int(masked).flat)
        shape = tuple(int(d) for d in shape)
        if masked.ndim != 1:
            raise ValueError(f"packed masked values must be 1-D, got shape {masked.shape}")
        ys = unpack_words(ys, slots_per_ciphertext(masked.public_key, width), width, math.prod(shape))
    high = (1 << (bound_bits + MASK_SIGMA)) + (1 << (bound_bits + 1))
    if not all(0 < y < high for y in ys):
        raise ValueError(f"masked value out of range: the holder's plaintext exceeded |x| < 2^{bound_bits}")
    return np.array([(y >> shift) % _TWO64 for y in ys], dtype=np.uint64).reshape(masked.shape if shape is None else shape)


# --- packing for addition-only protocols --------------------------------------------------------


class PackedEncryptedArray:
    """Rows of fixed-point values packed ``slots`` to a ciphertext, for protocols that only add.

    A value ``v`` (``|v| < 2^(b-1)``, ``b = slot_bits - ceil(log2(max_summands))``) sits in a
    ``slot_bits``-wide slot as ``v + 2^(b-1) in [0, 2^b)``; a sum of at most ``max_summands``
    such slots stays below ``2^slot_bits``, so slots never carry into each other. ``summands``
    counts, per row, how many encryptions were added into it; adding beyond ``max_summands``
    raises ``ValueError``. ``slots = (|n| - 2) // slot_bits`` (e.g. 31 slots of 64 bits at 2048
    bits), so a row of ``length`` values costs ``ceil(length / slots)`` ciphertexts.
    """

    def __init__(
        self, public_key: PublicKey, ciphertexts: np.ndarray, *, length: int, frac_bits: int, slot_bits: int,
        max_summands: int, summands: np.ndarray,
    ) -> None:
        self.public_key = public_key
        self.ciphertexts = ciphertexts
        self.length, self.frac_bits, self.slot_bits, self.max_summands = length, frac_bits, slot_bits, max_summands
        self.summands = summands
        self.value_bits = slot_bits - max(max_summands - 1, 0).bit_length()
        self.slots = (public_key.bits - 2) // slot_bits

    @property
    def shape(self) -> tuple[int, int]:
        return (self.ciphertexts.shape[0], self.length)

    def _layout(self) -> tuple:
        return (self.public_key, self.length, self.frac_bits, self.slot_bits, self.max_summands)

    def _like(self, ciphertexts: np.ndarray, summands: np.ndarray) -> "PackedEncryptedArray":
        if summands.size and int(summands.max()) > self.max_summands:
            raise ValueError(
                f"packing headroom exceeded: {int(summands.max())} summands > max_summands={self.max_summands}"
            )
        return PackedEncryptedArray(
            self.public_key, ciphertexts, length=self.length, frac_bits=self.frac_bits, slot_bits=self.slot_bits,
            max_summands=self.max_summands, summands=summands,
        )

    def __getitem__(self, rows: Any) -> "PackedEncryptedArray":
        cts = self.ciphertexts[rows]
        if cts.ndim != 2:
            raise IndexError("index packed arrays by rows (a slice, list or boolean mask), keeping 2 dimensions")
        return self._like(cts, self.summands[rows])

    def __add__(self, other: Any) -> "PackedEncryptedArray":
        if not isinstance(other, PackedEncryptedArray):
            return NotImplemented
        if other._layout() != self._layout():
            raise ValueError("packed arrays differ in key, length, frac_bits, slot_bits or max_summands")
        cts = np.asarray(self.ciphertexts * other.ciphertexts % self.public_key.nsquare, dtype=object)
        return self._like(cts, self.summands + other.summands)

    def sum(self, axis: int = 0) -> "PackedEncryptedArray":
        """Sum of the rows (a single-row packed array)."""
        if axis != 0:
            raise ValueError("packed arrays only sum over rows (axis=0)")
        rows = EncryptedArray(self.public_key, self.ciphertexts, 0).sum(0)
        return self._like(rows.ciphertexts.reshape(1, -1), np.array([int(self.summands.sum())], dtype=np.int64))

    def rerandomize(self, randomness: str = "uniform") -> "PackedEncryptedArray":
        """Fresh randomness, as :meth:`EncryptedArray.rerandomize`."""
        fresh = EncryptedArray(self.public_key, self.ciphertexts, 0).rerandomize(randomness)
        return self._like(fresh.ciphertexts, self.summands)

    def to_wire(self) -> dict:
        return {
            "c": EncryptedArray(self.public_key, self.ciphertexts, 0).to_wire(), "length": self.length,
            "frac_bits": self.frac_bits, "slot_bits": self.slot_bits, "max_summands": self.max_summands,
            "summands": self.summands.astype(np.int64),
        }

    @classmethod
    def from_wire(cls, public_key: PublicKey, obj: Any) -> "PackedEncryptedArray":
        """Rebuild from :meth:`to_wire` output received from a peer; malformed input raises ``ValueError``."""
        keys = {"c", "length", "frac_bits", "slot_bits", "max_summands", "summands"}
        if not isinstance(obj, dict) or set(obj) != keys:
            raise ValueError(f"packed array on the wire must be a dict with keys {sorted(keys)}")
        cts = EncryptedArray.from_wire(public_key, obj["c"]).ciphertexts
        summands = obj["summands"]
        if cts.ndim != 2 or not isinstance(summands, np.ndarray) or summands.shape != (cts.shape[0],):
            raise ValueError("packed ciphertexts must be 2-D with one summand count per row")
        _check_packing(public_key, obj["slot_bits"], obj["max_summands"])
        if not isinstance(obj["length"], int) or obj["length"] < 1 or summands.dtype.kind not in "iu":
            raise ValueError("length must be a positive int and summands an integer array")
        proto = cls(
            public_key, cts, length=int(obj["length"]), frac_bits=_check_frac_bits(obj["frac_bits"]),
            slot_bits=int(obj["slot_bits"]), max_summands=int(obj["max_summands"]), summands=summands.astype(np.int64),
        )
        if cts.shape[1] != -(-proto.length // proto.slots) or summands.min(initial=1) < 1:
            raise ValueError("packed layout does not match the number of ciphertexts")
        return proto._like(cts, proto.summands)


def _check_packing(public_key: PublicKey, slot_bits: Any, max_summands: Any) -> int:
    if not isinstance(slot_bits, int) or not 8 <= slot_bits <= public_key.bits - 2:
        raise ValueError(f"slot_bits must be an integer in [8, {public_key.bits - 2}], got {slot_bits!r}")
    if not isinstance(max_summands, int) or max_summands < 1:
        raise ValueError(f"max_summands must be a positive integer, got {max_summands!r}")
    value_bits = slot_bits - (max_summands - 1).bit_length()
    if value_bits < 2:
        raise ValueError(f"slot_bits={slot_bits} leaves no room for values with max_summands={max_summands}")
    return value_bits


def encrypt_packed(
    public_key: PublicKey, values: ArrayLike, *, frac_bits: int = DEFAULT_FRAC_BITS, slot_bits: int = 64,
    max_summands: int = 1 << 16,
) -> PackedEncryptedArray:
    """Encrypt a 1-D vector (one row) or 2-D array (one packed row each) for addition-only use.

    Each value must satisfy ``|round(x * 2^frac_bits)| < 2^(b-1)`` with
    ``b = slot_bits - ceil(log2(max_summands))`` (checked; ``ValueError`` otherwise).
    """
    value_bits = _check_packing(public_key, slot_bits, max_summands)
    frac_bits = _check_frac_bits(frac_bits)
    arr = _numeric(values, "values")
    if arr.ndim not in (1, 2):
        raise ValueError(f"values must be 1-D or 2-D, got shape {arr.shape}")
    rows = arr.reshape(1, -1) if arr.ndim == 1 else arr
    ints = _values_at_scale(rows, frac_bits, "values")
    offset = 1 << (value_bits - 1)
    if ints.size and max(abs(int(v)) for v in ints.flat) >= offset:
        raise ValueError(
            f"values exceed the packing range |x| < 2^{value_bits - 1 - frac_bits} "
            f"(slot_bits={slot_bits}, max_summands={max_summands}, frac_bits={frac_bits})"
        )
    slots = (public_key.bits - 2) // slot_bits
    length = rows.shape[1]
    per_row = -(-length // slots)
    packed = []
    for row in ints:
        for start in range(0, per_row * slots, slots):
            word = 0
            for k, v in enumerate(row[start : start + slots]):
                word |= (int(v) + offset) << (k * slot_bits)
            packed.append(word)
    enc = public_key.encrypt_int(_object_array(packed, (rows.shape[0], per_row)))
    return PackedEncryptedArray(
        public_key, enc.ciphertexts, length=length, frac_bits=frac_bits, slot_bits=slot_bits,
        max_summands=max_summands, summands=np.ones(rows.shape[0], dtype=np.int64),
    )


def decrypt_packed(private_key: PrivateKey, packed: PackedEncryptedArray) -> np.ndarray:
    """Float array of shape ``(rows, length)`` from a :class:`PackedEncryptedArray`."""
    if not isinstance(packed, PackedEncryptedArray):
        raise TypeError(f"packed must be a PackedEncryptedArray, got {type(packed).__name__}")
    private_key._check_key(packed, "packed")
    words = private_key.decrypt_int(EncryptedArray(packed.public_key, packed.ciphertexts, 0))
    slot_mask = (1 << packed.slot_bits) - 1
    offset = 1 << (packed.value_bits - 1)
    scale = float(1 << packed.frac_bits)
    out = np.empty(packed.shape, dtype=np.float64)
    for i, (row, count) in enumerate(zip(words, packed.summands)):
        values = [(int(w) >> (k * packed.slot_bits)) & slot_mask for w in row for k in range(packed.slots)]
        out[i] = [(v - int(count) * offset) / scale for v in values[: packed.length]]
    return out
