"""The public parameters of secure regression, the batch schedule and the range analysis.

:class:`RegressionConfig` is the one place the options and their defaults live (the estimators,
the party app and the tests all build it). :func:`plan` is the range analysis: from the public
bounds agreed at set-up (each holder's ``ceil(log2 max|x|)``, the label holder's
``ceil(log2 max|y|)``, the shapes) it proves that every intermediate of an epoch fits the ring,
picks the target scale, and fixes the weight bound that the run-time guard checks once per epoch;
or it refuses with a ``ValueError`` naming the parameter, the bound and a value that would work.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from mpcml import fixedpoint
from mpcml.csprng import Csprng
from mpcml.engine import ENGINES
from mpcml.nonlinear import SIGMOID_METHODS
from mpcml.paillier_triples import PaillierTriples
from mpcml.party import Party
from mpcml.session import Session, make_session
from mpcml.triples import DealerTriples, TripleSource

from ..common import check_party_ids
from ..config import ProtocolConfig, boolean, he_key_bits, he_option, integer, number, one_of, option, optional
from ..dp_sgd import BOUNDED_SIGMOIDS, check_noise_seed

LOSSES = ("squared", "logistic")
PARTITIONS = ("vertical", "horizontal")
OUTPUTS = ("reveal", "own", "shared")
TRIPLES = ("dealer", "paillier")
DEFAULT_SIGMOID = "linear"  # best test AUC against the exact-sigmoid algorithm in our measurements (docs/regression.md)
STEP_BITS = 30
"""Fractional bits of the public factors ``1 - eta alpha`` and ``eta / B`` in the fused update."""
RING_SAFE_BITS = 62
"""A shared value ``v`` truncates correctly while ``|v| < 2^62`` as a ring integer (mpcml.tensor)."""


def _frac_bits(name: str, value: Any) -> int:
    return integer(8, 32)(name, value)


@dataclass(frozen=True)
class RegressionConfig(ProtocolConfig):
    """Everything the parties of one training run agree on: the options, then who plays which role."""

    loss: str = option("logistic", "`logistic` (sigmoid approximation) or `squared` (linear regression)", one_of(*LOSSES))
    partition: str = option("vertical", "`vertical` (holders have columns of the same rows) or `horizontal` (rows)",
                            one_of(*PARTITIONS))
    learning_rate: float = option(0.1, "step size eta of mini-batch gradient descent", number(high=1024))
    epochs: int = option(10, "passes over the data", integer(1, 100_000))
    batch_size: int = option(32, "rows per mini-batch (the last batch of an epoch may be smaller); with DP the "
                             "expected Poisson batch", integer(1))
    alpha: float = option(0.0, "L2 penalty (the intercept is not penalised)", number(positive=False))
    fit_intercept: bool = option(True, "learn an intercept (a public column of ones)", boolean)
    decay: float = option(0.0, "step size eta / (1 + decay * epoch)", number(positive=False))
    tol: float | None = option(None, "stop when an epoch changes the weights by less than tol (L2); reveals that "
                               "norm each epoch", optional(number()))
    sigmoid: str = option(DEFAULT_SIGMOID, f"sigmoid approximation, one of {sorted(SIGMOID_METHODS)}",
                          one_of(*SIGMOID_METHODS))
    output: str = option("reveal", "`reveal` (all weights to every holder), `own` (vertical: each holder its "
                         "columns' weights) or `shared` (weights stay secret-shared)", one_of(*OUTPUTS))
    frac_bits: int = option(fixedpoint.DEFAULT_FRAC_BITS, "fractional bits of the fixed-point encoding in Z_2^64",
                            _frac_bits)
    engine: str = option("beaver", "secret sharing of the compute parties: `beaver` (additive shares, Beaver triples "
                         "from `triples`) or `rss3` (replicated shares among exactly three compute parties, honest "
                         "majority, no dealer)", one_of(*ENGINES))
    triples: str = option("dealer", "`engine=beaver` only: `dealer` (a helper party deals Beaver triples) or `paillier` "
                          "(two compute parties make their own: OT, and `he` for matrix products)", one_of(*TRIPLES))
    he: str = he_option("`triples=paillier` (its matrix-product triples beyond 64 MiB of OT traffic)")
    key_bits: int = option(2048, "modulus size of the `he` keys for `triples=paillier`", he_key_bits)
    random_state: int | None = option(None, "seed of the public batch order (none: a fresh one from the CSPRNG)",
                                      optional(integer(-(2**63), 2**63 - 1)))
    dp_epsilon: float | None = option(None, "differential privacy of the released model: the budget epsilon; DP-SGD "
                                      "with the noise multiplier calibrated to it (none: DP off unless "
                                      "dp_noise_multiplier is set)", optional(number()))
    dp_noise_multiplier: float | None = option(None, "DP: noise sigma / dp_clip (none: calibrated from dp_epsilon); "
                                               "with dp_epsilon too, refused if the run spends more",
                                               optional(number()))
    dp_delta: float = option(1e-5, "DP: delta of the (epsilon, delta) guarantee", number(high=0.5))
    dp_clip: float = option(1.0, "DP: L2 norm C each example's gradient is clipped to", number())
    dp_feature_bound: float = option(16.0, "DP: public bound on |x| of every feature value (each holder checks its "
                                     "block)", number())
    dp_colluders: int | None = option(None, "DP: compute parties that may collude against the noise (none: all but "
                                      "one on beaver, one on rss3)", optional(integer(0)))
    dp_projection: int | None = option(None, "DP, horizontal partition: every holder projects its rows onto this many "
                                       "dimensions by a public Gaussian Johnson-Lindenstrauss matrix before sharing "
                                       "(coef_ is mapped back to the raw features; none: off)", optional(integer(1)))
    dp_local_epochs: int = option(0, "DP, horizontal partition: each holder first runs this many epochs of DP-SGD on "
                                  "its own rows; training starts from their row-weighted average, entered as shares "
                                  "(charged to epsilon_; 0: off)", integer(0, 100_000))
    holders: tuple[str, ...] = ()
    label_holder: str | None = None
    dealer: str = "dealer"
    compute_parties: tuple[str, ...] | None = None
    dp_noise_seed: bytes | None = field(default=None, repr=False, metadata={"check": check_noise_seed})
    """Tests only: key every party's DP noise from this public seed (:func:`protocols.dp_sgd.party_noise_sources`)."""

    def validate(self) -> None:
        holders = check_party_ids(self.holders, "holders")
        if len(holders) < 2:
            raise ValueError(f"holders must name at least two data holders, got {list(holders)}")
        if self.partition == "vertical":
            if self.label_holder not in holders:
                raise ValueError(f"label_holder must be one of the holders {list(holders)}, got {self.label_holder!r}")
        elif self.label_holder is not None:
            raise ValueError("label_holder applies to a vertical partition only (horizontal holders all have labels)")
        if self.compute_parties is not None:
            players = check_party_ids(self.compute_parties, "compute_parties")
            if len(players) < 2:
                raise ValueError(f"compute_parties must name at least two parties, got {list(players)}")
        if self.engine == "rss3":
            if len(self.players) != 3:
                raise ValueError(f'engine="rss3" needs exactly three compute parties (three holders, or three '
                                 f'compute_parties such as n_servers=3), got {list(self.players)}')
            if self.triples != "dealer":
                raise ValueError(f'triples={self.triples!r} applies to engine="beaver" only (rss3 needs no triples)')
        elif self.triples == "paillier" and len(self.players) != 2:
            raise ValueError(f'triples="paillier" needs exactly two compute parties, got {list(self.players)}')
        if self.uses_dealer and (self.dealer in self.players or self.dealer in holders):
            raise ValueError(f"the dealer {self.dealer!r} cannot also hold data or compute")
        if self.output == "own" and self.partition != "vertical":
            raise ValueError('output="own" needs a vertical partition (horizontal holders share every weight)')
        if self.dp:
            self._validate_dp()
        elif self.dp_projection is not None or self.dp_local_epochs:
            name = "dp_projection" if self.dp_projection is not None else "dp_local_epochs"
            raise ValueError(f"{name} is an aid of differentially private training: set dp_epsilon or "
                             f"dp_noise_multiplier too, or leave {name} at its default")

    def _validate_dp(self) -> None:
        """What DP-SGD (:mod:`protocols.regression.privacy`) does not take, named before any message."""
        off = {"alpha": self.alpha != 0, "decay": self.decay != 0, "tol": self.tol is not None}
        for name, given in off.items():
            if given:
                raise ValueError(f"{name}={getattr(self, name)!r} is not supported with differential privacy "
                                 f"(dp_epsilon/dp_noise_multiplier): DP-SGD takes the accountant's fixed number of "
                                 f"plain steps; leave {name} at its default")
        if self.loss == "logistic" and self.sigmoid not in BOUNDED_SIGMOIDS:
            raise ValueError(f"sigmoid={self.sigmoid!r} is not bounded; with differential privacy use one of "
                             f"{list(BOUNDED_SIGMOIDS)} (residuals must stay in [-1, 1])")
        for name, given in (("dp_projection", self.dp_projection is not None), ("dp_local_epochs", self.dp_local_epochs)):
            if given and self.partition != "horizontal":
                raise ValueError(f"{name} needs partition='horizontal' (every holder holds all columns: the "
                                 f"projection and the local models act on whole rows), got {self.partition!r}")
        if self.dp_projection is not None and self.output != "reveal":
            raise ValueError(f"dp_projection needs output='reveal' (the weights are mapped back to the raw features "
                             f"in the clear), got {self.output!r}")
        if self.dp_colluders is not None and self.dp_colluders >= len(self.players):
            raise ValueError(f"dp_colluders must be below the number of compute parties {len(self.players)} "
                             f"(someone must add noise nobody else knows), got {self.dp_colluders}")

    @property
    def dp(self) -> bool:
        """Whether training is differentially private (``dp_epsilon`` or ``dp_noise_multiplier`` given)."""
        return self.dp_epsilon is not None or self.dp_noise_multiplier is not None

    @property
    def players(self) -> tuple[str, ...]:
        """The compute parties: ``compute_parties`` if given, else the holders."""
        return tuple(self.compute_parties) if self.compute_parties is not None else tuple(self.holders)

    @property
    def seed(self) -> bytes | None:
        """The 32-byte batch-order seed from ``random_state`` (``None``: the players agree a fresh one)."""
        if self.random_state is None:
            return None
        return hashlib.sha256(b"mpcml.regression.batches" + int(self.random_state).to_bytes(16, "big", signed=True)).digest()

    @property
    def uses_dealer(self) -> bool:
        """Whether a dealer party serves the compute parties (``engine="beaver"`` with ``triples="dealer"``)."""
        return self.engine == "beaver" and self.triples == "dealer"

    def triple_source(self, party: Party) -> TripleSource:
        """A compute party's Beaver triples: from the dealer, or made by the two players (OT and ``he``)."""
        if self.triples == "paillier":
            return PaillierTriples(party, self.players, he=self.he, key_bits=self.key_bits)
        return DealerTriples(party, self.players, self.dealer)

    def session(self, party: Party) -> Session:
        """A compute party's session on :attr:`engine` (``"beaver"``: with :meth:`triple_source`)."""
        triples = self.triple_source(party) if self.engine == "beaver" else None
        return make_session(party, self.players, self.engine, triples=triples, frac_bits=self.frac_bits)

    def has_labels(self, holder: str) -> bool:
        return self.partition == "horizontal" or holder == self.label_holder

    def step_size(self, epoch: int) -> float:
        return self.learning_rate / (1.0 + self.decay * epoch)


def batch_schedule(seed: bytes, n_rows: int, epochs: int, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(epoch, rows)`` for every mini-batch: a fresh public permutation per epoch from ``seed``."""
    stream = Csprng(seed)
    for epoch in range(epochs):
        order = stream.permutation(n_rows)
        for start in range(0, n_rows, batch_size):
            yield epoch, order[start : start + batch_size]


@dataclass(frozen=True)
class Scales:
    """The outcome of the range analysis (public, the same at every party).

    ``y_shift``: the targets are divided by ``2^y_shift`` before training (squared loss; the
    weights are multiplied back at the end; the algorithm is unchanged because the gradient is
    linear in ``(w, y)``). ``weight_bound``: the run-time guard's bound on every weight, checked
    after each epoch. ``max_weight``: the largest weight for which every intermediate provably fits.
    ``product_limit``, ``input_limit`` and ``update_limit``: what ``X_B w`` and ``X_B^T e``, the
    sigmoid's input, and the updated weights must stay below (the plaintext replay checks them).
    """

    x_bits: int
    y_shift: int
    weight_bound: float
    max_weight: float
    product_limit: float
    input_limit: float
    update_limit: float


def _largest(fits: Callable[[float], bool]) -> float:
    """The largest ``w >= 0`` with ``fits(w)`` for a predicate true below a threshold (bisection), or -1."""
    if not fits(0.0):
        return -1.0
    low, high = 0.0, 2.0**64
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def _capacity(config: RegressionConfig, n_weights: int, n_rows: int, x_max: float, frac_bits: int
              ) -> tuple[float, float, str, tuple[float, float, float]]:
    """``(max_weight, weight_bound, binding constraint, (product, input, update limits))`` for |x| <= x_max, |y| <= 1."""
    product = 2.0 ** (RING_SAFE_BITS - 2 * frac_bits)  # a product of two encoded values before truncation
    update = 2.0 ** (RING_SAFE_BITS - frac_bits - STEP_BITS)  # the fused update w*k_keep - g*k_step
    method = SIGMOID_METHODS[config.sigmoid] if config.loss == "logistic" else None
    inputs = min(product, method.ring_safe(frac_bits)) if method else product
    batch, eta = min(config.batch_size, n_rows), config.learning_rate

    def residual(w: float) -> float:
        """The largest ``|g(z) - y|`` when every weight is at most ``w``."""
        z = n_weights * x_max * w
        if method is None:
            return z + 1.0
        return 1.0 if method.bounded else float(np.max(np.abs(method.plain(np.linspace(0.0, z, 65))))) + 1.0

    limits = {
        "the products X_B w": _largest(lambda w: n_weights * x_max * w < inputs),
        "the gradient X_B^T e": _largest(lambda w: batch * x_max * residual(w) < product),
        "the weight update": _largest(lambda w: w + eta * x_max * residual(w) < update),
    }
    binding = min(limits, key=limits.get)
    max_weight = limits[binding]
    if method is not None and method.bounded:  # one epoch moves a weight by at most (batches) * eta * max|x|
        bound = max_weight - math.ceil(n_rows / batch) * eta * x_max
    else:  # a wrap turns the weights into ring garbage, which the guard catches; see docs/regression.md
        bound = update / 2 if max_weight >= 1.0 else -1.0
    return max_weight, bound, binding, (product, inputs, update)


def plan(config: RegressionConfig, n_rows: int, n_features: int, x_bits: int, y_bits: int | None) -> Scales:
    """The range analysis of one run (see the module docstring); ``ValueError`` if it cannot fit.

    ``n_features`` excludes the intercept; ``x_bits``/``y_bits`` are ``ceil(log2 max|.|)`` over
    all holders (``y_bits`` only for the squared loss).
    """
    n_weights = n_features + int(config.fit_intercept)
    x_max = max(2.0**x_bits, 1.0 if config.fit_intercept else 0.0, 2.0**-config.frac_bits)
    y_shift = 0 if config.loss == "logistic" or y_bits is None else y_bits
    max_weight, bound, binding, limits = _capacity(config, n_weights, n_rows, x_max, config.frac_bits)
    if bound < 1.0:
        better = [f for f in range(config.frac_bits - 1, 7, -1) if _capacity(config, n_weights, n_rows, x_max, f)[1] >= 1.0]
        hints = ["standardise the features (or scale X down)", "lower learning_rate",
                 *([f"use frac_bits={better[0]}"] if better else [])]
        raise ValueError(
            f"{n_features} features with |x| up to 2^{x_bits} leave no room for the weights in the 64-bit ring at "
            f"frac_bits={config.frac_bits}, learning_rate={config.learning_rate:g}, batch_size={config.batch_size} "
            f"({binding} would overflow {f'once |w| > {max_weight:.3g}' if max_weight > 0 else 'whatever the weights'}); "
            f"{', '.join(hints)}"
        )
    return Scales(x_bits, y_shift, float(bound), float(max_weight), *limits)


def guard_error(epoch: int, scales: Scales, config: RegressionConfig) -> OverflowError:
    """The run-time guard's error: the weights left the analysed range during ``epoch``."""
    return OverflowError(
        f"secure regression stopped after epoch {epoch + 1}: a weight left the range |w| <= {scales.weight_bound:.4g} "
        f"that the fixed-point analysis guarantees (frac_bits={config.frac_bits}, learning_rate={config.learning_rate:g}); "
        "gradient descent is diverging or the weights are large: lower learning_rate, standardise X, or lower frac_bits"
    )
