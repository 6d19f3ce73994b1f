"""Lagrange coded computing over a prime field (Yu et al., "Lagrange Coded Computing", AISTATS 2019).

Data ``X_1..X_K`` (equal-shape arrays of field elements) and ``T`` uniformly random masks
``Z_1..Z_T`` are interpolated by the polynomial ``u`` of degree ``K + T - 1`` with
``u(beta_k) = X_k`` and ``u(beta_{K+t}) = Z_t``. Worker ``i`` receives the share ``u(alpha_i)``;
the ``alpha`` are disjoint from the ``beta``, so no worker ever holds a raw block. For any
polynomial ``f`` of degree ``d`` applied entry-wise or as any polynomial map of the block,
``f(u(z))`` has degree ``(K + T - 1) d``, so the results ``f(u(alpha_i))`` of any
``R = (K + T - 1) d + 1`` workers determine it, and ``f(X_k) = f(u(beta_k))`` is read off by
interpolation.

Privacy (information-theoretic, semi-honest): any ``T`` workers' shares are
``A X + B Z`` with ``B`` (the masks' Lagrange coefficients at their ``alpha``) an invertible
``T x T`` matrix, so they are uniform in the field and independent of the data. ``T + 1``
colluding workers can learn about the data.

Arithmetic. Elements are ``int64`` in ``[0, p)`` with ``p`` a prime below ``2^31``, so a product
of two elements is below ``2^62`` and fits ``int64``. :func:`field_matmul` splits the smaller operand
into limbs and multiplies in float64 (``einsum`` for inner dimensions up to 64, BLAS beyond): over an inner block of ``n <= 2^11`` terms the limbs have
``53 - 31 - log2(n)`` bits (two limbs up to ``n = 64``, three beyond), so every limb product
sum stays below ``2^53`` and is exact; each partial is reduced mod ``p`` and shifted into place
(below ``2^61``), and their sum (below ``2^62``) is reduced once.

Results that need more than 31 bits can be computed modulo two primes in parallel (independent
masks per prime) and recombined by :func:`crt_combine` into a residue modulo their product
(below ``2^62``).

Reals enter the field by :func:`quantize` (``round(x 2^f)`` with negatives wrapped to the top
half, two's-complement style around ``p/2``) and leave by :func:`dequantize`; a result is only
meaningful while its integer value stays below ``p/2`` in magnitude, which callers must check.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Mapping, Sequence

import gmpy2
import numpy as np
from numpy.typing import ArrayLike

from .csprng import Csprng

DEFAULT_PRIME = 2**31 - 1
MAX_PRIME = 2**31
_THIN_INNER = 64
_MAX_INNER = 1 << 11  # with 11-bit limbs of a 31-bit element, 2^11 products sum below 2^53


def check_prime(prime: int) -> int:
    """``prime`` as an int, or ``ValueError`` unless it is a prime in ``[3, 2^31)``."""
    if not isinstance(prime, (int, np.integer)) or isinstance(prime, bool):
        raise TypeError(f"prime must be an integer, got {type(prime).__name__}")
    prime = int(prime)
    if not 3 <= prime < MAX_PRIME:
        raise ValueError(
            f"prime must lie in [3, 2^31) so that products of two field elements stay below 2^62, got {prime}"
        )
    if not gmpy2.is_prime(prime, 50):
        raise ValueError(f"prime={prime} is not prime")
    return prime


def random_field(rng: Csprng, shape: int | tuple[int, ...], prime: int) -> np.ndarray:
    """Uniform elements of ``Z_p`` (int64) from ``rng`` by rejection sampling of 64-bit words (no bias)."""
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    count = int(np.prod(shape, dtype=np.int64))
    limit = np.uint64((2**64 // prime) * prime)
    out = np.empty(0, dtype=np.uint64)
    while out.size < count:
        words = rng.random_uint64(count - out.size + 8)
        out = np.concatenate([out, words[words < limit]])
    return (out[:count] % np.uint64(prime)).astype(np.int64).reshape(shape)


def field_matmul(a: ArrayLike, b: ArrayLike, prime: int) -> np.ndarray:
    """``a @ b mod prime`` for int64 arrays of field elements (2-D ``a``; 1-D or 2-D ``b``)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.ndim != 2 or b.ndim not in (1, 2):
        raise ValueError(f"field_matmul needs a 2-D left and a 1-D or 2-D right operand, got {a.shape} @ {b.shape}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul shape mismatch: {a.shape} @ {b.shape}")
    if b.size < a.size:  # split the smaller operand into limbs
        flipped = field_matmul(b.T if b.ndim == 2 else b[None, :], a.T, prime)
        return flipped.T if b.ndim == 2 else flipped[0]
    bits = int(prime - 1).bit_length()
    chunk = min(max(a.shape[1], 1), _MAX_INNER)
    # limb * element * chunk < 2^(limb_bits + bits + log2 chunk) <= 2^53: exact in float64
    limb_bits = min(53 - bits - (chunk - 1).bit_length(), bits)
    n_limbs = -(-bits // limb_bits)
    mask = (1 << limb_bits) - 1
    result = np.zeros((a.shape[0],) + b.shape[1:], dtype=np.int64)
    for start in range(0, a.shape[1], chunk):
        block_a = a[:, start : start + chunk]
        block_b = b[start : start + chunk].astype(np.float64)
        combined = None
        for limb in range(n_limbs):
            digits = ((block_a >> (limb_bits * limb)) & mask).astype(np.float64)
            partial = _float_product(digits, block_b).astype(np.int64)
            if combined is None:
                combined = partial
            else:  # (partial mod p) 2^(limb offset) < 2^61 (offset <= 30 when three limbs are needed)
                combined += (partial % prime) << (limb_bits * limb)
        result = (result + combined) % prime
    return result


def _float_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` in float64; thin inner dimensions bypass BLAS, whose thread start-up dominates there."""
    if a.shape[1] <= _THIN_INNER:
        return np.einsum("ij,j...->i...", a, b)
    return a @ b


def _check_frac_bits(frac_bits: int) -> int:
    if not isinstance(frac_bits, (int, np.integer)) or isinstance(frac_bits, bool) or not 0 <= frac_bits <= 60:
        raise ValueError(f"frac_bits must be an integer in [0, 60], got {frac_bits!r}")
    return int(frac_bits)


def quantize(x: ArrayLike, frac_bits: int, prime: int = DEFAULT_PRIME, *, name: str = "x") -> np.ndarray:
    """``round(x 2^frac_bits) mod prime`` as int64; ``ValueError`` naming ``name`` if ``|round(x 2^f)| > (p-1)/2``."""
    frac_bits = _check_frac_bits(frac_bits)
    prime = check_prime(prime)
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    scaled = np.rint(arr * float(2**frac_bits))
    half = (prime - 1) // 2
    if scaled.size and np.max(np.abs(scaled)) > half:
        raise ValueError(
            f"{name} has a value of magnitude {np.max(np.abs(arr)):.6g}: at {frac_bits} fractional bits that is "
            f"{np.max(np.abs(scaled)):.0f} > (p-1)/2 = {half}, outside the field's signed range"
        )
    return scaled.astype(np.int64) % prime


def to_signed(v: ArrayLike, modulus: int = DEFAULT_PRIME) -> np.ndarray:
    """Residues mod ``modulus`` (< 2^63) as signed int64 in ``[-(m-1)/2, (m-1)/2]`` (the top half is negative)."""
    v = np.asarray(v, dtype=np.int64) % modulus
    return np.where(v > (modulus - 1) // 2, v - modulus, v)


def crt_combine(residues: Sequence[ArrayLike], primes: Sequence[int]) -> np.ndarray:
    """The int64 array in ``[0, prod(primes))`` congruent to ``residues[i]`` mod ``primes[i]`` (Chinese remainders).

    The product of the distinct ``primes`` must stay below ``2^63`` (two primes below ``2^31``); every
    intermediate ``x + m t`` is below that product and ``((r - x) mod p) * inv`` below ``2^62``.
    """
    primes = [check_prime(p) for p in primes]
    if len(residues) != len(primes) or not primes:
        raise ValueError(f"need one residue array per prime, got {len(residues)} for {len(primes)} primes")
    if len(set(primes)) != len(primes) or math.prod(primes) >= 2**63:
        raise ValueError(f"primes must be distinct with a product below 2^63, got {primes}")
    x = np.asarray(residues[0], dtype=np.int64) % primes[0]
    modulus = primes[0]
    for r, p in zip(residues[1:], primes[1:]):
        t = ((np.asarray(r, dtype=np.int64) - x % p) % p) * pow(modulus % p, -1, p) % p
        x = x + modulus * t
        modulus *= p
    return x


def dequantize(v: ArrayLike, frac_bits: int, prime: int = DEFAULT_PRIME) -> np.ndarray:
    """Inverse of :func:`quantize`: the signed value of each element divided by ``2^frac_bits``."""
    return to_signed(v, prime).astype(np.float64) / float(2 ** _check_frac_bits(frac_bits))


def lagrange_matrix(nodes: Sequence[int], points: Sequence[int], prime: int) -> np.ndarray:
    """``M[i, j] = l_j(points[i]) mod prime``, with ``l_j`` the Lagrange basis on the distinct ``nodes``.

    ``M @ values`` evaluates at ``points`` the polynomial of degree ``< len(nodes)`` through
    ``(nodes[j], values[j])``. Vectorised over ``(i, j)``: one pass per node.
    """
    node_list = [int(n) % prime for n in nodes]
    if len(set(node_list)) != len(node_list):
        raise ValueError(f"interpolation nodes must be distinct mod {prime}, got {node_list}")
    node_arr = np.array(node_list, dtype=np.int64)
    point_arr = np.array([int(z) % prime for z in points], dtype=np.int64)
    count = len(node_list)
    numerators = np.ones((len(point_arr), count), dtype=np.int64)
    denominators = np.ones(count, dtype=np.int64)
    for m in range(count):
        others = np.arange(count) != m
        numerators[:, others] = numerators[:, others] * ((point_arr[:, None] - node_arr[m]) % prime) % prime
        denominators[others] = denominators[others] * ((node_arr[others] - node_arr[m]) % prime) % prime
    inverses = np.array([pow(int(d), -1, prime) for d in denominators], dtype=np.int64)
    return numerators * inverses % prime


class LagrangeCode:
    """A Lagrange code for ``n_workers`` workers, ``n_blocks`` (K) data blocks, ``n_masks`` (T) masks.

    ``degree`` is the degree ``d`` of the polynomial the workers will apply; the recovery
    threshold is ``R = (K + T - 1) d + 1`` and must not exceed ``n_workers``. Evaluation points:
    ``beta = 1..K+T`` (data then masks) and ``alpha_i = K + T + 1 + i`` for worker ``i`` (0-based).
    """

    def __init__(self, n_workers: int, n_blocks: int, n_masks: int, degree: int, prime: int = DEFAULT_PRIME) -> None:
        for name, value, low in (("n_workers", n_workers, 1), ("n_blocks", n_blocks, 1),
                                 ("n_masks", n_masks, 1), ("degree", degree, 1)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.prime = check_prime(prime)
        self.n_workers, self.n_blocks, self.n_masks, self.degree = int(n_workers), int(n_blocks), int(n_masks), int(degree)
        k, t, n = self.n_blocks, self.n_masks, self.n_workers
        self.recovery_threshold = (k + t - 1) * self.degree + 1
        if self.recovery_threshold > n:
            raise ValueError(
                f"recovery threshold R = (K + T - 1) * d + 1 = ({k} + {t} - 1) * {self.degree} + 1 = "
                f"{self.recovery_threshold} exceeds n_workers = {n}: the results could never be decoded"
            )
        if k + t + n >= self.prime:
            raise ValueError(
                f"K + T + n_workers = {k} + {t} + {n} = {k + t + n} distinct evaluation points do not fit in "
                f"the field of size {self.prime}"
            )
        self.betas = tuple(range(1, k + t + 1))
        self.alphas = tuple(range(k + t + 1, k + t + 1 + n))
        self._encoder = lagrange_matrix(self.betas, self.alphas, self.prime)

    @property
    def max_dropouts(self) -> int:
        """Workers that may fail to answer while decoding still succeeds: ``n_workers - R``."""
        return self.n_workers - self.recovery_threshold

    def encode(self, blocks: ArrayLike, rng: Csprng) -> np.ndarray:
        """Shares ``u(alpha_i)`` for every worker: shape ``(n_workers, *block_shape)``.

        ``blocks`` has shape ``(K, *block_shape)`` with entries in ``[0, p)``; the ``T`` masks
        are drawn uniformly from ``rng``.
        """
        blocks = np.asarray(blocks)
        if not np.issubdtype(blocks.dtype, np.integer):
            raise TypeError(f"blocks must hold field elements (integers), got dtype {blocks.dtype}; use quantize()")
        if blocks.ndim < 1 or blocks.shape[0] != self.n_blocks:
            raise ValueError(f"blocks must have shape (K={self.n_blocks}, ...), got {blocks.shape}")
        if blocks.size and (blocks.min() < 0 or blocks.max() >= self.prime):
            raise ValueError(f"blocks must hold field elements in [0, {self.prime})")
        block_shape = blocks.shape[1:]
        flat = blocks.reshape(self.n_blocks, -1).astype(np.int64)
        masks = random_field(rng, (self.n_masks, flat.shape[1]), self.prime)
        shares = field_matmul(self._encoder, np.concatenate([flat, masks]), self.prime)
        return shares.reshape((self.n_workers,) + block_shape)

    def decode(self, results: Mapping[int, ArrayLike]) -> np.ndarray:
        """``f(X_k)`` for every block, shape ``(K, *result_shape)``, from ``{worker index: f(share)}``.

        Uses the first ``R`` entries of ``results`` (in iteration order); raises ``ValueError``
        with the arithmetic when fewer than ``R`` are given.
        """
        if len(results) < self.recovery_threshold:
            raise ValueError(
                f"decoding needs R = (K + T - 1) * d + 1 = ({self.n_blocks} + {self.n_masks} - 1) * {self.degree} + 1"
                f" = {self.recovery_threshold} results, got {len(results)} (workers {sorted(results)})"
            )
        workers = list(results)[: self.recovery_threshold]
        for w in workers:
            if not isinstance(w, (int, np.integer)) or not 0 <= w < self.n_workers:
                raise ValueError(f"worker index {w!r} is not in [0, {self.n_workers})")
        values = [np.asarray(results[w], dtype=np.int64) for w in workers]
        shape = values[0].shape
        if any(v.shape != shape for v in values):
            raise ValueError(f"results have differing shapes: {[v.shape for v in values]}")
        stacked = np.stack(values).reshape(len(values), -1) % self.prime
        coefficients = self._decoder(tuple(int(w) for w in workers))
        return field_matmul(coefficients, stacked, self.prime).reshape((self.n_blocks,) + shape)

    def _decoder(self, workers: tuple[int, ...]) -> np.ndarray:
        return _decoding_matrix(self.alphas, self.betas[: self.n_blocks], workers, self.prime)


@lru_cache(maxsize=256)
def _decoding_matrix(alphas: tuple[int, ...], betas: tuple[int, ...], workers: tuple[int, ...], prime: int) -> np.ndarray:
    matrix = lagrange_matrix([alphas[w] for w in workers], betas, prime)
    matrix.setflags(write=False)
    return matrix
