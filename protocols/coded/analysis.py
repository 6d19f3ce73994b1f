"""The range analysis of coded training: public facts, the step size, the fixed-point scales, the guard.

Every client announces, before sending any data, its public facts (:func:`client_facts`): its
row count, the number of columns and outputs, ``ceil(log2 max|x|)``, for the linear model
``ceil(log2 max|y|)``, and ``ceil(4 log2 lambda_i)`` with ``lambda_i`` the largest eigenvalue of
``D_i^T D_i`` (``D_i = [X_i | 1]``). From them the server (:func:`plan`):

1. bounds the curvature of the loss, ``L = lambda_max(c D^T D / m) + alpha <= c sum_i lambda_i / m
   + alpha = L_hat``, and takes the step ``eta = learning_rate / L_hat`` (stable for
   ``learning_rate < 2``);
2. bounds the weights over all rounds: gradient descent from 0 on a quadratic with a stable step
   keeps ``||w_t||^2 <= 2 t eta b^T H^-1 b <= 2 t eta c max|v|^2`` (``H`` the Hessian, ``b`` the
   gradient at 0, ``t`` rounds), so the scaled weights ``u`` (below) stay within
   ``U = max(2^x_bits, 1) sqrt(2 n_rounds eta c) max|v|``; the plan allows twice that;
3. picks the fixed-point scales: features ``x`` as ``round(x 2^(P - x_bits))`` (at most ``2^P``; the
   ones column is ``2^P``), the target term ``v`` as ``round(v 2^F)`` and the weights as
   ``round(u 2^(F - P))`` with ``u_j = w_j 2^x_bits`` for features and ``u = w`` for the intercept,
   so every product ``x_k w_k`` lands at ``2^F``; a decoded gradient entry is at most
   ``B 2^P (2^F (sqrt(n) U (1 + 2^-(P+1)) + V) + n 2^(P-1) + n/4 + 1/2)`` (``B`` rows, ``n = d + 1``
   columns, ``V = max|v|``) and must stay below ``(M - 1)/2`` (``M`` the product of the primes) for
   the signed lift to be exact. Among the ``(P, F)`` that fit it takes the one with the smallest
   rounding error of ``x . w + v``, ``sqrt(n) (2^-P U + 2^(P-F)) + 2^-F``, or refuses with a
   ``ValueError`` when fewer than :data:`MIN_BITS` bits of precision would remain.

The run-time guard: before each round the server checks every output's ``||u||_2`` against the
largest value the chosen scales tolerate (:attr:`Plan.weight_limit`) and stops with
:class:`OverflowError` naming the round (the plaintext replay raises the same), so a gradient that
would wrap is never decoded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mpcml.schema import Int, Nothing, OneOf, Record

from ..common import magnitude_bits
from .config import SIGMOID_SLOPE, CodedConfig

MIN_BITS = 10
"""Bits of precision the plan must keep for the features, the weights (at their a-priori bound) and ``v``."""
MAX_FEATURE_BITS = 40
MAX_MAGNITUDE_BITS = 256
"""Features and targets must stay below ``2^256`` (the step is computed in float64 from their squares)."""

FACTS = Record(rows=Int(1, 2**40), cols=Int(1, 2**20), outputs=Int(1, 10_000), x_bits=Int(-64, 1100),
               y_bits=OneOf(Nothing(), Int(-64, 1100)), curvature=Int(-10_000, 10_000))


def curvature_bits(X: np.ndarray) -> int:
    """``ceil(4 log2 lambda)``, ``lambda`` the largest eigenvalue of ``D^T D`` with ``D = [X | 1]``.

    ``D`` is scaled by a power of two first so that huge features do not overflow.
    """
    shift = max(magnitude_bits(X), 0)
    design = np.column_stack([X, np.ones(X.shape[0])]) * 2.0**-shift
    top = float(np.linalg.eigvalsh(design.T @ design)[-1])
    return math.ceil(4 * (math.log2(top * (1 + 1e-9)) + 2 * shift))  # rounded up: an upper bound


def target_term(config: CodedConfig, Y: np.ndarray) -> np.ndarray:
    """``v``: ``-y`` (linear) or ``(1/2 - y)/c`` (logistic), so that the gradient is ``c sum x (x . w + v)``."""
    return -Y if config.model == "linear" else (0.5 - Y) / SIGMOID_SLOPE


def client_facts(config: CodedConfig, X: np.ndarray, Y: np.ndarray) -> dict[str, Any]:
    """What a client announces at set-up (see the module docstring); ``Y`` is ``(rows, outputs)``."""
    return {"rows": int(X.shape[0]), "cols": int(X.shape[1]), "outputs": int(Y.shape[1]),
            "x_bits": magnitude_bits(X), "y_bits": magnitude_bits(Y) if config.model == "linear" else None,
            "curvature": curvature_bits(X)}


@dataclass(frozen=True)
class Scales:
    """The fixed-point scales of one run (public; the server sends them to every client)."""

    rows: tuple[int, ...]
    n_features: int
    n_outputs: int
    x_bits: int
    frac_x: int
    """``P``: a feature ``x`` is ``round(x 2^(P - x_bits))``; the ones column is ``2^P``."""
    frac_v: int
    """``F``: ``v`` is ``round(v 2^F)`` and every product ``x_k w_k`` is at ``2^F``."""

    @property
    def data_exponents(self) -> np.ndarray:
        """Per column of ``[X | 1]``: the power of two a value is multiplied by before rounding."""
        return np.r_[np.full(self.n_features, self.frac_x - self.x_bits), self.frac_x]

    @property
    def weight_exponents(self) -> np.ndarray:
        """Per weight: ``F`` minus the column's data exponent, so that ``x_k w_k`` lands at ``2^F``."""
        return self.frac_v - self.data_exponents

    def to_wire(self) -> dict[str, Any]:
        """What the clients need: the row counts and the scales."""
        return {"rows": list(self.rows), "x_bits": self.x_bits, "frac_x": self.frac_x, "frac_v": self.frac_v}

    @classmethod
    def from_wire(cls, message: Mapping[str, Any], n_features: int, n_outputs: int) -> "Scales":
        return cls(tuple(message["rows"]), n_features, n_outputs, message["x_bits"], message["frac_x"],
                   message["frac_v"])


@dataclass(frozen=True)
class Plan(Scales):
    """The outcome of the range analysis: the scales, the step and the guard's bound (the server's)."""

    step: float = 0.0
    curvature: float = 0.0
    """``L_hat``: the public bound on the curvature of the loss; the step is ``learning_rate / L_hat``."""
    weight_bound: float = 0.0
    """``U``: the a-priori bound on every output's ``||u||_2`` over all rounds."""
    weight_limit: float = 0.0
    """The largest ``||u||_2`` the scales tolerate (at least ``2 U``): the run-time guard's bound."""

    def gradient_factors(self, slope: float) -> np.ndarray:
        """Per weight: ``c / (2^(data exponent + F) B)``, the factor from a decoded integer to the real gradient."""
        return slope / (2.0 ** (self.data_exponents + self.frac_v) * sum(self.rows))

    def scaled_norms(self, weights: np.ndarray) -> np.ndarray:
        """Every output's ``||u||_2`` (``weights`` is ``(d + 1, outputs)``)."""
        scale = np.r_[np.full(self.n_features, 2.0**self.x_bits), 1.0]
        return np.linalg.norm(weights * scale[:, None], axis=0)


def _headroom(rows: int, n: int, frac_x: int, frac_v: float, weights: float, v_max: float) -> float:
    """The largest magnitude of a decoded gradient entry (see the module docstring, step 3)."""
    products = 2.0**frac_v * (math.sqrt(n) * weights * (1 + 2.0 ** -(frac_x + 1)) + v_max)
    return rows * 2.0**frac_x * (products + n * 2.0 ** (frac_x - 1) + n / 4 + 0.5)


def _largest_frac_v(rows: int, n: int, frac_x: int, weights: float, v_max: float, room: float) -> int | None:
    """The largest ``F`` whose headroom fits ``room``, or None."""
    spare = room / (rows * 2.0**frac_x) - n * 2.0 ** (frac_x - 1) - n / 4 - 0.5
    if spare <= 0:
        return None
    frac_v = math.floor(math.log2(spare / (math.sqrt(n) * weights * (1 + 2.0 ** -(frac_x + 1)) + v_max)))
    while _headroom(rows, n, frac_x, frac_v, weights, v_max) > room:
        frac_v -= 1
    return frac_v


def plan(config: CodedConfig, facts: Mapping[str, Mapping[str, Any]]) -> Plan:
    """The range analysis of one run from every client's facts; ``ValueError`` naming the client or parameter."""
    ordered = [facts[c] for c in config.clients]
    for key in ("cols", "outputs"):
        values = {c: f[key] for c, f in zip(config.clients, ordered)}
        if len(set(values.values())) != 1:
            raise ValueError(f"the clients disagree on the number of {'features' if key == 'cols' else 'outputs'}: "
                             f"{values}")
    n_features, n_outputs = ordered[0]["cols"], ordered[0]["outputs"]
    for c, f in zip(config.clients, ordered):
        if (f["y_bits"] is None) != (config.model == "logistic"):
            raise ValueError(f"client {c!r} announced {'no' if f['y_bits'] is None else 'a'} target magnitude, "
                             f"which does not fit model={config.model!r}")
    for c, f in zip(config.clients, ordered):
        for key, name in (("x_bits", "features"), ("y_bits", "targets")):
            if f[key] is not None and f[key] > MAX_MAGNITUDE_BITS:
                raise ValueError(f"client {c!r} has {name} up to 2^{f[key]}; coded training takes magnitudes below "
                                 f"2^{MAX_MAGNITUDE_BITS} (standardise or rescale)")
    rows, n = sum(f["rows"] for f in ordered), n_features + 1
    x_bits = max(f["x_bits"] for f in ordered)
    slope = config.slope
    v_max = 0.5 / slope if config.model == "logistic" else 2.0 ** max(f["y_bits"] for f in ordered)
    # 1. the step from the curvature bound
    curvature = slope * sum(2.0 ** (f["curvature"] / 4) for f in ordered) / rows + config.alpha
    step = config.learning_rate / curvature
    # 2. the a-priori weight bound (scaled weights u), and twice that for the plan
    weights = max(2.0**x_bits, 1.0) * math.sqrt(2 * config.n_rounds * step * slope) * v_max
    # 3. the scales
    room = float((config.modulus - 1) // 2) * (1 - 1e-9)
    best, best_error = None, math.inf
    for frac_x in range(MIN_BITS, MAX_FEATURE_BITS + 1):
        frac_v = _largest_frac_v(rows, n, frac_x, 2 * weights, v_max, room)
        if frac_v is None or math.log2(weights) + frac_v - frac_x < MIN_BITS or math.log2(v_max) + frac_v < MIN_BITS:
            continue
        error = math.sqrt(n) * (2.0**-frac_x * weights + 2.0 ** (frac_x - frac_v)) + 2.0**-frac_v
        if error < best_error:
            best, best_error = (frac_x, frac_v), error
    if best is None:
        raise ValueError(
            f"coded training cannot keep {MIN_BITS} bits of precision in the field (M = "
            f"{' * '.join(map(str, config.primes))} ~ 2^{math.log2(config.modulus):.1f}): with {rows} rows, {n} columns "
            f"and weights that may reach ||u|| = {weights:.4g} (from n_rounds = {config.n_rounds} and learning_rate = "
            f"{config.learning_rate:g}) a decoded gradient entry would exceed (M - 1)/2 = {(config.modulus - 1) // 2}; "
            f"lower n_rounds or learning_rate, or train on fewer rows or features")
    frac_x, frac_v = best
    scale = math.sqrt(n) * 2.0**frac_v * (1 + 2.0 ** -(frac_x + 1))
    limit = (room / (rows * 2.0**frac_x) - n * 2.0 ** (frac_x - 1) - n / 4 - 0.5 - 2.0**frac_v * v_max) / scale
    return Plan(tuple(f["rows"] for f in ordered), n_features, n_outputs, x_bits, frac_x, frac_v, step, curvature,
                weights, limit)


def check_weights(round_index: int, weights: np.ndarray, the_plan: Plan, config: CodedConfig) -> None:
    """The run-time guard: ``OverflowError`` naming the round if an output's ``||u||_2`` left the analysed range."""
    norms = the_plan.scaled_norms(weights)
    if np.any(norms > the_plan.weight_limit) or not np.all(np.isfinite(norms)):
        raise OverflowError(
            f"coded training stopped before round {round_index + 1}: the weights' scaled norm ||u|| = "
            f"{float(np.max(norms)):.4g} left the range ||u|| <= {the_plan.weight_limit:.4g} that the field analysis "
            f"guarantees (a-priori bound {the_plan.weight_bound:.4g}); gradient descent is diverging: lower "
            f"learning_rate (now {config.learning_rate:g})")
