"""``FedVClassifier`` and ``FedVRegressor`` (and the deprecated ``FedVEstimator``): every role in this process.

Parties are named ``party-0, party-1, ...`` (``label_party`` holds the labels), with a ``tpa`` and
an ``aggregator``. Parameters are those of :class:`~protocols.fedv.config.FedVConfig` (``model``
fixed to ``"linear"`` for the regressor) plus ``label_party``, ``timeout`` and ``verbose``; the
input forms, labels, persistence and progress follow :mod:`protocols.estimator`. After ``fit``:
``coef_``, ``intercept_``, ``n_iter_`` (epochs), ``history_`` (per epoch: seconds, bytes, loss),
``skipped_`` (batch steps without a data gradient, see ``min_nonzero``) and ``communication_``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.metaestimators import available_if

from ..estimator import LinearClassifierMixin, LinearModel, LinearRegressorMixin, SecureEstimator
from .config import FedVConfig, plan_from_facts
from .protocol import _holder_input, party_facts, roles


class _FedV(LinearModel, SecureEstimator):
    config_class = FedVConfig
    partitions = ("vertical",)
    extra_params = {"label_party": 0}
    saved_attributes = ("coef_", "intercept_", "n_iter_")

    def _checked_targets(self, kind: str, blocks: list, ys: Any) -> Any:
        if blocks[0].shape[0] < 2:
            raise ValueError("FedV needs at least 2 samples (the TPA refuses keys that isolate one): "
                             f"n_samples = {blocks[0].shape[0]}")
        return super()._checked_targets(kind, blocks, ys)

    def _fit(self, X: Any, y: Any, encode: Any) -> dict[str, Any]:
        data = self.fit_data(X, y)
        ids = tuple(f"party-{i}" for i in range(len(data.blocks)))
        label = self.label_party
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < len(ids):
            raise ValueError(f"label_party must be an index in [0, {len(ids)}), got {label!r}")
        config = self.make_config(parties=ids, active=ids[int(label)])
        targets = encode(data.y)
        local = {pid: (block, targets if pid == config.active else None) for pid, block in zip(ids, data.blocks)}
        # the range analysis on the public facts, before any party starts
        plan_from_facts(config, {pid: party_facts(config, *_holder_input(config, pid, *value))
                                 for pid, value in local.items()})
        progress = self.progress(config.epochs, "epoch")
        out = self.run(*roles(config, local, progress=progress))
        progress.close()
        result = out[config.aggregator]
        self.n_iter_, self.history_, self.skipped_ = config.epochs, result["history"], result["skipped"]
        first, last = self.history_[0]["loss"], self.history_[-1]["loss"]
        if last > first:
            warnings.warn(f"gradient descent diverged: the loss grew from {first:.4g} (epoch 1) to {last:.4g} "
                          f"(epoch {config.epochs}); lower learning_rate", stacklevel=3)
        if self.skipped_:
            warnings.warn(f"{self.skipped_} batch steps had fewer than min_nonzero={config.min_nonzero} non-zero errors "
                          "and took no data gradient (the TPA refuses such keys)", stacklevel=3)
        return result


class FedVClassifier(LinearClassifierMixin, ClassifierMixin, _FedV):
    """FedV logistic regression (``model="logistic"``) or linear SVM (``model="svm"``) over vertically
    partitioned data (Xu et al., FedV, AISec 2021); see :mod:`protocols.fedv`.

    Any two labels (``classes_`` sorted; e.g. ``{-1, 1}`` for the SVM); more than two classes are
    fitted one-vs-rest in one run: the parties encrypt each batch once and the TPA issues one key
    per class under its label. ``coef_`` is ``(1, d)`` or ``(K, d)``. ``predict_proba``
    (logistic only) applies the logistic function to the scores (normalised over the classes for
    K > 2).
    """

    def fit(self, X: Any, y: Any) -> "FedVClassifier":
        if self.model not in ("logistic", "svm"):
            raise ValueError(f"FedVClassifier takes model='logistic' or 'svm', got {self.model!r} "
                             "(use FedVRegressor for linear regression)")
        result = self._fit(X, y, self.one_vs_rest)
        self.coef_, self.intercept_ = result["coef"], result["intercept"]
        return self

    @available_if(lambda self: self.model == "logistic")
    def predict_proba(self, X: Any) -> np.ndarray:
        return super().predict_proba(X)


class FedVRegressor(RegressorMixin, LinearRegressorMixin, _FedV):
    """FedV linear regression (squared loss) over vertically partitioned data; see :mod:`protocols.fedv`.

    The active party's targets travel in the feature step's label slot, so the aggregator learns the
    residuals but not the targets. ``coef_`` is ``(n_features,)``, ``intercept_`` a float.
    """

    fixed_params = {"model": "linear"}

    def fit(self, X: Any, y: Any) -> "FedVRegressor":
        result = self._fit(X, y, lambda targets: targets)
        self.coef_, self.intercept_ = result["coef"][0], float(result["intercept"][0])
        return self


class FedVEstimator(_FedV):
    """Deprecated: use :class:`FedVClassifier` (``model="logistic"`` or ``"svm"``) or :class:`FedVRegressor`.

    Kept working: ``fit([X_0, X_1, ...], y)`` with 0/1 labels (or real targets for ``model="linear"``),
    ``coef_`` ``(d,)``, a float ``intercept_``, ``predict`` giving scores (linear) or 0/1 labels.
    """

    def fit(self, X: Any, y: Any) -> "FedVEstimator":
        warnings.warn("FedVEstimator is deprecated; use FedVClassifier or FedVRegressor", DeprecationWarning,
                      stacklevel=2)
        cls = FedVRegressor if self.model == "linear" else FedVClassifier
        params = {k: v for k, v in self.get_params().items() if k in cls.param_defaults()}
        fitted = cls(**params).fit(X, y)
        self.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})
        self.coef_, self.intercept_ = np.ravel(fitted.coef_), float(np.ravel(fitted.intercept_)[0])
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        return self.scores(X)

    def predict(self, X: Any) -> np.ndarray:
        scores = self.scores(X)
        return scores if self.model == "linear" else self.classes_[(scores > 0).astype(np.int64)]

