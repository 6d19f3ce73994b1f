"""Paillier key pair (wrapping ``phe``'s keys) with DJN short-exponent encryption and CRT decryption.

Scheme (Paillier, EUROCRYPT 1999) with ``g = n + 1``: ``Enc(m) = (1 + m n) * r^n mod n^2``,
``Dec(c) = L(c^λ mod n^2) * μ mod n``, here per prime (mod p^2 and q^2) recombined by CRT, exactly
as ``phe`` does.

Fast encryption (Damgård–Jurik–Nielsen, "A generalization of Paillier's public-key system with
applications to electronic voting", IJIS 2010, section 4.2): instead of a full ``r^n`` the
encryptor uses ``r^n = hs^a`` for the key's base ``hs = h^n mod n^2`` (``h = -x^2 mod n``) and a
short uniformly random exponent ``a`` of ``short_exponent_bits`` (default 256 = 2 x 128) bits,
from a fixed-base comb (one modular multiplication per 8-bit window). Security rests on decisional
composite residuosity plus the short-exponent indistinguishability assumption (``hs^a`` with a
256-bit ``a`` is indistinguishable from a uniform n-th residue; the best known attack on short
exponents is Pollard's lambda at 2^128 work). ``short_exponent_bits=None`` selects the textbook
uniformly random ``r`` (plain DCR, about 30x slower). The key ships ``h`` (:meth:`PublicKey.to_wire`)
and the receiver computes ``hs = h^n`` itself, so the base is an n-th residue whoever sent it.
"""

from __future__ import annotations

import numbers
import secrets
import threading
from typing import Any, Sequence

import gmpy2
import phe
from gmpy2 import mpz, powmod

from ..floors import check_key_bits
from ..he import _modexp
from ..he.keys import PrivateKey as BasePrivateKey
from ..he.keys import PublicKey as BasePublicKey
from ..he.encoding import check_frac_bits, object_array
from ..he.keys import check_randomness, wire_int
from .array import EncryptedArray

SUBGROUP_SIGMA = 64
DEFAULT_SHORT_EXPONENT_BITS = 256
MIN_KEY_BITS = 1024
_WINDOW_BITS = 8
_OWNER_WINDOW_BITS = 10


def min_plaintext_bits(n_bits: int) -> int:
    """Packing capacity of every ``n_bits``-bit key: ``max_int = n // 3 - 1 >= 2^(n_bits - 3)``."""
    return n_bits - 3


def generate_keypair(n_length: int = 2048) -> tuple["PublicKey", "PrivateKey"]:
    """A fresh key pair with an ``n_length``-bit modulus (``phe``'s generator; CSPRNG primes).

    Below 2048 bits only with the test-only switch of :mod:`mpcml.floors`.
    """
    check_key_bits("n_length", n_length, hard_floor=MIN_KEY_BITS)
    pub, priv = phe.generate_paillier_keypair(n_length=n_length)
    public_key = PublicKey(pub)
    return public_key, PrivateKey(priv, public_key)


def _draw_h(n: mpz) -> mpz:
    """A DJN base ``h = -x^2 mod n`` for a uniformly random unit ``x``."""
    while True:
        x = mpz(secrets.randbelow(int(n) - 2) + 2)
        if gmpy2.gcd(x, n) == 1:
            return n - x * x % n


class PublicKey(BasePublicKey):
    """Paillier public key (wraps ``phe.PaillierPublicKey``) with fast array encryption."""

    scheme = "paillier"

    def __init__(
        self, key: phe.PaillierPublicKey | int, short_exponent_bits: int | None = DEFAULT_SHORT_EXPONENT_BITS,
        djn_h: int | None = None,
    ) -> None:
        if isinstance(key, PublicKey):
            key = key.phe
        if not isinstance(key, phe.PaillierPublicKey):
            if not isinstance(key, numbers.Integral) or isinstance(key, bool):
                raise TypeError(f"key must be a phe.PaillierPublicKey or the modulus n, got {type(key).__name__}")
            key = phe.PaillierPublicKey(int(key))
        n = int(key.n)
        if n % 2 == 0 or n.bit_length() < MIN_KEY_BITS:
            raise ValueError(f"the modulus n must be odd with at least {MIN_KEY_BITS} bits, got {n.bit_length()} bits")
        check_key_bits("Paillier modulus n", n.bit_length(), hard_floor=MIN_KEY_BITS)
        if short_exponent_bits is not None and (not isinstance(short_exponent_bits, int) or short_exponent_bits < 160):
            raise ValueError(f"short_exponent_bits must be None or an integer >= 160, got {short_exponent_bits!r}")
        self.phe = key
        self.n = mpz(n)
        self.nsquare = self.modulus = self.n * self.n
        self.max_int = int(key.max_int)
        self.short_exponent_bits = short_exponent_bits
        self._h = None if djn_h is None else self._checked_h(djn_h)
        self._hs: mpz | None = None
        self._lock = threading.Lock()

    def array(self, ciphertexts: Any, frac_bits: int = 0) -> EncryptedArray:
        return EncryptedArray(self, ciphertexts, frac_bits)

    # --- randomness ---------------------------------------------------------------------

    def _checked_h(self, h: Any) -> mpz:
        if not isinstance(h, numbers.Integral) or isinstance(h, bool):
            raise TypeError(f"the DJN base h must be an integer, got {type(h).__name__}")
        h, n = mpz(int(h)), self.n
        if not 1 < h < n or gmpy2.gcd(h, n) != 1 or h * h % n == 1:
            raise ValueError("the DJN base h must be a unit mod n of order above 2")
        return h

    @property
    def djn_h(self) -> mpz:
        """The DJN ``h = -x^2 mod n``, drawn on first use unless given (it travels with :meth:`to_wire`)."""
        with self._lock:
            if self._h is None:
                self._h = _draw_h(self.n)
            return self._h

    @property
    def djn_base(self) -> mpz:
        """The DJN base ``hs = h^n mod n^2`` of the encryption randomness.

        The key owner's ``h`` travels with :meth:`to_wire`, so every party encrypting under one key
        uses the same base: that is what makes ``randomness="subgroup"`` hiding (see :meth:`obfuscators`).
        """
        h = self.djn_h
        with self._lock:
            if self._hs is None:
                self._hs = powmod(h, self.n, self.nsquare)
            return self._hs

    def _comb(self) -> _modexp.FixedBase:
        return _modexp.fixed_base(self.djn_base, self.nsquare, _WINDOW_BITS)

    def prepare(self, randomness: str = "djn") -> None:
        """Build now the table that ``randomness`` draws from (else built on first use), e.g. during set-up."""
        check_randomness(randomness)
        if randomness == "subgroup":
            self._comb().ensure(self.bits + SUBGROUP_SIGMA)
        elif randomness == "djn" and self.short_exponent_bits is not None:
            self._comb().ensure(self.short_exponent_bits)

    def obfuscators(self, count: int, *, randomness: str = "djn") -> list[mpz]:
        """``count`` fresh random n-th residues ``r^n mod n^2`` (the encryption randomness).

        ``randomness`` (one of :data:`mpcml.he.RANDOMNESS`):

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
        check_randomness(randomness)
        n, n2 = self.n, self.nsquare
        if randomness == "uniform" or (randomness == "djn" and self.short_exponent_bits is None):
            rs = []
            while len(rs) < count:
                r = mpz(secrets.randbelow(int(n) - 1) + 1)
                if gmpy2.gcd(r, n) == 1:
                    rs.append(r)
            return _modexp.parallel_powmod(rs, n, n2)
        bits = self.bits + SUBGROUP_SIGMA if randomness == "subgroup" else self.short_exponent_bits
        self._comb().ensure(bits)
        return _modexp.fixed_products([self.djn_base], [_modexp.random_exponents(count, bits)], n2, window=_WINDOW_BITS)

    # --- encryption ---------------------------------------------------------------------

    def trivial(self, values: Sequence[int]) -> list[mpz]:
        n = self.n
        return [(mpz(v) % n) * n + 1 for v in values]

    def _encrypt_values(self, values: list[int], randomness: str) -> list[mpz]:
        n2 = self.nsquare
        return [m * r % n2 for m, r in zip(self.trivial(values), self.obfuscators(len(values), randomness=randomness))]

    # --- wire ---------------------------------------------------------------------------

    def to_wire(self) -> dict:
        """Codec-friendly form ``{"scheme": "paillier", "n": n, "h": DJN base h}``.

        The receiver computes ``hs = h^n mod n^2`` itself (one exponentiation), so a base that is
        not an n-th residue cannot be slipped in; sharing ``h`` makes every encryptor use the key
        owner's subgroup (what ``randomness="subgroup"`` needs).
        """
        return {"scheme": self.scheme, "n": int(self.n), "h": int(self.djn_h)}

    @classmethod
    def from_wire(cls, obj: Any) -> "PublicKey":
        """Rebuild a key sent by a peer; malformed or weak keys raise ``ValueError``."""
        if not isinstance(obj, dict) or set(obj) != {"scheme", "n", "h"} or obj.get("scheme") != cls.scheme:
            raise ValueError("Paillier public key on the wire must be a dict {'scheme': 'paillier', 'n': int, 'h': int}")
        n, h = wire_int(obj, "n", "Paillier public key"), wire_int(obj, "h", "Paillier public key")
        if n < 2:
            raise ValueError(f"Paillier public key on the wire: n must be a large odd modulus, got {n}")
        return cls(n, djn_h=h)


class PrivateKey(BasePrivateKey):
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

    @property
    def max_bound_bits(self) -> int:
        """Largest ``max_bits`` accepted by known-bound decryption (``|p| - 2``)."""
        return int(self._p.bit_length()) - 2

    def encrypt_int(self, ints: Any, *, frac_bits: int = 0, name: str = "ints") -> EncryptedArray:
        """Encrypt as the key owner: :meth:`PublicKey.encrypt_int` (``randomness="djn"``) computed mod p^2 and q^2.

        The same ciphertexts ``(1 + m n) hs^a`` (the key's DJN base, a short exponent ``a``) from two
        half-size fixed-base combs with 10-bit windows and one CRT recombination: about 1.8x faster
        than the public-key comb. The tables (``2 x 26 x 1024`` residues of ``|n|`` bits, 15 MB at
        2048 bits) are built on first use.
        """
        pk = self.public_key
        if pk.short_exponent_bits is None:
            return pk.encrypt_int(ints, frac_bits=frac_bits, name=name)
        flat, shape = pk.plaintexts(ints, name)
        exps = _modexp.random_exponents(len(flat), pk.short_exponent_bits)
        trivial = pk.trivial(flat)
        base = pk.djn_base
        cp = _modexp.fixed_products([base % self._p2], [exps], self._p2, window=_OWNER_WINDOW_BITS,
                                    factors=[t % self._p2 for t in trivial])
        cq = _modexp.fixed_products([base % self._q2], [exps], self._q2, window=_OWNER_WINDOW_BITS,
                                    factors=[t % self._q2 for t in trivial])
        p2, q2, p2_inv = self._p2, self._q2, self._p2_inv
        cts = [a + (b - a) * p2_inv % q2 * p2 for a, b in zip(cp, cq)]
        return pk.array(object_array(cts, shape), check_frac_bits(frac_bits))

    def prepare(self) -> None:
        """Build now the tables of :meth:`encrypt_int` (else built on first use), e.g. during set-up."""
        pk = self.public_key
        if pk.short_exponent_bits is not None:
            for modulus in (self._p2, self._q2):
                _modexp.fixed_base(pk.djn_base % modulus, modulus, _OWNER_WINDOW_BITS).ensure(pk.short_exponent_bits)

    def raw_decrypt(self, ciphertexts: Sequence[Any]) -> list[mpz]:
        """Plaintexts in ``[0, n)`` of raw ciphertexts (CRT; p- and q-halves on two threads)."""
        cts = [mpz(c) for c in ciphertexts]
        p, q = self._p, self._q
        if self.parallel and len(cts) >= _modexp.PARALLEL_MIN and _modexp.processes() > 1:
            fut = _modexp._threads.submit(gmpy2.powmod_base_list, cts, q - 1, self._q2)
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

    def _bounded(self, cts: list[mpz], max_bits: int) -> list[int]:
        p, hp, half, limit = self._p, self._hp, self._p >> 1, 1 << max_bits
        out = []
        for a in _modexp.parallel_powmod(cts, p - 1, self._p2, self.parallel):
            m = (a - 1) // p * hp % p
            v = int(m - p) if m > half else int(m)
            if not -limit < v < limit:
                raise OverflowError(f"a decrypted value is outside the promised bound |v| < 2^{max_bits}")
            out.append(v)
        return out

    def _decrypt_values(self, cts: list[mpz], max_bits: int | None) -> list[int]:
        return self._signed(self.raw_decrypt(cts)) if max_bits is None else self._bounded(cts, max_bits)
