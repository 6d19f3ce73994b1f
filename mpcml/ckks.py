"""CKKS approximate homomorphic encryption (Cheon, Kim, Kim, Song, ASIACRYPT 2017) through TenSEAL.

Used for encrypted sums and plaintext-weighted sums of real vectors (e.g. PPPCA's covariance
sums). :class:`CKKSArray` holds an encrypted numpy array of any shape, flattened into chunks of
``slots = poly_modulus_degree / 2`` values, and supports ``+``/``-`` with encrypted or plain
arrays of the same shape, ``*`` by a plain scalar or array (one multiplicative level each), and
:func:`weighted_sum`.

Parameters (:data:`PRESETS`), all at >= 128-bit security by the HomomorphicEncryption.org
standard (log Q <= 218 for N = 8192, <= 438 for N = 16384; TenSEAL/SEAL enforce it):

================  =====  ======================  =====  ========  =========  ======================
preset            N      coefficient moduli      scale  max |x|   mult depth rel. error per level
================  =====  ======================  =====  ========  =========  ======================
``"default"``     8192   60, 40, 40, 60 (200)    2^40   2^19      2          2^-19
``"deep"``        16384  60, 40, 40, 40, 60 (240) 2^40   2^19      3          2^-19
================  =====  ======================  =====  ========  =========  ======================

Limits, enforced with ``ValueError`` rather than silent garbage: every value (inputs and every
intermediate result, tracked through a magnitude bound) must stay below ``max |x| =
2^(first modulus bits - scale bits - 1)``, the room left at the last level; at most ``mult depth``
plaintext multiplications. Precision: after ``k`` multiplications the absolute error is at most
``rel_error * max(1, bound) * (k + 1)`` (measured: ~1.3e-7 relative after one multiplication at the
default preset, tested at the stated bound).

Serialisation: :func:`public_context_bytes` drops the secret key (and relinearisation/Galois
keys, which sums and plaintext products do not need), so a context can be sent to the parties
that only encrypt and compute; ``CKKSArray.to_wire`` gives codec-ready bytes. The receiver
re-attaches ciphertexts to its own copy of the context. Decryption needs the private context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import tenseal as ts


@dataclass(frozen=True)
class CKKSParams:
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int
    rel_error: float

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def max_abs(self) -> float:
        """Largest magnitude any encrypted value may reach (room at the last level)."""
        return float(2 ** (self.coeff_mod_bit_sizes[0] - self.scale_bits - 1))

    @property
    def depth(self) -> int:
        """Plaintext multiplications available (one level each)."""
        return len(self.coeff_mod_bit_sizes) - 2


PRESETS = {
    "default": CKKSParams(8192, (60, 40, 40, 60), 40, 2.0**-19),
    "deep": CKKSParams(16384, (60, 40, 40, 40, 60), 40, 2.0**-19),
}


def make_context(preset: str | CKKSParams = "default") -> tuple[ts.Context, CKKSParams]:
    """A private CKKS context (holds the secret key) and its parameters."""
    params = _params(preset)
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, params.poly_modulus_degree, coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes))
    ctx.global_scale = 2.0**params.scale_bits
    return ctx, params


def _params(preset: str | CKKSParams) -> CKKSParams:
    if isinstance(preset, CKKSParams):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)} or a CKKSParams, got {preset!r}")
    return PRESETS[preset]


def public_context_bytes(ctx: ts.Context) -> bytes:
    """The context without its secret key (and without Galois/relinearisation keys), for encryptors."""
    return ctx.serialize(save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False)


def load_context(data: bytes) -> ts.Context:
    """A context from :func:`public_context_bytes` (or a private one serialised by its owner)."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"context data must be bytes, got {type(data).__name__}")
    try:
        return ts.context_from(bytes(data))
    except Exception as exc:  # TenSEAL raises bare exceptions on malformed input
        raise ValueError(f"malformed CKKS context: {exc}") from None


class CKKSArray:
    """An encrypted float array: chunks of TenSEAL ``CKKSVector``, a shape, a magnitude bound and levels used."""

    def __init__(self, chunks: list[ts.CKKSVector], shape: tuple[int, ...], params: CKKSParams, bound: float, level: int) -> None:
        self.chunks, self.shape, self.params, self.bound, self.level = chunks, shape, params, float(bound), level

    @classmethod
    def encrypt(cls, ctx: ts.Context, params: CKKSParams, x: Any) -> "CKKSArray":
        arr = _finite(x, "x")
        bound = float(np.max(np.abs(arr))) if arr.size else 0.0
        _check_bound(params, bound, "x")
        chunks = [ts.ckks_vector(ctx, piece) for piece in _split(arr.ravel(), params.slots)]
        return cls(chunks, arr.shape, params, bound, 0)

    @property
    def error_bound(self) -> float:
        """Stated absolute error of the decrypted values."""
        return self.params.rel_error * max(1.0, self.bound) * (self.level + 1)

    def decrypt(self) -> np.ndarray:
        """Needs the secret key in the chunks' context."""
        size = int(np.prod(self.shape, dtype=np.int64))
        flat = np.concatenate([np.asarray(c.decrypt(), dtype=np.float64) for c in self.chunks])[:size]
        return flat.reshape(self.shape)

    def _combine(self, other: Any, sign: float) -> "CKKSArray":
        if isinstance(other, CKKSArray):
            if other.shape != self.shape or other.params != self.params:
                raise ValueError(f"cannot add encrypted arrays of shapes {self.shape} and {other.shape} / different parameters")
            if other.level != self.level:
                raise ValueError(f"operands are at different levels ({self.level} vs {other.level}); multiply both the same number of times")
            bound = self.bound + other.bound
            _check_bound(self.params, bound, "the sum")
            chunks = [a + b if sign > 0 else a - b for a, b in zip(self.chunks, other.chunks)]
            return CKKSArray(chunks, self.shape, self.params, bound, self.level)
        plain = self._plain(other, "other")
        bound = self.bound + (float(np.max(np.abs(plain))) if plain.size else 0.0)
        _check_bound(self.params, bound, "the sum")
        pieces = self._pieces(sign * plain)
        return CKKSArray([c + p for c, p in zip(self.chunks, pieces)], self.shape, self.params, bound, self.level)

    def __add__(self, other: Any) -> "CKKSArray":
        return self._combine(other, 1.0)

    def __radd__(self, other: Any) -> "CKKSArray":
        return self._combine(other, 1.0)

    def __sub__(self, other: Any) -> "CKKSArray":
        return self._combine(other, -1.0)

    def __mul__(self, other: Any) -> "CKKSArray":
        """Elementwise product with a plain scalar or array of the same shape (uses one level)."""
        if isinstance(other, CKKSArray):
            raise TypeError("only plaintext multiplication is supported (no relinearisation keys are shipped)")
        if self.level >= self.params.depth:
            raise ValueError(f"no multiplicative levels left (depth {self.params.depth} used up)")
        plain = self._plain(other, "multiplier")
        bound = self.bound * (float(np.max(np.abs(plain))) if plain.size else 0.0)
        _check_bound(self.params, bound, "the product")
        if plain.ndim == 0:
            chunks = [c * float(plain) for c in self.chunks]
        else:
            chunks = [c * p for c, p in zip(self.chunks, self._pieces(plain))]
        return CKKSArray(chunks, self.shape, self.params, bound, self.level + 1)

    __rmul__ = __mul__

    def _plain(self, other: Any, name: str) -> np.ndarray:
        plain = _finite(other, name)
        if plain.ndim and plain.shape != self.shape:
            raise ValueError(f"{name} has shape {plain.shape}, the encrypted array {self.shape}")
        return plain

    def _pieces(self, plain: np.ndarray) -> list[list[float]]:
        return _split(np.broadcast_to(plain, self.shape).ravel(), self.params.slots)

    def to_wire(self) -> dict:
        return {
            "shape": list(self.shape), "bound": self.bound, "level": self.level,
            "chunks": [c.serialize() for c in self.chunks],
        }

    @classmethod
    def from_wire(cls, obj: Any, ctx: ts.Context, params: CKKSParams) -> "CKKSArray":
        keys = {"shape", "bound", "level", "chunks"}
        if not isinstance(obj, dict) or set(obj) != keys:
            raise ValueError(f"malformed CKKS array: expected a dict with keys {sorted(keys)}")
        shape = tuple(obj["shape"])
        if not all(isinstance(d, int) and d >= 0 for d in shape) or not isinstance(obj["chunks"], list):
            raise ValueError("malformed CKKS array: bad shape or chunks")
        size = int(np.prod(shape, dtype=np.int64))
        if len(obj["chunks"]) != max(1, -(-size // params.slots)):
            raise ValueError(f"malformed CKKS array: {len(obj['chunks'])} chunks for shape {shape}")
        level, bound = obj["level"], obj["bound"]
        if not isinstance(level, int) or not 0 <= level <= params.depth or not isinstance(bound, float):
            raise ValueError("malformed CKKS array: bad level or bound")
        _check_bound(params, bound, "received array")
        try:
            chunks = [ts.ckks_vector_from(ctx, bytes(c)) for c in obj["chunks"]]
        except Exception as exc:  # TenSEAL raises bare exceptions on malformed input
            raise ValueError(f"malformed CKKS ciphertext: {exc}") from None
        return cls(chunks, shape, params, bound, level)


def weighted_sum(arrays: Sequence[CKKSArray], weights: Sequence[float]) -> CKKSArray:
    """``sum_i weights[i] * arrays[i]`` (one level)."""
    if len(arrays) == 0 or len(arrays) != len(weights):
        raise ValueError(f"need one weight per array and at least one array, got {len(arrays)} arrays, {len(weights)} weights")
    total = arrays[0] * float(weights[0])
    for arr, w in zip(arrays[1:], weights[1:]):
        total = total + arr * float(w)
    return total


def _split(flat: np.ndarray, slots: int) -> list[list[float]]:
    """``flat`` in chunks of ``slots`` values (one chunk, empty, for an empty array)."""
    return [flat[k : k + slots].tolist() for k in range(0, max(flat.size, 1), slots)]


def _finite(x: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be numeric: {exc}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _check_bound(params: CKKSParams, bound: float, name: str) -> None:
    if bound >= params.max_abs:
        raise ValueError(
            f"{name} reaches magnitude {bound:.6g}, at or above the CKKS limit {params.max_abs:.6g} "
            f"(2^{params.coeff_mod_bit_sizes[0] - params.scale_bits - 1}) for these parameters"
        )
