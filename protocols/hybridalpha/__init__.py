"""HybridAlpha: federated learning over horizontally partitioned data with functional-encryption aggregation.

Xu, Baracaldo, Zhou, Anwar, Ludwig, "HybridAlpha: An Efficient Approach for Privacy-Preserving
Federated Learning", AISec 2019. A trusted third-party authority (TPA) sets up labelled
multi-input inner-product FE (:mod:`mpcml.fe`: ACFGU 2018 with label-derived pads) with one slot
per party. Each round every party trains locally from the global model
(:class:`~protocols.hybridalpha.protocol.LocalLogistic`: ``local_epochs`` full-batch steps of
L2-penalised logistic regression), quantises its update ``u`` to ``round(u * 2^f)`` and
encrypts it under the label ``(round, "update")``. The aggregator waits until the round's
deadline, asks the TPA for a key for the parties that answered (weights 0/1) and decrypts
``sum_i x_i`` coordinate-wise: a dropout costs no extra round. The global model moves by the
mean update (FedAvg, McMahan et al. 2017). The steps are numbered in
:mod:`protocols.hybridalpha.protocol`; the baselines (``scheme=``) in
:mod:`protocols.hybridalpha.schemes`; the range analysis in :mod:`protocols.hybridalpha.config`.

Threat model: semi-honest parties and aggregator; a trusted TPA that never sees a ciphertext
and does not collude with the aggregator; parties' channels confidential (mTLS). The TPA's
inference-prevention policy (:class:`~protocols.hybridalpha.protocol.KeyPolicy`) refuses a key
for fewer than ``t = min_parties`` responders (``t >= 2`` unless the INSECURE flag
``insecure_allow_single_party`` is set) and a second key for a round. What each role learns:

- aggregator: each party's public set-up facts (its number of model parameters and
  ``ceil(log2 max|x|)`` of its data, used by the range analysis); per round, who answered, the
  sum (hence the mean) of their quantised updates and nothing else about a single update; the
  global model;
- TPA: the plan (the parties that answered the set-up, the number of parameters, the agreed
  update bound, which reveals the largest ``ceil(log2 max|x|)``), and per round the 0/1
  weights (who answered); never an update;
- parties: the plan, the global model at the start of every round and the final model. With
  ``t = 2`` responders each one learns the other's update from the change of the model.

Optional DP (Truex et al., AISec 2019): each party clips its update to L2 norm ``C`` and adds
``N(0, sigma^2 / t)`` with ``sigma`` the analytic Gaussian calibration (Balle & Wang 2018) for
L2 sensitivity ``C`` at ``(epsilon, delta)``; with at least ``t`` honest contributors the sum
carries ``N(0, sigma^2)`` and meets ``(epsilon, delta)``-DP per round (add/remove one party's
update; composition over rounds is not accounted). Clipping is part of the DP algorithm; the
estimator warns when it changed an update.

Precision: updates are quantised to ``frac_bits`` (default 16) fractional bits; the aggregation
is exact on the quantised values, so the model equals the plaintext replay
(:func:`~protocols.hybridalpha.reference.plaintext_fedavg`) to the last bit in practice (bound:
one unit per round).
"""

from .config import DP_TAIL, SCHEMES, HybridAlphaConfig, Plan, plan, trainer_bound, update_bound
from .estimators import HybridAlphaLogisticRegression
from .protocol import KeyPolicy, LocalLogistic, hybridalpha_aggregator, hybridalpha_party, hybridalpha_tpa, roles
from .reference import plaintext_fedavg, replay_tolerance
from .schemes import SCHEME_CLASSES, AggregationScheme, make_scheme

__all__ = [
    "DP_TAIL", "SCHEMES", "SCHEME_CLASSES", "AggregationScheme", "HybridAlphaConfig", "HybridAlphaLogisticRegression",
    "KeyPolicy", "LocalLogistic", "Plan", "hybridalpha_aggregator", "hybridalpha_party", "hybridalpha_tpa",
    "make_scheme", "plaintext_fedavg", "plan", "replay_tolerance", "roles", "trainer_bound", "update_bound",
]
