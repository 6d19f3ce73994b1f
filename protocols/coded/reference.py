"""The plaintext replay of coded training, and float gradient descent of the same polynomial model.

:func:`plaintext_training` is the algorithm the protocol implements, written without any coding:
the same public facts and range analysis, the same quantised data, then full-batch gradient
descent on the pooled integers with the server's step and guard. Every operation but the step is
exact integer arithmetic and the step is the same floating-point expression, so the protocol's
weights equal the replay's bit for bit, whoever drops out. :func:`float_training` is the same
model and step without quantisation (what the quantisation costs is the difference).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .analysis import Plan, check_weights, client_facts, plan, target_term
from .coding import design
from .config import CodedConfig
from .protocol import client_input


def _pooled(config: CodedConfig, parts: Sequence[tuple[Any, Any]]) -> tuple[np.ndarray, np.ndarray, Plan]:
    """The clients' checked data stacked in client order, and the plan their facts give."""
    inputs = [client_input(config, c, X, y) for c, (X, y) in zip(config.clients, parts)]
    facts = {c: client_facts(config, X, Y) for c, (X, Y) in zip(config.clients, inputs)}
    return np.vstack([X for X, _ in inputs]), np.vstack([Y for _, Y in inputs]), plan(config, facts)


def plaintext_training(config: CodedConfig, parts: Sequence[tuple[Any, Any]]) -> tuple[np.ndarray, Plan]:
    """``(weights (d + 1, outputs) with the intercept last, plan)`` of full-participation training.

    ``parts`` holds every client's ``(X, y)`` in the order of ``config.clients``. Raises the same
    ``ValueError`` (plan) or ``OverflowError`` (guard, naming the round) as the protocol.
    """
    X, Y, the_plan = _pooled(config, parts)
    data = design(config, the_plan, X, Y)
    d = X.shape[1] + 1
    D, V = data[:, :d], data[:, d:]
    factors = the_plan.gradient_factors(config.slope)[:, None]
    penalised = np.r_[np.ones(d - 1), 0.0][:, None]
    weights = np.zeros((d, Y.shape[1]))
    for r in range(config.n_rounds):
        check_weights(r, weights, the_plan, config)
        W = np.rint(weights * 2.0 ** the_plan.weight_exponents[:, None]).astype(np.int64)
        gradient = (D.T @ (D @ W + V)) * factors
        weights = weights - the_plan.step * (gradient + config.alpha * weights * penalised)
    return weights, the_plan


def float_training(config: CodedConfig, parts: Sequence[tuple[Any, Any]], n_rounds: int | None = None) -> np.ndarray:
    """Weights of the same polynomial model and step in float64, without quantisation (intercept last)."""
    X, Y, the_plan = _pooled(config, parts)
    D = np.column_stack([X, np.ones(X.shape[0])])
    v = target_term(config, Y)
    penalised = np.r_[np.ones(X.shape[1]), 0.0][:, None]
    weights = np.zeros((D.shape[1], Y.shape[1]))
    for _ in range(config.n_rounds if n_rounds is None else n_rounds):
        gradient = config.slope * D.T @ (D @ weights + v) / X.shape[0]
        weights = weights - the_plan.step * (gradient + config.alpha * weights * penalised)
    return weights
