"""The plaintext replay of CAESAR (the same algorithm in float64 numpy), its tolerance, and test data.

:func:`reference_fit` runs the protocol's algorithm on the pooled data: the same batches (the
public seed), the same sigmoid approximation (the cubic's coefficients rounded as the protocol
rounds them), the features quantised as the parties encode them, ``eta`` rounded to its
``fs`` bits and the L2 decay factor to its 30 bits. What remains between the two is the
flooring of integer shares, bounded by :func:`replay_tolerance`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from ..common import logistic
from .config import (
    COEF_BITS,
    CUBIC,
    DECAY_BITS,
    CaesarConfig,
    batches,
    plan,
    schedule_facts,
    spectral_norm_squared,
    step_growth,
)
from .protocol import encoded_blocks


def quantised(blocks: Sequence[Any], config: CaesarConfig) -> sp.csr_matrix:
    """``[X_A, X_B (, 1)]`` on the parties' fixed-point grid (computed here, not by the protocol's encoder):
    a block of integers as it is, any other block rounded to ``2^-frac_bits``."""
    out = []
    for block in blocks:
        mat = sp.csr_matrix(block, dtype=np.float64)
        if not np.all(mat.data == np.rint(mat.data)):
            mat.data = np.rint(mat.data * 2.0**config.frac_bits) / 2.0**config.frac_bits
        out.append(mat)
    if config.fit_intercept:
        out.append(sp.csr_matrix(np.ones((out[0].shape[0], 1))))
    return sp.hstack(out, format="csr")


def _sigmoid(config: CaesarConfig, exact: bool) -> Any:
    if exact:
        return logistic
    if config.sigmoid == "linear":
        return lambda z: 0.5 + z / 4.0
    q0, q1, q3 = (round(c * 2**COEF_BITS) / 2**COEF_BITS for c in CUBIC)
    return lambda z: q0 + q1 * z + q3 * z**3


def reference_fit(blocks: Sequence[Any], y: Any, config: CaesarConfig, seed: bytes | None = None, *,
                  exact_sigmoid: bool = False, losses: list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(coef (K, d_A + d_B), intercept (K,))`` of CAESAR's algorithm on ``blocks = [X_A, X_B]``.

    Per batch ``S``: ``e = sigmoid(X_S w) - y_S``, ``w -= eta X_S^T e`` with ``eta`` rounded to
    ``fs`` bits (the intercept is the last weight of B's block); after each epoch the weights
    except the intercept are multiplied by ``(1 - lr l2)^batches`` rounded to 30 bits. ``seed``:
    the public batch-order seed (default ``config.seed``). ``exact_sigmoid`` uses the logistic
    function (the algorithm the approximation stands for). If ``losses`` is a list, each epoch's
    mean over batches of ``mean(e^2)`` is appended (what ``report_loss`` shows B).
    """
    seed = config.seed if seed is None else seed
    if seed is None:
        raise ValueError("seed is required when config.random_state is None (use the seed the secure run agreed)")
    X = quantised(blocks, config)
    n, d = X.shape
    targets = np.asarray(y, dtype=np.float64)
    targets = targets[:, None] if targets.ndim == 1 else targets
    g = _sigmoid(config, exact_sigmoid)
    fs = config.step_bits
    w = np.zeros((d, targets.shape[1]))
    keep = np.ones(d, dtype=bool)
    keep[-1] = not config.fit_intercept
    for epoch_batches in batches(config, seed, n):
        squares = []
        for rows in epoch_batches:
            xb = X[rows]
            e = g(np.asarray(xb @ w)) - targets[rows]
            squares.append(float(np.mean(e * e)))
            eta = round(config.learning_rate / len(rows) * 2**fs) / 2**fs
            w -= eta * np.asarray(xb.T @ e)
        if config.l2:
            factor = round((1.0 - config.learning_rate * config.l2) ** len(epoch_batches) * 2**DECAY_BITS) / 2**DECAY_BITS
            w[keep] *= factor
        if losses is not None:
            losses.append(float(np.mean(squares)))
    return (w[:-1].T, w[-1]) if config.fit_intercept else (w.T, np.zeros(w.shape[1]))


def replay_tolerance(blocks: Sequence[Any], config: CaesarConfig, seed: bytes) -> float:
    """The largest ``||w_secure - w_replay||_2`` per model after the run (so a bound on every weight).

    Per step ``S``: the error carried in is multiplied by at most ``kappa_S`` (the step's expansion,
    1 for a stable step size: :func:`~.config.step_growth` with the joint ``||X_S||^2 / |S|``),
    and grows by ``lr sqrt(||X_S||^2/|S|) err`` (the residuals' fixed-point error ``err``: four
    floored shares of ``z``, 4 units ``2^-f``, through the cubic's slope plus 2 units for it) and
    by ``|S| sqrt(||X_S||^2/|S|) 2^(1-fw)`` (the two floored shares of ``eta e``). Each L2 decay
    adds 2 units ``2^-F`` per weight (floored shares) and shrinks the rest.
    """
    X = quantised(blocks, config)
    n, d = X.shape
    encoded = encoded_blocks(config, blocks)
    z_bound = plan(config, schedule_facts(config, seed, encoded, 1)).z_bound
    fw, fx_min = config.weight_frac_bits, min(fx for _, fx in encoded.values())
    error = 0.0
    for epoch_batches in batches(config, seed, n):
        for rows in epoch_batches:
            spread = spectral_norm_squared(X[rows]) / len(rows)
            kappa, residual = step_growth(config, spread, z_bound)
            root = math.sqrt(spread)
            error = kappa * error + config.learning_rate * root * residual + len(rows) * root * 2.0 ** (1 - fw)
        if config.l2:
            error += math.sqrt(d) * 2.0 ** (1 - fw - fx_min)
    return error


def make_sparse_logistic(
    n_rows: int, n_cols: int, density: float, seed: int = 0, weight_scale: float = 1.0
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Test data only (numpy generator): 0/1 sparse features, a known model, labels ``~ Bernoulli``.

    Returns ``(X, y, true_weights)``; each row has about ``density * n_cols`` ones and the logit
    ``X w*`` is scaled to standard deviation ``2 weight_scale``.
    """
    gen = np.random.default_rng(seed)
    per_row = max(1, int(round(density * n_cols)))
    cols = gen.integers(0, n_cols, size=(n_rows, per_row))
    x = sp.csr_matrix((np.ones(n_rows * per_row), cols.ravel(), np.arange(0, n_rows * per_row + 1, per_row)),
                      shape=(n_rows, n_cols))
    x.sum_duplicates()
    x.data[:] = 1.0
    w = gen.normal(size=n_cols) * 2.0 * weight_scale / math.sqrt(per_row)
    logits = x @ w
    y = (gen.random(n_rows) < logistic(logits)).astype(np.int64)
    return x, y, w
