"""Differentially private SGD inside secret sharing for linear and logistic regression (PEA building blocks).

Ruan, Xu, Fang et al., "Private, Efficient, and Accurate: Protecting Models Trained by Multi-party
Learning with Differential Privacy" (IEEE S&P 2023; PEA) run DP-SGD (Abadi et al., CCS 2016)
inside a secret-sharing framework so that the *released model* is differentially private, not only
the computation secure. One step, with Poisson rate ``q = B / n`` and expected batch size ``B``:

    g_i = e_i x_i,  e_i = act(x_i . w) - y_i           per-example gradient of a GLM (x_i with the 1 of the intercept)
    f_i = min(1, C' / ||g_i||)                          clipping factor (C' <= C: see "precision" below)
    w  <- w - (eta / B) (sum_i f_i g_i + sum_p N_p),    N_p ~ N(0, sigma_p^2 I) drawn by compute party p

**Clipping a GLM costs a clamp.** ``||g_i|| = |e_i| ||x_i||``, so ``f_i e_i = clamp(e_i, -b_i, b_i)`` with
``b_i = C' / ||x_i||``: the per-row norms and the secure inverse square root are needed once per data
set (:func:`clip_bounds`: ``b_i = C' inv_sqrt(||x_i||^2)``), and each step takes one batched secure
comparison of ``e_i`` with ``-b_i`` and ``b_i`` and one product (:func:`clamp`: the secure min and max),
then ``sum_i f_i g_i = X_B^T (f * e)`` by one masked product (:class:`~mpcml.masked.MaskedMatrix`), as
in the non-private step: O(B + d) communication, where explicit per-example gradients cost O(B d).
For models whose gradient does not factor, :func:`clip_rows` clips an explicit shared ``B x d``
gradient matrix: per-row squared norms, ``min(1, C' / ||G_i||) = inv_sqrt(max(||G_i / C'||^2, 1))``
(the secure max with 1 is the min of the factor with 1 and keeps the input in the inverse square
root's range), every step.

**Noise and collusion.** Each compute party ``p`` draws ``N_p ~ N(0, sigma_p^2 I)`` from its own
CSPRNG (:class:`mpcml.dp.NoiseSource`, Box-Muller on AES-CTR) and secret-shares it; only the sum of
all ``n`` parties' noise is ever part of a shared value. A coalition of ``t`` colluding compute
parties knows its own ``t`` draws and can subtract them from the released model; what survives is the
honest parties' ``N(0, (n - t) sigma_p^2 I)``. With ``sigma_p = sigma C / sqrt(n - t)``
(:func:`mpcml.dp.share_sigma`, the calibration of HybridAlpha's ``DPConfig.party_sigma`` and of PEA's
per-party noise) that is ``N(0, sigma^2 C^2 I)``: the accountant's mechanism, against any coalition of at
most ``t`` compute parties (default ``t = n - 1``: every party adds ``sigma C``; the total noise is then
``sqrt(n)`` times the central one, the price of trusting nobody with the noise). Observers outside the
compute parties face the total noise, at least as much.

**Sampling.** Poisson sampling (:func:`poisson_batches`: each row independently with probability
``q``, from a CSPRNG stream keyed by a seed the compute parties agree on), as the accountant
(:mod:`mpcml.accounting`) assumes; the noisy sum is divided by the public expected batch size ``B``,
never by the realised one. Shuffled fixed-size batches are not offered under DP: the Poisson RDP bound
is not a proof for them.

**Range and precision.** From the public ``feature_bound`` (``|x_ij| <= b``; each holder checks its
block, :func:`check_feature_bound`) ``||x_i||^2 <= d b^2 + 1`` must fit the inverse square root's range
(:func:`clip_range` raises otherwise, naming the parameters, before any message). ``C'``
(:func:`glm_effective_clip`) is ``C`` shrunk by the worst-case fixed-point error of ``b_i`` and of the
sums, so that every record's contribution to the shared sum has L2 norm at most ``C`` (the sensitivity
the noise is calibrated for), not merely about ``C``. The logistic loss takes a sigmoid approximation
that is bounded everywhere ("linear", "secureml", "spline"), so residuals never leave the ring's range.

Threat model: semi-honest compute parties, at most ``t`` of them colluding for the DP guarantee and
fewer than all of them for the secrecy of the shares; the dealer (the default triple source) colludes
with none. What each role learns: the compute parties, the shapes, the Poisson batch indices and sizes
(the dealer too, through the masked products' requests) and the outputs they are given. The released
model is ``(epsilon, delta)``-DP (:class:`DPPlan`) towards anyone who does not know the batch indices;
towards a party that knows them (a compute party or the dealer) the subsampling amplification is lost
and the guarantee is :func:`epsilon_known_batches` (composition over the steps a record was in).

**Test hook** (tests only): ``noise_seed`` in :class:`DPSGDConfig` keys each party's noise stream from
a public seed (:func:`party_noise_sources`) so that :func:`plaintext_dp_sgd` can replay the same noise;
without it every party keys its stream from ``os.urandom``.

PEA's accuracy aids (plaintext side, :func:`local_dp_models`, :func:`random_projection`) are at the end; the
regression estimators offer them as ``dp_local_epochs`` and ``dp_projection`` (:mod:`protocols.regression.privacy`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
from scipy.special import expit

from mpcml import fixedpoint
from mpcml import nonlinear as nl
from mpcml.accounting import RdpAccountant, noise_multiplier_for_run
from mpcml.csprng import SEED_BYTES, Csprng
from mpcml.dp import NoiseSource, share_sigma
from mpcml.masked import MaskedMatrix
from mpcml.tensor import SharedTensor
from mpcml.session import Session
from protocols.common import check_int, check_matrix, check_number
from protocols.config import ProtocolConfig, boolean, integer, number, one_of, option, optional

logger = logging.getLogger(__name__)

LOSSES = ("squared", "logistic")
_STEP_BITS = 30  # fractional bits of the public step size eta / B in the update


# --- configuration and the privacy plan ------------------------------------------------------


BOUNDED_SIGMOIDS = tuple(name for name, method in nl.SIGMOID_METHODS.items() if method.bounded)
"""Sigmoid approximations whose values stay in [0, 1] for every input, so residuals stay in [-1, 1]."""


def check_noise_seed(name: str, value: object) -> bytes | None:
    """The test hook's seed: ``SEED_BYTES`` bytes or ``None``."""
    if value is not None and (not isinstance(value, bytes) or len(value) != SEED_BYTES):
        raise ValueError(f"{name} must be {SEED_BYTES} bytes or None")
    return value


@dataclass(frozen=True)
class DPSGDConfig(ProtocolConfig):
    """Every public parameter of a DP-SGD run (the same at every party).

    Give ``epsilon`` (the noise multiplier is then the smallest meeting it), ``noise_multiplier``
    (``epsilon`` is then what the accountant charges), or both (the run is refused if it would spend
    more than ``epsilon``). ``epochs`` is the expected number of passes: ``steps = ceil(epochs n / B)``.
    ``noise_seed`` is the test hook of the module docstring, not an option.
    """

    loss: str = option("logistic", "`logistic` (a bounded sigmoid approximation) or `squared`", one_of(*LOSSES))
    clip: float = option(1.0, "L2 norm C each example's gradient is clipped to", number())
    feature_bound: float = option(16.0, "public bound on the magnitude of every feature value; each holder checks "
                                  "its block", number())
    epsilon: float | None = option(None, "privacy budget epsilon (none: charged from noise_multiplier)",
                                   optional(number()))
    noise_multiplier: float | None = option(None, "noise sigma / C (none: the smallest meeting epsilon)",
                                            optional(number()))
    delta: float = option(1e-5, "delta of (epsilon, delta)-DP", number(high=0.5))
    expected_batch_size: int = option(64, "expected Poisson batch B = q n; the noisy sum is divided by it",
                                      integer(1))
    epochs: float = option(10.0, "expected passes over the data: ceil(epochs n / B) steps", number())
    learning_rate: float = option(0.1, "step size eta", number(high=1024))
    fit_intercept: bool = option(True, "learn an intercept (a public column of ones; clipped with the rest)", boolean)
    sigmoid: str = option("linear", f"sigmoid approximation bounded everywhere, one of {list(BOUNDED_SIGMOIDS)}",
                          one_of(*BOUNDED_SIGMOIDS))
    colluders: int | None = option(None, "compute parties that may collude against the noise (none: all but one)",
                                   optional(integer(0)))
    frac_bits: int = option(fixedpoint.DEFAULT_FRAC_BITS, "fractional bits of the fixed-point encoding",
                            integer(8, 32))
    noise_seed: bytes | None = field(default=None, repr=False, metadata={"check": check_noise_seed})

    def validate(self) -> None:
        if self.epsilon is None and self.noise_multiplier is None:
            raise ValueError("give epsilon (a privacy budget) or noise_multiplier (or both)")

    def party_sigma(self, n_players: int) -> float:
        """Each compute party's noise standard deviation ``sigma C / sqrt(n - t)`` (see the module docstring)."""
        check_int("n_players", n_players, 2)
        t = n_players - 1 if self.colluders is None else self.colluders
        if t >= n_players:
            raise ValueError(f"colluders must be below the number of compute parties {n_players}, got {t}")
        if self.noise_multiplier is None:
            raise ValueError("party_sigma needs the noise multiplier: use DPPlan.config")
        return share_sigma(self.noise_multiplier * self.clip, n_players - t)


@dataclass(frozen=True)
class DPPlan:
    """The run's sampling and its privacy: ``config`` has the resolved noise multiplier; ``local``
    the ``(sampling_rate, steps)`` of each holder's local phase (:func:`local_dp_models`), if any."""

    config: DPSGDConfig
    n_rows: int
    sampling_rate: float
    steps: int
    epsilon: float
    local: tuple[tuple[float, int], ...] = ()

    @property
    def step_size(self) -> float:
        """``eta / B``: the noisy sum is divided by the public expected batch size."""
        return self.config.learning_rate / self.config.expected_batch_size

    def accountant(self, noise_multiplier: float | None = None) -> RdpAccountant:
        """RDP of the whole run: the global steps plus the worst holder's local phase."""
        sigma = self.config.noise_multiplier if noise_multiplier is None else noise_multiplier
        local = [RdpAccountant().compose(q, sigma, steps) for q, steps in self.local]
        return RdpAccountant().compose(self.sampling_rate, sigma, self.steps).compose_worst(local)


def _phase(config: DPSGDConfig, n_rows: int, epochs: float, what: str) -> tuple[float, int]:
    if config.expected_batch_size > n_rows:
        raise ValueError(f"expected_batch_size={config.expected_batch_size} exceeds the {n_rows} rows of {what}")
    return config.expected_batch_size / n_rows, math.ceil(epochs * n_rows / config.expected_batch_size)


def plan(config: DPSGDConfig, n_rows: int, *, local_rows: Sequence[int] = (), local_epochs: float = 0.0) -> DPPlan:
    """Resolve the noise multiplier (or check the budget) for ``n_rows`` training rows, plus, with
    ``local_rows`` (each holder's row count) and ``local_epochs``, the local phases of
    :func:`local_dp_models` at the same noise multiplier."""
    n_rows = check_int("n_rows", n_rows, 1)
    q, steps = _phase(config, n_rows, config.epochs, "the training data")
    local: tuple[tuple[float, int], ...] = ()
    if len(local_rows):
        check_number("local_epochs", local_epochs)
        local = tuple(_phase(config, check_int("local_rows", r, 1), local_epochs, "a holder") for r in local_rows)
    draft = DPPlan(config, n_rows, q, steps, math.inf, local)
    sigma = config.noise_multiplier
    if sigma is None:
        sigma = noise_multiplier_for_run(config.epsilon, config.delta, draft.accountant)
        config = dataclasses.replace(config, noise_multiplier=sigma)
    spent = draft.accountant(sigma).epsilon(config.delta)
    if config.epsilon is not None and spent > config.epsilon:
        raise ValueError(
            f"noise_multiplier={sigma}, expected_batch_size={config.expected_batch_size} of {n_rows} rows "
            f"(sampling_rate={q:.4g}), epochs={config.epochs} ({steps} steps)"
            + (f" and local_epochs={local_epochs} at {len(local)} holders" if local else "")
            + f" spend epsilon={spent:.4g} at delta={config.delta}, above the budget epsilon={config.epsilon}"
        )
    logger.info("DP-SGD plan: q=%.4g, %d steps, noise multiplier %.4g, epsilon %.4g", q, steps, sigma, spent)
    return DPPlan(config, n_rows, q, steps, spent, local)


def poisson_batches(seed: bytes, n_rows: int, sampling_rate: float, steps: int) -> Iterator[np.ndarray]:
    """Row indices of each step: every row independently with probability ``sampling_rate``
    (53-bit CSPRNG uniforms from ``Csprng(seed)``; a batch may be empty)."""
    uniforms = NoiseSource(Csprng(seed))
    for _ in range(steps):
        yield np.flatnonzero(uniforms.uniform(n_rows) < sampling_rate)


def epsilon_known_batches(batches: Sequence[np.ndarray], n_rows: int, noise_multiplier: float, delta: float) -> float:
    """``epsilon`` towards an observer who knows the batches: the Gaussian mechanism composed over the
    largest number of steps any one row took part in (no amplification by subsampling)."""
    counts = np.bincount(np.concatenate([np.asarray(b, dtype=np.int64) for b in batches] or [np.zeros(0, np.int64)]),
                         minlength=n_rows)
    return RdpAccountant().compose(1.0, noise_multiplier, int(counts.max())).epsilon(delta)


def party_noise_sources(seed: bytes | None, players: Sequence[str]) -> dict[str, NoiseSource]:
    """Each compute party's noise stream: keyed from ``os.urandom`` (``seed=None``, the real path), or,
    in tests only, from ``sha256(seed || party id)`` so the noise can be replayed."""
    if seed is None:
        return {p: NoiseSource() for p in players}
    return {p: NoiseSource(Csprng(hashlib.sha256(b"mpcml.dp_sgd.noise" + seed + p.encode()).digest())) for p in players}


# --- range analysis -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipRange:
    """Public bounds of the GLM clipping (see :func:`clip_range`): the effective clip ``C'``, the largest
    ``||x_i||^2`` and the inverse square root's input range ``[2^lo, 2^hi)``."""

    effective_clip: float
    max_row_sq: float
    lo: int
    hi: int


def check_feature_bound(X: np.ndarray, bound: float, name: str = "X") -> np.ndarray:
    """A holder's check, before sharing, that its block respects the public ``feature_bound``."""
    X = check_matrix(X, name)
    worst = float(np.max(np.abs(X)))
    if worst > bound:
        raise ValueError(f"{name} has a value of magnitude {worst:.4g} above feature_bound={bound}")
    return X


def _exponent(value: float) -> int:
    """``hi`` with ``2^(hi - 1) <= value < 2^hi`` (at least 1)."""
    return max(1, math.floor(math.log2(value)) + 1)


def glm_effective_clip(clip: float, max_row_norm: float, n_weights: int, frac_bits: int) -> float:
    """``C' <= C`` such that every record's contribution ``clamp(e_i, -b_i, b_i) x_i`` to the shared sum
    has L2 norm at most ``C``, whatever the fixed-point errors.

    With ``U = 2^-f``: ``b_i = C' inv_sqrt(||x_i||^2)`` is at most ``C' / ||x_i|| (1 + 2^(4-f)) + C' 2^(1-f)
    + U`` (the error bound of :func:`mpcml.nonlinear.inv_sqrt`, measured below half of it, and the
    truncation of the product with ``C'``); the clamp's two products add at most ``2 U``. So a
    contribution's norm is at most ``C' (1 + 2^(4-f)) + (C' 2^(1-f) + 3 U) X`` (``X``: the largest row
    norm), and the shared sum's final truncation moves by at most two units per coordinate between
    neighbouring data sets (``2 sqrt(d) U``). Solving for the bound ``C``:
    ``C' = (C - 2 sqrt(d) U - 3 U X) / (1 + 2^(4-f) + 2^(1-f) X)``.
    """
    ulp = 2.0**-frac_bits
    return (clip - 2 * math.sqrt(n_weights) * ulp - 3 * ulp * max_row_norm) / (1 + 16 * ulp + 2 * ulp * max_row_norm)


def clip_range(config: DPSGDConfig, n_features: int) -> ClipRange:
    """The GLM clipping's public bounds, or a ``ValueError`` naming the parameters."""
    n_features = check_int("n_features", n_features, 1)
    f = config.frac_bits
    max_row_sq = n_features * config.feature_bound**2 + float(config.fit_intercept)
    # with the intercept every ||x_i||^2 >= 1; without it zero rows are lifted to 2^-f (they add nothing)
    lo = 0 if config.fit_intercept else -f
    hi = _exponent(max_row_sq)
    if f + hi - lo > 61 or 2 * f + hi > 62:
        raise ValueError(
            f"||x_i||^2 up to {max_row_sq:.4g} (feature_bound={config.feature_bound}, {n_features} features) does "
            f"not fit the inverse square root at frac_bits={f} (need frac_bits + hi - lo <= 61 for the range "
            f"[2^{lo}, 2^{hi})): lower feature_bound or frac_bits"
        )
    c_eff = glm_effective_clip(config.clip, math.sqrt(max_row_sq), n_features + int(config.fit_intercept), f)
    if c_eff <= 0.5 * config.clip:
        raise ValueError(f"clip={config.clip} is too small for the fixed-point errors at frac_bits={f} "
                         f"(effective clip {c_eff:.4g}): raise clip or frac_bits")
    return ClipRange(c_eff, max_row_sq, lo, hi)


def explicit_effective_clip(clip: float, max_norm: float, n_weights: int, frac_bits: int) -> tuple[float, int]:
    """``(C', hi)`` for :func:`clip_rows` on gradients of norm below the public ``max_norm``.

    ``s = ||G_i C'^-1||^2`` is computed with at most ``(2 sqrt(d) + d) U`` relative error for ``s >= 1``
    (the scaling's and the squares' truncations), the factor ``inv_sqrt(max(s, 1))`` with at most half of
    it plus ``2^(4-f)`` relative and ``2^(1-f)`` absolute, and each product ``f_i G_ij`` one unit. So a
    clipped row's norm is at most ``C' (1 + 2^(4-f) + (sqrt(d) + d / 2) U) + 2^(1-f) G + sqrt(d) U``
    (``G = max_norm``), and ``C'`` solves that for ``C``; ``hi`` bounds ``s`` by ``(G / C')^2 < 2^hi``.
    """
    ulp = 2.0**-frac_bits
    d = n_weights
    c_eff = (clip - 2 * ulp * max_norm - math.sqrt(d) * ulp) / (1 + 16 * ulp + (math.sqrt(d) + d / 2) * ulp)
    hi = _exponent((max_norm / c_eff) ** 2)
    if c_eff <= 0.5 * clip or 2 * frac_bits + hi > 62:
        raise ValueError(f"clip={clip} and max_norm={max_norm} do not fit {frac_bits} fractional bits")
    return c_eff, hi


# --- secure building blocks ---------------------------------------------------------------------


def clamp(x: SharedTensor, bound: float | SharedTensor) -> SharedTensor:
    """``clip(x, -bound, bound)`` (``bound`` public or shared, non-negative): one batched comparison of
    ``x + bound`` and ``bound - x`` with 0, then ``x + [x < -b] (-b - x) + [x > b] (b - x)`` (one product
    round; at most one unit of error per product). A candidate for :mod:`mpcml.nonlinear`."""
    below_above = nl.ltz(SharedTensor.stack([x + bound, bound - x]))
    fix = below_above * SharedTensor.stack([-x - bound, bound - x])
    return x + fix[0] + fix[1]


def row_sq_norms(x: SharedTensor) -> SharedTensor:
    """``||x_i||^2`` of each row of a shared matrix: one product round over all entries."""
    return (x * x).sum(axis=1)


def clip_bounds(row_sq: SharedTensor, rng: ClipRange) -> SharedTensor:
    """``b_i = C' / ||x_i||`` from the squared row norms: one secure inverse square root per data set."""
    if rng.lo < 0:
        row_sq = nl.maximum(row_sq, 2.0**rng.lo)
    return nl.inv_sqrt(row_sq, lo=rng.lo, hi=rng.hi) * rng.effective_clip


def glm_clipped_sum(masked: MaskedMatrix, rows: np.ndarray, e: SharedTensor, bounds: SharedTensor) -> SharedTensor:
    """``sum_{i in rows} min(1, C' / (|e_i| ||x_i||)) e_i x_i = X_B^T clamp(e, -b_B, b_B)``.

    ``bounds``: :func:`clip_bounds` of all rows; ``e``: the batch's residuals.
    """
    return masked.t_matmul(clamp(e, bounds[rows]), rows)


def per_example_gradients(x_batch: SharedTensor, e: SharedTensor) -> SharedTensor:
    """``G_i = e_i x_i`` explicitly (``B x d``, one product round): the input :func:`clip_rows` clips;
    GLM training does not need it (:func:`glm_clipped_sum`)."""
    return x_batch * e.reshape(-1, 1)


def clip_rows(grads: SharedTensor, clip: float, max_norm: float) -> SharedTensor:
    """``min(1, C' / ||G_i||) G_i`` for every row of an explicit shared ``B x d`` per-example gradient matrix
    whose row norms are below the public ``max_norm`` (``C'``: :func:`explicit_effective_clip`). Two
    Newton iterations: from the initial guess's 0.0223 relative error they reach ~1e-6, below the unit.
    """
    c_eff, hi = explicit_effective_clip(clip, max_norm, grads.shape[1], grads.session.frac_bits)
    # 1. s_i = ||G_i / C'||^2 (a public product, then the squares)
    scaled_sq = row_sq_norms(grads * (1.0 / c_eff))
    # 2. f_i = inv_sqrt(max(s_i, 1)) = min(1, C' / ||G_i||)
    factors = nl.inv_sqrt(nl.maximum(scaled_sq, 1.0), lo=0, hi=hi, iterations=2)
    # 3. f_i G_i
    return grads * factors.reshape(-1, 1)


def add_party_noise(total: SharedTensor, sigma_party: float, sources: dict[str, NoiseSource]) -> SharedTensor:
    """``total + sum_p N_p``: every compute party secret-shares its own ``N(0, sigma_party^2)`` draw
    (only this party's source is used here; the others' entries are ignored)."""
    session = total.session
    me = session.party.id
    for owner in session.players:
        noise = sources[me].gaussian(total.shape, sigma_party) if owner == me else None
        total = total + session.input(noise, owner, name=f"noise of {owner!r}")
    return total


def _step(session: Session, w: SharedTensor, noisy_sum: SharedTensor, step_size: float) -> SharedTensor:
    """``w - step_size * noisy_sum`` with the step carried at _STEP_BITS fractional bits (one truncation)."""
    k = np.uint64(round(step_size * 2.0**_STEP_BITS))
    return SharedTensor(session, w.share - session.truncate(noisy_sum.share * k, _STEP_BITS))


def train_dp_sgd(
    session: Session,
    xs: SharedTensor,
    ys: SharedTensor,
    dp: DPPlan,
    sample_seed: bytes,
    *,
    row_sq: SharedTensor | None = None,
    init: SharedTensor | None = None,
    on_step: Callable[[int], None] | None = None,
) -> SharedTensor:
    """DP-SGD on shared ``xs`` (``n x d``, the intercept's column of ones included when fitted) and
    ``ys``; returns the shared weights. ``row_sq``: the rows' squared norms if the holders supplied
    them (sums of their local partial norms), else computed here; ``init``: starting weights;
    ``on_step(t)``: called after step ``t`` (progress).
    """
    config = dp.config
    if xs.ndim != 2 or ys.shape != (xs.shape[0],):
        raise ValueError(f"xs must be n x d and ys of length n, got shapes {xs.shape} and {ys.shape}")
    n, d = xs.shape
    if n != dp.n_rows:
        raise ValueError(f"xs has {n} rows but the plan is for {dp.n_rows}")
    rng = clip_range(config, d - int(config.fit_intercept))
    sources = party_noise_sources(config.noise_seed, session.players)
    sigma_party = config.party_sigma(len(session.players))
    # 1. once: the masked matrix and the clipping bounds b_i = C' / ||x_i||
    masked = MaskedMatrix(xs)
    bounds = clip_bounds(row_sq if row_sq is not None else row_sq_norms(xs), rng)
    w = init if init is not None else session.zeros(d)
    # the dealer's randomness for a step is requested a step ahead, keyed by the batch size (Session.prefetched)
    batches = ((("step", rows.size), rows) for rows in poisson_batches(sample_seed, n, dp.sampling_rate, dp.steps))
    steps = session.prefetched(batches)
    for step, (_, rows) in enumerate(steps):
        # 2. the Poisson batch: e = act(X_B w) - y_B and the clipped sum X_B^T clamp(e, -b_B, b_B)
        if rows.size:
            z = masked.matmul(w, rows)
            e = (nl.sigmoid(z, method=config.sigmoid) if config.loss == "logistic" else z) - ys[rows]
            total = glm_clipped_sum(masked, rows, e, bounds)
        else:
            total = session.zeros(d)
        # 3. every party shares its noise draw; w <- w - (eta / B) (clipped sum + noise)
        w = _step(session, w, add_party_noise(total, sigma_party, sources), dp.step_size)
        if on_step is not None:
            on_step(step)
    steps.close()
    masked.release()
    return w


# --- the plaintext reference ----------------------------------------------------------------------


def plaintext_dp_sgd(
    X: np.ndarray,
    y: np.ndarray,
    dp: DPPlan,
    sample_seed: bytes,
    *,
    noise: Sequence[tuple[NoiseSource, float]] | None = None,
    activation: Callable[[np.ndarray], np.ndarray] | None = None,
    init: np.ndarray | None = None,
) -> np.ndarray:
    """The same DP-SGD in float64 numpy: same Poisson batches, clipping at ``C'`` and step.

    ``X`` without the intercept column; returns the weights (the intercept last when fitted).
    ``noise``: ``(source, std)`` pairs drawn in order each step (the compute parties' draws, for a
    replay); default one fresh CSPRNG source of ``sigma C`` (central DP-SGD). ``activation``:
    default the exact logistic function (the secure run uses ``config.sigmoid``'s approximation).
    """
    config = dp.config
    X = check_feature_bound(X, config.feature_bound)
    if config.fit_intercept:
        X = np.hstack([X, np.ones((X.shape[0], 1))])
    n, d = X.shape
    if n != dp.n_rows:
        raise ValueError(f"X has {n} rows but the plan is for {dp.n_rows}")
    rng = clip_range(config, d - int(config.fit_intercept))
    act = (activation or expit) if config.loss == "logistic" else (lambda z: z)
    noise = noise if noise is not None else [(NoiseSource(), config.noise_multiplier * config.clip)]
    norms = np.linalg.norm(X, axis=1)
    w = np.zeros(d) if init is None else np.asarray(init, dtype=np.float64).copy()
    for rows in poisson_batches(sample_seed, n, dp.sampling_rate, dp.steps):
        e = act(X[rows] @ w) - y[rows]
        grad_norms = np.abs(e) * norms[rows]
        factors = np.minimum(1.0, rng.effective_clip / np.maximum(grad_norms, 1e-300))
        total = X[rows].T @ (factors * e) + sum(source.gaussian(d, std) for source, std in noise)
        w = w - dp.step_size * total
    return w


def replay_tolerance(X: np.ndarray, dp: DPPlan, n_players: int, sample_seed: bytes, *, step_error: float = 0.0,
                     initial_error: float = 0.0) -> float:
    """Bound on ``||w_secure - w_replay||_2`` between :func:`train_dp_sgd` and :func:`plaintext_dp_sgd` with
    the same batches, noise draws and sigmoid approximation, from the fixed-point unit ``U = 2^-f``.

    ``X`` without the intercept column. The map ``w -> w - s X_B^T u(act(X_B w) - y)`` is a gradient step
    of a convex function (``u(e) = clamp(e, -b_i, b_i)`` is monotone and 1-Lipschitz, and so is ``act`` up
    to its largest slope ``a``) with Lipschitz constant ``L <= a ||X_B||_2^2``, so it is Lipschitz with
    constant ``max(1, s L - 1)`` (1: non-expansive while ``s L <= 2``): an earlier error is multiplied by
    that factor and each step adds its fresh error:
      ``du_i <= a U`` (z's truncation) ``+ units U`` (the secure sigmoid against its plain version)
              ``+ C' 18 U + U`` (``b_i``: ``inv_sqrt``'s ``2^(4-f)`` relative error of ``1 / ||x_i|| <= 1``,
              its ``2^(1-f)`` absolute error, the product with ``C'``) ``+ 2 U`` (the clamp's products);
      ``fresh <= s ||X_B||_2 sqrt(|B|) max du + sqrt(d) (s U`` (``X_B^T u``'s truncation) ``+ s n U / 2``
              (each party's noise rounded once) ``+ U)`` (the update's truncation) ``+ step_error``
              (a further per-step difference the caller bounds, e.g. noise draws it cannot replay);
      ``initial_error``: the starting weights' difference (e.g. a shared initialisation's encoding).
    """
    config = dp.config
    U = 2.0**-config.frac_bits
    method = nl.SIGMOID_METHODS[config.sigmoid] if config.loss == "logistic" else None
    grid = np.linspace(-64.0, 64.0, 1 << 16)
    slope = float(np.max(np.diff(method.plain(grid)) / np.diff(grid))) if method is not None else 1.0
    units = method.units if method is not None else 0.0
    c_eff = clip_range(config, X.shape[1]).effective_clip
    du = slope * U + units * U + c_eff * 18 * U + U + 2 * U
    Xb = np.hstack([X, np.ones((X.shape[0], 1))]) if config.fit_intercept else np.asarray(X)
    d, s = Xb.shape[1], dp.step_size
    total = initial_error
    for rows in poisson_batches(sample_seed, X.shape[0], dp.sampling_rate, dp.steps):
        spectral = np.linalg.norm(Xb[rows], 2) if rows.size else 0.0
        fresh = s * spectral * math.sqrt(rows.size) * du + math.sqrt(d) * (s * U + s * n_players * U / 2 + U)
        total = total * max(1.0, s * slope * spectral**2 - 1.0) + fresh + step_error
    return total


# --- PEA's accuracy aids (plaintext side) ---------------------------------------------------------


@dataclass(frozen=True)
class LocalModels:
    """Each holder's DP-SGD model on its own rows and their row-weighted average."""

    models: list[np.ndarray]
    average: np.ndarray


def local_dp_model(X: np.ndarray, y: np.ndarray, dp: DPPlan, holder: int, seed: bytes,
                   noise: NoiseSource | None = None) -> np.ndarray:
    """One holder's local phase ``dp.local[holder]`` (:func:`local_dp_models`): DP-SGD on its rows alone with
    central noise ``sigma C`` from ``noise`` (default a fresh CSPRNG source), Poisson batches from ``seed``."""
    q, steps = dp.local[holder]
    draws = [(noise if noise is not None else NoiseSource(), dp.config.noise_multiplier * dp.config.clip)]
    return plaintext_dp_sgd(X, y, DPPlan(dp.config, X.shape[0], q, steps, dp.epsilon), seed, noise=draws)


def local_dp_models(blocks: Sequence[tuple[np.ndarray, np.ndarray]], dp: DPPlan, seeds: Sequence[bytes],
                    noise: Sequence[NoiseSource] | None = None) -> LocalModels:
    """PEA's local-data-based initialisation (horizontal split): each holder runs DP-SGD on its rows
    alone, for the local phase ``dp.local`` planned by :func:`plan` (same noise multiplier, central
    noise ``sigma C``: the holder is its own curator; ``noise``: each holder's source, default fresh
    CSPRNG ones); the global run starts from the average of the local models weighted by row counts.

    The local models are themselves DP (PEA's argument needs it: an initialisation fitted without
    noise would leak into the released model). Every record is in one holder's data only, so the
    run is charged the worst holder's local RDP plus the global RDP (:meth:`DPPlan.accountant`).
    """
    if len(blocks) != len(dp.local) or len(seeds) != len(blocks) or (noise is not None and len(noise) != len(blocks)):
        raise ValueError(f"need one block and one sampling seed (and noise source) per planned local phase "
                         f"({len(dp.local)}), got {len(blocks)} blocks and {len(seeds)} seeds")
    sources = list(noise) if noise is not None else [None] * len(blocks)
    models = [local_dp_model(X_i, y_i, dp, i, seed, source)
              for i, ((X_i, y_i), seed, source) in enumerate(zip(blocks, seeds, sources))]
    weights = np.asarray([X_i.shape[0] for X_i, _ in blocks], dtype=np.float64)
    return LocalModels(models, np.average(np.stack(models), axis=0, weights=weights))


def random_projection(n_features: int, n_components: int, seed: bytes) -> np.ndarray:
    """A data-independent ``n_features x n_components`` Gaussian projection (Johnson-Lindenstrauss,
    entries ``N(0, 1 / n_components)``) from a public seed: every holder applies the same matrix to its
    rows before sharing; it costs no privacy because it never looks at the data."""
    n_features = check_int("n_features", n_features, 1)
    n_components = check_int("n_components", n_components, 1)
    return NoiseSource(Csprng(seed)).gaussian((n_features, n_components), 1.0 / math.sqrt(n_components))
