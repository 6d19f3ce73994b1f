"""SS-XGB training: secret-shared vertical XGBoost with a distributed model (Fang et al., CIKM 2021).

Fang, Zhao, Tan et al., "Large-Scale Secure XGB for Vertical Federated Learning", CIKM 2021.
The data parties ("players") hold different feature columns of the same rows; the first (the
*label holder*) also holds the labels; a dealer supplies correlated randomness
(:class:`mpcml.triples.DealerTriples`). Values are additive shares over Z_2^64 with
:data:`~protocols.xgb.config.FRAC_BITS` fractional bits unless said otherwise. The steps of
:func:`ss_player`, numbered as in the code:

Set-up:
  1. Each player bins its own columns (quantile cuts), announces its facts and runs the range
     analysis (:mod:`protocols.xgb.setup`). The label holder inputs its targets ``y'`` and the
     initial margin; each player's bucket-indicator matrix ``L_i`` (``L_i[r, j] = 1`` if row ``r``
     goes left under its candidate ``j``) is masked once (``E_i = L_i - A_i`` opened, SecureML's
     trick, :class:`mpcml.masked.MaskedMatrix`).
Per tree:
  2. Gradients on shares, times the public ``c = min(1, C/n)`` (``lambda`` and
     ``min_child_weight`` alike, so sums stay in range; gains scale by ``c``, leaves do not):
     logistic ``g = sigma(m) - y``, ``h = sigma(m)(1 - sigma(m))`` with the secure sigmoid
     ``config.sigmoid``; squared ``g = m' - y'``, ``h = 1`` (then the guard: one comparison of
     every residual with the analysed bound, the count of those outside opened).
  3. Sampling: the label holder inputs the tree's 0/1 row selection (``subsample``); each
     player its columns' 0/1 candidate mask (``colsample_bytree``).
Per level (all ``2^d`` nodes at once; each node has a shared 0/1 row selection ``s``):
  4. ``s∘g``, ``s∘h`` (one Beaver round); left sums ``L_i^T [s∘g, s∘h]`` of every candidate of
     every player (one round); ``G_R = G - G_L``.
  5. Scores ``G_L^2/(H_L+lambda) + G_R^2/(H_R+lambda)`` by secure division, replaced by ``-1`` where a
     child's hessian sum is below ``min_child_weight`` (secure comparison) or the column is not
     sampled, next to the "no split" score
     ``G^2/(H+lambda)``; a secure argmax over ``[no split, every player's candidates]`` (ties to the
     lowest index) gives a shared one-hot.
  6. Player ``i``'s slice of the one-hot is opened to player ``i`` only; the owner of the winner
     records its feature and threshold.
  7. Every player inputs a 0/1 "goes right" matrix (zeros where it did not win); the children's
     selections are ``s∘R`` and ``s - s∘R``. "No split" sends every row left (the right subtree
     stays empty and gets leaf weights 0, as an unsplit node in xgboost).
After the levels:
  8. Leaves ``w = -eta G/(H+lambda)`` by secure division, kept shared; every row's margin gains
     its leaf's weight; the label holder reports the tree (:class:`protocols.progress.Progress`).

Threat model: semi-honest, the dealer colludes with no player. What each party learns:

- every player: the number of rows, every player's number of candidate splits and options
  digest, and, for the nodes it owns only, that it owns them, their feature and threshold (hence
  which rows, of all rows, fall on either side of its threshold). It does not learn which player
  owns any other node, any gradient, sum, gain, leaf weight or node membership (all shared).
  With the squared loss, one bit per tree: whether every residual lies in the analysed range
  (always "yes" in a run that returns a model). The label holder also knows its labels and
  keeps the initial margin and target scale ``2^s`` to itself.
- the dealer: shapes and the sequence of operations only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpcml import fixedpoint
from mpcml.masked import MaskedMatrix
from mpcml.nonlinear import argmax_bits, divide, ltz_bits, not_bits, sigmoid
from mpcml.party import Party
from mpcml.schema import Array
from mpcml.tensor import Session, SharedTensor, leader_adds
from mpcml.triples import DealerTriples

from ..progress import Progress
from . import setup
from .config import FRAC_BITS, Plan, XGBConfig, guard_error, sample_columns, sample_rows
from .model import PartyModel
from .trees import PartyTrees

ONEHOT_SHARE = Array(np.uint64, ndim=2)
INVALID = 1.0
"""A candidate below ``min_child_weight`` (or of a column not sampled) scores ``-INVALID``: below every
"no split" score ``G^2/(H+lambda) >= 0`` even after the division's rounding, so it never wins."""


class _Player:
    """One player's state during training: its binner and indicator, the session, the plan."""

    def __init__(self, party: Party, config: XGBConfig, X: np.ndarray) -> None:
        self.party, self.config = party, config
        self.bins = setup.binner(config, X)
        self.left = self.bins.left_indicator(X)
        # 1. facts and the range analysis, before any share
        self.plan, facts = setup.agree(party, config, setup.facts(config, X, self.bins),
                                       [p for p in config.players if p != party.id])
        self.n = X.shape[0]
        self.sizes = [facts[p]["candidates"] for p in config.players]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.session = Session(party, config.players, DealerTriples(party, config.players, config.dealer), FRAC_BITS)
        self.stream = config.sampler(party)
        self.masked = [self._mask_indicator(pid, m) for pid, m in zip(config.players, self.sizes)]

    def _mask_indicator(self, owner: str, m: int) -> MaskedMatrix:
        share = self.left.astype(np.uint64) if self.party.id == owner else np.zeros((self.n, m), dtype=np.uint64)
        return MaskedMatrix(SharedTensor(self.session, share))

    def input_bits(self, mine: np.ndarray) -> np.ndarray:
        """Shares of ``sum_i mine_i`` for integer arrays of equal shape input by every player."""
        total = np.zeros(mine.shape, dtype=np.uint64)
        for pid in self.session.players:
            total += self.session.input_ring(mine.astype(np.uint64) if pid == self.party.id else None, pid)
        return total

    def segment(self, index: int) -> slice:
        return slice(int(self.offsets[index]), int(self.offsets[index + 1]))


def ss_player(party: Party, X: Any = None, y: Any = None, *, config: XGBConfig,
              progress: Progress | None = None) -> dict[str, Any]:
    """A player's training role (steps 1-8 of the module docstring); ``y`` at the label holder only.

    Returns this player's model part as :meth:`PartyModel.to_wire`.
    """
    X, y = setup.party_input(config, party.id, X, y)
    me = _Player(party, config, X)
    session, n, params = me.session, me.n, me.plan
    is_label = party.id == config.label_holder
    base, shift, targets = setup.label_start(config, y) if is_label else (None, None, None)
    # 1. the label holder's targets and initial margin (logistic: logit of the positive rate; squared: 0)
    labels = session.input(targets, config.label_holder, name="y")
    start = np.full(n, base if config.loss == "logistic" else 0.0) if is_label else None
    margin = session.input(start, config.label_holder, name="initial margin")
    trees = PartyTrees.empty(config.n_estimators, config.max_depth)
    leaves = np.zeros((config.n_estimators, 2**config.max_depth), dtype=np.uint64)
    for t in range(config.n_estimators):
        # 2. gradients (and the squared loss's guard)
        g, h = _gradients(session, margin, labels, config, params, t)
        # 3. sampling
        select, sampled = _root_selection(me, is_label)
        keep = _candidate_mask(me) if config.colsample_bytree < 1 else None
        for d in range(config.max_depth):
            select = _grow_level(me, trees, t, d, select, g, h, keep)
        # 8. leaves and margins
        w, margin = _leaf_weights(me, select, sampled, g, h, margin)
        leaves[t] = w.share
        if progress is not None:
            progress(t)
    session.close()
    return PartyModel("ss", party.id, config.players, trees, X.shape[1], leaves, base, shift).to_wire()


def _gradients(session: Session, margin: SharedTensor, labels: SharedTensor, config: XGBConfig, params: Plan,
               tree: int) -> tuple[SharedTensor, SharedTensor]:
    """Step 2: scaled ``(c g, c h)`` on shares; the squared loss's guard on ``|m' - y'|``."""
    n, c = margin.shape[0], params.gradient_scale
    if config.loss == "squared":
        g = margin - labels
        _guard(session, g, params.residual_bound, config, tree)
        return (g * c if c < 1 else g), session.public(np.full(n, c))
    p = sigmoid(margin, config.sigmoid)
    gh = SharedTensor.concatenate([p - labels, p - p * p])
    if c < 1:
        gh = gh * c
    return gh[:n], gh[n:]


def _guard(session: Session, residual: SharedTensor, bound: float, config: XGBConfig, tree: int) -> None:
    """One comparison of every residual with ``+-bound``; the count outside is opened (0 in a good run)."""
    limit = fixedpoint.encode(bound, session.frac_bits)
    outside = ltz_bits(session, np.stack([leader_adds(session, residual.share, limit),
                                          leader_adds(session, -residual.share, limit)]))
    (count,) = session.open([outside.sum(dtype=np.uint64).reshape(1)])
    if int(count[0]):
        session.close()
        raise guard_error(tree, bound, config)


def _root_selection(me: _Player, is_label: bool) -> tuple[np.ndarray, bool]:
    """Step 3: shares of the root's 0/1 row selection ``(n, 1)``; with ``subsample`` a second column
    selects every row (the leaves use the sampled rows, the margins move for all rows)."""
    session, n = me.session, me.n
    ones = np.full((n, 1), 1 if session.is_leader else 0, dtype=np.uint64)
    if me.config.subsample >= 1.0:
        return ones, False
    chosen = None
    if is_label:
        chosen = np.zeros((n, 1), dtype=np.uint64)
        chosen[sample_rows(me.stream, n, me.config.subsample), 0] = 1
    return np.concatenate([session.input_ring(chosen, me.config.label_holder), ones], axis=1), True


def _candidate_mask(me: _Player) -> np.ndarray:
    """Step 3: shares of the 0/1 mask of every player's candidates kept for this tree, ``(1, M)``."""
    keep = sample_columns(me.stream, len(me.bins.cuts_), me.config.colsample_bytree)[me.bins.candidates()[0]]
    mine = [keep[None, :] if pid == me.party.id else np.zeros((1, s), np.uint64)
            for pid, s in zip(me.session.players, me.sizes)]
    return me.input_bits(np.concatenate(mine, axis=1))


def _node_sums(session: Session, select: np.ndarray, g: SharedTensor, h: SharedTensor
               ) -> tuple[SharedTensor, SharedTensor, SharedTensor]:
    """``[s∘g | s∘h]`` for the k selection columns ``s`` (one exact Beaver round), and the k sums of each."""
    k = select.shape[1]
    v = session.mul_shares(np.concatenate([select, select], axis=1),
                           np.concatenate([np.repeat(g.share[:, None], k, 1), np.repeat(h.share[:, None], k, 1)], axis=1), 0)
    totals = v.sum(axis=0, dtype=np.uint64)
    return SharedTensor(session, v), SharedTensor(session, totals[:k]), SharedTensor(session, totals[k:])


def _grow_level(me: _Player, trees: PartyTrees, t: int, d: int, select: np.ndarray, g: SharedTensor, h: SharedTensor,
                keep: np.ndarray | None) -> np.ndarray:
    """Steps 4-7 for the ``2^d`` nodes of level ``d``; returns the children's selections ``(n, 2^(d+1))``."""
    scores = _level_scores(me, select[:, : 2**d], g, h, keep)
    # 5. the secure argmax; 6. each player's slice opened to it
    won = _open_segments(me, argmax_bits(me.session, scores)[:, 1:])
    return _split_children(me, trees, t, d, select, won)


def _level_scores(me: _Player, select: np.ndarray, g: SharedTensor, h: SharedTensor, keep: np.ndarray | None
                  ) -> np.ndarray:
    """Steps 4-5: shares of ``[G^2/(H+lambda) | G_L^2/(H_L+lambda) + G_R^2/(H_R+lambda) or -INVALID]``, ``k x (1 + M)``."""
    session, k, params = me.session, select.shape[1], me.plan
    lam, mcw = me.config.reg_lambda * params.gradient_scale, me.config.min_child_weight * params.gradient_scale
    # 4. node sums and every candidate's left sums
    vt, big_g, big_h = _node_sums(session, select, g, h)
    left = SharedTensor.concatenate([mm.t_matmul(vt, truncate=False) for mm in me.masked], axis=0).T  # (2k, M)
    gl, hl = left[:k], left[k:]
    gr, hr = big_g.reshape(k, 1) - gl, big_h.reshape(k, 1) - hl
    m = gl.shape[1]
    # 5. scores, the "no split" score, and the min_child_weight rule
    nums = SharedTensor.concatenate([gl.flatten(), gr.flatten(), big_g])
    dens = SharedTensor.concatenate([hl.flatten(), hr.flatten(), big_h]) + lam
    q = divide(nums * nums, dens, params.divide_lo, params.divide_hi)
    score = (q[: k * m] + q[k * m : 2 * k * m]).reshape(k, m)
    parent = q[2 * k * m :].reshape(k, 1)
    below = ltz_bits(session, (SharedTensor.stack([hl, hr]) - mcw).share)  # [H < mcw], integer bits
    shifted = (score + INVALID).share  # a candidate not allowed scores -INVALID, below any parent score
    if keep is not None:
        both, kept = session.mul_shares(np.stack([below[0], shifted]), np.stack([below[1], np.broadcast_to(keep, (k, m))]), 0)
    else:
        both, kept = session.mul_shares(below[0], below[1], 0), shifted
    valid = not_bits(session, below[0] + below[1] - both)  # both children heavy enough
    final = leader_adds(session, session.mul_shares(valid, kept, 0), fixedpoint.encode(-INVALID, session.frac_bits))
    return np.concatenate([parent.share, final], axis=1)


def _open_segments(me: _Player, onehot: np.ndarray) -> np.ndarray:
    """Step 6: each player's columns of the one-hot opened to that player only (one round); mine as 0/1."""
    session, party = me.session, me.party
    for i, pid in enumerate(session.players):
        if pid != party.id:
            party.send(pid, onehot[:, me.segment(i)])
    mine = onehot[:, me.segment(session.index)].copy()
    for theirs in party.gather(session.others, expect=ONEHOT_SHARE, what="share of the winning split").values():
        if theirs.shape != mine.shape:
            raise ValueError(f"a share of the winning split has shape {theirs.shape}, expected {mine.shape}")
        mine += theirs
    return fixedpoint.to_signed(mine) == 1


def _split_children(me: _Player, trees: PartyTrees, t: int, d: int, select: np.ndarray, won: np.ndarray) -> np.ndarray:
    """Step 7: record this player's winning splits; every player inputs its "goes right" rows; the children's selections."""
    session, n, k = me.session, me.n, 2**d
    right = np.zeros((n, k), dtype=np.uint8)
    first = 2**d - 1
    for j in range(k):
        hits = np.flatnonzero(won[j])
        if len(hits) > 1:
            raise ValueError("the secure argmax returned more than one winner")
        if len(hits) == 1:
            f, thr = me.bins.threshold(int(hits[0]))
            trees.set_split(t, first + j, f, thr)
            right[:, j] = 1 - me.left[:, hits[0]]
    goes_right = me.input_bits(right)
    cols = select.shape[1] // k
    sel_right = session.mul_shares(select, np.tile(goes_right, (1, cols)), 0)
    children = np.empty((n, 2 * select.shape[1]), dtype=np.uint64)
    children[:, 0::2], children[:, 1::2] = select - sel_right, sel_right
    return children


def _leaf_weights(me: _Player, select: np.ndarray, sampled: bool, g: SharedTensor, h: SharedTensor,
                  margin: SharedTensor) -> tuple[SharedTensor, SharedTensor]:
    """Step 8: shared leaf weights ``-eta G/(H+lambda)`` from the sampled rows, and every row's new margin."""
    session, config, params = me.session, me.config, me.plan
    n_leaves = 2**config.max_depth
    in_sample, everyone = (select[:, :n_leaves], select[:, n_leaves:]) if sampled else (select, select)
    _, leaf_g, leaf_h = _node_sums(session, in_sample, g, h)
    w = divide(leaf_g, leaf_h + config.reg_lambda * params.gradient_scale, params.divide_lo, params.divide_hi)
    w = w * (-config.learning_rate)
    step = session.mul_shares(everyone, w.share[None, :], 0).sum(axis=1, dtype=np.uint64)
    return w, margin + SharedTensor(session, step)
