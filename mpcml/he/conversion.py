"""HE -> additive shares: "pack, mask, send, unpack" with 40-bit statistical masking, for any scheme.

The holder of ciphertexts ``Enc(v_j)`` under a peer's key (it cannot decrypt) draws masks
``m_j``, packs ``v_j + m_j`` several to a ciphertext, re-randomises and sends; the key owner
decrypts and unpacks ``y_j = v_j + m_j``. The holder keeps ``-m_j``: ``v_j`` is now additively
shared over the integers (and so modulo 2^64). One routine, :class:`MaskedPacking`, serves
:func:`mask_to_share`/:func:`unmask_share` below, the dealer-free triples
(:mod:`mpcml.paillier_triples`) and CAESAR (:mod:`protocols.caesar`).

Statistical masking (:func:`statistical_masks`): for ``|v| < 2^ℓ`` (signed) the mask is
``m = 2^ℓ + U`` and for ``0 <= v < 2^ℓ`` (unsigned) ``m = U``, with ``U`` uniform in
``[0, 2^(ℓ+σ))``, ``σ = MASK_SIGMA = 40``, drawn over the *integers*: ``y = v + m`` lies in
``[0, 2^(ℓ+σ+1))``, a ``width = ℓ + σ + 1``-bit slot, and is within statistical distance
``2^ℓ / 2^(ℓ+σ) = 2^-40`` of ``m`` alone, whatever ``v``. Nothing wraps modulo the plaintext
modulus (every packed word stays below ``2^plaintext_bits <= max_int``), so ``y - m = v`` over
the integers; a mask reduced mod ``n`` would leave a multiple of ``n`` in the sum, which is not 0
mod 2^64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from gmpy2 import mpz

from ..csprng import Csprng
from ..fixedpoint import DEFAULT_FRAC_BITS, HEADROOM_BITS, RING_BITS
from .array import EncryptedArray
from .encoding import check_frac_bits, object_array
from .keys import PrivateKey, PublicKey, check_randomness
from .packing import pack_ciphertexts, pack_plain, slots_per_ciphertext, unpack_words

MASK_SIGMA = 40
_TWO64 = 1 << 64


def random_masks(rng: Csprng, count: int, bits: int) -> list[int]:
    """``count`` independent uniform integers in ``[0, 2^bits)`` from ``rng``."""
    width = (bits + 7) // 8
    raw = rng.random_bytes(width * count)
    limit = (1 << bits) - 1
    return [int.from_bytes(raw[k : k + width], "little") & limit for k in range(0, width * count, width)]


def statistical_masks(rng: Csprng, count: int, value_bits: int, *, signed: bool) -> list[int]:
    """Masks for values ``|v| < 2^value_bits`` (``signed``) or ``0 <= v < 2^value_bits``: ``[2^ℓ +] U``, ``U < 2^(ℓ+σ)``."""
    offset = 1 << value_bits if signed else 0
    return [offset + u for u in random_masks(rng, count, value_bits + MASK_SIGMA)]


def check_masked(values: Sequence[int], value_bits: int, *, signed: bool) -> None:
    """``ValueError`` unless every ``y = v + m`` lies where an in-bound ``v`` puts it."""
    low, high = (1, (1 << (value_bits + MASK_SIGMA)) + (1 << (value_bits + 1))) if signed else \
        (0, (1 << (value_bits + MASK_SIGMA)) + (1 << value_bits))
    if not all(low <= y < high for y in values):
        raise ValueError(f"masked value out of range: the holder's plaintext exceeded |x| < 2^{value_bits}")


@dataclass(frozen=True)
class MaskedPacking:
    """Layout of one "pack, mask, send, unpack" step: ``width``-bit slots, groups of ``group`` never straddling.

    ``pack=False`` keeps one value per ciphertext (no Horner packing, one decryption per value).
    ``signed`` (``True``/``False``) says the slots hold statistically masked values of
    ``width - σ - 1`` bits (:func:`statistical_masks`), whose range :meth:`open` then checks;
    ``None`` for other maskings (e.g. one-time-padded bits).
    """

    width: int
    group: int = 1
    pack: bool = True
    signed: bool | None = None

    @classmethod
    def for_values(cls, value_bits: int, *, signed: bool, group: int = 1, pack: bool = True) -> "MaskedPacking":
        """The layout for masked values of ``value_bits`` bits (slots of ``value_bits + σ + 1`` bits)."""
        return cls(value_bits + MASK_SIGMA + 1, group, pack, signed)

    def slots(self, key: PublicKey) -> int:
        """Values per ciphertext under ``key``: a multiple of ``group`` (``ValueError`` if none fits)."""
        per_ct = slots_per_ciphertext(key, self.width) // self.group * self.group
        if not self.pack:
            return 1
        if per_ct < 1:
            raise ValueError(f"{self.group} slots of {self.width} bits do not fit a {key.bits}-bit {key.scheme} key")
        return per_ct

    def seal(
        self, public_key: PublicKey, terms: Sequence[mpz], masks: Sequence[int], *, prepacked: bool = False,
        randomness: str = "subgroup",
    ) -> EncryptedArray:
        """Holder: ``Enc(packed terms + packed masks)`` with fresh ``randomness``, a 1-D array to send.

        ``terms`` are ciphertexts of single values (packed here by Horner's rule), or with
        ``prepacked`` already packed words laid out as :meth:`slots` says.
        """
        check_randomness(randomness)
        per_ct = self.slots(public_key)
        if prepacked or per_ct == 1:
            packed = list(terms)
        else:
            packed = pack_ciphertexts(public_key, terms, self.width, per_ct)
        words = pack_plain(list(masks), per_ct, self.width)
        if len(words) != len(packed):
            raise ValueError(f"{len(masks)} masks do not match {len(packed)} packed ciphertexts")
        count = len(packed)
        masked = public_key.array(object_array(packed, (count,)), 0)
        return masked + public_key.encrypt_int(object_array(words, (count,)), randomness=randomness)

    def open(self, private_key: PrivateKey, masked: EncryptedArray, count: int) -> list[int]:
        """Key owner: the ``count`` slot values ``v_j + m_j`` of a sealed array received from the holder.

        ``ValueError`` if the array has the wrong length, a word overflows its slots, or (for
        statistical masks) a value lies outside the range an in-bound plaintext gives.
        """
        private_key.check_key(masked, "masked")
        if masked.ndim != 1:
            raise ValueError(f"packed masked values must be 1-D, got shape {masked.shape}")
        per_ct = self.slots(private_key.public_key)
        bounded = per_ct * self.width <= private_key.max_bound_bits
        words = list(private_key.decrypt_int(masked, max_bits=private_key.max_bound_bits if bounded else None))
        if per_ct == 1:
            if len(words) != count:
                raise ValueError(f"expected {count} masked values, got {len(words)}")
            values = [int(w) for w in words]
        else:
            values = unpack_words(words, per_ct, self.width, count)
        if self.signed is not None:
            check_masked(values, self.width - MASK_SIGMA - 1, signed=self.signed)
        elif any(w < 0 or w >> self.width for w in values):
            raise ValueError("a masked value lies outside its slot")
        return values


def _mask_layout(enc: EncryptedArray, frac_bits_out: int, bound_bits: int | None) -> tuple[int, int]:
    """``(shift, bound_bits)`` shared by :func:`mask_to_share` and :func:`unmask_share`."""
    frac_bits_out = check_frac_bits(frac_bits_out, "frac_bits_out")
    shift = max(enc.frac_bits - frac_bits_out, 0)
    if bound_bits is None:
        bound_bits = RING_BITS - HEADROOM_BITS + shift
    if not isinstance(bound_bits, int) or bound_bits < 1:
        raise ValueError(f"bound_bits must be a positive integer, got {bound_bits!r}")
    return shift, bound_bits


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

    The holder of ``Enc(x)`` (it lacks the key) masks each value with ``m = 2^ℓ + U``
    (:func:`statistical_masks`, ``ℓ = bound_bits``), sends ``masked`` (fresh randomness) to the
    key owner and keeps ``my_share = -floor(m / 2^s) mod 2^64``; the key owner's
    :func:`unmask_share` decrypts ``y = x + m`` and keeps ``floor(y / 2^s) mod 2^64``. Since
    ``y - m = x`` over the integers, the shares add up to ``x`` mod 2^64; the key owner sees ``y``,
    within ``2^-40`` of independent of ``x`` (semi-honest; the holder only sees ciphertexts).

    Scales: ``x`` carries ``enc.frac_bits``; the shares carry ``frac_bits_out``. If the output
    scale is larger the holder first multiplies by ``2^(frac_bits_out - enc.frac_bits)``; if
    smaller, both sides shift by ``s = enc.frac_bits - frac_bits_out`` and the reconstructed
    value is ``floor(x / 2^s)`` or one more (one unit in the last place).

    Bound: ``bound_bits`` defaults to ``62 + s``, i.e. the fixed-point range of
    :mod:`mpcml.fixedpoint` (``|x| < 2^(62 - frac_bits_out)`` as a real); the key owner checks
    the range of ``y`` and raises if a value was out of bound.

    ``pack=True`` packs ``plaintext_bits // (ℓ + 41)`` masked values per ciphertext (19 for
    2048-bit Paillier) so the key owner decrypts that many times fewer ciphertexts; ``masked`` is
    then a 1-D array of packed ciphertexts and the key owner passes ``shape=`` to :func:`unmask_share`.

    ``randomness="uniform"`` (default) makes ``masked`` a fresh encryption even in the eyes of the
    key owner (circuit privacy); ``"subgroup"`` gives the same guarantee more cheaply when ``enc``
    was computed from short-exponent encryptions under the key's own base; ``"djn"`` does not hide
    the computation from the key owner: only for callers who re-randomise ``masked`` themselves.
    """
    if not isinstance(enc, EncryptedArray):
        raise TypeError(f"enc must be an EncryptedArray, got {type(enc).__name__}")
    if frac_bits_out > enc.frac_bits:
        enc = enc._rescaled(check_frac_bits(frac_bits_out, "frac_bits_out"))
    shift, bound_bits = _mask_layout(enc, frac_bits_out, bound_bits)
    layout = MaskedPacking.for_values(bound_bits, signed=True, pack=pack)
    layout.slots(enc.public_key)  # refuses a bound that does not fit before any work
    masks = statistical_masks(rng if rng is not None else Csprng(), enc.size, bound_bits, signed=True)
    mine = np.array([(-(m >> shift)) % _TWO64 for m in masks], dtype=np.uint64).reshape(enc.shape)
    sealed = layout.seal(enc.public_key, list(enc.ciphertexts.flat), masks, randomness=randomness).ciphertexts
    return enc.public_key.array(sealed if pack else sealed.reshape(enc.shape), enc.frac_bits), mine


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
    outside the range an in-bound value gives (the holder's value was out of bound).
    """
    private_key.check_key(masked, "masked")
    shift, bound_bits = _mask_layout(masked, frac_bits_out, bound_bits)
    layout = MaskedPacking.for_values(bound_bits, signed=True, pack=shape is not None)
    if shape is None:
        out_shape, count, flat = masked.shape, masked.size, masked.ravel()
    else:
        out_shape = tuple(int(d) for d in shape)
        count, flat = int(np.prod(out_shape)), masked
    ys = layout.open(private_key, flat, count)
    return np.array([(y >> shift) % _TWO64 for y in ys], dtype=np.uint64).reshape(out_shape)
