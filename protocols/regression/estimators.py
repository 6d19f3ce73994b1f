"""``SecureLinearRegression`` and ``SecureLogisticRegression``: every party in this process.

Holders are named ``holder-0, holder-1, ...`` (vertical: ``label_party`` holds the labels); with
``n_servers > 0`` the computation runs on ``server-0, ...`` instead of the holders. Parameters
are those of :class:`~protocols.regression.config.RegressionConfig` (``loss`` fixed by the class)
plus ``label_party``, ``n_servers``, ``timeout`` and ``verbose``; the input forms, labels,
persistence and progress follow :mod:`protocols.estimator`. After ``fit``: ``coef_``,
``intercept_`` (``output="shared"``: ``weight_shares_`` instead), ``n_iter_`` (epochs),
``batch_seed_`` (the agreed public batch order, for replays), ``config_`` and ``communication_``; with
differential privacy (``dp_epsilon`` or ``dp_noise_multiplier``) also ``epsilon_`` (the ``(epsilon_,
dp_delta)``-DP guarantee of the released model by the RDP accountant, towards anyone who does not know
the batches) and ``dp_plan_`` (:class:`protocols.dp_sgd.DPPlan`: sampling rate, steps, noise multiplier).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ..estimator import FitData, LinearClassifierMixin, LinearModel, LinearRegressorMixin, SecureEstimator
from .config import RegressionConfig
from .prediction import prediction_roles
from .privacy import dp_plan
from .protocol import holder_facts, holder_input, roles, scales_from_facts


class _SecureRegression(LinearModel, SecureEstimator):
    config_class = RegressionConfig
    partitions = ("vertical", "horizontal")
    extra_params = {"label_party": 0, "n_servers": 0}
    saved_attributes = ("coef_", "intercept_", "n_iter_", "epsilon_")

    def _topology(self, n_holders: int) -> dict[str, Any]:
        holders = tuple(f"holder-{i}" for i in range(n_holders))
        label = self.label_party
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < n_holders:
            raise ValueError(f"label_party must be an index in [0, {n_holders}), got {label!r}")
        servers = self.n_servers
        if isinstance(servers, bool) or not isinstance(servers, (int, np.integer)) or servers == 1 or servers < 0:
            raise ValueError(f"n_servers must be 0 (the holders compute) or at least 2, got {servers!r}")
        vertical = self._layout()[0] == "vertical"
        return {"holders": holders, "label_holder": holders[int(label)] if vertical else None,
                "compute_parties": tuple(f"server-{i}" for i in range(servers)) or None}

    def _holder_data(self, config: RegressionConfig, data: FitData) -> dict[str, tuple[Any, Any]]:
        encode = getattr(self, "one_vs_rest", lambda t: t)
        if data.kind == "vertical":
            return {h: (b, encode(data.y) if h == config.label_holder else None)
                    for h, b in zip(config.holders, data.blocks)}
        return {h: (b, encode(t)) for h, b, t in zip(config.holders, data.blocks, data.y)}

    def fit(self, X: Any, y: Any = None) -> "_SecureRegression":
        data = self.fit_data(X, y)
        config = self.make_config(**self._topology(len(data.blocks)))
        holder_data = self._holder_data(config, data)
        # the range analysis on the public facts, before any message
        facts = {h: holder_facts(config, *holder_input(config, h, *holder_data[h])) for h in config.holders}
        _, n_rows, _ = scales_from_facts(config, facts)
        for name in ("dp_plan_", "epsilon_"):
            self.__dict__.pop(name, None)
        if config.dp:
            self.dp_plan_ = dp_plan(config, n_rows)
            self.epsilon_ = self.dp_plan_.epsilon
        party_roles, inputs = roles(config, holder_data, progress=self.progress(config.epochs, "epoch"))
        out = self.run(party_roles, inputs)
        self.config_ = config
        lead = out[config.players[0]]
        self.n_iter_, self.batch_seed_, self.y_shift_ = lead["n_epochs"], lead["seed"], lead["y_shift"]
        for name in ("coef_", "intercept_", "weight_shares_"):
            self.__dict__.pop(name, None)
        if config.output == "shared":
            self.weight_shares_ = {p: out[p]["weights_share"] for p in config.players}
            return self
        if config.output == "reveal":
            coef, intercept = out[config.holders[0]]["coef"], out[config.holders[0]]["intercept"]
        else:
            coef = np.concatenate([out[h]["coef"] for h in config.holders], axis=1)
            intercept = out[config.label_holder]["intercept"] if config.fit_intercept else np.zeros(coef.shape[0])
        self._set_weights(np.asarray(coef), np.asarray(intercept, dtype=np.float64).reshape(-1))
        return self

    def _set_weights(self, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.coef_, self.intercept_ = coef, intercept

    def scores(self, X: Any) -> np.ndarray:
        """Scores ``X @ coef_.T + intercept_``; with ``output="shared"`` by secure prediction, which
        reveals the scores to the querier only (the label holder, or holder-0 horizontally)."""
        check_is_fitted(self)
        if not hasattr(self, "weight_shares_"):
            return super().scores(X)
        config = self.config_
        if config.partition == "vertical":
            querier = config.label_holder
            queries = dict(zip(config.holders, self.feature_blocks(X)))
        else:
            querier = config.holders[0]
            queries = {querier: self.features(X)}
        party_roles, inputs = prediction_roles(config, queries, self.weight_shares_, querier=querier,
                                               y_shift=self.y_shift_)
        scores = self.run(party_roles, inputs)[querier]
        return scores.ravel() if scores.shape[1] == 1 else scores


class SecureLinearRegression(RegressorMixin, LinearRegressorMixin, _SecureRegression):
    """Secure linear regression (squared loss) by mini-batch gradient descent; see :mod:`protocols.regression`.

    ``coef_`` is ``(n_features,)`` and ``intercept_`` a float, as in scikit-learn.
    """

    fixed_params = {"loss": "squared", "sigmoid": RegressionConfig.defaults()["sigmoid"]}

    def _set_weights(self, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.coef_, self.intercept_ = coef[0], float(intercept[0])


class SecureLogisticRegression(LinearClassifierMixin, ClassifierMixin, _SecureRegression):
    """Secure logistic regression with a sigmoid approximation (``sigmoid``); see :mod:`protocols.regression`.

    Any two labels (``classes_`` sorted); more than two classes are fitted one-vs-rest in one run
    (the weights are a ``(d, K)`` matrix, so every step carries all K models at the cost of one
    set-up). ``coef_`` is ``(1, n_features)`` or ``(K, n_features)``. ``predict_proba`` applies
    the exact logistic function to the learned scores (normalised over the classes for K > 2).
    """

    fixed_params = {"loss": "logistic"}
