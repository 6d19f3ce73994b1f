"""The plaintext replay of FedV: the same mini-batch gradient descent on the same quantised integers.

Written independently of the protocol's roles: the same plan (target scale, bounds, guard), the
same public batches, ``x``, ``w`` and ``e`` rounded to ``frac_bits`` exactly where the protocol
quantises them (weights with :meth:`~protocols.fedv.config.FedVPlan.quantise_weights`), the inner products ``X_B w`` and ``X_B^T e`` computed exactly in int64 (what the
FE decryptions return), the same rule for a batch whose errors have fewer than ``min_nonzero``
non-zero entries (no data gradient), and the same float steps in the same order. The secret row
and column permutations of the protocol change neither an integer sum nor an element-wise step.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..common import logistic, magnitude_bits
from .config import FedVConfig, FedVPlan, guard_error, plan


def reference_plan(config: FedVConfig, blocks: Sequence[Any], y: Any) -> FedVPlan:
    """The range analysis on the pooled data (the public facts the parties announce)."""
    Y = np.asarray(y, dtype=np.float64)
    outputs = 1 if Y.ndim == 1 else Y.shape[1]
    y_bits = magnitude_bits(Y) if config.linear else None
    return plan(config, tuple(np.shape(b)[1] for b in blocks), np.shape(blocks[0])[0], outputs,
                max(magnitude_bits(np.asarray(b)) for b in blocks), y_bits)


def _error(model: str, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    if model == "linear":
        return z
    if model == "logistic":
        return logistic(z) - y
    sign = 2.0 * y - 1.0
    return np.where(sign * z < 1.0, -sign, 0.0)


def plaintext_fedv(blocks: Sequence[Any], y: Any, config: FedVConfig) -> dict[str, Any]:
    """``{"coef": (K, d), "intercept": (K,), "skipped": n}``: FedV's model, every weight starting at ``init_scale``.

    ``blocks``: the parties' column blocks in ``config.parties`` order; ``y``: the labels (0/1, a
    vector or ``(n, K)``) or the linear model's targets.
    Raises the protocol's ``OverflowError`` when a weight leaves the analysed bound.
    """
    agreed = reference_plan(config, blocks, y)
    f = config.frac_bits
    active = config.parties.index(config.active)
    xq = [np.rint(np.asarray(b, dtype=np.float64) * 2.0**f).astype(np.int64) for b in blocks]
    if config.fit_intercept:
        xq[active] = np.hstack([xq[active], np.full((agreed.rows, 1), 2**f, dtype=np.int64)])
    Y = np.asarray(y, dtype=np.float64)
    Y = (Y.reshape(-1, 1) if Y.ndim == 1 else Y) / 2.0**agreed.y_shift
    yq = np.rint(Y[:, 0] * 2.0**f).astype(np.int64)
    weights = [np.full((x.shape[1], agreed.outputs), config.init_scale) for x in xq]
    penalised = [np.ones(w.shape[0]) for w in weights]
    if config.fit_intercept:
        penalised[active][-1] = 0.0
    skipped = 0

    def guard(epoch: int, batch: int) -> None:
        largest = max(float(np.max(np.abs(w))) for w in weights)
        if largest > agreed.weight_bound:
            raise guard_error(epoch, batch, largest, agreed)

    for epoch in range(config.epochs):
        for b, rows in enumerate(agreed.batches()):
            guard(epoch, b)
            for k in range(agreed.outputs):
                wq = [agreed.quantise_weights(w[:, k]) for w in weights]
                agreed.search(agreed.scores_bound(wq), epoch, b, "feature")
                z_int = sum(x[rows] @ v for x, v in zip(xq, wq))
                if config.linear:
                    z_int = z_int - yq[rows] * 2**f
                eq = np.rint(_error(config.model, z_int / 2.0 ** (2 * f), Y[rows, k]) * 2.0**f).astype(np.int64)
                enough = np.count_nonzero(eq) >= config.min_nonzero
                skipped += not enough
                if enough:
                    agreed.search(agreed.gradient_bound(eq), epoch, b, "sample")
                for i, (x, w) in enumerate(zip(xq, weights)):
                    g_int = x[rows].T @ eq if enough else np.zeros(x.shape[1], dtype=np.int64)
                    gradient = g_int / 2.0 ** (2 * f) / len(rows) + config.alpha * w[:, k] * penalised[i]
                    w[:, k] = w[:, k] - config.learning_rate * gradient
    guard(config.epochs - 1, len(agreed.batches()) - 1)
    scale = 2.0**agreed.y_shift
    coef = np.vstack([w[: np.shape(blocks[i])[1]] for i, w in enumerate(weights)]).T * scale
    intercept = weights[active][-1] * scale if config.fit_intercept else np.zeros(agreed.outputs)
    return {"coef": coef, "intercept": intercept, "skipped": skipped}


def replay_tolerance(config: FedVConfig, agreed: FedVPlan) -> float:
    """The largest ``|secure - replay|`` weight after a run (in the targets' units).

    The FE decryptions return the exact integers the replay computes and the float steps are the
    same, so the two agree bit for bit unless a different floating-point order moves a weight
    across a rounding boundary of its quantisation: that moves it by one unit ``2^-frac_bits``
    in the next product. With stable steps a difference is not amplified, so one unit per
    step (batches x epochs x outputs), scaled back by ``2^y_shift``, bounds the total.
    """
    steps = config.epochs * len(agreed.batches()) * agreed.outputs
    return steps * 2.0 ** (agreed.y_shift - config.frac_bits)
