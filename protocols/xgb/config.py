"""The public parameters of secure XGBoost, the range analysis and the run-time guard.

:class:`XGBConfig` is the one place the options and their defaults live (the estimators, the
party app and the tests all build it). :func:`plan` is the range analysis: from the public facts
agreed at set-up (the number of rows and of candidate splits) it shows that every intermediate
of either method fits its number representation, or refuses with a ``ValueError`` naming the
parameter, the bound and a value that would work. Regression targets are rescaled by a power of
two the label holder picks alone (:func:`target_shift`); where growth over the trees cannot be
bounded tightly, :func:`guard_error` is the run-time guard's ``OverflowError``.

Fixed point: SS-XGB computes on additive shares in Z_2^64 with :data:`FRAC_BITS` fractional
bits; SecureBoost quantises the gradients to :data:`GH_FRAC_BITS` bits and sums exact integers.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from mpcml.csprng import Csprng
from mpcml.engine import ENGINES
from mpcml.nonlinear import SIGMOID_METHODS
from mpcml.party import Party

from ..common import check_party_ids
from ..config import ProtocolConfig, he_key_bits, he_option, integer, number, one_of, option, optional

METHODS = ("ss", "he")
LOSSES = ("logistic", "squared")
BINNINGS = ("xgboost", "quantile")

FRAC_BITS = 18
"""SS-XGB: fractional bits of every shared value (Z_2^64)."""
GH_FRAC_BITS = 24
"""SecureBoost: fractional bits of the quantised gradients and hessians."""
RING_SAFE_BITS = 62
"""A shared value truncates correctly while ``|v| < 2^62`` as a ring integer (mpcml.tensor)."""
DIVIDE_LO = -14
"""SS-XGB: the smallest denominator ``lambda c`` of a secure division is ``2^-14`` (precision)."""
GRADIENT_CAP = {"logistic": 1024.0, "squared": 256.0}
"""SS-XGB: gradients are multiplied by the public ``c = min(1, cap / n)`` so that sums stay small."""
RESIDUAL_BOUND = 16.0
"""SS-XGB, squared loss: the run-time guard's bound on every scaled residual ``|m' - y'|``."""
HE_RESIDUAL_BITS = 30
"""SecureBoost, squared loss: the guard's bound ``2^30`` on every scaled residual (lowered where
``n 2^(30 + 24)`` would not fit int64)."""


@dataclass(frozen=True)
class XGBConfig(ProtocolConfig):
    """Everything the parties of one run agree on: the options, then who plays which role.

    ``players`` are the data parties, the label holder first; ``dealer`` supplies correlated
    randomness (``method="ss"`` on the ``beaver`` engine only).
    """

    method: str = option("ss", "`ss` (SS-XGB, everything secret-shared, distributed model) or `he` (SecureBoost, "
                         "homomorphically encrypted gradients, leaf weights at the label holder)", one_of(*METHODS))
    loss: str = option("logistic", "`logistic` (binary classification) or `squared` (regression)", one_of(*LOSSES))
    n_estimators: int = option(10, "number of trees", integer(1, 10_000))
    max_depth: int = option(3, "depth of every tree (full binary trees; 2^max_depth leaves)", integer(1, 10))
    learning_rate: float = option(0.3, "shrinkage eta of every leaf weight", number(high=1))
    reg_lambda: float = option(1.0, "L2 penalty lambda on the leaf weights", number(positive=False, high=1_000_000))
    min_child_weight: float = option(1.0, "smallest hessian sum of a child", number(positive=False, high=1_000_000))
    max_bin: int = option(32, "quantile buckets per feature (candidate splits: max_bin - 1 at most)", integer(2, 1024))
    subsample: float = option(1.0, "fraction of rows each tree samples (chosen by the label holder)", number(high=1))
    colsample_bytree: float = option(1.0, "fraction of its columns each party keeps per tree", number(high=1))
    binning: str = option("xgboost", "`xgboost` (the cut points of xgboost's own sketch, computed by each party on "
                          "its columns) or `quantile` (numpy quantiles)", one_of(*BINNINGS))
    engine: str = option("beaver", "secret sharing of `ss`: `beaver` (additive, any number of players, a dealer) or "
                         "`rss3` (replicated, exactly three players, no dealer; honest majority)", one_of(*ENGINES))
    sigmoid: str = option("spline", f"secure sigmoid of `ss` with the logistic loss, one of {sorted(SIGMOID_METHODS)}",
                          one_of(*SIGMOID_METHODS))
    he: str = he_option("`method=he` (the label holder's key pair)")
    key_bits: int = option(2048, "modulus size of the label holder's `he` key (`method=he`)", he_key_bits)
    random_state: int | None = option(None, "seed of the row and column sampling (none: each party samples from its "
                                      "CSPRNG); anyone who knows it can redo every party's sampling",
                                      optional(integer(-(2**63), 2**63 - 1)))
    players: tuple[str, ...] = ()
    dealer: str = "dealer"

    def validate(self) -> None:
        players = check_party_ids(self.players, "players")
        if len(players) < 2 or self.dealer in players:
            raise ValueError(f"players must name at least two data parties (the label holder first) and not the dealer "
                             f"{self.dealer!r}, got {list(players)}")
        if self.method == "he" and self.engine != "beaver":
            raise ValueError(f"engine={self.engine!r} applies to method='ss' only; SecureBoost (method='he') uses no "
                             "secret-sharing engine: leave engine at its default")
        if self.uses_rss3 and len(players) != 3:
            raise ValueError(f"engine='rss3' needs exactly three data parties, got {len(players)}")

    @property
    def uses_rss3(self) -> bool:
        return self.method == "ss" and self.engine == "rss3"

    @property
    def needs_dealer(self) -> bool:
        return self.method == "ss" and self.engine == "beaver"

    @property
    def label_holder(self) -> str:
        return self.players[0]

    @property
    def passive(self) -> tuple[str, ...]:
        return tuple(self.players[1:])

    def sampler(self, party: Party) -> Csprng:
        """The stream a party draws its row/column sampling from: its CSPRNG, or one derived from
        ``random_state`` and its id (so a plaintext replay can redo it)."""
        if self.random_state is None:
            return party.rng
        return sampling_stream(self.random_state, party.id)


def sampling_stream(random_state: int, party_id: str) -> Csprng:
    seed = hashlib.sha256(b"mpcml.xgb.sampling" + int(random_state).to_bytes(16, "big", signed=True)
                          + party_id.encode()).digest()
    return Csprng(seed)


def sample_rows(stream: Csprng, n: int, rate: float) -> np.ndarray:
    """The label holder's rows of one tree (sorted indices): each kept with probability ``rate``, at least one."""
    if rate >= 1.0:
        return np.arange(n)
    keep = stream.random_uint64(n) < np.uint64(min(int(rate * 2.0**64), 2**64 - 1))
    if not keep.any():
        keep[stream.randbelow(n)] = True
    return np.flatnonzero(keep)


def sample_columns(stream: Csprng, n_features: int, rate: float) -> np.ndarray:
    """One party's columns kept for one tree (a 0/1 mask): ``max(1, round(rate * n_features))`` of them."""
    keep = np.zeros(n_features, dtype=bool)
    if rate >= 1.0:
        keep[:] = True
        return keep
    keep[stream.permutation(n_features)[: max(1, int(round(rate * n_features)))]] = True
    return keep


# --- the range analysis ------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The outcome of the range analysis (public: the same at every party).

    SS-XGB: gradients, hessians, ``lambda`` and ``min_child_weight`` are multiplied by
    ``gradient_scale`` ``c``; secure divisions take denominators in ``[2^divide_lo, 2^divide_hi)``;
    ``residual_bound`` is the guard's bound on the squared loss's scaled residuals (``None``: no
    guard needed). SecureBoost: ``residual_bound`` bounds ``|g|`` so every integer sum of the
    quantised gradients fits int64.
    """

    n_rows: int
    gradient_scale: float
    divide_lo: int
    divide_hi: int
    residual_bound: float | None


def gradient_scale(config: XGBConfig, n_rows: int) -> float:
    return min(1.0, GRADIENT_CAP[config.loss] / n_rows)


def _ss_plan(config: XGBConfig, n_rows: int) -> Plan:
    c = gradient_scale(config, n_rows)
    lam = config.reg_lambda * c
    f = FRAC_BITS
    if lam < 2.0**DIVIDE_LO:
        raise ValueError(
            f"reg_lambda={config.reg_lambda:g} is too small for SS-XGB's secure division with {n_rows} rows: every "
            f"denominator H + lambda must be at least 2^{DIVIDE_LO} after scaling by c = {c:.4g}; use reg_lambda >= "
            f"{2.0**DIVIDE_LO / c:.3g} (or method='he')")
    h_max = 0.25 if config.loss == "logistic" else 1.0
    g_max = 1.0 if config.loss == "logistic" else RESIDUAL_BOUND
    lo = math.floor(math.log2(lam * 0.9))
    hi = math.ceil(math.log2(c * n_rows * h_max * 1.1 + lam + 1.0)) + 1
    # the secure division: f + hi - lo <= 61 and 2 f + hi <= 62 (mpcml.nonlinear), quotients below 2^(61 - f - hi)
    if f + hi - lo > 61 or 2 * f + hi > RING_SAFE_BITS:
        raise ValueError(f"reg_lambda={config.reg_lambda:g} with {n_rows} rows needs hessian sums in [2^{lo}, 2^{hi}), "
                         f"too wide for the secure division at {f} fractional bits; use reg_lambda <= "
                         f"{2.0 ** (61 - f + lo) / c / 2:.3g}")
    sum_max = n_rows * c * g_max  # |G| <= (rows) c max|g|
    quotient_limit = 2.0 ** (61 - f - hi)
    if config.loss == "logistic":  # H may be 0: only lambda bounds the quotients
        worst = {"split scores G^2 / (H + lambda)": sum_max**2 / lam, "leaf weights G / (H + lambda)": sum_max / lam}
    else:  # H = (rows) c >= |G| / max|g|
        worst = {"split scores G^2 / (H + lambda)": sum_max * g_max, "leaf weights G / (H + lambda)": g_max}
    for what, value in worst.items():
        if value >= quotient_limit:
            raise ValueError(f"the {what} of SS-XGB can reach {value:.3g} with {n_rows} rows and reg_lambda="
                             f"{config.reg_lambda:g}, beyond the secure division's 2^{61 - f - hi}; use reg_lambda >= "
                             f"{2 * config.reg_lambda * value / quotient_limit:.3g}")
    # G^2 is a product of two shared values: |G|^2 2^(2f) < 2^62
    if sum_max >= 2.0 ** (RING_SAFE_BITS / 2 - f):
        raise ValueError(f"gradient sums up to {sum_max:g} overflow their squares at {f} fractional bits")
    margin_max = config.n_estimators * config.learning_rate * sum_max / lam
    if config.loss == "logistic" and margin_max >= SIGMOID_METHODS[config.sigmoid].ring_safe(f) / 2:
        raise ValueError(f"margins of {config.n_estimators} trees could reach {margin_max:.3g}, beyond the secure "
                         f"sigmoid {config.sigmoid!r}'s range; lower n_estimators or learning_rate or raise reg_lambda")
    return Plan(n_rows, c, lo, hi, None if config.loss == "logistic" else RESIDUAL_BOUND)


def _he_plan(config: XGBConfig, n_rows: int) -> Plan:
    # every integer sum of quantised gradients fits int64: n |g| 2^F < 2^62
    room = RING_SAFE_BITS - GH_FRAC_BITS - math.ceil(math.log2(n_rows + 1))
    if room < 1:
        raise ValueError(f"{n_rows} rows are too many for SecureBoost's {GH_FRAC_BITS}-bit gradients in 64-bit sums")
    bound = None if config.loss == "logistic" else 2.0 ** min(room, HE_RESIDUAL_BITS)
    return Plan(n_rows, 1.0, 0, 0, bound)


def plan(config: XGBConfig, n_rows: int) -> Plan:
    """The range analysis of one run (see the module docstring); ``ValueError`` if it cannot fit."""
    if n_rows < 2:
        raise ValueError(f"n_samples = {n_rows}: XGBoost needs at least 2 rows")
    return _ss_plan(config, n_rows) if config.method == "ss" else _he_plan(config, n_rows)


def target_shift(config: XGBConfig, y: np.ndarray, base: float) -> int:
    """The label holder's private power of two ``s`` for the squared loss: ``y' = (y - base) / 2^s`` has
    ``|y'| <= 1``. Squared-loss boosting is scale-equivariant (splits unchanged, leaf weights scaled by
    ``2^-s`` exactly), so the model is multiplied back at the output. 0 for the logistic loss."""
    if config.loss == "logistic":
        return 0
    top = float(np.max(np.abs(y - base))) if y.size else 0.0
    return math.ceil(math.log2(top)) if top > 0 else 0


def guard_error(tree: int, bound: float, config: XGBConfig) -> OverflowError:
    """The run-time guard's error: a residual left the analysed range before ``tree`` (0-based)."""
    return OverflowError(
        f"secure XGBoost stopped at tree {tree + 1}: a scaled residual |margin - y| / 2^s exceeds {bound:g}, the range "
        f"the fixed-point analysis covers (method={config.method!r}, learning_rate={config.learning_rate:g}); the "
        "boosting is diverging: lower learning_rate or raise reg_lambda"
    )
