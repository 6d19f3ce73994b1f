"""Paillier encrypted arrays: the scheme-agnostic :class:`mpcml.he.EncryptedArray` plus ``phe`` interop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import phe
from gmpy2 import mpz, powmod

from ..he.array import EncryptedArray as BaseEncryptedArray
from ..he.encoding import object_array

if TYPE_CHECKING:
    from .keys import PublicKey


class EncryptedArray(BaseEncryptedArray):
    """Paillier ciphertexts (mod n^2) with a fixed-point scale; converts to and from ``phe.EncryptedNumber``."""

    def to_phe(self) -> list[phe.EncryptedNumber]:
        """Flat list of ``phe.EncryptedNumber`` (scale rounded up to a multiple of 4 bits: phe's base is 16)."""
        frac = -(-self.frac_bits // 4) * 4
        aligned = self._rescaled(frac)
        return [phe.EncryptedNumber(self.public_key.phe, int(c), -frac // 4) for c in aligned.ciphertexts.flat]

    @classmethod
    def from_phe(cls, numbers_: Sequence[phe.EncryptedNumber], public_key: "PublicKey | None" = None) -> "EncryptedArray":
        """1-D array from ``phe.EncryptedNumber`` objects (exponents aligned to the smallest)."""
        from .keys import PublicKey

        if not numbers_ or not all(isinstance(x, phe.EncryptedNumber) for x in numbers_):
            raise TypeError("numbers_ must be a non-empty sequence of phe.EncryptedNumber")
        key = public_key if public_key is not None else PublicKey(numbers_[0].public_key)
        if any(x.public_key.n != key.n for x in numbers_):
            raise ValueError("numbers_ use different public keys")
        low = min(min(x.exponent for x in numbers_), 0)
        n2 = key.nsquare
        cts = [powmod(mpz(x.ciphertext(be_secure=False)), 16 ** (x.exponent - low), n2) for x in numbers_]
        return cls(key, object_array(cts), -4 * low)
