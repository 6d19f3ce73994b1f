"""``HybridAlphaLogisticRegression``: federated logistic regression with HybridAlpha aggregation, in this process.

Parties are named ``party-0, party-1, ...`` with a ``tpa`` and an ``aggregator``; the parameters
are those of :class:`~protocols.hybridalpha.config.HybridAlphaConfig` plus ``timeout`` and
``verbose``; the input forms (``fit([(X_0, y_0), ...])`` or ``partition=Horizontal(k)`` with full
``X, y``), labels, persistence and progress follow :mod:`protocols.estimator`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin

from ..estimator import LinearClassifierMixin, SecureEstimator
from .config import HybridAlphaConfig, plan
from .protocol import LocalLogistic, roles


class HybridAlphaLogisticRegression(LinearClassifierMixin, ClassifierMixin, SecureEstimator):
    """Federated averaging of local logistic-regression steps over horizontally partitioned data
    (Xu et al., HybridAlpha, AISec 2019); see :mod:`protocols.hybridalpha`.

    Any two labels (``classes_`` sorted); more than two classes are fitted one-vs-rest in one run
    (each party trains the K binary models together and sends one update of K times the size, so
    the keys, the set-up and the rounds are shared). After ``fit``: ``coef_`` ``(1, d)`` or
    ``(K, d)``, ``intercept_``, ``n_iter_`` (rounds), ``history_`` (per round: responders,
    seconds, bytes, refusals), ``dp_clipped_`` (with DP: updates the clip changed) and
    ``communication_``. With DP a warning says when clipping changed an update.
    """

    config_class = HybridAlphaConfig
    partitions = ("horizontal",)
    saved_attributes = ("coef_", "intercept_", "n_iter_")

    def fit(self, X: Any, y: Any = None) -> "HybridAlphaLogisticRegression":
        data = self.fit_data(X, y)
        ids = tuple(f"party-{i}" for i in range(len(data.blocks)))
        config = self.make_config(parties=ids)
        local = {pid: (block, self.one_vs_rest(codes)) for pid, block, codes in zip(ids, data.blocks, data.y)}
        # the range analysis on the public facts, before any party starts
        plan(config, {pid: LocalLogistic(config, *value).facts() for pid, value in local.items()})
        progress = self.progress(config.rounds, "round")
        out = self.run(*roles(config, local, progress=progress))
        progress.close()
        result = out[config.aggregator]
        W = result["model"].reshape(-1, self.n_outputs)
        self.coef_ = (W[:-1] if config.fit_intercept else W).T
        self.intercept_ = W[-1] if config.fit_intercept else np.zeros(self.n_outputs)
        self.n_iter_, self.history_ = config.rounds, result["history"]
        self.dp_clipped_ = sum(out[pid]["clipped"] for pid in ids)
        if self.dp_clipped_:
            warnings.warn(f"DP clipping to L2 norm dp_clip={config.dp_clip:g} changed {self.dp_clipped_} of the "
                          f"parties' updates: the model is that of clipped federated averaging", stacklevel=2)
        return self
