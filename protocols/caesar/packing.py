"""CAESAR's integer encodings and the packed "mask, send, unpack" step that turns ciphertexts into shares.

:func:`pack_masked` / :func:`unpack_masked` are the HE -> integer-shares conversion of every
CAESAR round (products, cubic, weight decay and output), on the shared packed-masking routine
:class:`mpcml.he.MaskedPacking`; their message, shares and checks are what the protocol relies on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from mpcml.csprng import Csprng
from mpcml.he import EncryptedArray, MaskedPacking, PrivateKey, statistical_masks
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


def pack_masked(enc: EncryptedArray, bound_bits: int, rng: Csprng) -> tuple[dict, np.ndarray]:
    """Holder's half of HE -> integer shares: ``(message for the key owner, my shares)``.

    For ``|v_j| < 2^B`` (``B = bound_bits``) the key owner will decrypt ``t_j = v_j + R_j`` with
    ``R_j = 2^B + U_j``, ``U_j`` uniform in ``[0, 2^(B + sigma))``; the holder's share is
    ``-R_j``, so ``t_j - R_j = v_j`` exactly over the integers. The shared "pack, mask, send,
    unpack" routine :class:`mpcml.he.MaskedPacking` packs as many values per ciphertext as fit and
    adds the packed masks as a fresh ``"subgroup"`` encryption, so the key owner sees fresh
    encryptions of masked values only (``mask_to_share`` keeps shares mod 2^64; these stay exact).
    """
    count = enc.size
    masks = statistical_masks(rng, count, bound_bits, signed=True)
    sealed = MaskedPacking.for_values(bound_bits, signed=True).seal(enc.public_key, list(enc.ciphertexts.flat), masks)
    message = {"kind": "masked", "count": count, "bound_bits": bound_bits, "enc": sealed.to_wire()}
    return message, -np.array(masks, dtype=object)


def unpack_masked(private_key: PrivateKey, message: Any, count: int, bound_bits: int) -> np.ndarray:
    """Key owner's half of :func:`pack_masked`: the masked integers ``t_j`` (object array), range-checked."""
    if not isinstance(message, dict) or message.get("kind") != "masked":
        raise ValueError("expected a masked-values message from the peer")
    if message.get("count") != count or message.get("bound_bits") != bound_bits:
        raise ValueError(f"peer sent {message.get('count')} masked values of {message.get('bound_bits')} bits, "
                         f"expected {count} of {bound_bits}")
    layout = MaskedPacking.for_values(bound_bits, signed=True)
    enc = EncryptedArray.from_wire(private_key.public_key, message["enc"])
    expected = -(-count // layout.slots(private_key.public_key))
    if enc.size != expected:
        raise ValueError(f"peer sent {enc.size} packed ciphertexts, expected {expected}")
    return np.array(layout.open(private_key, enc, count), dtype=object)

