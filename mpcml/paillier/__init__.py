"""Paillier encryption on numpy arrays, interoperable with ``phe`` and fast through gmpy2.

Keys (:mod:`mpcml.paillier.keys`): :class:`PublicKey`/:class:`PrivateKey` wrap
``phe.PaillierPublicKey``/``PaillierPrivateKey`` (attribute ``.phe``), with DJN short-exponent
encryption, the key owner's CRT encryption, CRT and known-bound decryption. Arrays
(:class:`EncryptedArray`, with :meth:`EncryptedArray.to_phe`/:meth:`EncryptedArray.from_phe`),
packing (:func:`encrypt_packed`, :func:`pack_ciphertexts`) and HE -> additive shares
(:func:`mask_to_share`/:func:`unmask_share`) are the scheme-agnostic ones of :mod:`mpcml.he`, which
also has the Okamoto–Uchiyama scheme beside this one; every name used before the split is
importable from here.

Plaintexts. A signed integer ``v`` with ``|v| <= max_int = n // 3 - 1`` is stored as ``v mod n``
(negatives as ``n - |v|``, as in ``phe``); decryption maps back to the signed value and raises
``OverflowError`` in the middle third (a homomorphic result that overflowed). Reals are fixed point
``round(x * 2^frac_bits)``; every :class:`EncryptedArray` carries its scale ``frac_bits``.

Homomorphic results are *not* re-randomised: ``c^0 = 1`` or a product of known ciphertexts can
reveal a multiplier to the key owner. Call :meth:`EncryptedArray.rerandomize` (or mask, as
:func:`mask_to_share` does) before sending a computed ciphertext to the key owner; both use
uniformly random ``r`` by default, because the key owner knows the factorisation and the DJN
randomness does not hide a computation from it. When every input was a DJN encryption under the
key owner's base (which :meth:`PublicKey.to_wire` ships with the key), ``randomness="subgroup"``
(a long exponent of that base, 7x cheaper) hides the computation as well (see
:meth:`PublicKey.obfuscators`).
"""

from ..he._modexp import ColumnPowers, multi_exp, parallel_powmod
from ..he.conversion import MASK_SIGMA, MaskedPacking, mask_to_share, random_masks, unmask_share
from ..he.encoding import MAX_FRAC_BITS
from ..he.keys import RANDOMNESS
from ..he.packing import (
    PackedEncryptedArray,
    decrypt_packed,
    encrypt_packed,
    pack_ciphertexts,
    pack_plain,
    slots_per_ciphertext,
    unpack_words,
)
from .array import EncryptedArray
from .keys import DEFAULT_SHORT_EXPONENT_BITS, MIN_KEY_BITS, SUBGROUP_SIGMA, PrivateKey, PublicKey, generate_keypair, min_plaintext_bits

__all__ = [
    "ColumnPowers", "DEFAULT_SHORT_EXPONENT_BITS", "EncryptedArray", "MASK_SIGMA", "MAX_FRAC_BITS", "MIN_KEY_BITS",
    "MaskedPacking", "PackedEncryptedArray", "PrivateKey", "PublicKey", "RANDOMNESS", "SUBGROUP_SIGMA",
    "decrypt_packed", "encrypt_packed", "generate_keypair", "mask_to_share", "min_plaintext_bits", "multi_exp",
    "pack_ciphertexts",
    "pack_plain", "parallel_powmod", "random_masks", "slots_per_ciphertext", "unmask_share", "unpack_words",
]
