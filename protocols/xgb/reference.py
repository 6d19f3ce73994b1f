"""The plaintext replay of secure XGBoost: the same algorithm in float64 numpy, compared tree by tree.

Same candidate splits (each party's quantile cuts of its own columns), same sampling (from
``random_state``), same gain and tie rules (a split needs a strictly positive gain; ties go to
the lowest ``(party, candidate)``; "no split" sends every row left), same quantisation: for
SecureBoost, ``g`` and ``h`` rounded to ``2^-24`` and summed as exact integers; for SS-XGB, the
public factors ``c``, ``lambda c``, ``min_child_weight c`` and ``eta`` rounded to the fixed-point
grid, the targets and initial margin encoded, and the secure sigmoid's plaintext twin
(:attr:`mpcml.nonlinear.SigmoidMethod.plain`). Every factor is computed here from the options,
independently of the secure code, so a wrong constant in a protocol is not mirrored.

:func:`plaintext_xgb` grows the trees on the pooled blocks. With ``follow`` (a secure model in
one place, :class:`Forest`) it replays *tree by tree*: each tree starts from the secure model's
margins, every node's split is checked against the replay's scores and then the secure split is
followed, and every leaf weight is compared; a difference beyond the tolerance raises
:class:`ReplayMismatch` naming the tree, the node and both values.

Tolerances. SecureBoost's split finding is exact on the quantised sums: the trees must be equal
and the leaf weights equal to float rounding. SS-XGB's shares carry errors of a few units
``u = 2^-18`` per row: the secure sigmoid's ``units`` and one unit per truncated product
(``c g``, ``p^2``, ``c h``), summed over a node's rows into the sums ``G``, ``H``; the squares
add one unit and the secure division ``16 u |q| + 2 u`` (:func:`mpcml.nonlinear.divide`).
:func:`_quotient_bound` carries them to every score and leaf weight; a split is accepted when
its score, raised by its bound, reaches every certainly-valid alternative's score lowered by its
bound (a candidate whose hessian sums lie within their bound of ``min_child_weight`` may count
as valid or not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from mpcml import fixedpoint
from mpcml.nonlinear import SIGMOID_METHODS

from .config import FRAC_BITS, GH_FRAC_BITS, GRADIENT_CAP, XGBConfig, guard_error, plan
from .config import sample_columns, sample_rows, sampling_stream
from .model import PartyModel
from .trees import (
    PartyTrees,
    QuantileBinner,
    base_margin,
    cumulative_histogram,
    feature_values,
    gradients,
    leaf_reachability,
    leaf_weight,
    split_gains,
)

UNIT = 2.0**-FRAC_BITS


class ReplayMismatch(AssertionError):
    """The secure model differs from the plaintext replay by more than the derived tolerance."""


def _q(value: float) -> float:
    """``value`` on the fixed-point grid, as encoding a public float does."""
    return float(np.rint(value / UNIT) * UNIT)


@dataclass
class Forest:
    """A whole model in one place (for replays and checks only: no party ever holds this).

    ``parts``: every party's splits in player order; ``leaves``: ``(trees, leaves)`` in the
    scaled units; the margin of a row is ``base + 2^shift * sum_t leaves[t, leaf_t(row)]``.
    """

    players: tuple[str, ...]
    parts: list[PartyTrees]
    leaves: np.ndarray
    base: float
    shift: int

    @classmethod
    def from_parts(cls, parts: Mapping[str, PartyModel | dict]) -> "Forest":
        """Assemble the parts of every party (SS-XGB's leaf shares summed: the model revealed)."""
        models = [p if isinstance(p, PartyModel) else PartyModel.from_wire(p) for p in parts.values()]
        players = models[0].players
        by_party = {m.party: m for m in models}
        if set(by_party) != set(players):
            raise ValueError(f"the parts {sorted(by_party)} are not those of the players {list(players)}")
        label = by_party[players[0]]
        if label.method == "ss":
            total = np.zeros_like(label.leaf_terms())
            for m in models:
                total += m.leaf_terms()
            leaves = fixedpoint.decode(total, FRAC_BITS)
        else:
            leaves = label.leaves
        return cls(players, [by_party[p].trees for p in players], leaves, float(label.base), int(label.target_shift))

    def leaf_index(self, blocks: Sequence[np.ndarray]) -> np.ndarray:
        """``(rows, trees)``: the leaf every row reaches."""
        reach = None
        for block, trees in zip(blocks, self.parts):
            r = leaf_reachability(feature_values(block), trees).astype(bool)
            reach = r if reach is None else reach & r
        n_leaves = self.leaves.shape[1]
        return np.argmax(reach.reshape(reach.shape[0], -1, n_leaves), axis=2)

    def margins(self, blocks: Sequence[np.ndarray]) -> np.ndarray:
        """Every row's margin in the targets' units."""
        return self.base + 2.0**self.shift * _per_row(self.leaves, self.leaf_index(blocks))


@dataclass
class Replay:
    """The replay's model (the followed or its own structure, its own leaf weights), the tolerance
    of every leaf weight (scaled units; 0 for SecureBoost), and ``notes``: the nodes where a
    followed split is not the replay's own best but within the tolerance (SS-XGB near-ties)."""

    forest: Forest
    leaf_tolerance: np.ndarray
    notes: list[str] = field(default_factory=list)

    def margin_tolerance(self, blocks: Sequence[np.ndarray]) -> np.ndarray:
        """Per row, how far a secure margin may lie from :meth:`Forest.margins` (target units)."""
        return 2.0**self.forest.shift * _per_row(self.leaf_tolerance, self.forest.leaf_index(blocks))


def _per_row(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``sum_t values[t, index[row, t]]`` for every row."""
    return values[np.arange(values.shape[0])[None, :], index].sum(axis=1)


# --- the gradients and their error bounds --------------------------------------------------------------


@dataclass(frozen=True)
class _Factors:
    """The public numbers of a run, rounded as the protocol's encoding rounds them (SS) or exact (HE)."""

    c: float
    lam: float
    mcw: float
    eta: float
    g_units: float
    h_units: float


def _factors(config: XGBConfig, n: int) -> _Factors:
    if config.method == "he":
        return _Factors(1.0, config.reg_lambda, config.min_child_weight, config.learning_rate, 0.0, 0.0)
    c = min(1.0, GRADIENT_CAP[config.loss] / n)
    scaled = c < 1
    cq = _q(c) if scaled else 1.0
    if config.loss == "logistic":
        sig = SIGMOID_METHODS[config.sigmoid].units
        g_units, h_units = cq * sig + scaled, cq * (sig + 1) + scaled
    else:
        g_units, h_units = float(scaled), 0.0
    return _Factors(cq, _q(config.reg_lambda * c), _q(config.min_child_weight * c), _q(config.learning_rate),
                    g_units, h_units)


def _gradients(config: XGBConfig, margin: np.ndarray, targets: np.ndarray, f: _Factors) -> tuple[np.ndarray, np.ndarray]:
    """Per-row ``(g, h)``: SecureBoost's exact ones (quantised later), or SS-XGB's plaintext twin (scaled by ``c``)."""
    if config.method == "he":
        return gradients(margin, targets, config.loss)
    if config.loss == "logistic":
        p = SIGMOID_METHODS[config.sigmoid].plain(margin)
        return f.c * (p - targets), f.c * (p - p * p)
    return f.c * (margin - targets), np.full_like(margin, f.c)


def _quotient_bound(x: np.ndarray, dx: np.ndarray, den: np.ndarray, dden: np.ndarray, square: bool
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(q, bound)``: ``q = x^2/den`` (or ``x/den``) and how far the secure quotient may lie from it, given
    ``|secure x - x| <= dx`` and ``|secure den - den| <= dden`` (see the module docstring)."""
    num, dnum = (x * x, (2 * np.abs(x) + dx) * dx + UNIT) if square else (x, dx)
    low = np.maximum(den - dden, UNIT)
    q = num / den
    inputs = (dnum + np.abs(q) * dden) / low
    return q, inputs + 16 * UNIT * (np.abs(q) + inputs) + 2 * UNIT


# --- one tree -------------------------------------------------------------------------------------------


@dataclass
class _Party:
    pid: str
    X: np.ndarray
    bins: QuantileBinner
    buckets: np.ndarray
    stream: object


def _candidate(bins: QuantileBinner, feature: int, threshold: float) -> int:
    feats, ks = bins.candidates()
    for j in np.flatnonzero(feats == feature):
        if bins.cuts_[feature][ks[j]] == threshold:
            return int(j)
    raise ReplayMismatch(f"the secure model splits column {feature} at {threshold!r}, which is no candidate")


class _Tree:
    """Grows one tree level by level on the replay's gradients."""

    def __init__(self, config: XGBConfig, parties: list[_Party], f: _Factors, g: np.ndarray, h: np.ndarray,
                 rows: np.ndarray, keeps: list[np.ndarray], t: int) -> None:
        self.config, self.parties, self.f, self.t = config, parties, f, t
        self.rows, self.keeps = rows, keeps
        self.n = len(g)
        self.notes: list[str] = []
        if config.method == "he":
            gh = np.rint(np.stack([g[rows], h[rows]], axis=1) * 2.0**GH_FRAC_BITS).astype(np.int64)
        else:
            gh = np.stack([g[rows], h[rows]], axis=1)
        self.gh = np.concatenate([gh, np.ones((len(rows), 1), dtype=gh.dtype)], axis=1)  # g, h, row count
        self.pos = np.zeros(self.n, dtype=np.int64)

    def sums(self, members: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Every party's left sums ``(candidates, 3)`` of ``(g, h, rows)`` and the node's totals over the
        sampled ``members``."""
        sampled = self.rows[members]
        parts = [cumulative_histogram(self.gh[members], p.buckets[sampled], p.bins.cuts_) for p in self.parties]
        return parts, self.gh[members].sum(axis=0)

    def choose(self, v: int, members: np.ndarray, followed: tuple[int, int] | None, follow: bool
               ) -> tuple[int, int] | None:
        """The split of node ``v``: the replay's own, or the followed one after checking it."""
        parts, total = self.sums(members)
        if self.config.method == "he":
            own = self._he_best(parts, total)
            if follow and own != followed:
                raise ReplayMismatch(f"tree {self.t + 1}, node {v}: the secure split {followed} is not the replay's {own}")
            return own
        return self._ss_choice(v, parts, total, followed, follow)

    def _he_best(self, parts: list[np.ndarray], total: np.ndarray) -> tuple[int, int] | None:
        scale = 2.0**GH_FRAC_BITS
        best, top = None, 0.0
        for i, (sums, keep) in enumerate(zip(parts, self.keeps)):
            gains = split_gains(sums[None, :, 0] / scale, sums[None, :, 1] / scale, np.array([total[0] / scale]),
                                np.array([total[1] / scale]), self.f.lam, self.f.mcw)[0]
            gains = np.where(keep, gains, -np.inf)
            if gains.size and gains.max() > top:
                best, top = (i, int(np.argmax(gains))), float(gains.max())
        return best

    def _ss_choice(self, v: int, parts: list[np.ndarray], total: np.ndarray, followed: tuple[int, int] | None,
                   follow: bool) -> tuple[int, int] | None:
        f = self.f
        gl, hl, left_count = (np.concatenate([p[:, i] for p in parts]) for i in range(3))
        keep = np.concatenate(self.keeps)
        count = total[2]
        right_count = count - left_count
        # right sums; exactly 0 for an empty side (float subtraction would leave a rounding residue)
        gr, hr = (np.where(right_count > 0, total[i] - left, 0.0) for i, left in ((0, gl), (1, hl)))
        dg_l, dg_r = left_count * f.g_units * UNIT, right_count * f.g_units * UNIT
        dh_l, dh_r = left_count * f.h_units * UNIT, right_count * f.h_units * UNIT
        qp, ep = _quotient_bound(np.array([total[0]]), np.array([count * f.g_units * UNIT]),
                                 np.array([total[1] + f.lam]), np.array([count * f.h_units * UNIT]), True)
        ql, el = _quotient_bound(gl, dg_l, hl + f.lam, dh_l, True)
        qr, er = _quotient_bound(gr, dg_r, hr + f.lam, dh_r, True)
        score, err = np.concatenate([qp, ql + qr]), np.concatenate([ep, el + er])
        certain = keep & (hl - dh_l >= f.mcw) & (hr - dh_r >= f.mcw)
        possible = keep & (hl + dh_l >= f.mcw) & (hr + dh_r >= f.mcw)
        valid = np.concatenate([[True], certain])
        own = int(np.argmax(np.where(valid, score, -np.inf)))
        if not follow:
            choice = own
        else:
            choice = 0 if followed is None else 1 + self._global(followed)
            if choice and not possible[choice - 1]:
                raise ReplayMismatch(f"tree {self.t + 1}, node {v}: the secure split {followed} is invalid "
                                     f"(min_child_weight) in the replay")
            rival = np.where(valid, score - err, -np.inf)
            if score[choice] + err[choice] < rival.max():
                raise ReplayMismatch(
                    f"tree {self.t + 1}, node {v}: the secure choice {followed} scores {score[choice]:.6g} (+-"
                    f"{err[choice]:.2g}) in the replay, below the best {score[int(np.argmax(rival))]:.6g} (+-"
                    f"{err[int(np.argmax(rival))]:.2g}) of {self._local(int(np.argmax(rival)) - 1)}")
            if choice != own:
                self.notes.append(f"tree {self.t + 1}, node {v}: the secure split {followed} scores {score[choice]:.6g}, "
                                  f"the replay's best {self._local(own - 1)} {score[own]:.6g} (bounds {err[choice]:.2g}, "
                                  f"{err[own]:.2g})")
        return None if choice == 0 else self._local(choice - 1)

    def _global(self, choice: tuple[int, int]) -> int:
        return sum(p.bins.n_candidates for p in self.parties[: choice[0]]) + choice[1]

    def _local(self, index: int) -> tuple[int, int] | None:
        if index < 0:
            return None
        for i, p in enumerate(self.parties):
            if index < p.bins.n_candidates:
                return i, index
            index -= p.bins.n_candidates
        raise AssertionError("candidate index out of range")

    def leaves(self) -> tuple[np.ndarray, np.ndarray]:
        """The leaf weights from the sampled rows and their tolerances (scaled units)."""
        n_leaves = 2**self.config.max_depth
        sums = np.zeros((n_leaves, 3), dtype=self.gh.dtype)
        np.add.at(sums, self.pos[self.rows] - (n_leaves - 1), self.gh)
        f = self.f
        if self.config.method == "he":
            sums = sums / 2.0**GH_FRAC_BITS
            return leaf_weight(sums[:, 0], sums[:, 1], f.eta, f.lam), np.zeros(n_leaves)
        count = sums[:, 2]
        q, dq = _quotient_bound(sums[:, 0], count * f.g_units * UNIT, sums[:, 1] + f.lam, count * f.h_units * UNIT, False)
        return -f.eta * q, f.eta * dq + UNIT


# --- the replay -------------------------------------------------------------------------------------


def _parties(config: XGBConfig, blocks: Sequence[np.ndarray]) -> list[_Party]:
    out = []
    for pid, block in zip(config.players, blocks):
        X = feature_values(block)
        bins = QuantileBinner(config.max_bin, config.binning).fit(X)
        stream = sampling_stream(config.random_state, pid) if config.random_state is not None else None
        out.append(_Party(pid, X, bins, bins.transform(X), stream))
    return out


def _start(config: XGBConfig, y: np.ndarray) -> tuple[float, int, np.ndarray, float]:
    """``(base, shift, targets, first margin)`` as the label holder starts (SS: encoded)."""
    base = base_margin(y, config.loss)
    shift, targets = 0, y
    if config.loss == "squared":
        top = float(np.max(np.abs(y - base)))
        shift = int(np.ceil(np.log2(top))) if top > 0 else 0
        targets = (y - base) * 2.0**-shift
    start = base if config.loss == "logistic" else 0.0
    if config.method == "ss":
        targets, start = np.rint(targets / UNIT) * UNIT, _q(start)
    return base, shift, targets, start


def plaintext_xgb(blocks: Sequence[np.ndarray], y: np.ndarray, config: XGBConfig, *, follow: Forest | None = None
                  ) -> Replay:
    """The replay (see the module docstring): ``blocks`` in player order, ``y`` the labels (0/1) or targets.

    Raises the protocol's ``ValueError`` where the range analysis refuses, its ``OverflowError``
    where the run-time guard stops, and :class:`ReplayMismatch` where ``follow`` differs.
    """
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    params = plan(config, n)
    parties = _parties(config, blocks)
    if config.random_state is None and (config.subsample < 1 or config.colsample_bytree < 1):
        raise ValueError("a replay of a sampled run needs config.random_state (the sampling seed)")
    f = _factors(config, n)
    base, shift, targets, start = _start(config, y)
    margin = np.full(n, start)
    n_leaves = 2**config.max_depth
    structure = [PartyTrees.empty(config.n_estimators, config.max_depth) for _ in parties]
    leaves, tolerance = np.zeros((config.n_estimators, n_leaves)), np.zeros((config.n_estimators, n_leaves))
    followed = None if follow is None else _followed(follow, parties)
    notes: list[str] = []
    for t in range(config.n_estimators):
        if params.residual_bound is not None and np.max(np.abs(margin - targets)) > params.residual_bound:
            raise guard_error(t, params.residual_bound, config)
        g, h = _gradients(config, margin, targets, f)
        rows = sample_rows(parties[0].stream, n, config.subsample) if config.subsample < 1 else np.arange(n)
        keeps = [sample_columns(p.stream, len(p.bins.cuts_), config.colsample_bytree)[p.bins.candidates()[0]]
                 if config.colsample_bytree < 1 else np.ones(p.bins.n_candidates, bool) for p in parties]
        tree = _Tree(config, parties, f, g, h, rows, keeps, t)
        for d in range(config.max_depth):
            tree.pos = _level(tree, structure, t, d, None if followed is None else followed[t])
        leaves[t], tolerance[t] = tree.leaves()
        notes += tree.notes
        step = leaves[t]
        if follow is not None:
            difference = np.abs(follow.leaves[t] - leaves[t])
            bound = tolerance[t] if config.method == "ss" else 1e-9 * np.maximum(1.0, np.abs(leaves[t]))
            if np.any(difference > bound):
                j = int(np.argmax(difference - bound))
                raise ReplayMismatch(f"tree {t + 1}, leaf {j}: secure weight {follow.leaves[t, j]:.8g}, replay "
                                     f"{leaves[t, j]:.8g}, tolerance {bound[j]:.2g}")
            step = follow.leaves[t]
        margin = margin + step[tree.pos - (n_leaves - 1)]
    forest = Forest(config.players, structure, leaves, base, shift)
    return Replay(forest, tolerance, notes)


def _followed(follow: Forest, parties: list[_Party]) -> list[dict[int, tuple[int, int] | None]]:
    """Per tree, node -> ``(party index, candidate)`` of the secure split, or None."""
    out = []
    for t in range(follow.leaves.shape[0]):
        nodes: dict[int, tuple[int, int] | None] = {}
        for v in range(follow.parts[0].features.shape[1]):
            owners = [i for i, trees in enumerate(follow.parts) if trees.features[t, v] >= 0]
            if len(owners) > 1:
                raise ReplayMismatch(f"tree {t + 1}, node {v} is owned by several parties {owners}")
            if owners:
                i = owners[0]
                trees = follow.parts[i]
                nodes[v] = (i, _candidate(parties[i].bins, int(trees.features[t, v]), float(trees.thresholds[t, v])))
            else:
                nodes[v] = None
        out.append(nodes)
    return out


def _level(tree: _Tree, structure: list[PartyTrees], t: int, d: int,
           followed: dict[int, tuple[int, int] | None] | None) -> np.ndarray:
    """Choose the splits of level ``d`` (checked against ``followed``, then followed); every row's child."""
    go_left = np.ones(tree.n, dtype=bool)
    for v in range(2**d - 1, 2 ** (d + 1) - 1):
        members = tree.pos[tree.rows] == v
        choice = tree.choose(v, members, None if followed is None else followed[v], followed is not None)
        if followed is not None:
            choice = followed[v]
        if choice is None:
            continue
        i, k = choice
        party = tree.parties[i]
        feature, threshold = party.bins.threshold(k)
        structure[i].set_split(t, v, feature, threshold)
        at = tree.pos == v
        go_left[at] = party.X[at, feature] < threshold
    return np.where(go_left, 2 * tree.pos + 1, 2 * tree.pos + 2)
