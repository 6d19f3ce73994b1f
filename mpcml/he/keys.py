"""The abstract additively homomorphic key pair that every scheme implements.

A scheme (Paillier in :mod:`mpcml.paillier`, Okamoto–Uchiyama in :mod:`mpcml.ou`) supplies the
ciphertext modulus, the trivial encryption of a plaintext, fresh randomness, decryption and the
wire form of its public key; everything else (fixed-point encoding, range checks, arrays,
packing, HE -> shares) is written once against this interface.

Plaintexts are signed integers ``|v| <= max_int``; a decrypted residue beyond ``max_int`` on
either side raises ``OverflowError`` (a homomorphic result that overflowed). Homomorphic
addition is the product of ciphertexts mod :attr:`PublicKey.modulus`.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np
from gmpy2 import mpz
from numpy.typing import ArrayLike

from ..fixedpoint import DEFAULT_FRAC_BITS
from .encoding import check_frac_bits, is_exact, numeric, object_array, to_ints, values_at_scale

if TYPE_CHECKING:
    from .array import EncryptedArray

RANDOMNESS = ("djn", "subgroup", "uniform")


def check_randomness(randomness: Any) -> str:
    if randomness not in RANDOMNESS:
        raise ValueError(f"randomness must be one of {RANDOMNESS}, got {randomness!r}")
    return randomness


def wire_int(obj: dict, field: str, what: str) -> int:
    """``obj[field]`` if it is a (non-bool) int; ``ValueError`` naming ``what`` and the field otherwise."""
    value = obj.get(field)
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ValueError(f"{what} on the wire: field {field!r} must be an int, got {type(value).__name__}")
    return int(value)


class PublicKey(ABC):
    """Public key of an additively homomorphic scheme: encryption of integer and fixed-point arrays."""

    scheme: ClassVar[str]
    n: mpz
    modulus: mpz
    max_int: int

    @property
    def bits(self) -> int:
        """Bit length of the public modulus ``n`` (the key size)."""
        return int(self.n.bit_length())

    @property
    def plaintext_bits(self) -> int:
        """Every integer in ``(-2^plaintext_bits, 2^plaintext_bits)`` is a valid plaintext (packing capacity)."""
        return (self.max_int + 1).bit_length() - 1

    def identity(self) -> tuple:
        """What makes two keys the same key (the public values that determine encryption)."""
        return (self.scheme, int(self.n))

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, PublicKey) and other.identity() == self.identity())

    def __hash__(self) -> int:
        return hash((self.scheme, int(self.n)))

    def __repr__(self) -> str:
        return f"<mpcml {self.scheme} PublicKey {self.bits} bits>"

    def array(self, ciphertexts: np.ndarray, frac_bits: int = 0) -> "EncryptedArray":
        """An encrypted array under this key holding ``ciphertexts`` (an object ndarray)."""
        from .array import EncryptedArray

        return EncryptedArray(self, ciphertexts, frac_bits)

    # --- what a scheme provides ----------------------------------------------------------------

    @abstractmethod
    def trivial(self, values: Sequence[int]) -> list[mpz]:
        """Ciphertexts of ``values`` (within ``max_int``) with no randomness: for adding plaintexts."""

    @abstractmethod
    def obfuscators(self, count: int, *, randomness: str = "djn") -> list[mpz]:
        """``count`` fresh encryptions of zero (``randomness`` one of :data:`RANDOMNESS`)."""

    @abstractmethod
    def _encrypt_values(self, values: list[int], randomness: str) -> list[mpz]:
        """Fresh ciphertexts of the signed integers ``values`` (range already checked)."""

    @abstractmethod
    def prepare(self, randomness: str = "djn") -> None:
        """Build now the tables that ``randomness`` draws from (else built on first use)."""

    @abstractmethod
    def to_wire(self) -> dict:
        """Codec-friendly form, including ``"scheme"``; the receiver validates it with :meth:`from_wire`."""

    @classmethod
    @abstractmethod
    def from_wire(cls, obj: Any) -> "PublicKey":
        """Rebuild a key sent by a peer; malformed or weak keys raise ``ValueError``."""

    # --- shared ---------------------------------------------------------------------------------

    def check_range(self, ints: np.ndarray, name: str) -> None:
        """``ValueError`` if an encoded value exceeds ``max_int`` in magnitude."""
        if ints.size and max(abs(int(v)) for v in ints.flat) > self.max_int:
            raise ValueError(
                f"{name} has an encoded value of magnitude above max_int (about 2^{self.max_int.bit_length()}) of this "
                f"{self.scheme} key; it cannot be encrypted without overflow"
            )

    def plaintexts(self, ints: ArrayLike, name: str) -> tuple[list[int], tuple[int, ...]]:
        """``(flat list of signed ints, shape)`` for an integer array within ``max_int`` (raises otherwise)."""
        arr = numeric(ints, name)
        if not is_exact(arr):
            raise TypeError(f"{name} must be an integer array (use encrypt for reals), got dtype {arr.dtype}")
        ints_obj, _ = to_ints(arr, 0, name)
        self.check_range(ints_obj, name)
        return [int(v) for v in ints_obj.flat], arr.shape

    def encrypt_int(
        self, ints: ArrayLike, *, frac_bits: int = 0, name: str = "ints", randomness: str = "djn"
    ) -> "EncryptedArray":
        """Encrypt an array of signed integers (up to ``max_int``), tagged with scale ``frac_bits``."""
        frac_bits = check_frac_bits(frac_bits)
        check_randomness(randomness)
        flat, shape = self.plaintexts(ints, name)
        return self.array(object_array(self._encrypt_values(flat, randomness), shape), frac_bits)

    def encrypt(self, values: ArrayLike, frac_bits: int = DEFAULT_FRAC_BITS) -> "EncryptedArray":
        """Encrypt reals as fixed point ``round(x * 2^frac_bits)``; integer arrays are scaled likewise."""
        frac_bits = check_frac_bits(frac_bits)
        return self.encrypt_int(values_at_scale(values, frac_bits, "values"), frac_bits=frac_bits, name="values")

    def check_ciphertexts(self, cts: Sequence[Any]) -> list[mpz]:
        """Ciphertexts received from a peer as mpz; ``ValueError`` unless each is an int in ``(0, modulus)``."""
        m = self.modulus
        if not all(isinstance(c, int) and not isinstance(c, bool) and 0 < c < m for c in cts):
            raise ValueError(f"every ciphertext must be an int in (0, {'n^2' if m != self.n else 'n'})")
        return [mpz(c) for c in cts]


class PrivateKey(ABC):
    """Private key: decryption (signed, overflow-checked) of arrays encrypted under :attr:`public_key`."""

    public_key: PublicKey

    def __repr__(self) -> str:
        return f"<mpcml {self.public_key.scheme} PrivateKey {self.public_key.bits} bits>"

    @property
    @abstractmethod
    def max_bound_bits(self) -> int:
        """Largest ``max_bits`` accepted by :meth:`decrypt_int`."""

    @abstractmethod
    def _decrypt_values(self, cts: list[mpz], max_bits: int | None) -> list[int]:
        """Signed plaintexts of ``cts``; ``OverflowError`` beyond ``max_int`` (or ``2^max_bits`` if given)."""

    def prepare(self) -> None:
        """Build now any tables of :meth:`encrypt_int` (else built on first use)."""

    def encrypt_int(self, ints: ArrayLike, *, frac_bits: int = 0, name: str = "ints") -> "EncryptedArray":
        """Encrypt as the key owner (short-exponent randomness; a scheme may use its secret for speed)."""
        return self.public_key.encrypt_int(ints, frac_bits=frac_bits, name=name)

    def check_key(self, enc: Any, name: str = "enc") -> None:
        """``TypeError``/``ValueError`` unless ``enc`` is an encrypted (or packed) array under this key."""
        from .array import EncryptedArray
        from .packing import PackedEncryptedArray

        if not isinstance(enc, (EncryptedArray, PackedEncryptedArray)):
            raise TypeError(f"{name} must be an EncryptedArray, got {type(enc).__name__}")
        if enc.public_key != self.public_key:
            raise ValueError(f"{name} was encrypted under a different public key")

    def check_max_bits(self, max_bits: Any) -> int:
        if not isinstance(max_bits, (int, np.integer)) or isinstance(max_bits, bool) or not 1 <= max_bits <= self.max_bound_bits:
            raise ValueError(f"max_bits must be an integer in [1, {self.max_bound_bits}], got {max_bits!r}")
        return int(max_bits)

    def decrypt_int(self, enc: "EncryptedArray", *, max_bits: int | None = None) -> np.ndarray:
        """Signed plaintext integers (object array of Python ints), ignoring the scale.

        ``max_bits``: promise ``|v| < 2^max_bits`` (a value beyond it raises ``OverflowError``); a
        scheme may decrypt faster with that promise (Paillier: the mod-p half only).
        """
        self.check_key(enc)
        if max_bits is not None:
            max_bits = self.check_max_bits(max_bits)
        return object_array(self._decrypt_values(list(enc.ciphertexts.flat), max_bits), enc.shape)

    def decrypt(self, enc: "EncryptedArray", *, max_bits: int | None = None) -> np.ndarray:
        """Real values ``v / 2^frac_bits`` as float64 (exact up to float rounding); ``max_bits`` as in :meth:`decrypt_int`."""
        ints = self.decrypt_int(enc, max_bits=max_bits)
        scale = 1 << enc.frac_bits
        return np.array([v / scale for v in ints.flat], dtype=np.float64).reshape(enc.shape)
