"""SS-XGB training: secret-shared vertical XGBoost with a distributed model (Fang et al., CIKM 2021).

Fang, Zhao, Tan et al., "Large-Scale Secure XGB for Vertical Federated Learning", CIKM 2021.
The data parties ("players") hold different feature columns of the same rows; the first (the
*label holder*) also holds the labels. Values are shared over Z_2^64 with
:data:`~protocols.xgb.config.FRAC_BITS` fractional bits unless said otherwise, on either engine
of :mod:`mpcml.tensor` (``config.engine``; the code uses only engine-agnostic methods):
``"beaver"`` (additive shares among any number of players, a dealer supplies correlated
randomness, :class:`mpcml.triples.DealerTriples`) or ``"rss3"`` (replicated shares among exactly
three players, no dealer). The steps of :func:`ss_player`, numbered as in the code:

Set-up:
  1. Each player bins its own columns (quantile cuts), announces its facts and runs the range
     analysis (:mod:`protocols.xgb.setup`). The label holder inputs its targets ``y'`` and the
     initial margin; each player's bucket-indicator matrix ``L_i`` (``L_i[r, j] = 1`` if row ``r``
     goes left under its candidate ``j``) is shared and masked once (``beaver``: ``E_i = L_i - A_i``
     opened, SecureML's trick; ``rss3``: nothing opened; :class:`mpcml.masked.MaskedMatrix`).
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

Threat model: semi-honest; ``beaver``: the dealer colludes with no player (any coalition of all
but one player learns nothing more); ``rss3``: an honest majority (a single player learns
nothing more, two colluding players learn everything). What each party learns:

- every player: the number of rows, every player's number of candidate splits and options
  digest, and, for the nodes it owns only, that it owns them, their feature and threshold (hence
  which rows, of all rows, fall on either side of its threshold). It does not learn which player
  owns any other node, any gradient, sum, gain, leaf weight or node membership (all shared).
  With the squared loss, one bit per tree: whether every residual lies in the analysed range
  (always "yes" in a run that returns a model). The label holder also knows its labels and
  keeps the initial margin and target scale ``2^s`` to itself.
- the dealer (``beaver``): shapes and the sequence of operations only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpcml import fixedpoint
from mpcml.masked import MaskedMatrix
from mpcml.nonlinear import divide, sigmoid
from mpcml.party import Party
from mpcml.tensor import SharedTensor
from mpcml.session import Session, make_session

from ..progress import Progress
from . import setup
from .config import FRAC_BITS, Plan, XGBConfig, guard_error, sample_columns, sample_rows
from .model import PartyModel
from .trees import PartyTrees

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
        self.session = make_session(party, config.players, config.engine, dealer=config.dealer, frac_bits=FRAC_BITS)
        self.stream = config.sampler(party)
        self.masked = [MaskedMatrix(self._indicator(pid, m)) for pid, m in zip(config.players, self.sizes)]

    def _indicator(self, owner: str, width: int) -> SharedTensor:
        """Shares of ``owner``'s bucket-indicator matrix (every other player contributes zeros)."""
        own = self.left if owner == self.party.id else np.zeros((self.n, width), dtype=np.uint8)
        return self.session.from_additive(own.astype(np.uint64))

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
    leaves = []
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
        leaves.append(w.share)
        if progress is not None:
            progress(t)
    session.close()
    return PartyModel("ss", party.id, config.players, trees, X.shape[1], np.stack(leaves, axis=-2), base, shift,
                      engine=config.engine).to_wire()


def _gradients(session: Session, margin: SharedTensor, labels: SharedTensor, config: XGBConfig, params: Plan,
               tree: int) -> tuple[SharedTensor, SharedTensor]:
    """Step 2: scaled ``(c g, c h)`` on shares; the squared loss's guard on ``|m' - y'|``."""
    n, c = margin.shape[0], params.gradient_scale
    if config.loss == "squared":
        g = margin - labels
        _guard(g, params.residual_bound, config, tree)
        return (g * c if c < 1 else g), session.public(np.full(n, c))
    p = sigmoid(margin, config.sigmoid)
    gh = SharedTensor.concatenate([p - labels, p - p * p])
    if c < 1:
        gh = gh * c
    return gh[:n], gh[n:]


def _guard(residual: SharedTensor, bound: float, config: XGBConfig, tree: int) -> None:
    """One comparison of every residual with ``+-bound``; the count outside is opened (0 in a good run)."""
    outside = SharedTensor.stack([residual + bound, bound - residual]).ltz_bits()
    if int(outside.sum().reveal_ring()):
        residual.session.close()
        raise guard_error(tree, bound, config)


def _root_selection(me: _Player, is_label: bool) -> tuple[SharedTensor, bool]:
    """Step 3: shares of the root's 0/1 row selection ``(n, 1)``; with ``subsample`` a second column
    selects every row (the leaves use the sampled rows, the margins move for all rows)."""
    session, n = me.session, me.n
    ones = session.public_ring(np.ones((n, 1), dtype=np.uint64))
    if me.config.subsample >= 1.0:
        return ones, False
    chosen = None
    if is_label:
        chosen = np.zeros((n, 1), dtype=np.uint64)
        chosen[sample_rows(me.stream, n, me.config.subsample), 0] = 1
    return SharedTensor.concatenate([SharedTensor(session, session.input_ring(chosen, me.config.label_holder)), ones],
                                    axis=1), True


def _candidate_mask(me: _Player) -> SharedTensor:
    """Step 3: shares of the 0/1 mask of every player's candidates kept for this tree, ``(1, M)``."""
    keep = sample_columns(me.stream, len(me.bins.cuts_), me.config.colsample_bytree)[me.bins.candidates()[0]]
    mine = [keep[None, :] if pid == me.party.id else np.zeros((1, s), np.uint64)
            for pid, s in zip(me.session.players, me.sizes)]
    return me.session.from_additive(np.concatenate(mine, axis=1).astype(np.uint64))


def _node_sums(select: SharedTensor, g: SharedTensor, h: SharedTensor) -> tuple[SharedTensor, SharedTensor, SharedTensor]:
    """``[s∘g | s∘h]`` for the k selection columns ``s`` (one exact product round), and the k sums of each."""
    n, k = select.shape
    both = SharedTensor.concatenate([g.reshape(n, 1).broadcast_to((n, k)), h.reshape(n, 1).broadcast_to((n, k))], axis=1)
    v = select.tile((1, 2)).mul(both, trunc_bits=0)
    totals = v.sum(axis=0)
    return v, totals[:k], totals[k:]


def _grow_level(me: _Player, trees: PartyTrees, t: int, d: int, select: SharedTensor, g: SharedTensor,
                h: SharedTensor, keep: SharedTensor | None) -> SharedTensor:
    """Steps 4-7 for the ``2^d`` nodes of level ``d``; returns the children's selections ``(n, 2^(d+1))``."""
    scores = _level_scores(me, select[:, : 2**d], g, h, keep)
    # 5. the secure argmax; 6. each player's slice opened to it
    won = _open_segments(me, scores.argmax_bits()[:, 1:])
    return _split_children(me, trees, t, d, select, won)


def _level_scores(me: _Player, select: SharedTensor, g: SharedTensor, h: SharedTensor, keep: SharedTensor | None
                  ) -> SharedTensor:
    """Steps 4-5: shares of ``[G^2/(H+lambda) | G_L^2/(H_L+lambda) + G_R^2/(H_R+lambda) or -INVALID]``, ``k x (1 + M)``."""
    k, params = select.shape[1], me.plan
    lam, mcw = me.config.reg_lambda * params.gradient_scale, me.config.min_child_weight * params.gradient_scale
    # 4. node sums and every candidate's left sums
    vt, big_g, big_h = _node_sums(select, g, h)
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
    below = (SharedTensor.stack([hl, hr]) - mcw).ltz_bits()  # [H < mcw], integer bits
    shifted = score + INVALID  # a candidate not allowed scores -INVALID, below any parent score
    if keep is not None:
        products = SharedTensor.stack([below[0], shifted]).mul(SharedTensor.stack([below[1], keep.broadcast_to((k, m))]), 0)
        both, kept = products[0], products[1]
    else:
        both, kept = below[0].mul(below[1], 0), shifted
    valid = (below[0] + below[1] - both).not_bits()  # both children heavy enough
    return SharedTensor.concatenate([parent, valid.mul(kept, 0) - INVALID], axis=1)


def _open_segments(me: _Player, onehot: SharedTensor) -> np.ndarray:
    """Step 6: each player's columns of the one-hot opened to that player only (one round); mine as 0/1."""
    mine = me.session.open_to_each({pid: onehot[:, me.segment(i)] for i, pid in enumerate(me.session.players)})
    return fixedpoint.to_signed(mine) == 1


def _split_children(me: _Player, trees: PartyTrees, t: int, d: int, select: SharedTensor, won: np.ndarray
                    ) -> SharedTensor:
    """Step 7: record this player's winning splits; every player inputs its "goes right" rows; the children's selections."""
    n, k = me.n, 2**d
    right = np.zeros((n, k), dtype=np.uint64)
    first = 2**d - 1
    for j in range(k):
        hits = np.flatnonzero(won[j])
        if len(hits) > 1:
            raise ValueError("the secure argmax returned more than one winner")
        if len(hits) == 1:
            f, thr = me.bins.threshold(int(hits[0]))
            trees.set_split(t, first + j, f, thr)
            right[:, j] = 1 - me.left[:, hits[0]]
    goes_right = me.session.from_additive(right)
    sel_right = select.mul(goes_right.tile((1, select.shape[1] // k)), 0)
    # children interleaved: column 2j is the left child of column j, 2j + 1 the right one
    return SharedTensor.stack([select - sel_right, sel_right], axis=2).reshape(n, 2 * select.shape[1])


def _leaf_weights(me: _Player, select: SharedTensor, sampled: bool, g: SharedTensor, h: SharedTensor,
                  margin: SharedTensor) -> tuple[SharedTensor, SharedTensor]:
    """Step 8: shared leaf weights ``-eta G/(H+lambda)`` from the sampled rows, and every row's new margin."""
    config, params = me.config, me.plan
    n_leaves = 2**config.max_depth
    in_sample, everyone = (select[:, :n_leaves], select[:, n_leaves:]) if sampled else (select, select)
    _, leaf_g, leaf_h = _node_sums(in_sample, g, h)
    w = divide(leaf_g, leaf_h + config.reg_lambda * params.gradient_scale, params.divide_lo, params.divide_hi)
    w = w * (-config.learning_rate)
    return w, margin + everyone.mul(w.reshape(1, n_leaves), 0).sum(axis=1)
