"""Secure vertical XGBoost estimators: ``SecureXGBClassifier`` and ``SecureXGBRegressor``.

Two protocols (see their modules for the maths, the threat model and each party's leakage):

- ``method="ss"`` — SS-XGB, Fang et al., "Large-Scale Secure XGB for Vertical Federated
  Learning", CIKM 2021 (:mod:`protocols.xgb_ss`): everything secret-shared, a dealer supplies
  correlated randomness; the model is distributed (each party keeps only its own splits'
  thresholds and a share of the leaf weights) and prediction runs on it securely.
- ``method="he"`` — SecureBoost, Cheng et al., IEEE Intelligent Systems 2021
  (:mod:`protocols.xgb_he`): Paillier-encrypted gradients; the label holder sees per-bucket
  gradient sums and holds the leaf weights in plaintext. Much faster, leakier.

``fit([X_0, X_1, ...], y)`` takes one feature block per party (same rows, in the same order);
party 0 holds the labels. The estimator runs all parties in this process (one thread each) and
keeps every party's model part in ``models_``; :meth:`save` writes one file per party holding
that party's part only, :meth:`load` reads them back. For separate processes or machines use
``mpcml party --protocol xgb`` (see ``docs/xgb.md``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from mpcml import run_dealer

from . import xgb_he, xgb_ss
from .common import CommunicationReport, check_labels, check_party_ids, check_vertical_parts, run_parties
from .common import logistic
from .xgb_trees import PartyTrees, XGBParams, feature_values, leaf_reachability

METHODS = ("ss", "he")
DEALER = "dealer"


class _SecureXGB(BaseEstimator):
    _loss = "logistic"

    def __init__(
        self,
        method: str = "ss",
        n_estimators: int = 10,
        max_depth: int = 3,
        learning_rate: float = 0.3,
        reg_lambda: float = 1.0,
        min_child_weight: float = 1.0,
        max_bin: int = 32,
        subsample: float = 1.0,
        colsample_bytree: float = 1.0,
        binning: str = "xgboost",
        key_bits: int = 2048,
        sigmoid: str = "spline",
        party_ids: Sequence[str] | None = None,
        timeout: float = 600.0,
        verbose: bool = False,
    ) -> None:
        self.method = method
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.reg_lambda = reg_lambda
        self.min_child_weight = min_child_weight
        self.max_bin = max_bin
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.binning = binning
        self.key_bits = key_bits
        self.sigmoid = sigmoid
        self.party_ids = party_ids
        self.timeout = timeout
        self.verbose = verbose

    # --- checks -------------------------------------------------------------------------------

    def _params(self) -> XGBParams:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        return XGBParams(
            self.n_estimators, self.max_depth, self.learning_rate, self.reg_lambda, self.min_child_weight,
            self.max_bin, self.subsample, self.colsample_bytree, self._loss, self.binning,
        )

    def _ids(self, k: int) -> tuple[str, ...]:
        ids = tuple(self.party_ids) if self.party_ids is not None else tuple(f"party{i}" for i in range(k))
        ids = check_party_ids(ids, "party_ids")
        if len(ids) != k:
            raise ValueError(f"party_ids names {len(ids)} parties but X has {k} feature blocks")
        if DEALER in ids:
            raise ValueError(f"party_ids must not contain {DEALER!r} (reserved for the dealer)")
        return ids

    def _progress(self, pid: str):
        if not self.verbose:
            return None
        return lambda msg: print(f"[mpcml xgb {self.method}] {pid}: {msg}", file=sys.stderr, flush=True)

    # --- fit ---------------------------------------------------------------------------------

    def _fit(self, blocks: list[np.ndarray], y: np.ndarray) -> "_SecureXGB":
        """Train on blocks and labels already checked by the subclass's ``fit``."""
        params = self._params()
        ids = self._ids(len(blocks))
        if self.method == "ss":
            xgb_ss.check_params(blocks[0].shape[0], params, self.sigmoid)
            roles = {pid: self._ss_role(ids, params, i) for i, pid in enumerate(ids)}
            roles[DEALER] = lambda party: run_dealer(party, ids)
        else:
            if not isinstance(self.key_bits, int) or self.key_bits < 1024:
                raise ValueError(f"key_bits must be an integer >= 1024, got {self.key_bits!r}")
            roles = {ids[0]: lambda party, x, y: xgb_he.train_label_holder(
                party, ids[1:], x, y, params, key_bits=self.key_bits, progress=self._progress(ids[0]))}
            for pid in ids[1:]:
                roles[pid] = lambda party, x: xgb_he.train_passive(party, ids[0], x)
        inputs = {pid: (blocks[i],) for i, pid in enumerate(ids)}
        inputs[ids[0]] = (blocks[0], y)
        outputs = run_parties(roles, inputs, self.timeout)
        self.party_ids_ = ids
        self.n_features_in_ = sum(b.shape[1] for b in blocks)
        self.block_widths_ = [b.shape[1] for b in blocks]
        self.models_ = {pid: outputs[pid] for pid in ids}
        self.communication_ = CommunicationReport.from_stats(outputs.stats)
        return self

    def _ss_role(self, ids: tuple[str, ...], params: XGBParams, index: int):
        if index == 0:
            progress = self._progress(ids[0])
            return lambda party, x, y: xgb_ss.train_player(
                party, ids, DEALER, x, params, y, sigmoid_method=self.sigmoid, progress=progress)
        return lambda party, x: xgb_ss.train_player(party, ids, DEALER, x, params, sigmoid_method=self.sigmoid)

    # --- prediction ----------------------------------------------------------------------------

    def _blocks(self, X: Any) -> list[np.ndarray]:
        check_is_fitted(self, "models_")
        blocks = check_vertical_parts(X, "X")
        if [b.shape[1] for b in blocks] != self.block_widths_:
            raise ValueError(f"X has blocks of widths {[b.shape[1] for b in blocks]}, the model was fitted on {self.block_widths_}")
        return blocks

    def decision_function(self, X: Any) -> np.ndarray:
        """Margins by secure prediction on the distributed model, revealed to party 0 only."""
        blocks = self._blocks(X)
        ids = self.party_ids_
        if self.method == "ss":
            roles = {pid: (lambda party, x, m: xgb_ss.predict_player(party, DEALER, x, m)) for pid in ids}
            roles[DEALER] = lambda party: run_dealer(party, ids)
        else:
            roles = {ids[0]: lambda party, x, m: xgb_he.predict_label_holder(party, ids[1:], x, m)}
            for pid in ids[1:]:
                roles[pid] = lambda party, x, m: xgb_he.predict_passive(party, ids[0], x, m)
        outputs = run_parties(roles, {pid: (blocks[i], self.models_[pid]) for i, pid in enumerate(ids)}, self.timeout)
        return np.asarray(outputs[ids[0]], dtype=np.float64)

    def revealed_margin(self, X: Any) -> np.ndarray:
        """Margins from the *revealed* model (leaf shares summed in the clear) — for testing only.

        This combines every party's private part in one place, which the protocol never does.
        """
        blocks = self._blocks(X)
        ids = self.party_ids_
        reach = None
        for i, pid in enumerate(ids):
            r = leaf_reachability(feature_values(blocks[i]), self.models_[pid].trees)
            reach = r if reach is None else reach & r
        if self.method == "ss":
            leaves, scale, offset = xgb_ss.reveal_leaves([self.models_[p] for p in ids])
            return scale * (reach.astype(np.float64) @ leaves.ravel()) + offset
        model = self.models_[ids[0]]
        return model.base + reach.astype(np.float64) @ model.leaves.ravel()

    # --- persistence -------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> list[Path]:
        """Write one file per party, ``<directory>/<party id>.npz``, holding only that party's part."""
        check_is_fitted(self, "models_")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        params, extra = self._params(), self._extra_meta()
        paths = []
        for i, pid in enumerate(self.party_ids_):
            path = directory / f"{pid}.npz"
            save_party_model(path, self.models_[pid], method=self.method, party=pid, parties=self.party_ids_,
                             params=params, n_features=self.block_widths_[i], extra=extra)
            paths.append(path)
        return paths

    def _extra_meta(self) -> dict[str, Any]:
        """Estimator metadata written into every party's file (the classifier adds its classes)."""
        return {}

    def load(self, directory: str | Path) -> "_SecureXGB":
        """Read every party's file written by :meth:`save` (all must agree on method and parties)."""
        directory = Path(directory)
        files = sorted(directory.glob("*.npz"))
        if not files:
            raise ValueError(f"no model files (*.npz) in {str(directory)!r}")
        loaded = [load_party_model(p) for p in files]
        meta0 = loaded[0][1]
        ids = tuple(meta0["parties"])
        by_party = {meta["party"]: (model, meta) for model, meta in loaded}
        if set(by_party) != set(ids) or any(tuple(m["parties"]) != ids or m["method"] != meta0["method"] for _, m in loaded):
            raise ValueError(f"the files in {str(directory)!r} do not form one model of parties {list(ids)}")
        params = XGBParams.from_wire(meta0["params"])
        if params.loss != self._loss:
            raise ValueError(f"the saved model uses the {params.loss} loss; use the matching estimator")
        self.set_params(method=meta0["method"], party_ids=list(ids), n_estimators=params.n_estimators,
                        max_depth=params.max_depth, learning_rate=params.learning_rate, reg_lambda=params.reg_lambda,
                        min_child_weight=params.min_child_weight, max_bin=params.max_bin, subsample=params.subsample,
                        colsample_bytree=params.colsample_bytree, binning=params.binning)
        self.party_ids_ = ids
        self.models_ = {pid: by_party[pid][0] for pid in ids}
        self.block_widths_ = [int(by_party[pid][1]["n_features"]) for pid in ids]
        self.n_features_in_ = sum(self.block_widths_)
        if "classes" in meta0:
            self.classes_ = np.asarray(meta0["classes"])
        return self


class SecureXGBClassifier(ClassifierMixin, _SecureXGB):
    """Binary gradient-boosted trees (logistic loss) on vertically partitioned data.

    Parameters follow ``xgboost.XGBClassifier`` where they exist. ``method`` is ``"ss"`` or
    ``"he"``; ``key_bits`` is the Paillier modulus size (``"he"``); ``sigmoid`` the secure
    sigmoid (``"ss"``: a :data:`mpcml.nonlinear.SIGMOID_METHODS` name, default ``"spline"``);
    ``binning`` is ``"xgboost"`` (the cut points of xgboost's own sketch, computed locally by each
    party on its columns) or ``"quantile"``; ``verbose`` prints progress (tree, depth, elapsed
    seconds) to stderr. After ``fit``: ``models_`` (party id -> that party's model part),
    ``classes_``, ``communication_``.
    """

    def fit(self, X: Any, y: Any) -> "SecureXGBClassifier":
        y_arr = np.asarray(y)
        if y_arr.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {y_arr.shape}")
        classes = np.unique(y_arr)
        if len(classes) != 2:
            raise ValueError(f"y must contain exactly two classes, got {len(classes)}: {classes[:10].tolist()}")
        blocks = check_vertical_parts(X, "X")
        labels = check_labels((y_arr == classes[1]).astype(np.float64), blocks[0].shape[0], binary=True)
        self._fit(blocks, labels)
        self.classes_ = classes
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        p = logistic(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        margin = self.decision_function(X)
        return self.classes_[(margin > 0).astype(int)]

    def _extra_meta(self) -> dict[str, Any]:
        return {"classes": self.classes_.tolist()}


class SecureXGBRegressor(RegressorMixin, _SecureXGB):
    """Gradient-boosted regression trees (squared loss) on vertically partitioned data; see the classifier."""

    _loss = "squared"

    def fit(self, X: Any, y: Any) -> "SecureXGBRegressor":
        blocks = check_vertical_parts(X, "X")
        return self._fit(blocks, check_labels(y, blocks[0].shape[0], binary=False))

    def predict(self, X: Any) -> np.ndarray:
        return self.decision_function(X)


# --- one party's model file --------------------------------------------------------------------


def save_party_model(path: str | Path, model: Any, *, method: str, party: str, parties: Sequence[str],
                     params: XGBParams, n_features: int, extra: dict[str, Any] | None = None) -> Path:
    """Write one party's model part (``.npz``, no pickle): its splits, and its leaf shares or leaves.

    ``extra`` adds JSON-serialisable entries to the file's metadata (e.g. the classifier's classes).
    """
    meta: dict[str, Any] = {"method": method, "party": party, "parties": list(parties), "params": params.to_wire(),
                            "n_features": int(n_features), **(extra or {})}
    arrays = {"features": model.trees.features, "thresholds": model.trees.thresholds}
    if method == "ss":
        arrays["leaf_shares"] = model.leaf_shares
        meta["players"] = list(model.players)
        if model.output is not None:
            meta["output"] = list(model.output)
    elif model.leaves is not None:
        arrays["leaves"] = model.leaves
        meta["base"] = model.base
    path = Path(path)
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


def load_party_model(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """Read a file written by :func:`save_party_model`; returns ``(model, metadata)``."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays["meta"]))
        params = XGBParams.from_wire(meta["params"])
        trees = PartyTrees(arrays["features"].astype(np.int64), arrays["thresholds"].astype(np.float64), params.max_depth)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{str(path)!r} is not an mpcml XGB model file: {exc}") from None
    if trees.features.shape != (params.n_estimators, 2**params.max_depth - 1):
        raise ValueError(f"{str(path)!r}: split arrays do not match the saved parameters")
    if meta["method"] == "ss":
        output = tuple(meta["output"]) if "output" in meta else None
        model: Any = xgb_ss.SSModel(trees, arrays["leaf_shares"].astype(np.uint64), tuple(meta["players"]), output)
    else:
        model = xgb_he.HEModel(trees, arrays.get("leaves"), meta.get("base"))
    return model, meta
