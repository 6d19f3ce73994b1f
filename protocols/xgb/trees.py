"""Plaintext building blocks shared by both secure XGBoost methods and the plaintext replay.

- :class:`QuantileBinner`: per-party quantile buckets (like xgboost's ``tree_method="hist"`` with
  ``max_bin``). A split candidate ``(feature, k)`` sends a row left when ``x < cuts[feature][k]``,
  i.e. when its bucket index is ``<= k``.
- :func:`split_gains`: xgboost's gain ``1/2 [G_L^2/(H_L+lambda) + G_R^2/(H_R+lambda) - G^2/(H+lambda)]``
  with the ``min_child_weight`` rule, for all candidates of all nodes of a level at once.
- :class:`PartyTrees`: one party's part of a distributed model. Every tree is a full binary tree
  of ``max_depth`` levels (heap order: node ``i`` has children ``2i+1``, ``2i+2``). A party stores
  the feature index and threshold of the nodes *it* owns only; a node it does not own is "open"
  (a row may go both ways). A node nobody owns (no split with positive gain) sends every
  training row left, so its right subtree holds no training rows and has leaf weight 0.
- :func:`leaf_reachability`: for each row, the leaves it can reach using one party's splits
  (both branches at nodes the party does not own). The elementwise product over all parties is
  the one-hot of the row's true leaf (Fang et al. 2021, section 4.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..common import logistic


# --- losses --------------------------------------------------------------------------------


def base_margin(y: np.ndarray, loss: str) -> float:
    """Initial margin: logit of the positive rate (logistic) or the mean (squared)."""
    mean = float(np.mean(y))
    if loss == "logistic":
        mean = min(max(mean, 1e-6), 1 - 1e-6)
        return float(np.log(mean / (1 - mean)))
    return mean


def gradients(margin: np.ndarray, y: np.ndarray, loss: str) -> tuple[np.ndarray, np.ndarray]:
    """First and second derivatives of the loss at ``margin``."""
    if loss == "logistic":
        p = logistic(margin)
        return p - y, p * (1.0 - p)
    return margin - y, np.ones_like(margin)


def feature_values(x: np.ndarray) -> np.ndarray:
    """Feature values as xgboost compares them: rounded to float32 (kept in a float64 array)."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


# --- binning ---------------------------------------------------------------------------------


class QuantileBinner:
    """Quantile bucket boundaries per feature, fitted on one party's own columns (locally).

    ``method="xgboost"`` takes the cut points of xgboost's own quantile sketch
    (``xgboost.QuantileDMatrix(x, max_bin=...).get_quantile_cut()``; unweighted, per column), so
    the candidate splits are exactly those of ``XGBClassifier(tree_method="hist", max_bin=...)``;
    ``method="quantile"`` uses numpy's quantiles of each column (``max_bin - 1`` evenly spaced
    levels, or every distinct value when there are at most ``max_bin``). Cuts that would leave
    one side empty (``<= min`` or ``> max``) are dropped.
    """

    def __init__(self, max_bin: int, method: str = "xgboost") -> None:
        self.max_bin = max_bin
        self.method = method
        self.cuts_: list[np.ndarray] = []

    def fit(self, x: np.ndarray) -> "QuantileBinner":
        if self.method == "xgboost":
            import xgboost

            ptr, values = xgboost.QuantileDMatrix(x, max_bin=self.max_bin).get_quantile_cut()
            raw = [values[ptr[f] : ptr[f + 1]] for f in range(x.shape[1])]
        else:
            qs = np.linspace(0.0, 1.0, self.max_bin + 1)[1:-1]
            raw = [np.unique(c) if len(np.unique(c)) <= self.max_bin else np.quantile(c, qs, method="inverted_cdf")
                   for c in x.T]
        self.cuts_ = [np.unique(c[(c > col.min()) & (c <= col.max())]).astype(np.float64) for c, col in zip(raw, x.T)]
        return self

    @property
    def n_candidates(self) -> int:
        return sum(len(c) for c in self.cuts_)

    def candidates(self) -> tuple[np.ndarray, np.ndarray]:
        """``(feature, k)`` of every candidate split, in the order used by :meth:`left_indicator`."""
        feats = np.concatenate([np.full(len(c), f) for f, c in enumerate(self.cuts_)] or [np.zeros(0)])
        ks = np.concatenate([np.arange(len(c)) for c in self.cuts_] or [np.zeros(0)])
        return feats.astype(np.int64), ks.astype(np.int64)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Bucket index of every value: ``b`` with ``cuts[b-1] <= x < cuts[b]``."""
        return np.stack([np.searchsorted(c, x[:, f], side="right") for f, c in enumerate(self.cuts_)], axis=1)

    def left_indicator(self, x: np.ndarray) -> np.ndarray:
        """``(n_rows, n_candidates)`` 0/1 matrix: row goes left under candidate ``j``."""
        bins = self.transform(x)
        feats, ks = self.candidates()
        return (bins[:, feats] <= ks).astype(np.uint8)

    def threshold(self, candidate: int) -> tuple[int, float]:
        feats, ks = self.candidates()
        f = int(feats[candidate])
        return f, float(self.cuts_[f][ks[candidate]])


def cumulative_histogram(values: np.ndarray, bins: np.ndarray, cuts: list[np.ndarray]) -> np.ndarray:
    """Left sums of ``values`` (rows x k) for every candidate: ``(n_candidates, k)``, in ``values``' dtype
    (integer values give exact sums)."""
    out = []
    for f, c in enumerate(cuts):
        if len(c) == 0:
            continue
        hist = np.zeros((len(c) + 1, values.shape[1]), dtype=values.dtype)
        np.add.at(hist, bins[:, f], values)
        out.append(np.cumsum(hist, axis=0)[:-1])
    return np.concatenate(out) if out else np.zeros((0, values.shape[1]), dtype=values.dtype)


# --- split finding --------------------------------------------------------------------------------


def split_gains(gl: np.ndarray, hl: np.ndarray, g: np.ndarray, h: np.ndarray, lam: float, min_child_weight: float
                ) -> np.ndarray:
    """Gain of every candidate (``gl``, ``hl``: nodes x candidates) given node totals ``g``, ``h``.

    Candidates violating ``min_child_weight`` on either side get ``-inf``.
    """
    g, h = g[:, None], h[:, None]
    gr, hr = g - gl, h - hl
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = 0.5 * (gl**2 / (hl + lam) + gr**2 / (hr + lam) - g**2 / (h + lam))
    valid = (hl >= min_child_weight) & (hr >= min_child_weight)
    return np.where(valid & np.isfinite(gain), gain, -np.inf)


def leaf_weight(g: np.ndarray, h: np.ndarray, learning_rate: float, lam: float) -> np.ndarray:
    """``w = -eta G / (H + lambda)`` (0 for an empty node)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        w = -learning_rate * g / (h + lam)
    return np.where(np.isfinite(w), w, 0.0)


# --- the distributed model ------------------------------------------------------------------------


@dataclass
class PartyTrees:
    """One party's part of a distributed forest: its own splits only.

    ``features[t, i]`` is this party's column index at node ``i`` of tree ``t`` (``-1`` where the
    party does not own the node) and ``thresholds[t, i]`` the threshold (NaN where not owned).
    """

    features: np.ndarray
    thresholds: np.ndarray
    max_depth: int

    @classmethod
    def empty(cls, n_trees: int, max_depth: int) -> "PartyTrees":
        n_internal = 2**max_depth - 1
        return cls(np.full((n_trees, n_internal), -1, np.int64), np.full((n_trees, n_internal), np.nan), max_depth)

    def set_split(self, tree: int, node: int, feature: int, threshold: float) -> None:
        self.features[tree, node] = feature
        self.thresholds[tree, node] = threshold

    @property
    def n_trees(self) -> int:
        return self.features.shape[0]


def leaf_reachability(x: np.ndarray, trees: PartyTrees) -> np.ndarray:
    """``(n_rows, n_trees * n_leaves)`` 0/1 matrix of the leaves each row may reach by this party's splits."""
    n = x.shape[0]
    out = []
    for t in range(trees.n_trees):
        reach = np.ones((n, 1), dtype=bool)
        for depth in range(trees.max_depth):
            first = 2**depth - 1
            nxt = np.empty((n, 2 * reach.shape[1]), dtype=bool)
            for j in range(reach.shape[1]):
                f = trees.features[t, first + j]
                if f < 0:
                    nxt[:, 2 * j] = nxt[:, 2 * j + 1] = reach[:, j]
                else:
                    go_left = x[:, f] < trees.thresholds[t, first + j]
                    nxt[:, 2 * j] = reach[:, j] & go_left
                    nxt[:, 2 * j + 1] = reach[:, j] & ~go_left
            reach = nxt
        out.append(reach)
    return np.concatenate(out, axis=1).astype(np.uint8)
