"""One party's part of a secure XGBoost model: what a party keeps, returns, sends to the launcher and saves.

A model is distributed: each party holds its own splits only (:class:`~protocols.xgb.trees.PartyTrees`).

- SS-XGB: every player also holds its share (uint64, ``FRAC_BITS`` fractional bits; ``(trees,
  leaves)`` on the ``beaver`` engine, ``(2, trees, leaves)`` on ``rss3``) of the *scaled* leaf weights; the label holder alone knows ``base`` (the initial margin, scaled
  like the leaves) and ``target_shift`` ``s``: the prediction is ``2^s (base + sum of leaves)``.
- SecureBoost: the label holder holds the plaintext leaf weights (already in the targets' units),
  ``base`` and ``target_shift`` (0 once the leaves are scaled back); the passive parties splits only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mpcml.schema import Array, Float, Int, ListOf, Mismatch, Nothing, OneOf, Record, Str

from mpcml.engine import ENGINES

from .config import METHODS
from .trees import PartyTrees

WIRE = Record(
    method=Str(METHODS), engine=Str(ENGINES), party=Str(), players=ListOf(Str()), max_depth=Int(1, 10), n_features=Int(low=1),
    features=Array(np.int64, ndim=2), thresholds=Array(np.float64, ndim=2),
    leaves=OneOf(Nothing(), Array((np.uint64, np.float64), ndim=(2, 3))), base=OneOf(Nothing(), Float()),
    target_shift=OneOf(Nothing(), Int(-1100, 1100)),
)


@dataclass
class PartyModel:
    """One party's part (see the module docstring); ``leaves``/``base``/``target_shift`` are ``None``
    where the party does not hold them."""

    method: str
    party: str
    players: tuple[str, ...]
    trees: PartyTrees
    n_features: int
    leaves: np.ndarray | None = None
    base: float | None = None
    target_shift: int | None = None
    engine: str = "beaver"

    @property
    def is_label_holder(self) -> bool:
        return self.party == self.players[0]

    def leaf_terms(self) -> np.ndarray:
        """SS-XGB: this part's additive term of the leaf weights (the sum over all parts is the ring value)."""
        return self.leaves if self.leaves.ndim == 2 else self.leaves[0]

    def to_wire(self) -> dict[str, Any]:
        """Codec-friendly form (a role's output, a file's content)."""
        return {"method": self.method, "engine": self.engine, "party": self.party, "players": list(self.players),
                "max_depth": self.trees.max_depth, "n_features": int(self.n_features),
                "features": self.trees.features, "thresholds": self.trees.thresholds, "leaves": self.leaves,
                "base": self.base, "target_shift": self.target_shift}

    @classmethod
    def from_wire(cls, obj: Any, what: str = "model part") -> "PartyModel":
        """Rebuild from :meth:`to_wire`; a malformed or inconsistent part is a ``ValueError`` naming ``what``."""
        try:
            obj = WIRE.check(obj)
        except Mismatch as exc:
            raise ValueError(f"{what} is malformed: {exc}") from None
        trees = PartyTrees(obj["features"], obj["thresholds"], obj["max_depth"])
        n_trees, n_internal = trees.features.shape
        if n_internal != 2 ** trees.max_depth - 1 or trees.thresholds.shape != trees.features.shape:
            raise ValueError(f"{what}: split arrays of shape {trees.features.shape} do not match max_depth={trees.max_depth}")
        owned = trees.features >= 0
        if np.any(trees.features[owned] >= obj["n_features"]) or np.any(np.isnan(trees.thresholds[owned])):
            raise ValueError(f"{what}: a split names a column beyond the part's {obj['n_features']} columns")
        leaves = obj["leaves"]
        shape = (2,) * (obj["method"] == "ss" and obj["engine"] == "rss3") + (n_trees, 2**trees.max_depth)
        if leaves is not None and leaves.shape != shape:
            raise ValueError(f"{what}: leaves of shape {leaves.shape}, expected {shape}")
        players = tuple(obj["players"])
        if obj["party"] not in players:
            raise ValueError(f"{what}: party {obj['party']!r} is not one of the players {list(players)}")
        model = cls(obj["method"], obj["party"], players, trees, obj["n_features"], leaves, obj["base"], obj["target_shift"],
                    obj["engine"])
        holds = (leaves is not None and leaves.dtype == (np.uint64 if model.method == "ss" else np.float64),
                 model.base is not None, model.target_shift is not None)
        expected = (model.method == "ss" or model.is_label_holder, model.is_label_holder, model.is_label_holder)
        if holds != expected:
            raise ValueError(f"{what}: a {model.method!r} part of {'the label holder' if model.is_label_holder else 'a passive party'} "
                             "must hold " + ("leaf shares, base and target shift" if model.is_label_holder else
                                             "its leaf shares only" if model.method == "ss" else "its splits only"))
        return model
