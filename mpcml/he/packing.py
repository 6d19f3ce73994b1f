"""Many values per ciphertext: slot layouts, Horner packing of ciphertexts, and packed arrays for sums.

A plaintext holds ``plaintext_bits`` bits (the key's capacity below ``max_int``, so a packed word
never overflows): ``slots = plaintext_bits // slot_bits`` non-negative slots. Two uses:

- :func:`pack_ciphertexts`: ciphertexts of values already known to lie in ``[0, 2^width)`` are
  combined into ``Enc(sum_s v_s 2^(width s))`` (HE -> shares, SecureBoost histograms).
- :class:`PackedEncryptedArray`: rows of signed fixed-point values with headroom for up to
  ``max_summands`` additions, for protocols that only add (HE PCA, aggregation baselines).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from gmpy2 import mpz
from numpy.typing import ArrayLike

from ..fixedpoint import DEFAULT_FRAC_BITS
from . import _modexp
from .array import EncryptedArray
from .encoding import check_frac_bits, numeric, object_array, values_at_scale
from .keys import PrivateKey, PublicKey


def slots_per_ciphertext(public_key: PublicKey, width: int) -> int:
    """How many ``width``-bit non-negative slots fit one plaintext (below ``max_int``, so no overflow)."""
    slots = public_key.plaintext_bits // width
    if slots < 1:
        raise ValueError(f"{width}-bit slots do not fit a {public_key.bits}-bit {public_key.scheme} key")
    return slots


def pack_ciphertexts(public_key: PublicKey, cts: Sequence[mpz], width: int, per_ct: int | None = None) -> list[mpz]:
    """Pack ciphertexts of values in ``[0, 2^width)`` into ``Enc(sum_s v_s 2^(width s))`` (Horner).

    ``per_ct`` values per packed ciphertext (default: as many as fit). Costs ``width`` squarings
    per packed value, far less than the decryption it saves; all groups advance one level at a
    time through :func:`mpcml.he._modexp.parallel_powmod` (two GIL-free threads).
    """
    per_ct = slots_per_ciphertext(public_key, width) if per_ct is None else per_ct
    m, raise_to = public_key.modulus, mpz(1) << width
    groups = [list(cts[start : start + per_ct]) for start in range(0, len(cts), per_ct)]
    accs = [group[-1] for group in groups]
    for level in range(per_ct - 2, -1, -1):
        active = [k for k, group in enumerate(groups) if level < len(group) - 1]
        raised = _modexp.parallel_powmod([accs[k] for k in active], raise_to, m)
        for k, power in zip(active, raised):
            accs[k] = power * groups[k][level] % m
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
        used = min(per_ct, count - k * per_ct)
        if word < 0 or word >> (width * used):
            raise ValueError("a packed value lies outside its slots")
        out += [(int(word) >> (width * s)) & slot for s in range(used)]
    return out


class PackedEncryptedArray:
    """Rows of fixed-point values packed ``slots`` to a ciphertext, for protocols that only add.

    A value ``v`` (``|v| < 2^(b-1)``, ``b = slot_bits - ceil(log2(max_summands))``) sits in a
    ``slot_bits``-wide slot as ``v + 2^(b-1) in [0, 2^b)``; a sum of at most ``max_summands``
    such slots stays below ``2^slot_bits``, so slots never carry into each other. ``summands``
    counts, per row, how many encryptions were added into it; adding beyond ``max_summands``
    raises ``ValueError``. ``slots = plaintext_bits // slot_bits`` (e.g. 31 slots of 64 bits
    for 2048-bit Paillier, 10 for 2048-bit Okamoto–Uchiyama), so a row of ``length`` values
    costs ``ceil(length / slots)`` ciphertexts.
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
        self.slots = public_key.plaintext_bits // slot_bits

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

    def _flat(self) -> EncryptedArray:
        return self.public_key.array(self.ciphertexts, 0)

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
        cts = np.asarray(self.ciphertexts * other.ciphertexts % self.public_key.modulus, dtype=object)
        return self._like(cts, self.summands + other.summands)

    def sum(self, axis: int = 0) -> "PackedEncryptedArray":
        """Sum of the rows (a single-row packed array)."""
        if axis != 0:
            raise ValueError("packed arrays only sum over rows (axis=0)")
        rows = self._flat().sum(0)
        return self._like(rows.ciphertexts.reshape(1, -1), np.array([int(self.summands.sum())], dtype=np.int64))

    def rerandomize(self, randomness: str = "uniform") -> "PackedEncryptedArray":
        """Fresh randomness, as :meth:`EncryptedArray.rerandomize`."""
        return self._like(self._flat().rerandomize(randomness).ciphertexts, self.summands)

    def to_wire(self) -> dict:
        return {
            "c": self._flat().to_wire(), "length": self.length,
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
        check_packing(public_key, obj["slot_bits"], obj["max_summands"])
        if not isinstance(obj["length"], int) or obj["length"] < 1 or summands.dtype.kind not in "iu":
            raise ValueError("length must be a positive int and summands an integer array")
        proto = cls(
            public_key, cts, length=int(obj["length"]), frac_bits=check_frac_bits(obj["frac_bits"]),
            slot_bits=int(obj["slot_bits"]), max_summands=int(obj["max_summands"]), summands=summands.astype(np.int64),
        )
        if cts.shape[1] != -(-proto.length // proto.slots) or summands.min(initial=1) < 1:
            raise ValueError("packed layout does not match the number of ciphertexts")
        return proto._like(cts, proto.summands)


def check_packing(public_key: PublicKey, slot_bits: Any, max_summands: Any) -> int:
    """Bits left for a value in a ``slot_bits`` slot with ``max_summands`` of headroom; ``ValueError`` if none."""
    if not isinstance(slot_bits, int) or not 8 <= slot_bits <= public_key.plaintext_bits:
        raise ValueError(f"slot_bits must be an integer in [8, {public_key.plaintext_bits}], got {slot_bits!r}")
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
    value_bits = check_packing(public_key, slot_bits, max_summands)
    frac_bits = check_frac_bits(frac_bits)
    arr = numeric(values, "values")
    if arr.ndim not in (1, 2):
        raise ValueError(f"values must be 1-D or 2-D, got shape {arr.shape}")
    rows = arr.reshape(1, -1) if arr.ndim == 1 else arr
    ints = values_at_scale(rows, frac_bits, "values")
    offset = 1 << (value_bits - 1)
    if ints.size and max(abs(int(v)) for v in ints.flat) >= offset:
        raise ValueError(
            f"values exceed the packing range |x| < 2^{value_bits - 1 - frac_bits} "
            f"(slot_bits={slot_bits}, max_summands={max_summands}, frac_bits={frac_bits})"
        )
    slots = public_key.plaintext_bits // slot_bits
    length = rows.shape[1]
    per_row = -(-length // slots)
    packed = []
    for row in ints:
        for start in range(0, per_row * slots, slots):
            word = 0
            for k, v in enumerate(row[start : start + slots]):
                word |= (int(v) + offset) << (k * slot_bits)
            packed.append(word)
    enc = public_key.encrypt_int(object_array(packed, (rows.shape[0], per_row)))
    return PackedEncryptedArray(
        public_key, enc.ciphertexts, length=length, frac_bits=frac_bits, slot_bits=slot_bits,
        max_summands=max_summands, summands=np.ones(rows.shape[0], dtype=np.int64),
    )


def decrypt_packed(private_key: PrivateKey, packed: PackedEncryptedArray) -> np.ndarray:
    """Float array of shape ``(rows, length)`` from a :class:`PackedEncryptedArray`."""
    if not isinstance(packed, PackedEncryptedArray):
        raise TypeError(f"packed must be a PackedEncryptedArray, got {type(packed).__name__}")
    private_key.check_key(packed, "packed")
    words = private_key.decrypt_int(packed._flat())
    slot_mask = (1 << packed.slot_bits) - 1
    offset = 1 << (packed.value_bits - 1)
    scale = float(1 << packed.frac_bits)
    out = np.empty(packed.shape, dtype=np.float64)
    for i, (row, count) in enumerate(zip(words, packed.summands)):
        values = [(int(w) >> (k * packed.slot_bits)) & slot_mask for w in row for k in range(packed.slots)]
        out[i] = [(v - int(count) * offset) / scale for v in values[: packed.length]]
    return out
