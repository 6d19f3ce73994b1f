"""SS-XGB: secret-shared vertical XGBoost with a distributed model (Fang et al., CIKM 2021).

Fang, Zhao, Tan et al., "Large-Scale Secure XGB for Vertical Federated Learning", CIKM 2021.
Compute parties ("players") hold different feature columns of the same rows; the first player
(the *label holder*) also holds the labels; a dealer supplies correlated randomness
(:class:`mpcml.triples.DealerTriples`). All values below are additive shares over Z_2^64 with
``FRAC_BITS`` = 18 fractional bits unless said otherwise.

Training, per tree:

1. Gradients on shares: logistic loss ``g = σ(m) − y``, ``h = σ(m)(1 − σ(m))`` with σ by a method
   of :data:`mpcml.nonlinear.SIGMOID_METHODS`: ``"spline"`` by default (piecewise cubic,
   ``|error| <= 6.2e-5`` on [−8, 8], 3.4e-4 outside), or e.g. ``"sqrt"`` (``|error| <= 0.0222``); squared loss
   ``g = m − y'``, ``h = 1`` on the label holder's standardised ``y' = (y − mean)/std`` (trees are
   unchanged by this rescaling, leaf weights scale by ``1/std``). ``g`` and ``h`` are multiplied by
   the public ``c = min(1, C/n)`` (``C`` = 1024, or 256 for squared loss), with ``λ`` and
   ``min_child_weight`` scaled alike, so sums stay in fixed-point range; gains scale by ``c`` and
   leaf weights are unchanged.
2. Each node has a shared 0/1 row-selection vector ``s`` (integers, no fractional bits). Per level,
   one Beaver round gives ``s∘g`` and ``s∘h`` for every node. Each player ``i`` holds its
   bucket-indicator matrix ``L_i`` (``L_i[r, j] = 1`` if row ``r`` goes left under its candidate
   ``j``) in plaintext; it is masked once (``E_i = L_i − A_i`` opened; SecureML's trick,
   :class:`mpcml.masked.MaskedMatrix`), after which ``L_iᵀ [s∘g, s∘h]`` for all nodes of a level
   costs one round. That gives the left sums ``G_L, H_L`` of every candidate; ``G_R = G − G_L``.
3. Scores ``G_L²/(H_L+λ) + G_R²/(H_R+λ)`` by secure division (:func:`mpcml.nonlinear.divide`),
   zeroed where ``H_L`` or ``H_R`` is below ``min_child_weight`` (secure comparison), next to the
   "no split" score ``G²/(H+λ)`` (a split gains ``½(score − G²/(H+λ))``, never negative). A secure
   argmax over ``[no split, all players' candidates]`` per node (:func:`mpcml.nonlinear.argmax_bits`,
   carrying indices) gives a shared one-hot.
4. Player ``i``'s part of the one-hot is opened to player ``i`` only. The owner of the winner maps
   it to its feature and threshold and keeps them; every player then inputs a shared 0/1 matrix of
   rows going right (zeros for nodes it does not own), and the children's selections are
   ``s∘(Σ_i R_i)`` and ``s − s∘(Σ_i R_i)``. "No split" sends every row left, so the right subtree
   stays empty and gets leaf weights 0 (this reproduces xgboost's early stopping on a full tree).
5. Leaves: ``w = −η·G/(H+λ)`` by secure division; they stay shared. The margin of every row is
   updated by ``Σ_leaves s_leaf ∘ w``.

Prediction on the distributed model: each player computes, from its own splits only, the 0/1
matrix of leaves a row can reach (both branches at nodes it does not own), inputs it as a secret;
the elementwise product over players is the one-hot of the true leaf; its product with the shared
leaf weights, summed, is the margin, revealed only to the player named ``to``.

Threat model: semi-honest, the dealer colludes with no player. What each party learns:

- every player: the number of rows, every player's number of candidate splits, the public
  parameters, and — for the nodes it owns only — that it owns them, their feature and threshold,
  and hence which rows (of all rows, not of the node) fall on either side of its threshold. It does
  not learn which other player owns any other node, any gradient, sum, gain, leaf weight or node
  membership (all stay shared). The label holder additionally knows its labels.
- the dealer: shapes and the sequence of operations only.
- ``to`` at prediction: the predicted margins.
A saved model holds the player's own splits and its *share* of the leaf weights; the label
holder's also holds the output scale and offset (from the labels' mean and spread).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from mpcml import fixedpoint
from mpcml.masked import MaskedMatrix
from mpcml.nonlinear import SIGMOID_METHODS, argmax_bits, divide, ltz_bits, not_bits, sigmoid
from mpcml.party import Party
from mpcml.tensor import Session, SharedTensor
from mpcml.triples import DealerTriples

from .xgb_trees import PartyTrees, QuantileBinner, XGBParams, base_margin, feature_values, leaf_reachability

Progress = Callable[[str], None] | None
FRAC_BITS = 18
DIVIDE_LO = -14
_SCALE_CAP = {"logistic": 1024.0, "squared": 256.0}


@dataclass
class SSModel:
    """One player's part of an SS-XGB model.

    ``leaf_shares`` (trees x leaves, uint64) is this player's additive share of the leaf weights;
    ``output`` = ``(scale, offset)`` turning the shared margin into the prediction's margin is set
    at the label holder only.
    """

    trees: PartyTrees
    leaf_shares: np.ndarray
    players: tuple[str, ...]
    output: tuple[float, float] | None = None


def gradient_scale(n_rows: int, loss: str) -> float:
    """The public factor ``c = min(1, C / n)`` applied to gradients, hessians, λ and min_child_weight."""
    return min(1.0, _SCALE_CAP[loss] / n_rows)


def _divide_range(n_rows: int, params: XGBParams) -> tuple[int, int]:
    """``(lo, hi)`` with every denominator ``H + λ`` (scaled) in ``[2^lo, 2^hi)``."""
    c = gradient_scale(n_rows, params.loss)
    lam = params.reg_lambda * c
    if lam < 2.0**DIVIDE_LO:
        raise ValueError(
            f"reg_lambda={params.reg_lambda} is too small for the secure division with {n_rows} rows "
            f"(method='ss' needs reg_lambda >= {2.0**DIVIDE_LO / c:.3g})"
        )
    h_max = 0.25 if params.loss == "logistic" else 1.0
    lo = int(np.floor(np.log2(lam * 0.9)))
    hi = int(np.ceil(np.log2(c * n_rows * h_max * 1.1 + lam + 1.0))) + 1
    return lo, hi


def check_params(n_rows: int, params: XGBParams, sigmoid_method: str) -> tuple[int, int]:
    """Raise ``ValueError`` on parameters SS-XGB cannot run with; returns the division range."""
    if sigmoid_method not in SIGMOID_METHODS:
        raise ValueError(f"sigmoid must be one of {sorted(SIGMOID_METHODS)}, got {sigmoid_method!r}")
    return _divide_range(n_rows, params)


def reveal_leaves(models: Sequence[SSModel]) -> tuple[np.ndarray, float, float]:
    """Leaf weights from every player's shares, and the label holder's output scale and offset.

    For tests and audits only: it needs every player's model in one place.
    """
    total = np.zeros_like(models[0].leaf_shares)
    for model in models:
        total += model.leaf_shares
    scale, offset = next(m.output for m in models if m.output is not None)
    return fixedpoint.decode(total, FRAC_BITS), scale, offset


class _Player:
    """Shared state of one player during training (its binner, masked indicator matrices, session)."""

    def __init__(self, party: Party, players: Sequence[str], dealer: str, x: np.ndarray, params: XGBParams) -> None:
        self.party = party
        self.session = Session(party, players, DealerTriples(party, players, dealer=dealer), FRAC_BITS)
        self.params = params
        x = feature_values(x)
        self.binner = QuantileBinner(params.max_bin, params.binning).fit(x)
        self.left = self.binner.left_indicator(x)
        party.send_all(self.session.others, [x.shape[0], self.binner.n_candidates])
        sizes = {party.id: self.binner.n_candidates}
        for pid in self.session.others:
            info = party.recv(pid)
            if not (isinstance(info, list) and len(info) == 2 and all(isinstance(v, int) for v in info)):
                raise ValueError(f"player {pid!r} sent a malformed setup message")
            if info[0] != x.shape[0]:
                raise ValueError(f"player {pid!r} holds {info[0]} rows but player {party.id!r} holds {x.shape[0]}")
            sizes[pid] = info[1]
        self.sizes = [sizes[p] for p in players]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.n = x.shape[0]
        self.masked = [self._mask_indicator(pid, m) for pid, m in zip(players, self.sizes)]

    def _mask_indicator(self, owner: str, m: int) -> MaskedMatrix:
        if self.party.id == owner:
            share = self.left.astype(np.uint64)
        else:
            share = np.zeros((self.n, m), dtype=np.uint64)
        return MaskedMatrix(SharedTensor(self.session, share))

    def input_bits(self, mine: np.ndarray) -> np.ndarray:
        """Shares of ``Σ_i mine_i`` for integer arrays of equal shape input by every player."""
        total = np.zeros(mine.shape, dtype=np.uint64)
        for pid in self.session.players:
            total += self.session.input_ring(mine.astype(np.uint64) if pid == self.party.id else None, pid)
        return total

    def mine(self, index: int) -> slice:
        return slice(int(self.offsets[index]), int(self.offsets[index + 1]))


def train_player(
    party: Party,
    players: Sequence[str],
    dealer: str,
    x: np.ndarray,
    params: XGBParams,
    y: np.ndarray | None = None,
    *,
    sigmoid_method: str = "spline",
    progress: Progress = None,
) -> SSModel:
    """A player's training role (``y`` at ``players[0]``, the label holder, only)."""
    players = tuple(players)
    lo, hi = check_params(x.shape[0], params, sigmoid_method)
    is_label = party.id == players[0]
    if is_label == (y is None):
        raise ValueError("y must be given at the label holder (players[0]) and only there")
    me = _Player(party, players, dealer, x, params)
    session, n = me.session, me.n
    c = gradient_scale(n, params.loss)
    lam, mcw = params.reg_lambda * c, params.min_child_weight * c
    output = None
    if is_label:
        if params.loss == "squared":
            spread = float(np.std(y)) or 1.0
            output = (spread, float(np.mean(y)))
            y = (y - output[1]) / spread
            base = 0.0
        else:
            base = base_margin(y, params.loss)
            output = (1.0, base)
    labels = session.input(y if is_label else None, players[0], name="y")
    margin = session.input(np.full(n, base) if is_label else None, players[0], name="base margin")
    trees = PartyTrees.empty(params.n_estimators, params.max_depth)
    leaves = np.zeros((params.n_estimators, params.n_leaves), dtype=np.uint64)
    start = time.perf_counter()
    for t in range(params.n_estimators):
        g, h = _gradients(session, margin, labels, params.loss, c, sigmoid_method)
        root, sampled = _root_selection(me, is_label)
        keep = _column_mask(party, me.binner, params.colsample_bytree)[None, :] if params.colsample_bytree < 1 else None
        select = root
        for d in range(params.max_depth):
            select = _grow_level(me, trees, t, d, select, g, h, lam, mcw, (lo, hi), keep)
            if progress is not None:
                progress(f"tree {t + 1}/{params.n_estimators} depth {d + 1}/{params.max_depth} "
                         f"{time.perf_counter() - start:.1f}s")
        sampled_sel, all_sel = (select[:, : params.n_leaves], select[:, params.n_leaves :]) if sampled else (select, select)
        _, leaf_g, leaf_h = _node_sums(session, sampled_sel, g, h)
        w = divide(leaf_g, leaf_h + lam, lo, hi) * (-params.learning_rate)
        leaves[t] = w.share
        margin = margin + SharedTensor(session, session.mul_shares(all_sel, w.share[None, :], 0).sum(axis=1, dtype=np.uint64))
    session.close()
    return SSModel(trees, leaves, players, output)


def _gradients(session: Session, margin: SharedTensor, labels: SharedTensor, loss: str, c: float,
               method: str) -> tuple[SharedTensor, SharedTensor]:
    """Scaled ``(c·g, c·h)`` on shares."""
    n = margin.shape[0]
    if loss == "squared":
        g = margin - labels
        return (g * c if c < 1 else g), session.public(np.full(n, c))
    p = sigmoid(margin, method)
    gh = SharedTensor.concatenate([p - labels, p - p * p])
    if c < 1:
        gh = gh * c
    return gh[:n], gh[n:]


def _root_selection(me: _Player, is_label: bool) -> tuple[np.ndarray, bool]:
    """Shares of the root's 0/1 selection (n x 1), plus an all-ones column when rows are subsampled."""
    session, n, rate = me.session, me.n, me.params.subsample
    ones = np.full((n, 1), 1 if session.is_leader else 0, dtype=np.uint64)
    if rate >= 1.0:
        return ones, False
    if is_label:
        keep = (me.party.rng.random_uint64(n) < np.uint64(min(int(rate * 2.0**64), 2**64 - 1))).astype(np.uint64)
    chosen = session.input_ring(keep[:, None] if is_label else None, session.players[0])
    return np.concatenate([chosen, ones], axis=1), True


def _column_mask(party: Party, binner: QuantileBinner, rate: float) -> np.ndarray:
    """This player's per-candidate 0/1 mask of the columns kept for the tree (``colsample_bytree``)."""
    n_feat = len(binner.cuts_)
    order = party.rng.permutation(n_feat)
    keep = np.zeros(n_feat, dtype=bool)
    keep[order[: max(1, int(round(rate * n_feat)))]] = True
    return keep[binner.candidates()[0]].astype(np.uint64)


def _node_sums(session: Session, select: np.ndarray, g: SharedTensor, h: SharedTensor
               ) -> tuple[SharedTensor, SharedTensor, SharedTensor]:
    """``[s∘g | s∘h]`` for the k selection columns ``s`` (one exact Beaver round), and the k sums of each."""
    k = select.shape[1]
    v = session.mul_shares(np.concatenate([select, select], axis=1),
                           np.concatenate([np.repeat(g.share[:, None], k, 1), np.repeat(h.share[:, None], k, 1)], axis=1), 0)
    totals = v.sum(axis=0, dtype=np.uint64)
    return SharedTensor(session, v), SharedTensor(session, totals[:k]), SharedTensor(session, totals[k:])


def _grow_level(me: _Player, trees: PartyTrees, t: int, d: int, select: np.ndarray, g: SharedTensor, h: SharedTensor,
                lam: float, mcw: float, div_range: tuple[int, int], keep: np.ndarray | None) -> np.ndarray:
    """Choose the splits of all ``2^d`` nodes of level ``d``; returns the children's selections."""
    k = 2**d
    scores = _level_scores(me, select[:, :k], g, h, lam, mcw, div_range, keep)
    won = _open_segments(me, argmax_bits(me.session, scores)[:, 1:])
    return _split_children(me, trees, t, d, select, won)


def _level_scores(me: _Player, select: np.ndarray, g: SharedTensor, h: SharedTensor, lam: float, mcw: float,
                  div_range: tuple[int, int], keep: np.ndarray | None) -> np.ndarray:
    """Shares of ``[G²/(H+λ) | valid ∘ (G_L²/(H_L+λ) + G_R²/(H_R+λ))]`` for the ``k`` nodes: ``k x (1 + M)``."""
    session, k = me.session, select.shape[1]
    vt, big_g, big_h = _node_sums(session, select, g, h)
    left = SharedTensor.concatenate([mm.t_matmul(vt, truncate=False) for mm in me.masked], axis=0).T  # (2k, M)
    gl, hl = left[:k], left[k:]
    gr, hr = big_g.reshape(k, 1) - gl, big_h.reshape(k, 1) - hl
    m = gl.shape[1]
    nums = SharedTensor.concatenate([gl.flatten(), gr.flatten(), big_g])
    dens = SharedTensor.concatenate([hl.flatten(), hr.flatten(), big_h]) + lam
    q = divide(nums * nums, dens, *div_range)
    score = (q[: k * m] + q[k * m : 2 * k * m]).reshape(k, m)
    parent = q[2 * k * m :].reshape(k, 1)
    below = ltz_bits(session, (SharedTensor.stack([hl, hr]) - mcw).share)  # [H < mcw], integer bits
    if keep is not None:
        mask = me.input_bits(np.concatenate([keep if pid == me.party.id else np.zeros((1, s), np.uint64)
                                             for pid, s in zip(session.players, me.sizes)], axis=1))
        both, kept = session.mul_shares(np.stack([below[0], score.share]), np.stack([below[1], np.broadcast_to(mask, (k, m))]), 0)
    else:
        both, kept = session.mul_shares(below[0], below[1], 0), score.share
    valid = not_bits(session, below[0] + below[1] - both)  # both children heavy enough
    return np.concatenate([parent.share, session.mul_shares(valid, kept, 0)], axis=1)


def _split_children(me: _Player, trees: PartyTrees, t: int, d: int, select: np.ndarray, won: np.ndarray) -> np.ndarray:
    """Record this player's winning splits; every player inputs its "goes right" rows; the children's selections."""
    session, n, k = me.session, me.n, 2**d
    right = np.zeros((n, k), dtype=np.uint8)
    first = 2**d - 1
    for j in range(k):
        hits = np.flatnonzero(won[j])
        if len(hits) > 1:
            raise ValueError("the secure argmax returned more than one winner")
        if len(hits) == 1:
            f, thr = me.binner.threshold(int(hits[0]))
            trees.set_split(t, first + j, f, thr)
            right[:, j] = 1 - me.left[:, hits[0]]
    goes_right = me.input_bits(right)
    cols = select.shape[1] // k
    sel_right = session.mul_shares(select, np.tile(goes_right, (1, cols)), 0)
    children = np.empty((n, 2 * select.shape[1]), dtype=np.uint64)
    children[:, 0::2], children[:, 1::2] = select - sel_right, sel_right
    return children


def _open_segments(me: _Player, onehot: np.ndarray) -> np.ndarray:
    """Open each player's columns of the one-hot to that player only (one round); returns mine as 0/1."""
    session, party = me.session, me.party
    for i, pid in enumerate(session.players):
        if pid != party.id:
            party.send(pid, onehot[:, me.mine(i)])
    mine = onehot[:, me.mine(session.index)].copy()
    for pid in session.others:
        theirs = party.recv(pid)
        if not isinstance(theirs, np.ndarray) or theirs.shape != mine.shape or theirs.dtype != np.uint64:
            raise ValueError(f"player {pid!r} sent a malformed share of the winner")
        mine += theirs
    return fixedpoint.to_signed(mine) == 1


def predict_player(
    party: Party, dealer: str, x: np.ndarray, model: SSModel, *, to: str | None = None
) -> np.ndarray | None:
    """A player's prediction role; returns the margins at player ``to`` (default: the label holder), else None."""
    players = model.players
    to = players[0] if to is None else to
    if to not in players:
        raise ValueError(f"to={to!r} is not one of the players {list(players)}")
    is_label = party.id == players[0]
    if is_label and model.output is None:
        raise ValueError("the label holder's model lacks its output scale and offset")
    session = Session(party, players, DealerTriples(party, players, dealer=dealer), FRAC_BITS)
    reach_mine = leaf_reachability(feature_values(x), model.trees).astype(np.uint64)
    party.send_all(session.others, list(reach_mine.shape))
    for pid in session.others:
        if party.recv(pid) != list(reach_mine.shape):
            raise ValueError(f"player {pid!r} predicts a different number of rows or trees")
    reach = None
    for pid in players:
        term = session.input_ring(reach_mine if pid == party.id else None, pid)
        reach = term if reach is None else session.mul_shares(reach, term, 0)
    margin = session.mul_shares(reach, model.leaf_shares.reshape(1, -1), 0).sum(axis=1, dtype=np.uint64)
    scale, offset = model.output if is_label else (None, None)
    affine = session.input([scale, offset] if is_label else None, players[0], name="output scale")
    result = SharedTensor(session, session.mul_shares(margin, affine.share[0])) + SharedTensor(session, np.broadcast_to(affine.share[1], margin.shape))
    out = result.reveal(to=to)
    session.close()
    return out
