"""``SecureXGBClassifier`` and ``SecureXGBRegressor``: every party in this process, one thread each.

The data parties are named ``holder-0, holder-1, ...`` in block order; ``holder-0`` holds the
labels; SS-XGB adds the ``dealer``. Parameters are those of :class:`~protocols.xgb.config.XGBConfig`
(``loss`` fixed by the class; the regressor has no ``sigmoid``) plus ``partition``, ``timeout``
and ``verbose``; the input forms, labels, persistence and progress follow
:mod:`protocols.estimator`. After ``fit``: ``models_`` (party id -> its
:class:`~protocols.xgb.model.PartyModel`), ``config_``, ``classes_`` (classifier),
``communication_`` (of the training run).

The model is distributed, so prediction is a protocol run between the parties
(:mod:`protocols.xgb.predict`): here all of them run in this process. :meth:`save` writes one
file per party (:mod:`protocols.persistence`'s format), each holding that party's part only;
:meth:`load` reads the folder back (or one party's file: that estimator can be saved again or
handed to its party, but cannot predict alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ..common import logistic, run_parties
from ..estimator import SecureEstimator, Vertical, encode_classes
from ..persistence import load_model, save_model
from . import setup
from .config import XGBConfig, plan
from .model import PartyModel
from .protocol import prediction_roles, roles

_PART_ATTRIBUTES = ("method", "engine", "party", "players", "max_depth", "n_features", "base", "target_shift")
_PART_ARRAYS = ("features", "thresholds", "leaves")


class _SecureXGB(SecureEstimator):
    config_class = XGBConfig

    def fit(self, X: Any, y: Any) -> "_SecureXGB":
        data = self.fit_data(X, y)
        config = self.make_config(players=tuple(f"holder-{i}" for i in range(len(data.blocks))))
        party_data = {pid: (block, data.y if pid == config.label_holder else None)
                      for pid, block in zip(config.players, data.blocks)}
        # the local checks and the range analysis, before any message
        for pid, (block, labels) in party_data.items():
            setup.party_input(config, pid, block, labels)
        plan(config, data.blocks[0].shape[0])
        party_roles, inputs = roles(config, party_data, progress=self.progress(config.n_estimators, "tree"))
        out = self.run(party_roles, inputs)
        self.config_ = config
        self.models_ = {pid: PartyModel.from_wire(out[pid], f"the part of {pid!r}") for pid in config.players}
        return self

    def margins(self, X: Any) -> np.ndarray:
        """Margins by the secure prediction protocol on the distributed model (revealed to the label holder)."""
        check_is_fitted(self, "models_")
        missing = [pid for pid in self.config_.players if pid not in self.models_]
        if missing:
            held = ", ".join(repr(p) for p in self.models_)
            raise ValueError(f"this estimator holds the model part of {held} only; a distributed XGBoost model predicts "
                             f"between all its parties (missing {missing}): load the folder of every part, or run the "
                             "prediction between the parties (docs/xgb.md, 'Prediction in process mode')")
        blocks = dict(zip(self.config_.players, self.feature_blocks(X)))
        party_roles, inputs = prediction_roles(self.config_, blocks, self.models_)
        return np.asarray(run_parties(party_roles, inputs, self.timeout)[self.config_.label_holder], dtype=np.float64)

    # --- persistence: one file per party ---------------------------------------------------------

    def save(self, path: Any) -> Any:
        """Every part: a folder ``path`` of ``<party>.npz`` files (returns their paths); one part: the file ``path``."""
        check_is_fitted(self, "models_")
        if len(self.models_) == 1:
            (part,) = self.models_.values()
            return self._save_part(Path(path), part)
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        return [self._save_part(folder / f"{pid}.npz", part) for pid, part in self.models_.items()]

    def _save_part(self, path: Path, part: PartyModel) -> Path:
        wire = part.to_wire()
        attributes = {name: wire[name] for name in _PART_ATTRIBUTES}
        names = getattr(self, "feature_names_in_", None)
        if names is not None:  # a party's file names its own columns only
            start = 0 if len(self.models_) == 1 else sum(self.block_widths_[: part.players.index(part.party)])
            attributes["feature_names"] = [str(v) for v in names[start: start + part.n_features]]
        if part.is_label_holder and hasattr(self, "classes_"):
            attributes["classes_"] = {"strings": [str(v) for v in self.classes_]} if self.classes_.dtype.kind in "OUS" \
                else self.classes_.tolist()
        arrays = {name: wire[name] for name in _PART_ARRAYS if wire[name] is not None}
        params = {k: (v.to_json() if isinstance(v, Vertical) else v) for k, v in self.get_params().items()}
        return save_model(path, type(self).__name__, params, attributes, arrays)

    @classmethod
    def load(cls, path: Any) -> Any:
        """A fitted estimator from a folder written by :meth:`save` (every part) or one party's file."""
        path = Path(path)
        files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
        if not files:
            raise ValueError(f"{str(path)!r} holds no model files (*.npz)")
        saved = [load_model(f, cls.__name__) for f in files]
        first = saved[0]
        if any(s.params != first.params or s.attributes["players"] != first.attributes["players"] for s in saved):
            raise ValueError(f"the files in {str(path)!r} are parts of different models")
        model = cls(**{k: (Vertical(*v["vertical"]) if isinstance(v, dict) and "vertical" in v else v)
                       for k, v in first.params.items()})
        parts = {}
        for f, s in zip(files, saved):
            wire = {**{k: s.attributes[k] for k in _PART_ATTRIBUTES}, "leaves": None, **s.arrays}
            parts[s.attributes["party"]] = PartyModel.from_wire(wire, f"the model part in {str(f)!r}")
        players = tuple(first.attributes["players"])
        model.models_ = parts
        model.config_ = model.make_config(players=players)
        order = [p for p in players if p in parts]  # every party, or the one whose file this is
        model.block_widths_ = [parts[p].n_features for p in order]
        model.n_features_in_ = sum(model.block_widths_)
        names = [next(s.attributes.get("feature_names") for s in saved if s.attributes["party"] == p) for p in order]
        if all(n is not None for n in names):
            model.feature_names_in_ = np.asarray([v for n in names for v in n], dtype=object)
        for s in saved:
            classes = s.attributes.get("classes_")
            if classes is not None:
                model.classes_ = np.asarray(classes["strings"]) if isinstance(classes, dict) else np.asarray(classes)
        return model


class SecureXGBClassifier(ClassifierMixin, _SecureXGB):
    """Binary gradient-boosted trees (logistic loss) on vertically partitioned data; see :mod:`protocols.xgb`.

    Any two labels (numbers or strings; ``classes_`` sorted). ``predict_proba`` applies the
    exact logistic function to the securely predicted margins.
    """

    fixed_params = {"loss": "logistic"}

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def targets(self, y: Any, n_rows: int, name: str) -> np.ndarray:
        classes, codes = encode_classes(y, n_rows, name)
        if len(classes) != 2:
            raise ValueError(f"Only binary classification is supported: {name} has {len(classes)} classes; "
                             f"{type(self).__name__} is binary (wrap it in sklearn.multiclass.OneVsRestClassifier for more)")
        self.classes_ = classes
        return codes.astype(np.float64)

    def decision_function(self, X: Any) -> np.ndarray:
        """The margins (log-odds of ``classes_[1]``), by secure prediction."""
        return self.margins(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        p = logistic(self.margins(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        positive = self.margins(X) > 0
        return self.classes_[positive.astype(np.int64)]


class SecureXGBRegressor(RegressorMixin, _SecureXGB):
    """Gradient-boosted regression trees (squared loss) on vertically partitioned data; see :mod:`protocols.xgb`.

    Targets of any magnitude: the label holder trains on ``(y - mean) / 2^s`` with its private
    power of two ``s`` (squared-loss boosting is scale-equivariant) and predictions are scaled back.
    """

    fixed_params = {"loss": "squared", "sigmoid": XGBConfig.defaults()["sigmoid"]}

    def predict(self, X: Any) -> np.ndarray:
        return self.margins(X)
