"""Secure linear and logistic regression by mini-batch gradient descent on secret-shared data.

Chen, Li, Fang et al., "Secret sharing based secure regressions with applications" (2020),
with the masked-matrix trick of SecureML (Mohassel and Zhang, S&P 2017). Each data holder
secret-shares its block (vertical: its feature columns of the common rows, one holder also the
labels; horizontal: its rows and their labels) among the compute parties, who run

    W <- W * (1 - eta_t * alpha) - (eta_t / B) * X_B^T (g(X_B W) - Y_B),   eta_t = eta / (1 + decay * t)

on shares, with ``g`` the identity (squared loss) or a sigmoid approximation
(:data:`mpcml.nonlinear.SIGMOID_METHODS`); the intercept, when fitted, is a public column of
ones and is not penalised. ``W`` is ``d x K``: one column per output (K > 1 for one-vs-rest
classification, all classes in one run). ``X`` is opened once masked
(:class:`mpcml.masked.MaskedMatrix`), so an iteration opens ``K |w|`` elements for ``X_B W`` and
``K B`` for ``X_B^T E``: communication O(K (batch + features)) per iteration, plus the sigmoid
and the truncations. The steps are numbered in :mod:`protocols.regression.protocol`.

Compute parties. By default the holders themselves compute, with a dealer (the "server-aided"
model of the paper) supplying Beaver triples: nobody else sees a share, and for the usual 2-3
holders this is cheapest. Every opening is all-to-all, so with ``k`` compute parties an
iteration sends ``k (k - 1) K (B + d)`` elements; with many holders pass ``compute_parties``
(e.g. two servers): holders then only send their shares once and receive the output.
Dealer-free: with ``triples="paillier"`` (exactly two compute parties) the players make the
triples themselves with Paillier (:class:`mpcml.paillier_triples.PaillierTriples`), or with
``engine="rss3"`` exactly three compute parties (the holders, or three servers) hold replicated
shares (:mod:`mpcml.rss3`) and need no dealer and no public-key operation. The protocol code is
the same on both engines (:class:`mpcml.tensor.SharedTensor`); on rss3 the masked matrix opens
nothing (a replicated product sends only its result).

Range analysis (:func:`protocols.regression.config.plan`). Before any share is sent, every
party checks from the public facts that every intermediate of an epoch fits the 64-bit ring;
the squared loss's targets are divided by a public power of two so that ``|y| <= 1`` (the
weights are multiplied back: the same algorithm, since the gradient is linear in ``(w, y)``);
a run that cannot fit is refused with a ``ValueError`` naming the parameter and a value that
works. After every epoch a guard compares every weight with the analysed bound and stops the
run with ``OverflowError`` naming the epoch if one left it: a wrapped model is never returned.
The plaintext replay (:func:`plaintext_sgd`) applies the same guard.

Threat model: semi-honest parties. ``engine="beaver"``: the dealer (if any) does not collude with
any compute party, and the compute parties do not all collude. ``engine="rss3"``: honest majority
among the three compute parties: any single one learns nothing beyond what is listed below, two
colluding ones learn everything (the data and the weights). What each role learns:

- data holders: their own data; the others' public facts (row and column counts,
  ``ceil(log2 max|x|)`` of each block, the label holder's ``ceil(log2 max|y|)`` for the squared
  loss, the number of outputs ``K``); one bit per epoch (whether every weight is inside the
  analysed bound: always "yes" in a run that returns a model); and the output
  (``output="reveal"``: every weight; ``"own"``, vertical only: their own columns' weights, the
  label holder also the intercept; ``"shared"``: nothing, the weights stay shared for
  :func:`~protocols.regression.prediction.prediction_party`). With ``tol`` set, also the
  squared norm of each epoch's weight change (one number per epoch, used for early stopping).
- compute parties that hold no data: the public facts, the same per-epoch bit and numbers.
- the dealer: the shapes, the (public) mini-batch order and the number of iterations.

Differential privacy (``dp_epsilon``/``dp_noise_multiplier``; :mod:`protocols.regression.privacy`):
the compute parties run DP-SGD (PEA) instead: Poisson batches, every example's gradient clipped to
``dp_clip`` inside the secure computation, noise shared by every compute party so that at most
``dp_colluders`` of them cannot remove it; the released model is ``(epsilon_, dp_delta)``-DP towards
anyone who does not know the batches (the compute parties and the dealer do: towards them the
guarantee is weaker, see docs/regression.md). With DP the holders announce the ``x_bits`` of the public
``dp_feature_bound`` instead of their data's.

Precision: ``frac_bits`` (default 16) fractional bits in Z_2^64; every product is truncated
(error at most one unit, 2^-16). The update multiplies by the public factors ``1 - eta alpha``
and ``eta / B`` carried with 30 fractional bits (the plaintext replay uses the same rounded
factors).
"""

from .config import DEFAULT_SIGMOID, LOSSES, OUTPUTS, PARTITIONS, TRIPLES, RegressionConfig, Scales, batch_schedule, plan
from .estimators import SecureLinearRegression, SecureLogisticRegression
from .prediction import prediction_party, prediction_roles
from .privacy import dp_plan, plaintext_dp_fit
from .protocol import regression_dealer, regression_party, roles, train_shared
from .reference import plaintext_sgd, quantize, reference_scales, replay_tolerance

__all__ = [
    "DEFAULT_SIGMOID", "LOSSES", "OUTPUTS", "PARTITIONS", "TRIPLES", "RegressionConfig", "Scales",
    "SecureLinearRegression", "SecureLogisticRegression", "batch_schedule", "dp_plan", "plaintext_dp_fit",
    "plaintext_sgd", "plan",
    "prediction_party", "prediction_roles", "quantize", "reference_scales", "regression_dealer", "regression_party",
    "replay_tolerance",
    "roles", "train_shared",
]
