"""``CaesarLogisticRegression``: both CAESAR parties in this process, behind scikit-learn's interface."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from mpcml.csprng import new_seed

from ..estimator import LinearClassifierMixin, SecureEstimator
from .config import CaesarConfig, column_hint, plan, schedule_facts
from .prediction import prediction_roles
from .protocol import encoded_blocks, roles


class CaesarLogisticRegression(LinearClassifierMixin, ClassifierMixin, SecureEstimator):
    """Two-party vertical logistic regression with CAESAR (see :mod:`protocols.caesar`).

    ``fit([X_A, X_B], y)`` runs party A (``X_A``) and party B (``X_B`` and ``y``) in one process;
    blocks may be dense or scipy.sparse; ``partition=Vertical(d_A, d_B)`` takes a full ``X``
    instead (simulation, for Pipeline and model selection). Any two labels; more than two classes
    are fitted one-vs-rest in one run (K models sharing the key pairs, the set-up and every
    message). Parameters are :class:`~protocols.caesar.config.CaesarConfig`'s options plus
    ``partition``, ``timeout`` and ``verbose`` (a line per epoch; with ``report_loss`` it shows
    the mean squared residual that B learns).

    After ``fit``: ``coef_`` ``(1, d_A + d_B)`` or ``(K, d)``, ``intercept_`` (``output="shared"``:
    ``weight_shares_`` instead, and predictions run the secure prediction of
    :mod:`protocols.caesar.prediction`, which reveals the scores to B only), ``n_iter_``,
    ``batch_seed_`` (the public batch order, for replays), ``config_``, ``communication_``,
    ``epoch_seconds_`` and ``epoch_bytes_`` (per epoch at B), ``epoch_loss_`` (with ``report_loss``).
    """

    config_class = CaesarConfig
    partitions = ("vertical",)
    allow_sparse = True
    saved_attributes = ("coef_", "intercept_", "n_iter_")

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def fit(self, X: Any, y: Any) -> "CaesarLogisticRegression":
        data = self.fit_data(X, y)
        if len(data.blocks) != 2:
            raise ValueError(f"X must hold exactly two blocks [X_A, X_B] (CAESAR is a two-party protocol), "
                             f"got {len(data.blocks)}")
        config = self.make_config()
        targets = self.one_vs_rest(data.y)
        seed = config.seed or new_seed()
        x_a, x_b = data.blocks
        # the range analysis on both parties' public facts, before any message
        facts = schedule_facts(config, seed, encoded_blocks(config, data.blocks), self.n_outputs)
        scales = plan(config, facts, {config.features: column_hint(x_a), config.labels: column_hint(x_b)})
        if scales.growth > 1:
            warnings.warn(scales.divergence(config), ConvergenceWarning, stacklevel=2)
        party_roles, inputs = roles(config, {config.features: (x_a, None), config.labels: (x_b, targets)}, seed=seed,
                                    progress=self.progress(config.epochs, "epoch"))
        out = self.run(party_roles, inputs)
        a, b = out[config.features], out[config.labels]
        self.config_, self.batch_seed_, self.n_iter_ = config, b["seed"], b["n_epochs"]
        self.epoch_seconds_ = np.array([e["seconds"] for e in b["epochs"]])
        self.epoch_bytes_ = np.array([e["bytes"] for e in b["epochs"]], dtype=np.int64)
        for name in ("coef_", "intercept_", "weight_shares_", "shared_model_", "epoch_loss_"):
            self.__dict__.pop(name, None)
        if config.report_loss:
            self.epoch_loss_ = np.array([e["loss"] for e in b["epochs"]])
        if config.output == "shared":
            self.weight_shares_ = {config.features: a["weight_shares"], config.labels: b["weight_shares"]}
            self.shared_model_ = b["model"]
            return self
        coef = a["coef"] if config.output == "reveal" else np.hstack([a["coef"], b["coef"]])
        self.coef_, self.intercept_ = np.asarray(coef), np.asarray(b["intercept"], dtype=np.float64)
        return self

    def scores(self, X: Any) -> np.ndarray:
        """Scores ``X @ coef_.T + intercept_``; with ``output="shared"`` by secure prediction (B learns them)."""
        check_is_fitted(self, "n_iter_")
        if not hasattr(self, "weight_shares_"):
            return super().scores(X)
        config = self.config_
        queries = dict(zip((config.features, config.labels), self.feature_blocks(X)))
        party_roles, inputs = prediction_roles(config, queries, self.weight_shares_, self.shared_model_)
        scores = self.run(party_roles, inputs)[config.labels]
        return scores.ravel() if scores.shape[1] == 1 else scores
