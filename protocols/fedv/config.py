"""FedV's public parameters, the batch order and the range analysis.

:class:`FedVConfig` is the one place the options and their defaults live. :func:`plan` is the
range analysis, computed identically by the aggregator, the TPA and every party from the public
set-up facts (each party's rows, columns and ``ceil(log2 max|x|)``; the active party's number of
outputs and, for the linear model, ``ceil(log2 max|y|)``), before any data is encrypted:

- the linear model's targets are divided by ``2^y_shift`` (``y_shift = ceil(log2 max|y|)``) so
  that ``|y| <= 1``, and the weights multiplied back at the end: gradient descent on
  ``(X, y / c)`` from ``w_0 / c`` follows ``w_t / c`` exactly (the gradient, the L2 penalty
  included, is linear in ``(w, y)``);
- data, weights and errors are quantised to ``frac_bits``: ``|x| <= x_max = 2^x_bits`` (at least
  1 with the intercept column or the label slot), ``|w| <= W`` and ``|e| <= E``;
- ``W``: for logistic regression and the SVM ``|e| < 1``, so one step moves a weight by at most
  ``eta x_max`` (the penalty only shrinks while ``eta alpha <= 2``) and ``W = init_scale +
  steps * eta * x_max`` is proved; for the linear model nothing bounds the residuals a priori,
  so ``W = 2^(8 - x_bits)`` (weights of the scaled problem, ``|y| <= 1``) and a run-time guard
  checks every weight before each batch: a weight beyond ``W`` stops the run with
  ``OverflowError`` naming the epoch (the replay raises the same);
- ``E = 1`` (logistic, SVM) or ``d x_max W + 1`` (linear, given the guard);
- a party's weights are rounded so that they are never all zero (the TPA refuses such a key): if
  every entry rounds to 0, the largest is rounded away from 0 to one unit (an error of at most
  one unit instead of half a unit; the replay rounds the same way);
- the FE bounds: the feature step's ``slots * dim * x_max * W`` and the sample step's
  ``batch * x_max * E`` (in quantised units) must stay below ``q / 2`` of the FE group and
  below ``2^62`` (int64 arithmetic); if ``W`` does not fit, the largest ``W`` that does becomes
  the guard's bound, and if that is below what the first steps need the run is refused with a
  ``ValueError`` naming ``frac_bits`` and a value that works;
- the discrete-log searches: before each decryption the aggregator bounds its results from
  what it knows, ``|X_B w| <= x_max ||w||_1`` (plus ``|y| <= 1`` in the label slot) and
  ``|X_p^T e| <= x_max ||e||_1``, and searches only that far; a bound beyond what can be
  searched in :data:`~protocols.fe_authority.DLOG_GIANT_STEPS` giant steps (weights or errors
  far larger than standardised data gives) stops the run with ``OverflowError`` naming the epoch,
  as the replay does, instead of a search that would run for hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from mpcml.fe import DEFAULT_GROUP, GROUPS, group_by_name

from ..common import check_party_ids
from ..config import ProtocolConfig, boolean, integer, number, one_of, option
from ..fe_authority import search_bound, searchable

MODELS = ("logistic", "svm", "linear")
INT_LIMIT = 2**62
LINEAR_WEIGHT_BITS = 8
"""The linear model's guard bound is ``2^(8 - x_bits)`` in the scaled problem (``|y| <= 1``)."""


@dataclass(frozen=True)
class FedVConfig(ProtocolConfig):
    """What every FedV role agrees on: the options, then who plays which role."""

    model: str = option("logistic", "`logistic` regression, hinge-loss `svm`, or `linear` regression",
                        one_of(*MODELS))
    epochs: int = option(10, "passes over the data", integer(1, 100_000))
    batch_size: int = option(32, "rows per batch: contiguous blocks in the agreed row order (0: the full batch)",
                             integer(0))
    learning_rate: float = option(0.3, "step size eta of mini-batch gradient descent", number(high=1024))
    alpha: float = option(0.0, "L2 penalty (the intercept is not penalised)", number(positive=False))
    fit_intercept: bool = option(True, "learn an intercept (a column of ones at the active party)", boolean)
    frac_bits: int = option(10, "fractional bits of the quantised data, weights and errors", integer(1, 30))
    min_nonzero: int = option(2, "the TPA refuses a sample-step key with fewer non-zero errors (it would isolate "
                              "samples); such a batch contributes no data gradient", integer(2))
    init_scale: float = option(0.01, "the initial value of every weight (not zero: the TPA refuses a key with a "
                               "party's weights all zero)", number(high=1.0))
    group: str = option(DEFAULT_GROUP.name, f"FE group, one of {sorted(GROUPS)}", one_of(*GROUPS))
    parties: tuple[str, ...] = ()
    active: str | None = None
    tpa: str = "tpa"
    aggregator: str = "aggregator"

    def validate(self) -> None:
        ids = check_party_ids(self.parties, "parties")
        check_party_ids((*ids, self.tpa, self.aggregator), "party, tpa and aggregator ids")
        if len(ids) < 2:
            raise ValueError(f"FedV needs at least two parties holding columns, got {list(ids)}")
        if self.active not in ids:
            raise ValueError(f"the active party (label holder) must be one of {list(ids)}, got {self.active!r}")
        if self.learning_rate * self.alpha > 2.0:
            raise ValueError(f"learning_rate * alpha = {self.learning_rate * self.alpha:g} > 2: the penalty step "
                             "alone diverges; lower learning_rate or alpha")

    @property
    def linear(self) -> bool:
        return self.model == "linear"

    @property
    def n_slots(self) -> int:
        """Feature-step MIFE slots: one per party, plus the active party's label slot for the linear model."""
        return len(self.parties) + int(self.linear)


def batches(n_rows: int, batch_size: int) -> list[np.ndarray]:
    """The public batch order: contiguous blocks of ``batch_size`` rows (0: one batch of all rows)."""
    size = batch_size or n_rows
    return [np.arange(start, min(start + size, n_rows)) for start in range(0, n_rows, size)]


@dataclass(frozen=True)
class FedVPlan:
    """The range analysis of one run (module docstring); public, the same at every role."""

    widths: tuple[int, ...]
    rows: int
    outputs: int
    x_bits: int
    y_shift: int
    weight_bound: float
    error_bound: float
    config: FedVConfig

    def to_wire(self) -> dict[str, Any]:
        """The facts it was computed from (what the aggregator sends the TPA and the parties)."""
        return {"widths": list(self.widths), "rows": self.rows, "outputs": self.outputs, "x_bits": self.x_bits,
                "y_shift": self.y_shift}

    def width(self, i: int) -> int:
        """Columns party ``i`` encrypts: its data, plus the intercept column at the active party."""
        return self.widths[i] + int(self.config.fit_intercept and self.config.parties[i] == self.config.active)

    @property
    def dim(self) -> int:
        return max(self.width(i) for i in range(len(self.widths)))

    @property
    def batch(self) -> int:
        return min(self.config.batch_size or self.rows, self.rows)

    @property
    def x_max(self) -> float:
        return max(2.0**self.x_bits, 1.0 if self.config.fit_intercept or self.config.linear else 0.0)

    def units(self, value: float) -> int:
        return math.ceil(value * 2.0**self.config.frac_bits)

    @property
    def feature_bound(self) -> int:
        """The feature step's discrete-log bound (quantised)."""
        return self.config.n_slots * self.dim * self.units(self.x_max) * self.units(self.weight_bound)

    @property
    def sample_bound(self) -> int:
        """The sample step's discrete-log bound (quantised)."""
        return self.batch * self.units(self.x_max) * self.units(self.error_bound)

    def batches(self) -> list[np.ndarray]:
        return batches(self.rows, self.config.batch_size)

    def quantise_weights(self, w: np.ndarray) -> np.ndarray:
        """A party's weights rounded to ``frac_bits``; if every entry rounds to 0, the largest is rounded away
        from 0 (one unit), because the TPA refuses a feature-step key with a party's weights all zero."""
        units = np.rint(w * 2.0**self.config.frac_bits).astype(np.int64)
        if not np.any(units):
            top = int(np.argmax(np.abs(w)))
            units[top] = -1 if w[top] < 0 else 1
        return units

    def scores_bound(self, weights: Sequence[np.ndarray]) -> int:
        """``|z_t| <= x_max ||w||_1`` in quantised units (plus the label slot's ``|y| <= 1``, weight -1)."""
        bound = self.units(self.x_max) * sum(int(np.sum(np.abs(w))) for w in weights)
        return bound + (4**self.config.frac_bits if self.config.linear else 0)

    def gradient_bound(self, errors: np.ndarray) -> int:
        """``|(X_p^T e)_j| <= x_max ||e||_1`` in quantised units."""
        return self.units(self.x_max) * int(np.sum(np.abs(errors)))

    def search(self, bound: int, epoch: int, batch: int, step: str) -> int:
        """The run-time guard on a decryption's discrete-log search: ``bound``, or ``OverflowError`` (the
        replay raises the same) when it cannot be searched in time."""
        group = group_by_name(self.config.group)
        if bound > searchable(group):
            unit = 4.0**self.config.frac_bits
            raise OverflowError(
                f"FedV stopped in epoch {epoch + 1}, batch {batch + 1}: the {step} step's results may reach "
                f"{bound / unit:.6g}, beyond the {searchable(group) / unit:.6g} its discrete-log search covers at "
                f"frac_bits={self.config.frac_bits}; the weights or errors are far from standardised-data sizes: "
                "lower learning_rate, standardise X or lower frac_bits")
        return search_bound(group, bound)


def _error_bound(config: FedVConfig, d: int, x_max: float, weight: float) -> float:
    return d * x_max * weight + 1.0 if config.linear else 1.0


def _capacity(config: FedVConfig, probe: FedVPlan) -> float:
    """The largest weight bound both FE bounds allow (negative: none)."""
    limit = min(group_by_name(config.group).q // 2, INT_LIMIT)
    unit_x, scale = probe.units(probe.x_max), 2.0**config.frac_bits
    feature_room = limit / (config.n_slots * probe.dim * unit_x * scale)
    sample_room = limit / (probe.batch * unit_x * scale)
    if not config.linear:
        return feature_room if sample_room > 2.0 else -1.0
    d = sum(probe.widths) + int(config.fit_intercept)
    return min(feature_room, (sample_room - 2.0) / (d * probe.x_max))


def plan(config: FedVConfig, widths: tuple[int, ...], rows: int, outputs: int, x_bits: int,
         y_bits: int | None) -> FedVPlan:
    """The range analysis (module docstring); ``ValueError`` naming ``frac_bits`` if nothing fits."""
    if config.linear and outputs != 1:
        raise ValueError(f"the linear model has one output, the active party announced {outputs}")
    y_shift = y_bits if config.linear and y_bits is not None else 0
    probe = FedVPlan(tuple(widths), rows, outputs, x_bits, y_shift, 1.0, 1.0, config)
    d, x_max = sum(widths) + int(config.fit_intercept), probe.x_max
    steps = len(probe.batches()) * config.epochs
    wanted = max(2.0 ** (LINEAR_WEIGHT_BITS - x_bits), 1.0) if config.linear else \
        config.init_scale + steps * config.learning_rate * x_max
    needed = max(2.0 * config.init_scale, 1.0 if config.linear else 0.0)
    capacity = _capacity(config, probe)
    if capacity < needed:
        fits = [g for g in range(config.frac_bits - 1, 0, -1)
                if _capacity(replace(config, frac_bits=g), replace(probe, config=replace(config, frac_bits=g))) >= needed]
        raise ValueError(
            f"frac_bits={config.frac_bits}: batches of {probe.batch} rows of {d} columns with |x| up to {x_max:.4g} "
            f"leave no room for the weights below the FE group's discrete-log bound and int64; "
            + (f"use frac_bits={fits[0]}" if fits else "standardise X or use smaller batches"))
    weight = min(wanted, capacity * (1 - 1e-9))
    return FedVPlan(tuple(widths), rows, outputs, x_bits, y_shift, weight, _error_bound(config, d, x_max, weight), config)


def plan_from_facts(config: FedVConfig, facts: Mapping[str, Mapping[str, Any]]) -> FedVPlan:
    """The aggregator's step 2: check the parties' facts against each other, then :func:`plan`."""
    rows = {p: facts[p]["rows"] for p in config.parties}
    if len(set(rows.values())) != 1:
        raise ValueError(f"vertical blocks X must have the same number of rows at every party, got {rows}")
    label = facts[config.active]
    return plan(config, tuple(facts[p]["cols"] for p in config.parties), rows[config.active], label["outputs"],
                max(facts[p]["x_bits"] for p in config.parties), label["y_bits"])


def guard_error(epoch: int, batch: int, value: float, agreed: FedVPlan) -> OverflowError:
    """The run-time guard's error: a weight left the analysed bound (the replay raises the same)."""
    config = agreed.config
    return OverflowError(
        f"FedV stopped in epoch {epoch + 1}, batch {batch + 1}: a weight reached {value:.6g}, beyond the bound "
        f"{agreed.weight_bound:.6g} the range analysis allows (learning_rate={config.learning_rate:g}, "
        f"frac_bits={config.frac_bits}); gradient descent is diverging or the weights are large: lower learning_rate "
        "or standardise X")
