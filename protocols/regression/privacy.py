"""Differentially private training in secure regression (PEA; issue 21): the ``dp_*`` options of
:class:`~protocols.regression.config.RegressionConfig` run :func:`protocols.dp_sgd.train_dp_sgd`.

With ``dp_epsilon`` or ``dp_noise_multiplier`` set, the compute parties replace the shuffled mini-batch
loop by DP-SGD on the same shared data: Poisson batches of expected size ``batch_size`` (rate
``q = batch_size / n``, as the accountant assumes), every example's gradient clipped to L2 norm
``dp_clip`` inside the secure computation, each compute party adding its own Gaussian share of the noise
(``sigma dp_clip / sqrt(n - t)``, ``t = dp_colluders``), ``ceil(epochs n / batch_size)`` steps of
``w <- w - (learning_rate / batch_size) (clipped sum + noise)``. :func:`dp_config` maps the options onto
:class:`protocols.dp_sgd.DPSGDConfig`; :func:`dp_plan` calibrates or checks the noise multiplier with
:mod:`mpcml.accounting`; :func:`dp_scales` is the range analysis; :func:`train_private` the training.
Errors from the building blocks are re-worded with the regression's option names.

Range analysis (before any message, from public values only: the shapes, ``dp_feature_bound``, the
options, for the squared loss the label holder's ``ceil(log2 max|y|)``). With ``G = sqrt(108 ln 2) <
8.66`` the largest magnitude a Box-Muller draw from 53-bit uniforms can take (``u >= 2^-54``), each
coordinate of a step's noise is below ``n_p G sigma_p``; a step's batch has at most ``m`` rows and all
steps together at most ``S`` (Bernstein's bound on the Binomial counts with failure probability below
``2^-64``, so the analysis holds except with that probability). A clipped contribution has norm at
most ``C``, so ``||w||_2 <= W = (eta / B)(C S + steps sqrt(d) n_p G sigma_p)``, ``|x_i . w| <=
||x_i|| W`` and every product, the sigmoid's input, the clamp and the update are checked against the
ring (``ValueError`` naming the options otherwise).

PEA's accuracy aids (horizontal partition only; :mod:`protocols.dp_sgd`):
- ``dp_projection = k``: every holder multiplies its rows by the public ``d x k`` Gaussian matrix ``P``
  (:func:`projection`, a seed derived from ``random_state``; data-independent, so free of privacy cost)
  before sharing. The projected features are bounded by ``dp_feature_bound * max_j ||P_:j||_1`` (from the
  matrix alone, :func:`projected_bound`), the bound the clipping and the range analysis use; the revealed
  ``k`` weights are mapped back, ``coef = P w``, so prediction takes raw features.
- ``dp_local_epochs``: each holder runs DP-SGD on its own rows in the clear at the plan's noise multiplier
  (central noise ``sigma C`` from its CSPRNG, Poisson batches from its own seed; :func:`local_init`) and
  secret-shares ``(n_h / n) w_h``; the players' sum, the row-weighted average, is the starting point and is
  never revealed. :func:`dp_plan` charges the worst holder's local phase plus the global run, and the range
  analysis adds the local models' bound to the weights'.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from typing import Callable, TypeVar

import numpy as np

from mpcml.csprng import new_seed
from mpcml.dp import NoiseSource
from mpcml.nonlinear import SIGMOID_METHODS
from mpcml.tensor import SharedTensor
from mpcml.session import Session

from ..common import magnitude_bits
from ..dp_sgd import (DPPlan, DPSGDConfig, check_feature_bound, clip_range, local_dp_model, local_dp_models,
                      party_noise_sources, plaintext_dp_sgd, plan, random_projection, train_dp_sgd)
from .config import RING_SAFE_BITS, STEP_BITS, RegressionConfig, Scales

T = TypeVar("T")

NAMES = {"clip": "dp_clip", "feature_bound": "dp_feature_bound", "epsilon": "dp_epsilon",
         "noise_multiplier": "dp_noise_multiplier", "delta": "dp_delta", "expected_batch_size": "batch_size",
         "local_epochs": "dp_local_epochs"}
"""The building blocks' parameter names and the regression options they come from."""
GAUSSIAN_MAX = math.sqrt(-2.0 * math.log(2.0**-54))
"""The largest ``|N(0, 1)|`` draw of :meth:`mpcml.dp.NoiseSource.gaussian` (uniforms ``>= 2^-54``)."""
FAILURE_BITS = 64
"""The batch-size bounds of the range analysis fail with probability below ``2^-FAILURE_BITS``."""


def _named(call: Callable[..., T], *args: object) -> T:
    """``call(*args)`` with a ``ValueError`` re-worded in the regression's option names."""
    try:
        return call(*args)
    except ValueError as exc:
        pattern = r"\b(" + "|".join(NAMES) + r")="
        raise ValueError(re.sub(pattern, lambda m: NAMES[m.group(1)] + "=", str(exc))) from exc


def projection(config: RegressionConfig, n_features: int) -> np.ndarray | None:
    """The public ``n_features x dp_projection`` matrix (``None`` when off): :func:`protocols.dp_sgd.random_projection`
    from a seed derived from ``random_state`` (a fixed public one without it)."""
    if config.dp_projection is None:
        return None
    seed = hashlib.sha256(b"mpcml.regression.projection" + (config.seed or b"")).digest()
    return random_projection(n_features, config.dp_projection, seed)


def projected_bound(config: RegressionConfig, P: np.ndarray | None) -> float:
    """The public bound on the features the players see: ``|(x P)_j| <= b ||P_:j||_1`` for ``|x_i| <= b``
    (the factor ``1 + 1e-12`` covers the float rounding of ``x P``)."""
    if P is None:
        return config.dp_feature_bound
    return config.dp_feature_bound * float(np.abs(P).sum(axis=0).max()) * (1 + 1e-12)


def dp_config(config: RegressionConfig, n_features: int | None = None) -> DPSGDConfig:
    """The DP-SGD parameters of a DP run (``dp_colluders`` unset: ``n - 1`` on beaver, 1 on rss3, where two
    colluding parties already hold every share); ``n_features`` (raw) is needed with ``dp_projection``."""
    colluders = config.dp_colluders
    if colluders is None and config.engine == "rss3":
        colluders = 1
    if config.dp_projection is not None and n_features is None:
        raise ValueError("dp_projection: the projected feature bound needs the raw number of features")
    bound = projected_bound(config, projection(config, n_features) if n_features is not None else None)
    return DPSGDConfig(loss=config.loss, clip=config.dp_clip, feature_bound=bound,
                       epsilon=config.dp_epsilon, noise_multiplier=config.dp_noise_multiplier, delta=config.dp_delta,
                       expected_batch_size=config.batch_size, epochs=float(config.epochs),
                       learning_rate=config.learning_rate, fit_intercept=config.fit_intercept, sigmoid=config.sigmoid,
                       colluders=colluders, frac_bits=config.frac_bits, noise_seed=config.dp_noise_seed)


@functools.lru_cache(maxsize=64)
def _plan(config: DPSGDConfig, n_rows: int, local_rows: tuple[int, ...], local_epochs: int) -> DPPlan:
    return _named(functools.partial(plan, local_rows=local_rows, local_epochs=local_epochs), config, n_rows)


def dp_plan(config: RegressionConfig, n_rows: int, n_features: int | None = None,
            local_rows: tuple[int, ...] = ()) -> DPPlan:
    """The run's privacy plan (:func:`protocols.dp_sgd.plan`; cached: calibrating to ``dp_epsilon`` takes
    seconds and every party of a process runs it), or a ``ValueError`` naming the options. ``n_features``:
    the raw feature count (needed with ``dp_projection``); ``local_rows``: each holder's rows (needed with
    ``dp_local_epochs``, whose phases the plan charges)."""
    if config.dp_local_epochs and not local_rows:
        raise ValueError("dp_local_epochs: the plan needs each holder's row count")
    local = tuple(local_rows) if config.dp_local_epochs else ()
    return _plan(dp_config(config, n_features), n_rows, local, config.dp_local_epochs)


def check_holder_block(config: RegressionConfig, X: np.ndarray, holder: str) -> None:
    """A holder's local check, before any message, that its block respects ``dp_feature_bound``."""
    _named(check_feature_bound, X, config.dp_feature_bound, f"X of holder {holder!r}")


def _tail(mean: float, log_terms: float) -> float:
    """``t`` with ``P(Binomial > mean + t) <= exp(-log_terms)`` (Bernstein: ``exp(-t^2 / (2 (mean + t / 3)))``)."""
    k = log_terms
    return k / 3 + math.sqrt(k * k / 9 + 2 * mean * k)


def _weight_bound(step_size: float, clip: float, mean: float, steps: int, rows: int, d: int, noise: float) -> float:
    """``(eta / B)(C S + steps sqrt(d) noise)``: the largest ``||w||`` after ``steps`` Poisson steps of expected size
    ``mean`` (``S``: Bernstein's bound on all steps' rows) and per-coordinate noise below ``noise``."""
    total = min(float(rows) * steps, steps * mean + _tail(steps * mean, FAILURE_BITS * math.log(2.0)))
    return step_size * (clip * total + steps * math.sqrt(d) * noise)


def dp_scales(config: RegressionConfig, n_rows: int, n_features: int, y_bits: int | None, outputs: int,
              local_rows: tuple[int, ...] = ()) -> Scales:
    """The range analysis of a DP run (module docstring); ``ValueError`` naming the options if it cannot fit.
    ``n_features``: raw; ``local_rows``: each holder's rows (for ``dp_local_epochs``)."""
    if outputs != 1:
        raise ValueError(f"differential privacy (dp_epsilon/dp_noise_multiplier) fits one model: y must have two "
                         f"classes (or be a regression target), got {outputs} outputs")
    dp = dp_plan(config, n_rows, n_features, local_rows)
    n_features = config.dp_projection or n_features
    rng = _named(clip_range, dp.config, n_features)
    f, players = config.frac_bits, len(config.players)
    d = n_features + int(config.fit_intercept)
    noise = players * GAUSSIAN_MAX * dp.config.party_sigma(players)
    log_fail = FAILURE_BITS * math.log(2.0)
    mean = dp.sampling_rate * n_rows
    per_step = min(float(n_rows), mean + _tail(mean, log_fail + math.log(dp.steps)))
    C = config.dp_clip
    weight = _weight_bound(dp.step_size, C, mean, dp.steps, n_rows, d, noise)
    # the local models (central noise sigma C from one source each) bound their row-weighted average
    local_noise = GAUSSIAN_MAX * dp.config.noise_multiplier * C
    weight += max((_weight_bound(dp.step_size, C, q * rows, steps, rows, d, local_noise)
                   for (q, steps), rows in zip(dp.local, local_rows)), default=0.0)
    z = math.sqrt(rng.max_row_sq) * weight
    product = 2.0 ** (RING_SAFE_BITS - 2 * f)
    y_max = 1.0 if config.loss == "logistic" else 2.0 ** (y_bits if y_bits is not None else 0)
    bound_max = rng.effective_clip * (1.0 if config.fit_intercept else 2.0 ** (f / 2))
    residual = 1.0 if config.loss == "logistic" else z + y_max
    inputs = SIGMOID_METHODS[config.sigmoid].ring_safe(f) if config.loss == "logistic" else product
    checks = {
        "the products X_B w": (z, min(product, inputs)),
        "the clamp of the residuals": (residual + bound_max, product),
        "the clipped sum X_B^T u": (per_step * C, product),
        "the noisy update": ((per_step * C + noise) * dp.step_size, 2.0 ** (RING_SAFE_BITS - f - STEP_BITS)),
    }
    for what, (value, limit) in checks.items():
        if value >= limit:
            raise ValueError(
                f"differential privacy: {what} could reach {value:.4g}, beyond the ring's {limit:.4g} at frac_bits={f} "
                f"(weights up to {weight:.4g} after {dp.steps} steps with dp_clip={C}, learning_rate="
                f"{config.learning_rate}, batch_size={config.batch_size}, noise {noise:.4g} per step, "
                f"dp_feature_bound={config.dp_feature_bound}): lower learning_rate, epochs or dp_feature_bound"
            )
    return Scales(magnitude_bits(dp.config.feature_bound), 0, weight, weight, product, inputs,
                  2.0 ** (RING_SAFE_BITS - f - STEP_BITS))


def train_private(session: Session, xs: SharedTensor, ys: SharedTensor, config: RegressionConfig, dp: DPPlan,
                  seed: bytes, on_epoch: Callable[[int], None], init: SharedTensor | None = None) -> SharedTensor:
    """DP-SGD on the shared data (``ys`` ``(n, 1)``) for the plan ``dp``, from ``init`` (the shared local
    average, or zeros); the shared ``(d, 1)`` weights. ``on_epoch(e)`` after the step that completes expected
    pass ``e`` (step ``ceil((e + 1) steps / epochs) - 1``)."""
    ends = {math.ceil((e + 1) * dp.steps / config.epochs) - 1: e for e in range(config.epochs)}

    def on_step(step: int) -> None:
        if step in ends:
            on_epoch(ends[step])

    w = train_dp_sgd(session, xs, ys.reshape(-1), dp, seed, on_step=on_step,
                     init=init.reshape(-1) if init is not None else None)
    return w.reshape(-1, 1)


def _local_randomness(config: RegressionConfig, holder: str) -> tuple[bytes, NoiseSource]:
    """A holder's local Poisson seed and noise source: fresh from the CSPRNG, or (tests) derived from the
    ``dp_noise_seed`` hook (domain-separated from the compute parties' noise)."""
    hook = config.dp_noise_seed
    if hook is None:
        return new_seed(), NoiseSource()
    sample = hashlib.sha256(b"mpcml.regression.local-batches" + hook + holder.encode()).digest()
    noise = party_noise_sources(hashlib.sha256(b"mpcml.regression.local-noise" + hook).digest(), [holder])[holder]
    return sample, noise


def local_init(config: RegressionConfig, dp: DPPlan, X: np.ndarray, y: np.ndarray, holder: str) -> np.ndarray:
    """A holder's share of the initial weights, ``(n_h / n) w_h`` (``(d, 1)``, intercept last): its local DP-SGD
    model (:func:`protocols.dp_sgd.local_dp_model`) on its (projected) rows, weighted by its row count."""
    w = local_dp_model(X, np.asarray(y, dtype=np.float64).reshape(-1), dp, config.holders.index(holder),
                       *_local_randomness(config, holder))
    return (w * (X.shape[0] / dp.n_rows)).reshape(-1, 1)


def plaintext_dp_fit(X: np.ndarray, y: np.ndarray, config: RegressionConfig, seed: bytes, *, noise: bool = True,
                     local_rows: tuple[int, ...] = ()) -> np.ndarray:
    """The weights (intercept last) of the same DP run in float64 (:func:`protocols.dp_sgd.plaintext_dp_sgd`):
    the same Poisson batches from ``seed``, the same sigmoid approximation and, when ``config.dp_noise_seed`` is
    set, the compute parties' very noise draws (else fresh CSPRNG noise of the same per-party law; none with
    ``noise=False``). With ``dp_projection`` the rows are projected and the returned weights mapped back
    (``P w``); with ``dp_local_epochs`` the holders' blocks are ``local_rows`` consecutive rows of ``X`` and
    the run starts from their local models' average (the holders' own randomness under the hook)."""
    P = projection(config, X.shape[1])
    dp = dp_plan(config, X.shape[0], X.shape[1], local_rows)
    X = X @ P if P is not None else X
    y = np.asarray(y, dtype=np.float64)
    init = None
    if config.dp_local_epochs:
        edges = np.cumsum((0, *local_rows))
        blocks = [(X[a:b], y[a:b]) for a, b in zip(edges[:-1], edges[1:])]
        seeds, sources = zip(*(_local_randomness(config, h) for h in config.holders))
        init = local_dp_models(blocks, dp, seeds, sources).average
    sigma = dp.config.party_sigma(len(config.players))
    sources = party_noise_sources(config.dp_noise_seed, config.players)
    activation = SIGMOID_METHODS[config.sigmoid].plain if config.loss == "logistic" else None
    draws = [(sources[p], sigma) for p in config.players] if noise else []
    w = plaintext_dp_sgd(X, y, dp, seed, noise=draws, activation=activation, init=init)
    if P is not None:
        w = np.concatenate([P @ w[:P.shape[1]], w[P.shape[1]:]])
    return w


def noise_step(config: RegressionConfig, n_rows: int, n_weights: int) -> float:
    """A bound on one step's noise move ``(eta / B) ||N_t||_2`` (the ``step_error`` of
    :func:`protocols.dp_sgd.replay_tolerance` against a noiseless replay), failing with probability below
    ``exp(-24.5)`` per step: ``||N_t|| <= sigma_total (sqrt(d) + 7)`` (Gaussian concentration of the norm,
    a 1-Lipschitz function, around its mean ``<= sigma_total sqrt(d)``)."""
    dp = dp_plan(config, n_rows)
    players = len(config.players)
    total_sigma = math.sqrt(players) * dp.config.party_sigma(players)
    return dp.step_size * total_sigma * (math.sqrt(n_weights) + 7.0)
