"""CAESAR's integer encodings and the packed "mask, send, unpack" step that turns ciphertexts into shares.

:func:`pack_masked` / :func:`unpack_masked` are the HE -> integer-shares conversion of every
CAESAR round (products, cubic, weight decay and output); the shared packed-masking routine of
:mod:`mpcml.paillier` may replace their internals, their behaviour (message, shares, checks) is
what the protocol relies on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from mpcml.csprng import Csprng
from mpcml.paillier import (
    MASK_SIGMA,
    EncryptedArray,
    PrivateKey,
    PublicKey,
    pack_ciphertexts,
    pack_plain,
    random_masks,
    slots_per_ciphertext,
    unpack_words,
)
from mpcml.schema import Int, Record, Str

from ..common import check_matrix
from .schemas import ENCRYPTED

MASKED = Record(kind=Str(["masked"]), count=Int(low=0), bound_bits=Int(low=1), enc=ENCRYPTED)
"""The message :func:`pack_masked` sends."""


def encode_features(x: Any, frac_bits: int, name: str = "X") -> tuple[sp.csr_matrix, int]:
    """``(CSR int64 matrix, x_frac_bits)``: integers as they are, anything else as ``round(x 2^frac_bits)``."""
    mat = check_matrix(x, name, allow_sparse=True)
    mat = sp.csr_matrix(mat, dtype=np.float64)
    mat.eliminate_zeros()
    data = mat.data
    fx = 0 if np.all(data == np.rint(data)) else frac_bits
    scaled = np.rint(np.ldexp(data, fx))
    if scaled.size and np.max(np.abs(scaled)) >= 2.0**62:
        raise ValueError(f"{name} has values too large for fixed point at {fx} fractional bits")
    out = sp.csr_matrix((scaled.astype(np.int64), mat.indices, mat.indptr), shape=mat.shape)
    out.sort_indices()
    return out, fx


def _slot_layout(public_key: PublicKey, bound_bits: int) -> tuple[int, int]:
    """``(slot_bits, slots per ciphertext)`` for values ``|v| < 2^bound_bits`` with a sigma-bit mask."""
    slot_bits = bound_bits + MASK_SIGMA + 1
    return slot_bits, slots_per_ciphertext(public_key, slot_bits)


def pack_masked(enc: EncryptedArray, bound_bits: int, rng: Csprng) -> tuple[dict, np.ndarray]:
    """Holder's half of HE -> integer shares: ``(message for the key owner, my shares)``.

    For ``|v_j| < 2^B`` (``B = bound_bits``) the key owner will decrypt ``t_j = v_j + R_j`` with
    ``R_j = 2^B + U_j``, ``U_j`` uniform in ``[0, 2^(B + sigma))``; the holder's share is
    ``-R_j``, so ``t_j - R_j = v_j`` exactly over the integers. ``slots`` values share one
    ciphertext (:func:`mpcml.paillier.pack_ciphertexts`, as ``mask_to_share(pack=True)`` does;
    that one keeps shares mod 2^64, these stay exact), and the packed masks are added as a fresh
    statistical encryption, so the key owner sees fresh encryptions of masked values only.
    """
    pk = enc.public_key
    slot_bits, slots = _slot_layout(pk, bound_bits)
    count = enc.size
    masks = [(1 << bound_bits) + u for u in random_masks(rng, count, bound_bits + MASK_SIGMA)]
    packed = np.empty(-(-count // slots), dtype=object)
    packed[:] = pack_ciphertexts(pk, list(enc.ciphertexts.flat), slot_bits)
    words = np.empty(packed.size, dtype=object)
    words[:] = pack_plain(masks, slots, slot_bits)
    fresh = EncryptedArray(pk, packed, 0) + pk.encrypt_int(words, randomness="subgroup")
    message = {"kind": "masked", "count": count, "bound_bits": bound_bits, "enc": fresh.to_wire()}
    return message, -np.array(masks, dtype=object)


def unpack_masked(private_key: PrivateKey, message: Any, count: int, bound_bits: int) -> np.ndarray:
    """Key owner's half of :func:`pack_masked`: the masked integers ``t_j`` (object array)."""
    if not isinstance(message, dict) or message.get("kind") != "masked":
        raise ValueError("expected a masked-values message from the peer")
    if message.get("count") != count or message.get("bound_bits") != bound_bits:
        raise ValueError(f"peer sent {message.get('count')} masked values of {message.get('bound_bits')} bits, "
                         f"expected {count} of {bound_bits}")
    slot_bits, slots = _slot_layout(private_key.public_key, bound_bits)
    enc = EncryptedArray.from_wire(private_key.public_key, message["enc"])
    if enc.size != -(-count // slots):
        raise ValueError(f"peer sent {enc.size} packed ciphertexts, expected {-(-count // slots)}")
    words = private_key.raw_decrypt(list(enc.ciphertexts.flat))
    return np.array(unpack_words(words, slots, slot_bits, count), dtype=object)

