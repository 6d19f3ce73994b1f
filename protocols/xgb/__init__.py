"""Secure XGBoost for vertically partitioned data: SS-XGB (Fang et al. 2021) and SecureBoost (Cheng et al. 2021).

Several parties hold different feature columns of the same rows; the first (the *label
holder*) also holds the labels. ``XGBConfig.method`` picks the protocol:

- ``"ss"`` — SS-XGB, Fang et al., "Large-Scale Secure XGB for Vertical Federated Learning",
  CIKM 2021 (:mod:`protocols.xgb.ss`): gradients, sums, gains and leaf weights secret-shared, a
  dealer supplies correlated randomness; the model is distributed (each party keeps its own
  splits and a share of the leaf weights) and prediction runs on it securely.
- ``"he"`` — SecureBoost, Cheng et al., IEEE Intelligent Systems 2021 (:mod:`protocols.xgb.he`):
  homomorphically encrypted gradients (``he``: Okamoto–Uchiyama or Paillier); the label holder
  sees per-bucket gradient sums and holds the leaf weights in plaintext. Faster, leakier.

Modules: :mod:`~protocols.xgb.config` (the options, the range analysis, the guard),
:mod:`~protocols.xgb.trees` (plaintext building blocks), :mod:`~protocols.xgb.setup` (checks
and set-up facts), :mod:`~protocols.xgb.ss`, :mod:`~protocols.xgb.he` and
:mod:`~protocols.xgb.messages` (the protocols), :mod:`~protocols.xgb.predict` (prediction on a
distributed model), :mod:`~protocols.xgb.model` (a party's part), :mod:`~protocols.xgb.protocol`
(:func:`roles`, :func:`prediction_roles`), :mod:`~protocols.xgb.reference` (the plaintext
replay) and :mod:`~protocols.xgb.estimators`. Each protocol module states its threat model and
exactly what each role learns.
"""

from .config import FRAC_BITS, GH_FRAC_BITS, METHODS, Plan, XGBConfig, guard_error, plan
from .estimators import SecureXGBClassifier, SecureXGBRegressor
from .model import PartyModel
from .protocol import prediction_roles, roles, xgb_dealer
from .reference import Forest, Replay, ReplayMismatch, plaintext_xgb
from .trees import PartyTrees, QuantileBinner, leaf_reachability

__all__ = [
    "FRAC_BITS", "Forest", "GH_FRAC_BITS", "METHODS", "PartyModel", "PartyTrees", "Plan", "QuantileBinner", "Replay",
    "ReplayMismatch", "SecureXGBClassifier", "SecureXGBRegressor", "XGBConfig", "guard_error", "leaf_reachability",
    "plaintext_xgb", "plan", "prediction_roles", "roles", "xgb_dealer",
]
