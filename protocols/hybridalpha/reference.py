"""The plaintext replay of HybridAlpha: the same federated averaging in float64 numpy.

Written independently of the protocol's roles and trainer: the same local steps (exact logistic
function, L2 penalty without the intercept, ``local_epochs`` full-batch steps from the global
model), the same quantisation of every update to ``frac_bits`` and the same agreed bound (the
same ``OverflowError`` when an update leaves it), the same responders per round and the same
mean. No DP noise (a DP run is compared statistically, see the tests).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ..common import logistic, magnitude_bits
from .config import HybridAlphaConfig, Plan, update_bound, update_guard_error


def plaintext_fedavg(data: Mapping[str, tuple[Any, Any]], config: HybridAlphaConfig,
                     responders: Sequence[Sequence[str]] | None = None) -> np.ndarray:
    """The global model after ``config.rounds`` rounds, flattened as the protocol's ``(columns, K)`` matrix.

    ``data`` maps each party to its ``(X, Y)`` (``Y`` 0/1, a vector or ``(n, K)``); ``responders[r]``
    lists the parties averaged in round ``r`` (default: all; a round with fewer than
    ``min_parties`` leaves the model unchanged, as the TPA refuses its key).
    """
    blocks = {}
    for pid, (X, Y) in data.items():
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        blocks[pid] = (np.hstack([X, np.ones((X.shape[0], 1))]) if config.fit_intercept else X,
                       Y.reshape(-1, 1) if Y.ndim == 1 else Y)
    first_X, first_Y = next(iter(blocks.values()))
    columns, outputs = first_X.shape[1], first_Y.shape[1]
    x_bits = max(magnitude_bits(np.asarray(X)) for X, _ in data.values())
    agreed = Plan(tuple(data), columns * outputs, max(math.ceil(update_bound(config, x_bits) * 2.0**config.frac_bits), 1))
    penalised = np.ones((columns, 1))
    if config.fit_intercept:
        penalised[-1] = 0.0
    W = np.zeros((columns, outputs))
    for rnd in range(config.rounds):
        chosen = list(data) if responders is None else list(responders[rnd])
        total = np.zeros(columns * outputs, dtype=np.int64)
        for pid in chosen:
            X, Y = blocks[pid]
            V = W
            for _ in range(config.local_epochs):
                gradient = X.T @ (logistic(X @ V) - Y) / X.shape[0]
                V = V - config.learning_rate * (gradient + config.alpha * V * penalised)
            change = (V - W).ravel()
            quantised = np.rint(change * 2.0**config.frac_bits).astype(np.int64)
            if np.max(np.abs(quantised)) > agreed.bound:
                raise update_guard_error(rnd, pid, float(np.max(np.abs(change))), config, agreed)
            total = total + quantised
        if len(chosen) >= config.min_parties:
            W = W + (total / 2.0**config.frac_bits / len(chosen)).reshape(columns, outputs)
    return W.ravel()


def replay_tolerance(config: HybridAlphaConfig) -> float:
    """The largest ``|secure - replay|`` model entry after ``config.rounds`` rounds.

    The aggregation is exact: FE (or Paillier) returns the exact integer sum of the quantised
    updates and the replay quantises the same float64 updates, so the two agree bit for bit
    unless a different order of floating-point operations moves an update across a rounding
    boundary: then that entry of the mean moves by at most one unit ``2^-frac_bits``. Local
    gradient steps at a stable learning rate do not amplify a difference in the model, so one
    unit per round bounds the total.
    """
    return config.rounds * 2.0**-config.frac_bits
