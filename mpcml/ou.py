"""Okamoto–Uchiyama encryption on numpy arrays: the second additively homomorphic scheme of :mod:`mpcml.he`.

Scheme (Okamoto, Uchiyama, "A new public-key cryptosystem as secure as factoring", EUROCRYPT
1998), with the fast decryption of Coron, Naccache, Paillier ("Accelerating Okamoto–Uchiyama's
public-key cryptosystem", Electronics Letters 35(4), 1999), as SecretFlow's HEU library also uses:

- Key: ``n = p^2 q`` with ``|p| = |q| ≈ |n|/3`` (683 bits at 2048), ``p - 1 = 2 t u`` for a prime
  ``t`` of ``2λ`` bits (224 at 2048, λ = 112; 256 from 3072 bits, λ = 128), a public base
  ``g = x^u mod n`` whose order mod ``p^2`` is ``p t``, and ``h = g^n mod n`` (of order ``t`` mod
  ``p^2``). The public key is ``(n, g)``: every receiver computes ``h = g^n`` itself, so ``h`` is
  an n-th power whoever sent the key.
- ``Enc(m) = g^m h^r mod n`` for a signed plaintext ``|m| <= max_int = 2^(|p|-2) - 1`` (a negative
  ``m`` is the inverse of ``Enc(|m|)``); ciphertexts are ``|n|`` bits, half of Paillier's.
- ``Dec(c) = L(c^t mod p^2) / L(g^t mod p^2) mod p`` with ``L(x) = (x - 1) / p``: one exponentiation
  by the ``2λ``-bit ``t`` mod ``p^2`` (Paillier: two by ``|n|/2``-bit exponents mod ``p^2`` and
  ``q^2``). Decrypted residues are centred mod ``p``; beyond ``max_int`` (``p > 3 max_int``) they
  raise ``OverflowError``: a homomorphic result that overflowed, as for Paillier.

Security: one-wayness is equivalent to factoring ``n = p^2 q``; semantic security rests on OU's
p-subgroup assumption (telling an n-th power ``h^r`` from a random element ``g^m h^r`` without the
factors is hard). The best known attack is factoring ``n``, which at ``|n| = 2048`` costs about as
much as factoring a 2048-bit RSA modulus (about 112-bit security; 3072 bits give about 128);
lattice factoring of ``p^r q`` (Boneh–Durfee–Howgrave-Graham 1999) does not help for ``r = 2``.
The secret order ``t`` of ``g`` mod ``p`` has ``2λ`` bits so that rho-style searches for it
(collisions ``g^a = g^b mod p`` detected by gcds with ``n``) cost ``2^λ``.

Short-exponent randomness (``randomness="djn"``, the default): ``h^r`` with ``r`` uniform in
``[0, 2^(2λ))`` from a fixed-base comb, assumed indistinguishable from ``h^r`` for a uniform
``r`` mod ``ord(h)`` (the short-exponent assumption, as for Paillier's DJN randomness; the best
known attack, a baby-step giant-step / lambda search for ``r``, costs ``2^λ``). HEU draws 110-bit
``r`` at 2048 bits, within reach of that search (2^55); here ``r`` has 224 bits.

``"subgroup"``/``"uniform"`` (re-randomisation that hides a computation from the key owner): ``h^r``
with ``r`` uniform in ``[0, 2^b)``, within ``2^-64`` of uniform on ``<h>`` when ``ord(h) < 2^(b - 64)``.
Every OU ciphertext is ``g^e h^s``, and ``<h> = <g^n>`` is the subgroup of ``<g>`` of index ``p``, so
after re-randomisation a ciphertext reveals only ``e mod p``, its plaintext: not the multipliers or
the randomness of the inputs it was computed from.

- ``"uniform"``: ``b = |n| + 64``, since ``ord(h) < n`` for any modulus.
- ``"subgroup"``: ``b = 2λ + |q| + 64`` (972 bits at 2048 instead of 2,112: 2.2x cheaper), since
  for a key made as :func:`generate_keypair` makes it ``h = g^n`` has order ``t`` mod ``p^2`` and
  an order dividing ``q - 1`` mod ``q``, so ``ord(h)`` divides ``lcm(t, q - 1) < 2^(2λ + |q|)``
  (``|q| <= |n| - 2|p| + 2``). The encryptor cannot check how the key owner made its key, as it
  cannot check that the key owner's ciphertexts are honest encryptions (a ciphertext outside
  ``<g>``, e.g. times ``-1``, would carry a multiplier's parity through any re-randomisation): both
  are the semi-honest key owner every protocol here assumes.
"""

from __future__ import annotations

import numbers
import secrets
import threading
from typing import Any, Sequence

import gmpy2
from gmpy2 import mpz, powmod

from .floors import check_key_bits
from .he import _modexp
from .he.keys import PrivateKey as BasePrivateKey
from .he.keys import PublicKey as BasePublicKey
from .he.encoding import check_frac_bits, object_array
from .he.keys import check_randomness, wire_int

MIN_KEY_BITS = 1024
HIDING_SIGMA = 64
_WINDOW_BITS = 8
_SHORT_WINDOW_BITS = 12  # h^r for 2λ-bit r: 19 multiplications from a 20 MB table (28 with 8-bit windows)
_PRIME_CHECKS = 40


def security_bits(n_bits: int) -> int:
    """λ for an ``n_bits``-bit modulus: 128 from 3072 bits, 112 from 2048 (80 below, tests only)."""
    return 128 if n_bits >= 3072 else 112 if n_bits >= 2048 else 80


def prime_bits(n_bits: int) -> int:
    """``|p|`` for an ``n_bits``-bit ``n = p^2 q``: ``ceil(n_bits / 3)``."""
    return (n_bits + 2) // 3


def min_plaintext_bits(n_bits: int) -> int:
    """Packing capacity of every ``n_bits``-bit key: ``max_int = 2^(|p| - 2) - 1``."""
    return prime_bits(n_bits) - 2


def _random_bits(bits: int, top: int = 1) -> mpz:
    """A uniform ``bits``-bit odd integer with its ``top`` leading bits set (``secrets``)."""
    value = secrets.randbits(bits) | ((1 << top) - 1) << (bits - top) | 1
    return mpz(value)


def _prime(bits: int) -> mpz:
    while True:
        candidate = _random_bits(bits, 2)
        if gmpy2.is_prime(candidate, _PRIME_CHECKS):
            return candidate


def signed_columns(values: Sequence[int]) -> tuple[list[int], list[int]]:
    """The exponents of ``g`` and of ``g^-1`` for signed ``values``: ``(max(v, 0), max(-v, 0))`` each."""
    ints = [int(v) for v in values]
    return [v if v > 0 else 0 for v in ints], [-v if v < 0 else 0 for v in ints]


def generate_keypair(n_length: int = 2048) -> tuple["PublicKey", "PrivateKey"]:
    """A fresh key pair with an exactly ``n_length``-bit ``n = p^2 q`` (primes from ``secrets``).

    Below 2048 bits only with the test-only switch of :mod:`mpcml.floors`.
    """
    check_key_bits("n_length", n_length, hard_floor=MIN_KEY_BITS)
    pbits = prime_bits(n_length)
    t = _prime(2 * security_bits(n_length))
    low, high = (3 << (pbits - 2)) // (2 * t) + 1, ((1 << pbits) - 2) // (2 * t)
    while True:  # p = 2 t u + 1 with its top two bits set, so p > 3 * 2^(|p| - 2) > 3 max_int
        u = low + secrets.randbelow(int(high - low))
        p = 2 * t * u + 1
        if gmpy2.is_prime(p, _PRIME_CHECKS):
            break
    p2 = p * p
    q_low, q_high = ((1 << (n_length - 1)) - 1) // p2 + 1, ((1 << n_length) - 1) // p2  # n has exactly n_length bits
    while True:
        q = q_low + secrets.randbelow(int(q_high - q_low))
        if q != p and gmpy2.is_prime(q, _PRIME_CHECKS) and (q - 1) % p and (p - 1) % q:
            break
    n = p2 * q
    p2 = p * p
    while True:  # g = x^(2u) has order p t mod p^2 when g != 1 mod p (order t) and g^t = x^(p-1) != 1 mod p^2
        x = mpz(secrets.randbelow(int(n) - 3) + 2)
        if gmpy2.gcd(x, n) != 1:
            continue
        g = powmod(x, 2 * u, n)
        if g % p != 1 and powmod(g, t, p2) != 1:
            break
    public_key = PublicKey(n, g)
    return public_key, PrivateKey(p, q, t, public_key)


class PublicKey(BasePublicKey):
    """Okamoto–Uchiyama public key ``(n, g)`` with ``h = g^n``; comb-table encryption on all cores."""

    scheme = "ou"

    def __init__(self, n: int, g: int) -> None:
        for name, value in (("n", n), ("g", g)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
        n, g = mpz(int(n)), mpz(int(g))
        if n % 2 == 0 or n.bit_length() < MIN_KEY_BITS or gmpy2.is_square(n):
            raise ValueError(f"the OU modulus n must be odd, not a square, with at least {MIN_KEY_BITS} bits")
        check_key_bits("OU modulus n", int(n.bit_length()), hard_floor=MIN_KEY_BITS)
        if not 1 < g < n or gmpy2.gcd(g, n) != 1 or g * g % n == 1:
            raise ValueError("the OU base g must be a unit mod n of order above 2")
        self.n = self.modulus = n
        self.g = g
        self.h = powmod(g, n, n)
        self.g_inv = gmpy2.invert(g, n)  # negative plaintexts: g^v = (g^-1)^|v| from a second comb, no inversion each
        self.prime_bits = prime_bits(self.bits)
        self.max_int = (1 << (self.prime_bits - 2)) - 1
        self.short_exponent_bits = 2 * security_bits(self.bits)
        self._lock = threading.Lock()

    def identity(self) -> tuple:
        return (self.scheme, int(self.n), int(self.g))

    def _hiding_bits(self, randomness: str) -> int:
        """Bits of the re-randomising exponent for ``"subgroup"`` or ``"uniform"`` (module docstring)."""
        if randomness == "uniform":
            return self.bits + HIDING_SIGMA
        return self.short_exponent_bits + (self.bits - 2 * self.prime_bits + 2) + HIDING_SIGMA

    def prepare(self, randomness: str = "djn") -> None:
        """Build now the comb tables for ``g`` (all plaintexts) and ``h`` (``randomness``), e.g. during set-up."""
        check_randomness(randomness)
        for base in (self.g, self.g_inv):
            _modexp.fixed_base(base, self.n, _WINDOW_BITS).ensure(self.prime_bits)
        if randomness == "djn":
            _modexp.fixed_base(self.h, self.n, _SHORT_WINDOW_BITS).ensure(self.short_exponent_bits)
        else:
            _modexp.fixed_base(self.h, self.n, _WINDOW_BITS).ensure(self._hiding_bits(randomness))

    def _exponents(self, count: int, randomness: str) -> tuple[list[int], int]:
        """Random exponents of ``h`` for ``randomness`` and the comb width their table uses."""
        check_randomness(randomness)
        if randomness == "djn":
            return _modexp.random_exponents(count, self.short_exponent_bits), _SHORT_WINDOW_BITS
        return _modexp.random_exponents(count, self._hiding_bits(randomness)), _WINDOW_BITS

    def obfuscators(self, count: int, *, randomness: str = "djn") -> list[mpz]:
        """``count`` encryptions of zero ``h^r`` (see the module docstring for ``randomness``)."""
        exponents, window = self._exponents(count, randomness)
        return _modexp.fixed_products([self.h], [exponents], self.n, window=window)

    def _signed_powers(self, values: Sequence[int], randomness: str | None) -> list[mpz]:
        """``g^v h^r`` for each signed ``v`` (``r`` drawn for ``randomness``; ``None``: ``r = 0``)."""
        bases, columns, windows = [self.g, self.g_inv], list(signed_columns(values)), [_WINDOW_BITS, _WINDOW_BITS]
        if randomness is not None:
            exponents, window = self._exponents(len(values), randomness)
            bases.append(self.h)
            columns.append(exponents)
            windows.append(window)
        return _modexp.fixed_products(bases, columns, self.n, window=windows)

    def trivial(self, values: Sequence[int]) -> list[mpz]:
        return self._signed_powers(values, None)

    def _encrypt_values(self, values: list[int], randomness: str) -> list[mpz]:
        return self._signed_powers(values, randomness)

    def to_wire(self) -> dict:
        """Codec-friendly form ``{"scheme": "ou", "n": n, "g": g}`` (the receiver computes ``h = g^n``)."""
        return {"scheme": self.scheme, "n": int(self.n), "g": int(self.g)}

    @classmethod
    def from_wire(cls, obj: Any) -> "PublicKey":
        """Rebuild a key sent by a peer; malformed or weak keys raise ``ValueError``."""
        if not isinstance(obj, dict) or set(obj) != {"scheme", "n", "g"} or obj.get("scheme") != cls.scheme:
            raise ValueError("OU public key on the wire must be a dict {'scheme': 'ou', 'n': int, 'g': int}")
        return cls(wire_int(obj, "n", "OU public key"), wire_int(obj, "g", "OU public key"))


class PrivateKey(BasePrivateKey):
    """Okamoto–Uchiyama private key ``(p, q, t)``: decryption by one ``2λ``-bit exponentiation mod ``p^2``.

    The exponentiations of an array run on two GIL-free threads (``gmpy2.powmod_base_list``).
    """

    def __init__(self, p: int, q: int, t: int, public_key: PublicKey) -> None:
        p, q, t = mpz(p), mpz(q), mpz(t)
        if p * p * q != public_key.n or (p - 1) % t:
            raise ValueError("p, q, t do not match the public key")
        self.public_key = public_key
        self._p, self._p2, self._t = p, p * p, t
        self._q = q
        self._p2_inv = gmpy2.invert(self._p2, q)
        gt = powmod(public_key.g, t, self._p2)
        if gt == 1:
            raise ValueError("g has no component of order p mod p^2")
        self._l_inv = gmpy2.invert((gt - 1) // p, p)
        # g = g1 g2 mod p^2: g1 = g^(t (t^-1 mod p)) of order p, so g1 = 1 + L p and g1^x = 1 + x L p; g2 = g^(p (p^-1
        # mod t)) of order t. Then g^v h^r = g^(v + n r) = (1 + v L p) g2^((v + n r) mod t) mod p^2, as p | n.
        self._g1_l = (powmod(public_key.g, t * gmpy2.invert(t, p), self._p2) - 1) // p
        self._g2 = powmod(public_key.g, p * gmpy2.invert(p, t), self._p2)
        self._n_mod_t = public_key.n % t

    @property
    def max_bound_bits(self) -> int:
        """Plaintexts are below ``2^(|p| - 2)``: every decryption is already a single mod-p^2 exponentiation."""
        return self.public_key.prime_bits - 2

    def encrypt_int(self, ints: Any, *, frac_bits: int = 0, name: str = "ints") -> Any:
        """Encrypt as the key owner: the ciphertexts of :meth:`PublicKey.encrypt_int` (``randomness="djn"``),
        ``g^v h^r mod n``, computed mod ``q`` (``g^v h^r`` from combs of ``g``, ``g^-1`` and ``h``) and mod ``p^2``
        as ``(1 + v L p) g2^((v + n r) mod t)`` (the order-``p`` part of ``g`` needs one multiplication, the
        order-``t`` part one 2λ-bit comb), joined by CRT."""
        pk = self.public_key
        flat, shape = pk.plaintexts(ints, name)
        exps = _modexp.random_exponents(len(flat), pk.short_exponent_bits)
        q, p, p2, t = self._q, self._p, self._p2, self._t
        mod_q = _modexp.fixed_products([pk.g % q, pk.g_inv % q, pk.h % q], [*signed_columns(flat), exps], q,
                                       window=[_WINDOW_BITS, _WINDOW_BITS, _SHORT_WINDOW_BITS])
        n_t, g1_l = self._n_mod_t, self._g1_l
        order_t = [(v + n_t * r) % t for v, r in zip(flat, exps)]
        order_p = [1 + v * g1_l % p * p for v in flat]
        mod_p2 = _modexp.fixed_products([self._g2], [order_t], p2, window=_SHORT_WINDOW_BITS, factors=order_p)
        p2_inv = self._p2_inv
        cts = [a + (b - a) * p2_inv % q * p2 for a, b in zip(mod_p2, mod_q)]
        return pk.array(object_array(cts, shape), check_frac_bits(frac_bits))

    def prepare(self) -> None:
        """Build now the CRT tables of :meth:`encrypt_int` (else built on first use)."""
        pk = self.public_key
        for base in (pk.g, pk.g_inv):
            _modexp.fixed_base(base % self._q, self._q, _WINDOW_BITS).ensure(pk.prime_bits)
        _modexp.fixed_base(pk.h % self._q, self._q, _SHORT_WINDOW_BITS).ensure(pk.short_exponent_bits)
        _modexp.fixed_base(self._g2, self._p2, _SHORT_WINDOW_BITS).ensure(self._t.bit_length())

    def _decrypt_values(self, cts: list[mpz], max_bits: int | None) -> list[int]:
        p, p2, l_inv, half = self._p, self._p2, self._l_inv, self._p >> 1
        limit = self.public_key.max_int if max_bits is None else (1 << max_bits) - 1
        out = []
        for a in _modexp.parallel_powmod([c % p2 for c in cts], self._t, p2):
            m = (a - 1) // p * l_inv % p
            v = int(m - p) if m > half else int(m)
            if not -limit <= v <= limit:
                raise OverflowError(
                    "a decrypted value overflowed the plaintext range |v| <= max_int (too many homomorphic operations)"
                    if max_bits is None else f"a decrypted value is outside the promised bound |v| < 2^{max_bits}"
                )
            out.append(v)
        return out
