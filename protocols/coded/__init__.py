"""Dropout-resilient coded training with Lagrange coded computing (DReS-FL style).

Shao, Sun, Li, Chen, Zhang, Yang, "DReS-FL: Dropout-Resilient Secure Federated Learning for
Non-IID Clients via Secret Data Sharing", NeurIPS 2022; coding by Lagrange coded computing
(Yu et al., AISTATS 2019, :mod:`mpcml.lagrange`).

Protocol. ``N`` clients and one server. Each client quantises ``[X_i | 1 | v_i]``, cuts its rows
into ``K`` blocks, Lagrange-encodes them with ``T`` uniform masks and sends client ``j`` the
evaluation at ``alpha_j``; every client then holds the stack ``S_j``, the evaluation at
``alpha_j`` of one polynomial of degree ``K + T - 1`` holding all clients' data. Each round the
server sends the model ``W``; client ``j`` returns ``S_X^T (S_X W + S_V)`` (a polynomial of degree
``2 (K + T - 1)``, plus zero masks); from the first ``R = 2 (K + T - 1) + 1`` results the server
interpolates the per-block values at ``beta_1..beta_K`` and sums them: the exact integer gradient
of the quantised model, whoever dropped out. The steps are numbered in
:mod:`protocols.coded.protocol`.

Models (both have a gradient of degree 2 in the data, ``c X^T (X w + v) / m``): linear regression
(``c = 1``, ``v = -y``) and logistic regression with the sigmoid replaced by its least-squares line
on ``[-4, 4]``, ``sigma(z) ~ 1/2 + c z`` with ``c = SIGMOID_SLOPE = 0.1532`` (``v = (1/2 - y)/c``);
gradient descent minimises ``(1/2c) mean((1/2 + c z - y)^2)``. More than two classes: one-vs-rest
with one target column per class, all classes in one run (one set-up).

Range analysis (:mod:`protocols.coded.analysis`). From public facts announced at set-up the server
bounds the loss's curvature ``L`` (step ``eta = learning_rate / L_hat``: gradient descent cannot
diverge), bounds the weights over all rounds, and picks the fixed-point scales so that every
decoded integer stays below half the product of the two primes ``~ 2^61``, or refuses with a
``ValueError`` before any data is sent. A run-time guard stops with ``OverflowError`` naming the
round if the weights ever leave the analysed range. Nothing is clipped.

Dropouts. A round succeeds once ``R`` clients have answered; later answers are discarded. Fewer
than ``R`` within ``round_timeout`` seconds: :class:`RoundFailed` naming the missing clients. The
server never waits on a send (a dead client is skipped, then marked unreachable). The set-up
needs all ``N`` clients.

Threat model: semi-honest clients and server; the server colludes with no client. What each
role learns:

- public (every party): every client's row count, the number of features and outputs, the
  options, and ``x_bits = max_i ceil(log2 max|x|)`` (in the plan the server sends);
- the server: each client's public facts (also ``ceil(log2 max|y|)`` for the linear model and
  ``ceil(4 log2 lambda_i)``, the top eigenvalue of its ``[X_i | 1]^T [X_i | 1]`` to within 19%);
  which clients answered; every round's model (it computes it); and per round the ``K``
  per-block aggregate gradients ``c sum_i X_ik^T (X_ik W + V_ik) / m`` (hence the global gradient)
  and nothing else of the coded results: every client also adds fresh zero masks (random
  polynomials vanishing at ``beta_1..beta_K``) to its result, so the rest of what the server
  interpolates is uniform and new every round. The gradient is affine in the model, so after
  ``d + 2`` rounds these aggregates determine each block's pooled ``D_k^T D_k`` and ``D_k^T V_k``
  (the pooled Gram matrix and the features' correlation with the targets, per block of rows);
  the reported ``loss_change`` is computed from them and reveals nothing more;
- each client: its own data; the coded shares and zero masks of the others, which are uniform
  to any ``T`` colluding clients (information-theoretic); and the model every round, so the
  sequence of models and hence the aggregate gradients up to the step size ``eta``. ``T + 1``
  colluding clients can recover small-domain values of another client exactly (its 0/1 labels,
  demonstrated in the tests), even when ``T + 1 < K + T``.

What ``T`` protects against: ``T = 1`` only against single curious clients; ``T = 2`` against any
pair; the default ``max(2, ceil(N / 4))`` against any quarter of the clients. Each extra mask
raises ``R`` by 2, so it costs two tolerated dropouts per round; the bytes and the clients'
work do not change.
"""

from .analysis import FACTS, MIN_BITS, Plan, Scales, check_weights, client_facts, curvature_bits, plan
from .coding import CodedStack, coded_gradient, decode_gradient, design, encode_data, zero_masks
from .config import DEFAULT_PRIMES, DEGREE, MODELS, SIGMOID_SLOPE, CodedConfig
from .estimators import CodedLinearRegression, CodedLogisticRegression
from .protocol import RoundFailed, client_input, client_rounds, client_setup, coded_client, coded_server, roles, server_update
from .reference import float_training, plaintext_training

__all__ = [
    "CodedStack", "DEFAULT_PRIMES", "DEGREE", "FACTS", "MIN_BITS", "MODELS", "SIGMOID_SLOPE", "CodedConfig", "CodedLinearRegression",
    "CodedLogisticRegression", "Plan", "RoundFailed", "Scales", "check_weights", "client_facts", "client_input",
    "client_rounds", "client_setup", "coded_client", "coded_gradient", "coded_server", "curvature_bits", "decode_gradient", "design", "encode_data",
    "float_training", "plaintext_training", "plan", "roles", "server_update", "zero_masks",
]
