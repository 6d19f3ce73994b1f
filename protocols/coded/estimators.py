"""``CodedLogisticRegression`` and ``CodedLinearRegression``: a server and N clients in this process.

Clients are named ``client-0, client-1, ...`` and the server ``server``. Parameters are those of
:class:`~protocols.coded.config.CodedConfig` (``model`` fixed by the class) plus ``partition``
(horizontal only: ``fit([(X_1, y_1), ..., (X_N, y_N)])``, or ``Horizontal(N)`` with a full
``X, y``), ``timeout`` and ``verbose``; the input forms, labels, persistence and progress follow
:mod:`protocols.estimator`. The server learns the model, so the fitted estimator holds it in the
clear. After ``fit``: ``coef_``, ``intercept_``, ``n_iter_`` (rounds), ``plan_`` (the range
analysis: scales, step, weight bounds), ``recovery_threshold_`` (R), ``responders_`` (the clients
decoded from, per round), ``decode_counts_``, ``round_seconds_``, ``decode_seconds_``,
``round_bytes_`` (the server's bytes per round), ``setup_bytes_`` (bytes all clients sent in the
set-up), ``unreachable_``, ``config_`` and ``communication_``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin

from ..estimator import LinearClassifierMixin, LinearModel, LinearRegressorMixin, SecureEstimator
from .analysis import client_facts, plan
from .config import CodedConfig
from .protocol import client_input, roles


class _CodedEstimator(LinearModel, SecureEstimator):
    config_class = CodedConfig
    partitions = ("horizontal",)
    saved_attributes = ("coef_", "intercept_", "n_iter_")

    def fit(self, X: Any, y: Any = None) -> "_CodedEstimator":
        data = self.fit_data(X, y)
        config = self.make_config(clients=tuple(f"client-{i}" for i in range(len(data.blocks))))
        encode = getattr(self, "one_vs_rest", lambda targets: targets)
        client_data = {c: (block, encode(t)) for c, block, t in zip(config.clients, data.blocks, data.y)}
        # the range analysis on the public facts, before any message
        the_plan = plan(config, {c: client_facts(config, *client_input(config, c, *client_data[c]))
                                 for c in config.clients})
        party_roles, inputs = roles(config, client_data, progress=self.progress(config.n_rounds, "round"))
        out = self.run(party_roles, inputs)
        result = out[config.server]
        self.config_ = config
        self.plan_ = the_plan
        self.n_iter_ = int(result["n_rounds"])
        self.recovery_threshold_ = config.recovery_threshold
        self.responders_ = result["responders"]
        self.decode_counts_ = np.array([len(r) for r in self.responders_])
        self.round_seconds_, self.decode_seconds_ = result["round_seconds"], result["decode_seconds"]
        self.round_bytes_ = result["round_bytes"]
        self.setup_bytes_ = sum(out[c]["setup_bytes_sent"] for c in config.clients)
        self.unreachable_ = list(result["unreachable"])
        self._set_weights(np.asarray(result["weights"], dtype=np.float64))
        return self

    def _set_weights(self, weights: np.ndarray) -> None:
        self.coef_, self.intercept_ = weights[:-1].T, weights[-1]


class CodedLinearRegression(RegressorMixin, LinearRegressorMixin, _CodedEstimator):
    """Linear regression (squared loss, full-batch gradient descent) by dropout-resilient coded training.

    ``coef_`` is ``(n_features,)`` and ``intercept_`` a float, as in scikit-learn.
    """

    fixed_params = {"model": "linear"}

    def _set_weights(self, weights: np.ndarray) -> None:
        self.coef_, self.intercept_ = weights[:-1, 0], float(weights[-1, 0])


class CodedLogisticRegression(LinearClassifierMixin, ClassifierMixin, _CodedEstimator):
    """Logistic regression with the sigmoid's least-squares line (``SIGMOID_SLOPE``) by coded training.

    Any two labels (``classes_`` sorted); more than two classes are fitted one-vs-rest in one run
    sharing one set-up (the clients code their features once with one target column per class,
    and every round carries all K models). ``coef_`` is ``(1, n_features)`` or ``(K, n_features)``;
    ``predict_proba`` applies the exact logistic function to the learned scores (normalised over
    the classes for K > 2).
    """

    fixed_params = {"model": "logistic"}
