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
        # the public factors (1 - eta_t alpha), 1 for the intercept, and eta_t / B, rounded to STEP_BITS bits
        eta = config.learning_rate / (1.0 + config.decay * epoch)
        keep = np.full((Xq.shape[1], 1), np.rint((1.0 - eta * config.alpha) * 2.0**STEP_BITS))
        if config.fit_intercept:
            keep[-1] = 2.0**STEP_BITS
        xb = Xq[rows]
        z = xb @ w
        grad = xb.T @ (g(z) - yq[rows])
        w = (w * keep - grad * np.rint(eta / len(rows) * 2.0**STEP_BITS)) / 2.0**STEP_BITS
        # where the secure run would leave the ring (its weights become garbage, which its guard catches)
        wrapped |= bool(np.max(np.abs(z)) >= scales.input_limit or np.max(np.abs(grad)) >= scales.product_limit
                        or np.max(np.abs(w)) >= scales.update_limit)
    _guard(w, scales, config, config.epochs - 1, wrapped)
    w = w * 2.0**scales.y_shift
    return (w[:-1].T, w[-1]) if config.fit_intercept else (w.T, np.zeros(w.shape[1]))


def _max_slope(config: RegressionConfig) -> float:
    """The largest slope of the activation: 1 for the squared loss, else measured on the approximation."""
    if config.loss == "squared":
        return 1.0
    x = np.linspace(-64.0, 64.0, 1 << 16)
    return float(np.max(np.abs(np.diff(SIGMOID_METHODS[config.sigmoid].plain(x))) / np.diff(x)))


def top_gram_eigenvalue(xb: np.ndarray) -> float:
    """``lambda_max(X_B^T X_B)``, from the smaller of ``X_B^T X_B`` and ``X_B X_B^T`` (same non-zero eigenvalues):
    a batch of 1,000 rows of 20,000 columns needs a 1,000 x 1,000 matrix, not 20,000 x 20,000."""
    gram = xb @ xb.T if xb.shape[0] < xb.shape[1] else xb.T @ xb
    return float(np.linalg.eigvalsh(gram)[-1])


def replay_tolerance(config: RegressionConfig, X: np.ndarray, seed: bytes, epochs: int, y_shift: int) -> float:
    """The largest ``|secure - replay|`` weight difference after ``epochs`` epochs of batches from ``seed``.

    The secure step truncates three times (every truncation is exact up to one unit on both
    engines: :func:`mpcml.engine.truncation_share`): ``z = X_B w`` unless the activation takes the
    untruncated product (:attr:`mpcml.nonlinear.SigmoidMethod.wide_input`), the gradient
    ``X_B^T e`` and the update. So each step adds, in units ``2^-frac_bits`` of the scaled
    problem, one for the update's truncation, ``eta / B`` for the gradient's and
    ``eta max|x| (t L + c)`` for the residual's error (``t`` = 1 if ``z`` is truncated, through the
    activation's largest slope ``L``, plus the approximation's own ``c`` units,
    :attr:`~mpcml.nonlinear.SigmoidMethod.units`) carried through ``(eta / B) X_B^T``. A later step
    multiplies an earlier error by its Jacobian ``(1 - eta alpha) I - (eta / B) X_B^T D X_B``, whose
    norm is at most ``max(1, eta L lambda_max(X_B^T X_B / B) - 1)``: 1 for a stable step, more for a
    diverging one. The bound is the sum of each step's error times the product of the later steps'
    factors, scaled back by ``2^y_shift``.
    """
    method = SIGMOID_METHODS[config.sigmoid] if config.loss == "logistic" else None
    c = method.units if method is not None else 0.0
    z_units = 0.0 if method is not None and method.wide_input else 1.0
    Xq = quantize(X, config.frac_bits)
    if config.fit_intercept:
        Xq = np.hstack([Xq, np.ones((Xq.shape[0], 1))])
    x_max = float(np.max(np.abs(Xq)))
    slope = _max_slope(config)
    bound = 0.0
    for epoch, rows in batch_schedule(seed, X.shape[0], epochs, config.batch_size):
        eta = config.step_size(epoch)
        xb = Xq[rows]
        curvature = eta * slope * top_gram_eigenvalue(xb) / len(rows)
        bound = bound * max(1.0, curvature - 1.0) + 1.0 + eta / len(rows) + eta * x_max * (z_units * slope + c)
    return bound * 2.0 ** (y_shift - config.frac_bits)


def _guard(w: np.ndarray, scales: Scales, config: RegressionConfig, epoch: int, wrapped: bool) -> None:
    if wrapped or np.any(np.abs(w) > scales.weight_bound):
        raise guard_error(epoch, scales, config)
