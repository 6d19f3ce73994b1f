"""CAESAR: secure sparse logistic regression for two parties, additively homomorphic encryption + secret sharing.

Chen, Zhou, Wang et al., "When Homomorphic Encryption Marries Secret Sharing: Secure
Large-Scale Sparse Logistic Regression and Applications in Risk Control", KDD 2021.

Setting. Features are vertically partitioned: party A holds ``X_A`` (n x d_A), party B holds
``X_B`` (n x d_B) and the labels ``y``; rows are aligned. Both fit
``p = sigmoid(X_A w_A + X_B w_B + b)`` by mini-batch gradient descent (K such models at once for
one-vs-rest). Each party has its own key pair of the additively homomorphic scheme ``he``
(Okamoto–Uchiyama by default, or Paillier; :mod:`mpcml.he`). The expensive products are done by the
owner of the (plaintext, sparse) data on ciphertexts under the *other* party's key, so their cost
is one short exponentiation per non-zero of the data (a modular multiplication for 0/1 data).
The steps are numbered in :mod:`protocols.caesar.protocol`; in short, per mini-batch ``S``
(from a public seed drawn by B), for each party P with peer Q:

1. **HE -> SS product.** P holds ``[w_P]_Q``, its weights encrypted under Q's key, computes
   ``[X_P[S] w_P]_Q``, packs the results into as few ciphertexts as fit, adds a statistical mask
   ``R`` (40 bits beyond the analysed bound) and fresh randomness, and sends them to Q, who
   decrypts ``t = X_P[S] w_P + R``: ``z`` is additively shared over the integers.
2. **Sigmoid.** ``1/2 + z/4`` (linear, the default: local on shares) or the cubic
   ``q0 + q1 z + q3 z^3`` (one more round). B subtracts ``y``: ``e = yhat - y`` is shared.
3. **Gradient.** Q sends ``[-eta <e>_Q]_Q`` (``eta = lr / |S|``); P adds its own share and
   computes ``[w_P] <- [w_P] + X_P[S]^T [-eta e]_Q``: no decryption at all.
4. **Output.** P masks ``[w_P]_Q`` and Q decrypts it; ``output="own"`` (default): Q returns the
   masked values, A learns ``w_A``, B learns ``w_B`` and the intercept; ``"reveal"``: both then
   learn every weight; ``"shared"``: the weights stay additively shared (P keeps ``-R``, Q keeps
   ``w_P + R``) for secure prediction (:mod:`protocols.caesar.prediction`).

Deviation from the paper, for speed: the paper keeps ``w_P`` additively shared and has Q
re-encrypt its share every batch (d_P encryptions per batch). Here Q's share is kept only as
the ciphertext ``[w_P]_Q`` at P and updated homomorphically; the weights stay hidden from both
parties exactly as before, and per batch the crypto cost is O(|S| + nnz(X[S])) instead of O(d).
The L2 penalty is weight decay once per epoch (one mask-and-decrypt round).

Range analysis (:func:`protocols.caesar.config.plan`). At set-up each party announces, besides
its shape and public key, two bounds of its own block rounded up to a quarter of a bit: its
largest row norm ``max_i ||x_i||_2`` and its widest batch ``max_S ||X_S||_2^2 / |S|`` over the
agreed batches. From these both parties bound the weights over the whole run (the step of the
linear sigmoid does not expand while ``lr (spread_A + spread_B) / 4 <= 2``; then the weights grow
by at most ``lr sqrt(spread) / 2`` per step), and from that every product, residual and packed
slot; the masks are sized from these bounds. A run whose bounds do not fit is refused before any
data-dependent message, naming the party, the bound and a learning rate that works.

Fixed point. Features are integers (scale 0, when every value is an integer, e.g. one-hot
data) or ``round(x 2^f)``; residuals have ``f`` fractional bits (``frac_bits``, 16); ``eta`` has
``fs = 24 + ceil(log2(batch/lr))`` bits; each party floors its share of ``eta e`` by 20 bits,
so the weights carry ``fw = fs + f - 20`` bits (plus the features' scale). The floors of integer
shares cost at most a few units in the last place per step (never a wrap-around: the shares
are integers, not ring elements); :func:`protocols.caesar.reference.replay_tolerance` bounds
the distance to the plaintext algorithm :func:`~protocols.caesar.reference.reference_fit`.

Threat model: semi-honest, two parties. Every value a party receives is (a) an IND-CPA
ciphertext under the other party's key, or (b) a ciphertext under its own key whose plaintext
slots are ``v + 2^B + U`` with ``U`` uniform in ``[0, 2^(B + 40))`` and ``|v| < 2^B`` (``B``
from the range analysis), statistically within ``2^-39`` of independent of ``v``, and fresh
``"subgroup"`` randomness (within ``2^-64`` of uniform on the randomness subgroup of a key made
as :mod:`mpcml.he` makes it, so a ciphertext's randomness says nothing of the data it was computed
from), or (c) public set-up facts. What each party learns:

- both: the other's public key, numbers of rows and columns, whether its features are
  integer-valued (the encoding scale), the options, the batch-order seed (so the batches), the
  number of models ``K``, and the other's two quarter-bit bounds (largest row norm, widest
  batch spread): coarse statistics of its data, nothing about individual values, the sparsity
  pattern, the labels (A), the products, the residuals or the other's weights;
- the output: ``"own"``: A its weights ``w_A``, B its weights ``w_B`` and the intercept (the
  model is *not* left shared: each party learns its own weights in the clear); ``"reveal"``:
  both learn every weight; ``"shared"``: nothing (each holds uniformly masked shares);
- with ``report_loss=True`` (off by default) B also learns each epoch's mean squared residual
  ``mean_S mean_{i in S, k} e_ik^2``: one number per epoch.

The estimator :class:`CaesarLogisticRegression` runs both roles in one process (so its user sees
both parties' outputs); the party app runs them as two processes.
"""

from .config import OUTPUTS, SIGMOIDS, CaesarConfig, Scales, block_facts, plan
from .estimator import CaesarLogisticRegression
from .packing import encode_features, pack_masked, unpack_masked
from .prediction import prediction_party, prediction_roles
from .protocol import caesar_party, roles
from .reference import make_sparse_logistic, reference_fit, replay_tolerance

__all__ = [
    "OUTPUTS", "SIGMOIDS", "CaesarConfig", "CaesarLogisticRegression", "Scales", "block_facts", "caesar_party",
    "encode_features", "make_sparse_logistic", "pack_masked", "plan", "prediction_party", "prediction_roles",
    "reference_fit", "replay_tolerance", "roles", "unpack_masked",
]
