"""FedV: vertical federated learning with functional encryption, without messages between data holders.

Xu, Baracaldo, Zhou, Anwar, Joshi, Ludwig, "FedV: Privacy-Preserving Federated Learning over
Vertically Partitioned Data", AISec 2021. Party ``p`` holds the columns ``X_p`` of the same rows;
the active party also the labels ``y`` (and the intercept column). The aggregator holds the model
``w`` and obtains each mini-batch gradient from two FE steps (:mod:`mpcml.fe`, keys from a
trusted third-party authority, the TPA):

1. feature step: labelled MIFE with a slot per party (rows = the batch's samples); the key for
   ``(w_1 .. w_k)`` yields ``z_t = sum_p <X_p[t], w_p> = w^T x_t``; for the linear model the
   active party fills a label slot with weight -1, so the aggregator gets ``w^T x_t - y_t``;
2. sample step: labelled single-input FE per party (rows = its features); the key for the error
   vector ``e`` yields ``X_p^T e``, the party's block of the gradient.

``model``: logistic regression, the hinge-loss SVM or linear regression; one-vs-rest for more
than two classes (the parties encrypt each batch once and the TPA issues a key per class). The
steps are numbered in :mod:`protocols.fedv.protocol`, the range analysis (target scale, bounds,
run-time guard) is in :mod:`protocols.fedv.config`, the plaintext replay in
:mod:`protocols.fedv.reference`.

Threat model: semi-honest parties and aggregator; a trusted TPA that never sees a ciphertext
and does not collude with the aggregator; confidential channels (mTLS). The TPA refuses a
feature-step key that leaves a party's weights all zero or changes the label slot's -1, a
sample-step key with fewer than ``min_nonzero`` non-zero entries (isolating samples), and more
keys under a label than there are one-vs-rest models. What each role learns:

- aggregator: the public facts (every party's rows, columns and ``ceil(log2 max|x|)``; the
  number of outputs; for the linear model ``ceil(log2 max|y|)``); **the labels** for logistic
  regression and the SVM (the active party sends them at set-up: the error vector the aggregator
  must use as the sample-step key determines them anyway, ``sign(sigmoid(z) - y) = 1 - 2y``);
  per batch and model the scores ``w^T x_t`` (logistic, SVM) or residuals ``w^T x_t - y_t``
  (linear), and the gradient ``X^T e``; the model. Known leakage (Chen et al. 2023): over many
  epochs the scores ``X w^(e)`` for different ``w^(e)`` determine ``X`` once ``d`` of them are
  independent; one-vs-rest gives ``K`` such vectors per batch, so ``d / K`` epochs suffice.
- TPA: the public facts (the plan); per batch and model, the feature-step weights of every
  party, **in an order the aggregator permutes secretly for every batch** (so the TPA learns
  each party's weight values but not which column each belongs to; since a step changes the
  weights little, it can follow each value from batch to batch); and per party the sample-step
  error vector, **its rows secretly permuted for every batch** (the TPA learns the batch's
  errors as a multiset: for logistic regression and the SVM the number of samples of each class
  in the batch and the distribution of scores, not which sample has which label; for the linear
  model the residuals). It never receives a ciphertext.
- parties: the public facts, and per batch the row indices (public batch order) and the secret
  row and column permutations (random, independent of the data). Nothing about the model.

Precision: ``x``, ``w`` and ``e`` are quantised to ``frac_bits`` (default 10); FE is exact on the
quantised integers, so the secure model equals the plaintext replay
(:func:`~protocols.fedv.reference.plaintext_fedv`) to the last bit in practice (bound: one unit
per step).
"""

from .config import MODELS, FedVConfig, FedVPlan, batches, guard_error, plan, plan_from_facts
from .estimators import FedVClassifier, FedVEstimator, FedVRegressor
from .protocol import errors, fedv_aggregator, fedv_party, fedv_tpa, party_facts, roles
from .reference import plaintext_fedv, reference_plan, replay_tolerance

__all__ = [
    "MODELS", "FedVClassifier", "FedVConfig", "FedVEstimator", "FedVPlan", "FedVRegressor", "batches", "errors",
    "fedv_aggregator", "fedv_party", "fedv_tpa", "guard_error", "party_facts", "plaintext_fedv", "plan",
    "plan_from_facts", "reference_plan", "replay_tolerance", "roles",
]
