"""Arrays of additively homomorphic ciphertexts with a fixed-point scale, for any scheme.

Operations (``N`` = the key's ciphertext modulus: ``n^2`` for Paillier, ``n`` for
Okamoto–Uchiyama): ``+`` multiplies ciphertexts; ``-x`` inverts; ``x * k`` raises to ``k``; ``@``
with a dense or scipy.sparse plaintext matrix costs one (short) exponentiation per non-zero of the
matrix. Operands with different scales are aligned by multiplying the lower-scale one by a power
of two. Large batches of exponentiations run on all cores (:mod:`mpcml.he._modexp`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import gmpy2
import numpy as np
import scipy.sparse as sp
from gmpy2 import mpz
from numpy.typing import ArrayLike

from ..fixedpoint import DEFAULT_FRAC_BITS
from . import _modexp
from .encoding import check_frac_bits, numeric, object_array, to_ints, values_at_scale
from .keys import PublicKey


class EncryptedArray:
    """An array of ciphertexts (object ndarray of ``gmpy2.mpz``) under one public key, with a scale ``frac_bits``."""

    __array_ufunc__ = None  # ndarray (+, -, *, @) EncryptedArray defers to the reflected methods

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """A 0-d object array holding ``self``, so scipy.sparse defers ``S @ enc`` to :meth:`__rmatmul__`."""
        box = np.empty((), dtype=object)
        box[()] = self
        return box

    def __init__(self, public_key: PublicKey, ciphertexts: np.ndarray, frac_bits: int = DEFAULT_FRAC_BITS) -> None:
        if not isinstance(public_key, PublicKey):
            raise TypeError(f"public_key must be a PublicKey, got {type(public_key).__name__}")
        if not isinstance(ciphertexts, np.ndarray) or ciphertexts.dtype != object:
            raise TypeError("ciphertexts must be an object ndarray of integers")
        self.public_key = public_key
        self.ciphertexts = ciphertexts
        self.frac_bits = check_frac_bits(frac_bits)

    # --- shape ----------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self.ciphertexts.shape

    @property
    def ndim(self) -> int:
        return self.ciphertexts.ndim

    @property
    def size(self) -> int:
        return self.ciphertexts.size

    def __len__(self) -> int:
        return len(self.ciphertexts)

    def __repr__(self) -> str:
        return (f"<EncryptedArray {self.public_key.scheme} shape={self.shape} frac_bits={self.frac_bits} "
                f"key={self.public_key.bits} bits>")

    def _like(self, ciphertexts: Any, frac_bits: int | None = None) -> "EncryptedArray":
        cts = ciphertexts if isinstance(ciphertexts, np.ndarray) else object_array([ciphertexts], ())
        return self.public_key.array(cts, self.frac_bits if frac_bits is None else frac_bits)

    def __getitem__(self, index: Any) -> "EncryptedArray":
        return self._like(self.ciphertexts[index])

    def reshape(self, *shape: Any) -> "EncryptedArray":
        return self._like(self.ciphertexts.reshape(*shape))

    def ravel(self) -> "EncryptedArray":
        return self._like(self.ciphertexts.ravel())

    def transpose(self, *axes: Any) -> "EncryptedArray":
        return self._like(self.ciphertexts.transpose(*axes))

    @property
    def T(self) -> "EncryptedArray":
        return self.transpose()

    @classmethod
    def concatenate(cls, arrays: Sequence["EncryptedArray"], axis: int = 0) -> "EncryptedArray":
        """Join arrays with the same key (scales are aligned to the largest)."""
        if not arrays:
            raise ValueError("arrays must not be empty")
        frac = max(a.frac_bits for a in arrays)
        aligned = [arrays[0]._check_peer(a, "arrays")._rescaled(frac) for a in arrays]
        return arrays[0]._like(np.concatenate([a.ciphertexts for a in aligned], axis=axis), frac)

    # --- arithmetic -------------------------------------------------------------------------

    def _check_peer(self, other: "EncryptedArray", name: str = "other") -> "EncryptedArray":
        if other.public_key != self.public_key:
            raise ValueError(f"{name} was encrypted under a different public key")
        return other

    def _pow(self, exponents: np.ndarray) -> np.ndarray:
        """``c ^ k`` elementwise (broadcasting); one shared exponent goes to GIL-free threads."""
        m = self.public_key.modulus
        exponents = np.asarray(exponents, dtype=object)
        if exponents.ndim == 0:
            k = int(exponents)
            flat = list(self.ciphertexts.flat)
            if k == 1:
                return self.ciphertexts.copy()
            powers = _modexp.parallel_powmod(flat, mpz(abs(k)), m)
            if k < 0:
                powers = [gmpy2.invert(c, m) for c in powers]
            return object_array(powers, self.shape)
        cts, exps = np.broadcast_arrays(self.ciphertexts, exponents)
        return object_array(_modexp.powmod_pairs(list(cts.flat), [int(k) for k in exps.flat], m), cts.shape)

    def _rescaled(self, frac_bits: int) -> "EncryptedArray":
        if frac_bits == self.frac_bits:
            return self
        return self._like(self._pow(np.array(1 << (frac_bits - self.frac_bits), dtype=object)), frac_bits)

    def _mulmod(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray(a * b % self.public_key.modulus, dtype=object)

    def __add__(self, other: Any) -> "EncryptedArray":
        from .packing import PackedEncryptedArray

        if isinstance(other, EncryptedArray):
            self._check_peer(other)
            frac = max(self.frac_bits, other.frac_bits)
            a, b = self._rescaled(frac), other._rescaled(frac)
            return self._like(self._mulmod(a.ciphertexts, b.ciphertexts), frac)
        if isinstance(other, PackedEncryptedArray):
            return NotImplemented
        ints = values_at_scale(other, self.frac_bits, "other")
        self.public_key.check_range(ints, "other")
        trivial = object_array(self.public_key.trivial([int(v) for v in ints.flat]), ints.shape)
        return self._like(self._mulmod(self.ciphertexts, trivial))

    __radd__ = __add__

    def __neg__(self) -> "EncryptedArray":
        m = self.public_key.modulus
        return self._like(np.frompyfunc(lambda c: gmpy2.invert(c, m), 1, 1)(self.ciphertexts))

    def __sub__(self, other: Any) -> "EncryptedArray":
        if isinstance(other, EncryptedArray):
            return self + (-other)
        return self + (-numeric(other, "other"))

    def __rsub__(self, other: Any) -> "EncryptedArray":
        return (-self) + other

    def mul(self, other: ArrayLike, frac_bits: int = DEFAULT_FRAC_BITS) -> "EncryptedArray":
        """Elementwise product with a plaintext (broadcasting).

        Integer/bool multipliers are exact (scale unchanged); floats are encoded with
        ``frac_bits`` bits and the result's scale is ``self.frac_bits + frac_bits``.
        """
        from .packing import PackedEncryptedArray

        if isinstance(other, (EncryptedArray, PackedEncryptedArray)):
            raise TypeError("an additively homomorphic scheme cannot multiply two ciphertexts; one operand must be plaintext")
        frac_bits = check_frac_bits(frac_bits)
        ints, added = to_ints(other, frac_bits, "other")
        return self._like(self._pow(ints), self.frac_bits + added)

    def __mul__(self, other: Any) -> "EncryptedArray":
        from .packing import PackedEncryptedArray

        if isinstance(other, (EncryptedArray, PackedEncryptedArray)):
            return NotImplemented
        return self.mul(other)

    __rmul__ = __mul__

    def sum(self, axis: int | None = None) -> "EncryptedArray":
        """Homomorphic sum over all entries (``axis=None``) or along ``axis``."""
        if axis is None:
            return self.ravel().sum(0)
        if not isinstance(axis, (int, np.integer)) or not -self.ndim <= axis < self.ndim:
            raise ValueError(f"axis must be None or in [-{self.ndim}, {self.ndim}), got {axis!r}")
        moved = np.moveaxis(self.ciphertexts, axis, 0)
        if moved.shape[0] == 0:
            return self._like(np.full(moved.shape[1:], _modexp.ONE, dtype=object))
        acc = moved[0]
        for part in moved[1:]:
            acc = self._mulmod(acc, part)
        return self._like(np.asarray(acc, dtype=object) if moved.ndim > 1 else acc)

    @staticmethod
    def _sparse_rows(matrix: Any, frac_bits: int, by_column: bool) -> tuple[tuple[int, int], list[list[tuple[int, int]]], int]:
        """``(shape, rows, added scale)``: per output (a row of CSR, or a column if ``by_column``) its ``(index, int)`` terms."""
        if not sp.issparse(matrix):
            matrix = numeric(matrix, "matrix")
            if matrix.ndim != 2:
                raise ValueError(f"matrix must be 2-D, got shape {matrix.shape}")
        mat = sp.csc_matrix(matrix) if by_column else sp.csr_matrix(matrix)
        mat.sum_duplicates()
        mat.sort_indices()
        ints, added = to_ints(mat.data, check_frac_bits(frac_bits), "matrix")
        keep = np.asarray(ints != 0, dtype=bool)
        bounds = np.concatenate([[0], np.cumsum(keep)])[mat.indptr].tolist()
        terms = list(zip(mat.indices[keep].tolist(), ints[keep].tolist()))
        return mat.shape, [terms[a:b] for a, b in zip(bounds[:-1], bounds[1:])], added

    def matmul(self, matrix: Any, frac_bits: int = DEFAULT_FRAC_BITS) -> "EncryptedArray":
        """``self @ matrix`` for a dense or scipy.sparse plaintext matrix; cost ∝ non-zeros x rows of self."""
        if self.ndim not in (1, 2):
            raise ValueError(f"self must be 1-D or 2-D for @, got shape {self.shape}")
        shape, terms, added = self._sparse_rows(matrix, frac_bits, by_column=True)
        if shape[0] != self.shape[-1]:
            raise ValueError(f"matmul shape mismatch: {self.shape} @ {shape}")
        rows = self.ciphertexts.reshape(-1, self.shape[-1])
        out = _modexp.combine([(list(row), terms) for row in rows], self.public_key.modulus)
        return self._like(object_array([c for row in out for c in row], self.shape[:-1] + (shape[1],)), self.frac_bits + added)

    def rmatmul(self, matrix: Any, frac_bits: int = DEFAULT_FRAC_BITS) -> "EncryptedArray":
        """``matrix @ self`` for a dense or scipy.sparse plaintext matrix; cost ∝ non-zeros x columns of self."""
        if self.ndim not in (1, 2):
            raise ValueError(f"self must be 1-D or 2-D for @, got shape {self.shape}")
        shape, terms, added = self._sparse_rows(matrix, frac_bits, by_column=False)
        if shape[1] != self.shape[0]:
            raise ValueError(f"matmul shape mismatch: {shape} @ {self.shape}")
        cols = self.ciphertexts.reshape(self.shape[0], -1).T
        out = _modexp.combine([(list(col), terms) for col in cols], self.public_key.modulus)
        result = np.empty((shape[0], len(out)), dtype=object)
        for j, col in enumerate(out):
            result[:, j] = col
        return self._like(result.reshape((shape[0],) + self.shape[1:]), self.frac_bits + added)

    def __matmul__(self, other: Any) -> "EncryptedArray":
        from .packing import PackedEncryptedArray

        if isinstance(other, (EncryptedArray, PackedEncryptedArray)):
            return NotImplemented
        return self.matmul(other)

    def __rmatmul__(self, other: Any) -> "EncryptedArray":
        return self.rmatmul(other)

    # --- randomness, wire -------------------------------------------------------------------

    def rerandomize(self, randomness: str = "uniform") -> "EncryptedArray":
        """Same plaintexts, fresh randomness: multiply each ciphertext by a new encryption of zero.

        ``"uniform"`` (default) hides how the array was computed even from the key owner; see the
        scheme's ``obfuscators`` for ``"subgroup"`` and ``"djn"``.
        """
        rs = object_array(self.public_key.obfuscators(self.size, randomness=randomness), self.shape)
        return self._like(self._mulmod(self.ciphertexts, rs))

    def to_wire(self) -> dict:
        """Codec-friendly form ``{"shape", "frac_bits", "c"}`` (ciphertexts as a list of ints)."""
        return {"shape": list(self.shape), "frac_bits": self.frac_bits, "c": [int(c) for c in self.ciphertexts.flat]}

    @classmethod
    def from_wire(cls, public_key: PublicKey, obj: Any) -> "EncryptedArray":
        """Rebuild from :meth:`to_wire` output received from a peer; malformed input raises ``ValueError``."""
        if not isinstance(public_key, PublicKey):
            raise TypeError(f"public_key must be a PublicKey, got {type(public_key).__name__}")
        if not isinstance(obj, dict) or set(obj) != {"shape", "frac_bits", "c"}:
            raise ValueError("encrypted array on the wire must be a dict with keys shape, frac_bits, c")
        shape, cts = obj["shape"], obj["c"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise ValueError("shape must be a list of non-negative ints")
        if not isinstance(cts, list) or len(cts) != math.prod(shape):
            raise ValueError(f"expected {math.prod(shape)} ciphertexts for shape {shape}")
        checked = public_key.check_ciphertexts(cts)
        return public_key.array(object_array(checked, tuple(shape)), check_frac_bits(obj["frac_bits"]))
