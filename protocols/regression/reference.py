"""The plaintext replay of secure regression: the same algorithm in float64 numpy.

Same batches (the public seed), same sigmoid approximation, the inputs and targets quantised to
the same fixed-point grid, the same target scale, the same step factors rounded to
:data:`~protocols.regression.config.STEP_BITS` bits and the same run-time guard. What remains
between the two is the truncation error of the secure products (at most one unit ``2^-frac_bits``
per truncation, see docs/regression.md for the per-step bound the tests use).
"""

from __future__ import annotations

import numpy as np

from mpcml.nonlinear import SIGMOID_METHODS

from ..common import logistic, magnitude_bits
from .config import STEP_BITS, RegressionConfig, Scales, batch_schedule, guard_error, plan
from .protocol import step_factors


def quantize(values: np.ndarray, frac_bits: int) -> np.ndarray:
    """``values`` rounded to the fixed-point grid ``2^-frac_bits`` (what encoding does)."""
    return np.rint(np.asarray(values, dtype=np.float64) * 2.0**frac_bits) / 2.0**frac_bits


def reference_scales(config: RegressionConfig, X: np.ndarray, y: np.ndarray) -> Scales:
    """The range analysis on the pooled data (the same public bounds the holders agree on)."""
    y_bits = magnitude_bits(y) if config.loss == "squared" else None
    return plan(config, X.shape[0], X.shape[1], magnitude_bits(X), y_bits)


def plaintext_sgd(X: np.ndarray, y: np.ndarray, config: RegressionConfig, seed: bytes | None = None, *,
                  exact_sigmoid: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(coef (K, features), intercept (K,))`` of the same mini-batch algorithm on the stacked data.

    ``X``: vertical blocks side by side, horizontal blocks on top of each other in holder order;
    ``y``: a vector or an ``(n, K)`` 0/1 matrix. ``seed``: the batch-order seed (default
    ``config.seed``). With ``exact_sigmoid`` the exact logistic function replaces the
    approximation (the algorithm the approximation stands for). Raises the same
    ``OverflowError`` as the secure run when the weights leave the analysed range.
    """
    seed = config.seed if seed is None else seed
    if seed is None:
        raise ValueError("seed is required when config.random_state is None (use the seed the secure run agreed)")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    targets = y[:, None] if y.ndim == 1 else y
    scales = reference_scales(config, X, targets)
    f = config.frac_bits
    Xq = quantize(X, f)
    yq = quantize(targets * 2.0**-scales.y_shift, f)
    n = X.shape[0]
    if config.fit_intercept:
        Xq = np.hstack([Xq, np.ones((n, 1))])
    if config.loss == "squared":
        g = lambda z: z  # noqa: E731
    else:
        g = logistic if exact_sigmoid else SIGMOID_METHODS[config.sigmoid].plain
    w = np.zeros((Xq.shape[1], targets.shape[1]))
    previous_epoch, wrapped = 0, False
    for epoch, rows in batch_schedule(seed, n, config.epochs, config.batch_size):
        if epoch != previous_epoch:
            _guard(w, scales, config, previous_epoch, wrapped)
            previous_epoch = epoch
        k_keep, k_step = step_factors(config, epoch, len(rows), Xq.shape[1])
        xb = Xq[rows]
        z = xb @ w
        grad = xb.T @ (g(z) - yq[rows])
        w = (w * k_keep[:, None] - grad * k_step) / 2.0**STEP_BITS
        # where the secure run would leave the ring (its weights become garbage, which its guard catches)
        wrapped |= bool(np.max(np.abs(z)) >= scales.input_limit or np.max(np.abs(grad)) >= scales.product_limit
                        or np.max(np.abs(w)) >= scales.update_limit)
    _guard(w, scales, config, config.epochs - 1, wrapped)
    w = w * 2.0**scales.y_shift
    return (w[:-1].T, w[-1]) if config.fit_intercept else (w.T, np.zeros(w.shape[1]))


def replay_tolerance(config: RegressionConfig, X: np.ndarray, steps: int, y_shift: int) -> float:
    """The largest ``|secure - replay|`` weight difference after ``steps`` mini-batch steps.

    Per step, in units ``2^-frac_bits`` of the scaled problem: one for the update's truncation,
    ``eta / B`` for the gradient's truncation, and ``eta max|x| (1 + c)`` for the residual's error
    (``z``'s truncation through a slope of at most 1, plus the approximation's own ``c`` units,
    :attr:`mpcml.nonlinear.SigmoidMethod.units`) carried through ``(eta / B) X_B^T``. Summed over
    the steps, assuming stable steps (``||I - (eta/B) X_B^T D X_B|| <= 1``: errors are not
    amplified), then scaled back by the public target scale ``2^y_shift``.
    """
    c = SIGMOID_METHODS[config.sigmoid].units if config.loss == "logistic" else 0.0
    x_max = max(float(np.max(np.abs(X))), 1.0 if config.fit_intercept else 0.0)
    eta = config.learning_rate
    per_step = 1.0 + eta / min(config.batch_size, X.shape[0]) + eta * x_max * (1.0 + c)
    return steps * per_step * 2.0 ** (y_shift - config.frac_bits)


def _guard(w: np.ndarray, scales: Scales, config: RegressionConfig, epoch: int, wrapped: bool) -> None:
    if wrapped or np.any(np.abs(w) > scales.weight_bound):
        raise guard_error(epoch, scales, config)
