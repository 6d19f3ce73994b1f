"""Additively homomorphic encryption behind one interface: Paillier or Okamoto–Uchiyama, chosen by name.

Protocol code names neither scheme::

    from mpcml import he
    pk, sk = he.generate_keypair("ou", 2048)           # or "paillier"
    party.send(peer, pk.to_wire())                     # peer: he.public_key_from_wire(msg, "ou")
    x = pk.encrypt(np.array([1.5, -2.0]))              # EncryptedArray: + - * @ (dense or sparse), sum
    y = (S @ x + 3).rerandomize()                      # cost ∝ non-zeros of S
    sk.decrypt(y)
    masked, mine = he.mask_to_share(y, rng=party.rng, pack=True)   # HE -> additive shares mod 2^64

What each scheme provides (:class:`PublicKey`/:class:`PrivateKey` in :mod:`mpcml.he.keys`): the
ciphertext modulus (``n^2`` Paillier, ``n`` OU), the trivial encryption of a plaintext, fresh
randomness (``"djn"`` short-exponent, ``"subgroup"``/``"uniform"`` hiding a computation from the
key owner), decryption, ``max_int``/``plaintext_bits``, and a wire form validated by the receiver.
Written once on top: fixed-point encoding (:mod:`mpcml.he.encoding`), arrays
(:mod:`mpcml.he.array`), packing with overflow headroom (:mod:`mpcml.he.packing`), HE -> shares with
40-bit statistical masking (:mod:`mpcml.he.conversion`), and both cores (:mod:`mpcml.he._modexp`).

Schemes and security at the default 2048-bit modulus (about 112-bit security; 3072 bits give
about 128), both refused below 2048 bits outside tests (:mod:`mpcml.floors`):

- ``"paillier"`` (:mod:`mpcml.paillier`): decisional composite residuosity + DJN short exponents.
  Ciphertexts of 4096 bits, plaintexts up to ``n/3`` (2046 bits). Interoperates with ``phe``.
- ``"ou"`` (:mod:`mpcml.ou`): Okamoto–Uchiyama with ``n = p^2 q``; the p-subgroup assumption
  (factoring ``p^2 q``) + short exponents. Ciphertexts of 2048 bits, plaintexts up to about
  ``2^(|p|-3)`` (680 bits); encryption and decryption several times cheaper than Paillier's, so
  it is :data:`DEFAULT_SCHEME`.
"""

from __future__ import annotations

from typing import Any

from ..floors import check_key_bits
from .array import EncryptedArray
from .conversion import MASK_SIGMA, MaskedPacking, check_masked, mask_to_share, random_masks, statistical_masks, unmask_share
from .encoding import check_frac_bits, object_array
from .keys import RANDOMNESS, PrivateKey, PublicKey
from .packing import (
    PackedEncryptedArray,
    decrypt_packed,
    encrypt_packed,
    pack_ciphertexts,
    pack_plain,
    slots_per_ciphertext,
    unpack_words,
)

SCHEMES = ("ou", "paillier")
DEFAULT_SCHEME = "ou"
DEFAULT_KEY_BITS = 2048


def check_scheme(scheme: Any, name: str = "he") -> str:
    """``scheme`` if it names a supported scheme; ``ValueError`` naming the argument otherwise."""
    if scheme not in SCHEMES:
        raise ValueError(f"{name} must be one of {SCHEMES}, got {scheme!r}")
    return scheme


def _module(scheme: str) -> Any:
    check_scheme(scheme, "scheme")
    if scheme == "ou":
        from .. import ou

        return ou
    from .. import paillier

    return paillier


def generate_keypair(scheme: str = DEFAULT_SCHEME, bits: int = DEFAULT_KEY_BITS) -> tuple[PublicKey, PrivateKey]:
    """A fresh key pair of ``scheme`` (``"ou"`` or ``"paillier"``) with a ``bits``-bit public modulus (CSPRNG)."""
    module = _module(scheme)
    check_key_bits("bits", bits, hard_floor=module.MIN_KEY_BITS)
    return module.generate_keypair(bits)


def plaintext_bits(scheme: str, bits: int) -> int:
    """Packing capacity every ``bits``-bit key of ``scheme`` has (its :attr:`PublicKey.plaintext_bits` is at
    least this), for range analyses made before any key exists: OU ``|p| - 2`` (681 at 2048 bits),
    Paillier ``bits - 3`` (``max_int = n // 3 - 1 >= 2^(bits - 3)``)."""
    return _module(scheme).min_plaintext_bits(bits)


def public_key_from_wire(obj: Any, scheme: str | None = None) -> PublicKey:
    """A peer's public key from its wire form; ``scheme`` (if given) is the one the receiver expects.

    Malformed, weak (below the 2048-bit floor) or unexpected keys raise ``ValueError``.
    """
    if not isinstance(obj, dict) or obj.get("scheme") not in SCHEMES:
        raise ValueError(f"public key on the wire must be a dict with 'scheme' one of {SCHEMES}")
    if scheme is not None and obj["scheme"] != check_scheme(scheme, "scheme"):
        raise ValueError(f"expected a {scheme} public key from the peer, got {obj['scheme']!r}")
    return _module(obj["scheme"]).PublicKey.from_wire(obj)


__all__ = [
    "DEFAULT_KEY_BITS", "DEFAULT_SCHEME", "EncryptedArray", "MASK_SIGMA", "MaskedPacking", "PackedEncryptedArray",
    "PrivateKey", "PublicKey", "RANDOMNESS", "SCHEMES", "check_frac_bits", "check_masked", "check_scheme",
    "decrypt_packed", "encrypt_packed", "generate_keypair", "mask_to_share", "object_array", "pack_ciphertexts", "pack_plain",
    "plaintext_bits", "public_key_from_wire", "random_masks", "slots_per_ciphertext", "statistical_masks", "unmask_share", "unpack_words",
]
