"""The Lagrange-coded arithmetic of coded training: quantised data, shares, zero masks, results, decoding.

Everything runs modulo every prime of :attr:`CodedConfig.primes` at once (independent masks per
prime); the server recombines decoded residues by the Chinese remainder theorem
(:func:`mpcml.lagrange.crt_combine`), so integers up to ``(M - 1)/2`` with ``M = p_1 p_2 ~ 2^62``
come out exact.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mpcml.csprng import Csprng
from mpcml.lagrange import crt_combine, field_matmul, lagrange_matrix, random_field, to_signed

from .analysis import Scales, target_term
from .config import CodedConfig


def design(config: CodedConfig, plan: Scales, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``[X | 1 | v]`` as integers at the plan's scales, shape ``(rows, d + 1 + outputs)``."""
    columns = np.column_stack([X, np.ones(X.shape[0])]) * 2.0**plan.data_exponents
    return np.rint(np.column_stack([columns, target_term(config, Y) * 2.0**plan.frac_v])).astype(np.int64)


def weight_integers(plan: Scales, weights: np.ndarray) -> np.ndarray:
    """``round(w 2^(weight exponent))`` per weight, ``(d + 1, outputs)`` int64 (the guard has bounded them)."""
    return np.rint(weights * 2.0 ** plan.weight_exponents[:, None]).astype(np.int64)


def residues(config: CodedConfig, values: np.ndarray) -> np.ndarray:
    """``values`` (signed integers) modulo every prime: shape ``(n_primes, *values.shape)``."""
    return np.stack([values % p for p in config.primes])


def encode_data(config: CodedConfig, data: np.ndarray, rng: Csprng) -> np.ndarray:
    """Every client's coded shares of ``data``, shape ``(N, n_primes, ceil(rows / K), cols)``.

    Rows are split into ``K`` blocks (zero rows pad the last: they add nothing to the gradient);
    each prime has its own ``T`` uniform masks.
    """
    k = config.n_blocks
    per_block = -(-data.shape[0] // k)
    padded = np.zeros((k * per_block, data.shape[1]), dtype=np.int64)
    padded[: data.shape[0]] = data
    blocks = padded.reshape(k, per_block, data.shape[1])
    return np.stack([code.encode(blocks % p, rng) for code, p in zip(config.codes, config.primes)], axis=1)


def zero_masks(config: CodedConfig, width: int, rng: Csprng) -> np.ndarray:
    """Every client's evaluations of fresh random polynomials that vanish at ``beta_1..beta_K``, one per round.

    Shape ``(N, n_primes, n_rounds, width)``. Each polynomial has degree ``R - 1``: zero at the ``K``
    data points and uniform at ``R - K`` further points beyond every ``alpha``. The clients add the
    sum of everyone's masks to their coded results, which leaves the decoded values at
    ``beta_1..beta_K`` unchanged and makes the rest of what the server interpolates uniform and
    fresh every round.
    """
    k, r = config.n_blocks, config.recovery_threshold
    code = config.codes[0]
    free_nodes = [code.alphas[-1] + 1 + i for i in range(r - k)]
    out = []
    for p in config.primes:
        basis = lagrange_matrix(list(code.betas[:k]) + free_nodes, code.alphas, p)[:, k:]
        values = random_field(rng, (r - k, config.n_rounds * width), p)
        out.append(field_matmul(basis, values, p).reshape(len(config.clients), config.n_rounds, width))
    return np.stack(out, axis=1)


class CodedStack:
    """A client's stack ``[S_X | S_V]`` of everyone's coded shares ``(n_primes, rows, d + 1 + outputs)``, laid
    out once (C-contiguous ``S_X``, ``S_X^T`` and ``S_V``) for the products of every round."""

    def __init__(self, stack: np.ndarray, n_weights: int) -> None:
        self.features = np.ascontiguousarray(stack[:, :, :n_weights])
        self.features_t = np.ascontiguousarray(self.features.transpose(0, 2, 1))
        self.targets = np.ascontiguousarray(stack[:, :, n_weights:])

    def gradient(self, weights: np.ndarray, primes: Sequence[int]) -> np.ndarray:
        """``S_X^T (S_X W + S_V)`` modulo each prime, ``(n_primes, d + 1, outputs)``, for the residues ``W``
        ``(n_primes, d + 1, outputs)``."""
        out = []
        for x, x_t, v, w, p in zip(self.features, self.features_t, self.targets, weights, primes):
            inner = (field_matmul(w.T % p, x_t, p).T + v) % p
            out.append(field_matmul(inner.T, x, p).T)
        return np.stack(out)


def coded_gradient(stack: np.ndarray, weights: np.ndarray, primes: Sequence[int]) -> np.ndarray:
    """:meth:`CodedStack.gradient` of ``stack`` ``(n_primes, rows, d + 1 + outputs)`` at ``weights``."""
    return CodedStack(stack, weights.shape[1]).gradient(weights, primes)


def decode_gradient(config: CodedConfig, results: Mapping[str, np.ndarray]) -> np.ndarray:
    """The signed integer gradient ``G`` (``(d + 1, outputs)``) from ``{client: coded result}`` (the first ``R``)."""
    indices = {config.clients.index(c): np.asarray(g, dtype=np.int64) for c, g in results.items()}
    decoded = [code.decode({i: g[j] for i, g in indices.items()}) for j, code in enumerate(config.codes)]
    return to_signed(crt_combine(decoded, config.primes), config.modulus).sum(axis=0)

