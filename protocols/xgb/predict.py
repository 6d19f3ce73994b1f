"""Prediction with a distributed XGBoost model: every data party takes part with its own part.

Each party computes, from its own splits only, the 0/1 matrix of leaves a row can reach (both
branches at the nodes it does not own; :func:`~protocols.xgb.trees.leaf_reachability`); the
elementwise product over the parties is the one-hot of each row's leaf (Fang et al. 2021,
section 4.3). The margin is ``base + 2^s * sum_t w_t[leaf]`` with the label holder's ``base`` and
``s``.

SS-XGB (:func:`ss_predict`), steps:
  1. Every player computes its reachability matrix and announces its shape (rows, leaves).
  2. Each player inputs its matrix as shares; their product (one exact Beaver round per further
     player) is the shared one-hot; its product with the shared leaf weights, summed per row, is
     the shared margin ``m'``.
  3. ``m'`` is opened to the player ``to`` only (default: the label holder), who computes
     ``base + 2^s m'``; if ``to`` is not the label holder, the label holder sends it ``(base, s)``.
  Leakage: ``to`` learns the margins (and, if it is not the label holder, ``base`` and ``s``);
  the others learn the number of rows; the dealer shapes.

SecureBoost (:func:`he_predict`): every passive party sends its reachability matrix to the label
holder, who multiplies them with its own and sums its plaintext leaf weights. Leakage: the label
holder learns, for every row, which leaves each passive party's splits allow (hence the row's
path through the passive parties' nodes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpcml import fixedpoint
from mpcml.party import Party
from mpcml.schema import Array, Float, Int, Tuple
from mpcml.tensor import SharedTensor
from mpcml.session import make_session

from ..common import check_matrix
from .config import FRAC_BITS, XGBConfig
from .model import PartyModel
from .trees import feature_values, leaf_reachability

SHAPE = Tuple(Int(low=0), Int(low=1))
OUTPUT_SCALE = Tuple(Float(), Int(-1100, 1100))


def _part(config: XGBConfig, party: Party, X: Any, model: Any) -> tuple[PartyModel, np.ndarray]:
    """This party's checked model part and its reachability matrix (local, before any message)."""
    part = model if isinstance(model, PartyModel) else PartyModel.from_wire(model, f"the model part of {party.id!r}")
    if part.party != party.id or part.players != config.players or part.method != config.method or \
            (config.method == "ss" and part.engine != config.engine):
        raise ValueError(f"party {party.id!r} was given the {part.method!r} model part of {part.party!r} (players "
                         f"{list(part.players)}), not its own part of this {config.method!r} model of {list(config.players)}")
    X = check_matrix(X, f"X of party {party.id!r}")
    if X.shape[1] != part.n_features:
        raise ValueError(f"X of party {party.id!r} has {X.shape[1]} columns but its model part was fitted on "
                         f"{part.n_features}")
    return part, leaf_reachability(feature_values(X), part.trees)


def ss_predict(party: Party, X: Any = None, model: Any = None, *, config: XGBConfig, to: str | None = None
               ) -> np.ndarray | None:
    """A player's SS-XGB prediction role (steps 1-3 of the module docstring); the margins at ``to``, else None."""
    to = config.label_holder if to is None else to
    if to not in config.players:
        raise ValueError(f"to={to!r} is not one of the players {list(config.players)}")
    part, reach_mine = _part(config, party, X, model)
    reach_mine = reach_mine.astype(np.uint64)
    others = [p for p in config.players if p != party.id]
    # 1. shapes
    party.send_all(others, list(reach_mine.shape))
    for pid, shape in party.gather(others, expect=SHAPE, what="prediction shape").items():
        if tuple(shape) != reach_mine.shape:
            raise ValueError(f"party {pid!r} predicts {shape[0]} rows of {shape[1]} leaves, party {party.id!r} "
                             f"{reach_mine.shape[0]} rows of {reach_mine.shape[1]}: the blocks must hold the same rows")
    session = make_session(party, config.players, config.engine, dealer=config.dealer, frac_bits=FRAC_BITS)
    # 2. the shared one-hot of every row's leaves, times the shared leaf weights
    reach = None
    for pid in config.players:
        term = SharedTensor(session, session.input_ring(reach_mine if pid == party.id else None, pid))
        reach = term if reach is None else reach.mul(term, 0)
    leaves = SharedTensor(session, part.leaves.reshape(part.leaves.shape[:-2] + (1, -1)))
    # 3. opened to `to` only
    opened = reach.mul(leaves, 0).sum(axis=1).reveal_ring(to=to)
    session.close()
    if to != config.label_holder and party.id == config.label_holder:
        party.send(to, [part.base, part.target_shift])
    if party.id != to:
        return None
    base, shift = (part.base, part.target_shift) if party.id == config.label_holder else \
        party.recv(config.label_holder, expect=OUTPUT_SCALE, what="output scale")
    return base + 2.0**shift * fixedpoint.decode(opened, FRAC_BITS)


def he_predict(party: Party, X: Any = None, model: Any = None, *, config: XGBConfig) -> np.ndarray | None:
    """SecureBoost prediction: passive parties send their reachability; the label holder returns the margins."""
    part, reach = _part(config, party, X, model)
    if party.id != config.label_holder:
        party.send(config.label_holder, reach)
        return None
    expect = Array(np.uint8, shape=reach.shape)
    for theirs in party.gather(config.passive, expect=expect, what="leaf-reachability matrix").values():
        reach = reach & theirs
    return part.base + 2.0**part.target_shift * (reach.astype(np.float64) @ part.leaves.ravel())
