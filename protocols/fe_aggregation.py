"""Functional-encryption aggregation: HybridAlpha (horizontal FL) and FedV (vertical FL).

**HybridAlpha** (Xu, Baracaldo, Zhou, Anwar, Ludwig, AISec 2019). A third-party authority (TPA)
sets up labelled multi-input inner-product FE (:mod:`mpcml.fe`, ACFGU 2018 with label-derived
pads) with one slot per party and hands each party its slot key. Per round ``r`` each party
quantises its model update ``x_i`` (``round(x * 2^f)``, optionally clipped and DP-noised) and
encrypts it under the label ``(r, "update")``, one coordinate per row. The aggregator waits
until a deadline, then asks the TPA for a key for weights ``w`` over the parties that answered
and decrypts ``sum_i w_i x_i`` coordinate-wise: a dropout costs no extra round. The TPA's
inference-prevention policy (:class:`KeyPolicy`) refuses requests with fewer than ``t``
non-zero weights, unequal weights (unless allowed) and reused labels.

Threat model (HybridAlpha): semi-honest parties and aggregator, a trusted TPA that never sees
ciphertexts, no collusion between TPA and aggregator; parties' channels are confidential
(mTLS). What each role learns:

- aggregator: per round, the weighted sum (hence the average) of the updates of the parties
  that answered, the set of those parties, and nothing else about any single update (the TPA
  never issues a key isolating fewer than ``t`` parties or a second key for a label);
- TPA: the weight vectors requested (which parties answered), never an update;
- parties: the global model each round.

Optional DP (Truex et al., AISec 2019): each party clips its update to L2 norm ``C`` and adds
``N(0, sigma^2 / t)`` with ``sigma`` = analytic Gaussian calibration (Balle & Wang 2018) for
L2 sensitivity ``C`` at ``(epsilon, delta)``; with at least ``t`` honest contributors the sum
carries ``N(0, sigma^2)`` and meets ``(epsilon, delta)``-DP per round (add/remove one party's
update; no composition across rounds is accounted here).

**FedV** (Xu, Baracaldo, Zhou, Anwar, Joshi, Ludwig, AISec 2021). Vertically partitioned data:
party ``p`` holds columns ``X_p`` of the same rows, the active party also the labels ``y``
(and the intercept column). The aggregator holds the model ``w`` and computes each gradient in
two FE steps with no message between parties:

1. feature dimension: labelled MIFE with one slot per party (rows = samples of the batch); the
   key for ``(w_1..w_k)`` yields ``z_t = sum_p <X_p[t], w_p> = w^T x_t``; for linear regression the
   active party also fills a label slot with weight ``-1`` so the aggregator gets ``w^T x_t - y_t``;
2. sample dimension: labelled single-input FE per party (rows = features); the key for the
   error vector ``e`` yields ``X_p^T e``, the party's block of the gradient.

What FedV's aggregator learns: per batch the per-sample scores ``w^T x_t`` (logistic, SVM) or
residuals ``w^T x_t - y_t`` (linear), and the gradient ``X^T e``. Labels: hidden (up to the
residuals) for linear regression; **revealed** to the aggregator for logistic regression and
SVM, whose error vector determines them (``sign(sigmoid(z) - y) = 1 - 2y``): the active party
sends ``y`` to the aggregator at setup. Known leakage (Chen et al. 2023): over many epochs the
scores ``X w^(e)`` for different ``w^(e)`` determine ``X`` once ``d`` of them are independent.
The TPA refuses a feature-step key that leaves a party's weights all zero, a sample-step key
with fewer than ``t`` non-zero entries (isolating samples) and reused labels.

**Baselines** (same roles, ``scheme=``): ``"paillier-packed"`` (mpcml's packed Paillier:
parties encrypt under the key holder's public key, the aggregator adds, the key holder — the
TPA party — decrypts the sum), ``"phe"`` (one value per ``phe`` ciphertext) and ``"plain"``
(plaintext averaging).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import phe
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from mpcml import paillier
from mpcml.dlog import dlog_table
from mpcml.dp import NoiseSource, analytic_gaussian_sigma, clip_l2, share_sigma
from mpcml.fe import (
    DEFAULT_GROUP,
    MIFECiphertext,
    MIFEFunctionKey,
    MIFEMasterKey,
    MIFESlotKey,
    group_by_name,
    label_bytes,
    mife_decrypt,
)
from mpcml.local import run_local
from mpcml.party import DEFAULT_TIMEOUT, Party
from protocols.common import (
    CommunicationReport,
    check_horizontal_pairs,
    check_int,
    check_labels,
    check_matrix,
    check_number,
    check_party_ids,
    check_vertical_parts,
)
from protocols.common import logistic

SCHEMES = ("fe", "paillier-packed", "phe", "plain")
MODELS = ("linear", "logistic", "svm")


class KeyRequestRefused(RuntimeError):
    """The TPA refused a key request (inference-prevention policy)."""


def quantise(x: Any, frac_bits: int, bound: int, name: str, *, clip: bool = False) -> np.ndarray:
    """``round(x * 2^frac_bits)`` as int64 with ``|.| <= bound``: ``ValueError`` naming ``name`` (or clipping)."""
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    ints = np.rint(arr * float(2**frac_bits))
    if clip:
        ints = np.clip(ints, -bound, bound)
    elif ints.size and np.max(np.abs(ints)) > bound:
        raise ValueError(
            f"{name} has an entry of magnitude {np.max(np.abs(arr)):.6g}, above the agreed bound "
            f"{bound / 2**frac_bits:.6g} (max_abs) at {frac_bits} fractional bits"
        )
    return ints.astype(np.int64)


# ---------------------------------------------------------------- the TPA's policy


@dataclass
class KeyPolicy:
    """HybridAlpha's inference-prevention policy at the TPA (one instance per federation).

    Refuses: negative or non-integer weights; fewer than ``min_parties`` non-zero weights;
    unequal non-zero weights unless ``allow_unequal``; a label already used for a key.
    """

    min_parties: int
    allow_unequal: bool = False
    used: set = field(default_factory=set)

    def refusal(self, weights: Sequence[int], label: Any) -> str | None:
        """The reason to refuse ``weights`` for ``label``, or ``None`` (and the label is then spent)."""
        if not all(isinstance(w, int) and not isinstance(w, bool) and w >= 0 for w in weights):
            return "weights must be non-negative ints"
        nonzero = [w for w in weights if w]
        if len(nonzero) < self.min_parties:
            return f"only {len(nonzero)} non-zero weights; the policy needs at least {self.min_parties} parties"
        if not self.allow_unequal and len(set(nonzero)) > 1:
            return "unequal weights are not allowed by the policy"
        key = label_bytes(label)
        if key in self.used:
            return f"label {label!r} was already used for a key"
        self.used.add(key)
        return None


# ---------------------------------------------------------------- HybridAlpha configuration


@dataclass(frozen=True)
class DPConfig:
    """Per-round ``(epsilon, delta)``-DP for the aggregate, with L2 clipping norm ``clip``."""

    epsilon: float
    delta: float
    clip: float

    def party_sigma(self, honest: int) -> float:
        return share_sigma(analytic_gaussian_sigma(self.clip, self.epsilon, self.delta), honest)


@dataclass(frozen=True)
class HybridAlphaConfig:
    """Everything every HybridAlpha role agrees on (public)."""

    parties: tuple[str, ...]
    n_params: int
    rounds: int = 1
    scheme: str = "fe"
    tpa: str = "tpa"
    aggregator: str = "aggregator"
    min_parties: int = 2
    allow_unequal: bool = False
    party_weights: tuple[int, ...] | None = None
    deadline: float = 30.0
    frac_bits: int = 16
    max_abs: float = 256.0
    group: str = DEFAULT_GROUP.name
    paillier_bits: int = 2048
    dp: DPConfig | None = None
    precompute: bool = False

    def __post_init__(self) -> None:
        ids = check_party_ids(self.parties, "parties")
        check_party_ids((*ids, self.tpa, self.aggregator), "party, tpa and aggregator ids")
        object.__setattr__(self, "parties", ids)
        check_int("n_params", self.n_params, 1)
        check_int("rounds", self.rounds, 1)
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")
        check_int("min_parties", self.min_parties, 1)
        if self.min_parties > len(ids):
            raise ValueError(f"min_parties={self.min_parties} exceeds the {len(ids)} parties")
        if self.party_weights is not None:
            if not self.allow_unequal:
                raise ValueError("party_weights needs allow_unequal=True (the TPA refuses unequal weights otherwise)")
            if len(self.party_weights) != len(ids):
                raise ValueError(f"party_weights needs one weight per party ({len(ids)}), got {len(self.party_weights)}")
            for w in self.party_weights:
                check_int("party_weights entries", w, 1)
        check_number("deadline", self.deadline)
        check_int("frac_bits", self.frac_bits, 0)
        check_number("max_abs", self.max_abs)
        group_by_name(self.group)
        if self.dp is not None and not isinstance(self.dp, DPConfig):
            raise TypeError(f"dp must be a DPConfig or None, got {type(self.dp).__name__}")
        if self.precompute and self.scheme != "fe":
            raise ValueError("precompute applies to scheme='fe' only")

    @property
    def bound_x(self) -> int:
        return int(self.max_abs * 2**self.frac_bits)

    @property
    def max_weight(self) -> int:
        return max(self.party_weights) if self.party_weights else 1

    def weight(self, pid: str) -> int:
        return self.party_weights[self.parties.index(pid)] if self.party_weights else 1

    @property
    def slot_bits(self) -> int:
        """Packed-Paillier slot width: value, sign and carries for the sum of all parties."""
        return self.bound_x.bit_length() + 2 + (len(self.parties) * self.max_weight).bit_length()


# ---------------------------------------------------------------- HybridAlpha roles


def hybridalpha_tpa(party: Party, *, config: HybridAlphaConfig) -> dict:
    """TPA / key-holder role: set up keys, then answer the aggregator's requests until it says stop."""
    params = group_by_name(config.group)
    policy = KeyPolicy(config.min_parties, config.allow_unequal)
    master = private = None
    prepared: dict[int, Any] = {}
    if config.scheme == "fe":
        master = MIFEMasterKey.setup(len(config.parties), 1, config.bound_x, config.max_weight, params)
        for slot, pid in enumerate(config.parties):
            party.send(pid, master.slot_key(slot).to_wire())
        if config.precompute:
            prepared = {rnd: master.prepare_pads((rnd, "update"), config.n_params) for rnd in range(config.rounds)}
            party.send(config.aggregator, {"ready": True})
    elif config.scheme in ("paillier-packed", "phe"):
        public, private = paillier.generate_keypair(config.paillier_bits)
        party.send_all([*config.parties, config.aggregator], public.to_wire())
    log: dict[str, list] = {"granted": [], "refused": []}
    while True:
        msg = party.recv(config.aggregator, timeout=party.timeout + config.deadline)
        if not isinstance(msg, dict) or msg.get("type") == "stop":
            return log
        label = msg.get("label")
        weights = msg.get("weights")
        if not isinstance(weights, list) or len(weights) != len(config.parties):
            raise ValueError(f"key request with malformed weights {weights!r}")
        reason = policy.refusal(weights, label)
        if reason is not None:
            log["refused"].append((label, reason))
            party.send(config.aggregator, {"refused": reason})
            continue
        log["granted"].append(label)
        if config.scheme == "fe":
            pads = prepared.pop(label[0], None) if isinstance(label, tuple) and label[1:] == ("update",) else None
            key = master.keygen(np.asarray(weights, dtype=np.int64).reshape(-1, 1), label, config.n_params, pads)
            party.send(config.aggregator, key.to_wire())
        elif config.scheme == "paillier-packed":
            packed = paillier.PackedEncryptedArray.from_wire(private.public_key, msg["sum"])
            party.send(config.aggregator, {"sum": paillier.decrypt_packed(private, packed)[0]})
        else:
            pub = private.phe.public_key
            cts = msg.get("sum")
            if not isinstance(cts, list) or len(cts) != config.n_params or not all(
                isinstance(c, int) and 0 < c < pub.nsquare for c in cts
            ):
                raise ValueError("malformed phe aggregate from the aggregator")
            total = [private.phe.decrypt(phe.EncryptedNumber(pub, c, 0)) for c in cts]
            party.send(config.aggregator, {"sum": np.asarray(total, dtype=np.float64) / 2**config.frac_bits})


def _party_payload(config: HybridAlphaConfig, key: Any, update: np.ndarray, label: tuple, prepared: Any = None) -> Any:
    if config.scheme == "plain":
        return update
    ints = quantise(update, config.frac_bits, config.bound_x, "update", clip=config.dp is not None)
    if config.scheme == "fe":
        return key.encrypt(ints.reshape(-1, 1), label, prepared=prepared).to_wire()
    if config.scheme == "paillier-packed":
        packed = paillier.encrypt_packed(
            key, ints.astype(np.float64) / 2**config.frac_bits, frac_bits=config.frac_bits,
            slot_bits=config.slot_bits, max_summands=len(config.parties),
        )
        return packed.to_wire()
    pub = key.phe
    return [pub.encrypt(int(v)).ciphertext() for v in ints]


def hybridalpha_party(
    party: Party,
    *,
    config: HybridAlphaConfig,
    local_update: Callable[[np.ndarray, int], np.ndarray],
    drop_after: int | None = None,
) -> dict:
    """Party role: each round, receive the model, compute ``local_update(model, round)``, send it encrypted.

    ``drop_after=k`` simulates a crash at round ``k`` (the party stops answering).
    """
    key: Any = None
    if config.scheme == "fe":
        key = MIFESlotKey.from_wire(party.recv(config.tpa))
        if key.public.params.name != config.group or key.slot != config.parties.index(party.id):
            raise ValueError("slot key from the TPA does not match the configuration")
    elif config.scheme in ("paillier-packed", "phe"):
        key = paillier.PublicKey.from_wire(party.recv(config.tpa))
    noise = NoiseSource() if config.dp is not None else None
    prepared: dict[int, Any] = {}
    if config.precompute:
        prepared = {rnd: key.prepare((rnd, "update"), config.n_params) for rnd in range(config.rounds)}
        party.send(config.aggregator, {"ready": True})
    done = 0
    while True:
        try:
            msg = party.recv(config.aggregator, timeout=party.timeout + config.deadline)
        except TimeoutError:
            return {"rounds": done, "status": "timed out"}
        if not isinstance(msg, dict) or msg.get("type") not in ("model", "stop"):
            raise ValueError("malformed message from the aggregator")
        if msg["type"] == "stop":
            return {"rounds": done, "status": "finished"}
        rnd = int(msg["round"])
        if drop_after is not None and rnd >= drop_after:
            return {"rounds": done, "status": "dropped"}
        update = np.asarray(local_update(np.asarray(msg["model"], dtype=np.float64), rnd), dtype=np.float64)
        if update.shape != (config.n_params,):
            raise ValueError(f"local_update returned shape {update.shape}, expected ({config.n_params},)")
        if noise is not None:
            update = clip_l2(update, config.dp.clip) + noise.gaussian(update.shape, config.dp.party_sigma(config.min_parties))
        payload = _party_payload(config, key, update, (rnd, "update"), prepared.pop(rnd, None))
        party.send(config.aggregator, {"round": rnd, "payload": payload})
        done += 1


def _collect(party: Party, senders: Sequence[str], rnd: int | None, deadline: float, field_name: str = "payload") -> dict[str, Any]:
    """``msg[field_name]`` of the messages of round ``rnd`` that arrive before ``deadline``
    (``time.monotonic``); senders without one dropped out."""
    got: dict[str, Any] = {}
    for pid in senders:
        while True:
            try:
                msg = party.recv(pid, timeout=max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                break
            if isinstance(msg, dict) and msg.get("round") == rnd and field_name in msg:
                got[pid] = msg[field_name]
                break
    return got


def _aggregate(party: Party, config: HybridAlphaConfig, public: Any, received: Mapping[str, Any], rnd: int) -> np.ndarray:
    """The weighted sum of the received updates (raises :class:`KeyRequestRefused`)."""
    weights = [config.weight(pid) if pid in received else 0 for pid in config.parties]
    label = (rnd, "update")
    if config.scheme == "plain":
        return sum(config.weight(pid) * np.asarray(v, dtype=np.float64) for pid, v in received.items())
    request: dict[str, Any] = {"type": "key", "label": label, "weights": weights}
    if config.scheme == "fe":
        params = group_by_name(config.group)
        cts = {config.parties.index(pid): MIFECiphertext.from_wire(v, params) for pid, v in received.items()}
    elif config.scheme == "paillier-packed":
        arrays = [paillier.PackedEncryptedArray.from_wire(public, v) for v in received.values()]
        total = arrays[0]
        for arr in arrays[1:]:
            total = total + arr
        request["sum"] = total.to_wire()
    else:
        n2 = public.nsquare
        total = [1] * config.n_params
        for v in received.values():
            if not isinstance(v, list) or len(v) != config.n_params:
                raise ValueError("malformed phe update")
            total = [a * b % n2 for a, b in zip(total, v)]
        request["sum"] = total
    party.send(config.tpa, request)
    reply = party.recv(config.tpa, timeout=party.timeout + config.deadline)
    if "refused" in reply:
        raise KeyRequestRefused(reply["refused"])
    if config.scheme != "fe":
        return np.asarray(reply["sum"], dtype=np.float64)
    key = MIFEFunctionKey.from_wire(reply, params)
    if [row[0] for row in key.y] != weights or label_bytes(key.label) != label_bytes(label):
        raise ValueError("the TPA's key does not match the request")
    bound = sum(weights) * config.bound_x
    sums = mife_decrypt(params, key, cts, bound)
    return np.asarray(sums, dtype=np.float64) / 2**config.frac_bits


def hybridalpha_aggregator(party: Party, *, config: HybridAlphaConfig, initial_model: np.ndarray) -> dict:
    """Aggregator role: run ``config.rounds`` rounds of federated averaging with dropouts.

    A party that misses a round's deadline (or whose channel fails) is a dropout for the rest of
    the run. A refused key request leaves the model unchanged for that round. Returns the model and
    a per-round history (responders, seconds, bytes through the aggregator, refusal reason).
    """
    model = np.array(initial_model, dtype=np.float64)
    if model.shape != (config.n_params,):
        raise ValueError(f"initial_model has shape {model.shape}, expected ({config.n_params},)")
    public = paillier.PublicKey.from_wire(party.recv(config.tpa)) if config.scheme in ("paillier-packed", "phe") else None
    start = time.perf_counter()
    if config.scheme == "fe":  # setup, not per round: the baby-step table is reused by every decryption
        dlog_table(group_by_name(config.group), len(config.parties) * config.max_weight * config.bound_x)
    active = list(config.parties)
    if config.precompute:  # offline phase: wait until the TPA and the parties have prepared every round
        party.recv(config.tpa, timeout=party.timeout + config.deadline)
        ready = _collect(party, active, None, time.monotonic() + party.timeout + config.deadline, "ready")
        active = [pid for pid in active if pid in ready]
    setup_seconds = time.perf_counter() - start
    history = []
    for rnd in range(config.rounds):
        start, before = time.perf_counter(), party.stats.snapshot()
        reachable = []
        for pid in active:
            try:
                party.send(pid, {"type": "model", "round": rnd, "model": model})
                reachable.append(pid)
            except TimeoutError:
                continue
        received = _collect(party, reachable, rnd, time.monotonic() + config.deadline)
        active = [pid for pid in active if pid in received]
        entry: dict[str, Any] = {"round": rnd, "responders": sorted(received)}
        try:
            if not received:
                raise KeyRequestRefused("no party answered before the deadline")
            total = _aggregate(party, config, public, received, rnd)
            model = model + total / sum(config.weight(pid) for pid in received)
        except KeyRequestRefused as exc:
            entry["refused"] = str(exc)
        delta = party.stats.snapshot() - before
        entry.update(seconds=time.perf_counter() - start, bytes=delta.bytes_sent + delta.bytes_received)
        history.append(entry)
    for pid in active:
        party.send(pid, {"type": "stop"})
    party.send(config.tpa, {"type": "stop"})
    return {"model": model, "history": history, "setup_seconds": setup_seconds}


# ---------------------------------------------------------------- federated averaging driver


@dataclass
class LogisticTrainer:
    """Local step of federated averaging: ``epochs`` full-batch gradient steps of logistic regression.

    The model is ``(coef..., intercept)``; returns the update ``w_local - w_global``.
    """

    X: np.ndarray
    y: np.ndarray
    learning_rate: float = 0.5
    epochs: int = 5

    def __post_init__(self) -> None:
        self._Xb = np.hstack([self.X, np.ones((self.X.shape[0], 1))])  # the same every round

    def __call__(self, model: np.ndarray, rnd: int = 0) -> np.ndarray:
        Xb = self._Xb
        w = model.copy()
        for _ in range(self.epochs):
            w -= self.learning_rate * Xb.T @ (logistic(Xb @ w) - self.y) / Xb.shape[0]
        return w - model


def plaintext_fedavg(
    parts: Sequence[tuple[np.ndarray, np.ndarray]], rounds: int, learning_rate: float, local_epochs: int,
    responders: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """The same federated averaging in float64 (equal weights), the reference for HybridAlpha.

    ``responders[r]`` lists the indices of the parties averaged in round ``r`` (default: all).
    """
    model = np.zeros(parts[0][0].shape[1] + 1)
    trainers = [LogisticTrainer(X, y, learning_rate, local_epochs) for X, y in parts]
    for rnd in range(rounds):
        chosen = range(len(trainers)) if responders is None else responders[rnd]
        if len(chosen):
            model = model + sum(trainers[i](model, rnd) for i in chosen) / len(chosen)
    return model


def hybridalpha_roles(
    config: HybridAlphaConfig, updates: Mapping[str, Callable[[np.ndarray, int], np.ndarray]],
    initial_model: np.ndarray, drop_after: Mapping[str, int] | None = None,
) -> tuple[dict[str, Callable[..., Any]], dict[str, dict]]:
    """Roles and inputs for :func:`mpcml.run_local` (or the process launcher)."""
    drop_after = dict(drop_after or {})
    roles: dict[str, Callable[..., Any]] = {config.tpa: partial(hybridalpha_tpa, config=config)}
    roles[config.aggregator] = partial(hybridalpha_aggregator, config=config)
    inputs: dict[str, dict] = {config.aggregator: {"initial_model": initial_model}}
    for pid in config.parties:
        roles[pid] = partial(hybridalpha_party, config=config)
        inputs[pid] = {"local_update": updates[pid], "drop_after": drop_after.get(pid)}
    return roles, inputs


class HybridAlphaLogisticRegression(ClassifierMixin, BaseEstimator):
    """Federated logistic regression over horizontally partitioned data with HybridAlpha aggregation.

    ``fit(parts)`` takes a list of ``(X_i, y_i)`` pairs, one per party, runs all roles in this
    process and sets ``coef_``, ``intercept_``, ``history_`` and ``communication_``.
    ``dp_epsilon`` enables per-round DP noise (``dp_delta``, ``dp_clip``).
    """

    def __init__(self, *, rounds: int = 20, local_epochs: int = 5, learning_rate: float = 0.5, min_parties: int = 2,
                 scheme: str = "fe", dp_epsilon: float | None = None, dp_delta: float = 1e-5, dp_clip: float = 1.0,
                 deadline: float = 60.0, frac_bits: int = 16, max_abs: float = 256.0, group: str = DEFAULT_GROUP.name,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.rounds, self.local_epochs, self.learning_rate, self.min_parties = rounds, local_epochs, learning_rate, min_parties
        self.scheme, self.dp_epsilon, self.dp_delta, self.dp_clip = scheme, dp_epsilon, dp_delta, dp_clip
        self.deadline, self.frac_bits, self.max_abs, self.group, self.timeout = deadline, frac_bits, max_abs, group, timeout

    def fit(self, X: Any, y: Any = None) -> "HybridAlphaLogisticRegression":
        if y is not None:
            raise ValueError("pass X as a list of (X_i, y_i) pairs, one per party, and y=None")
        blocks, labels = check_horizontal_pairs(X, "X", binary=True)
        ids = tuple(f"party-{i}" for i in range(len(blocks)))
        dp = DPConfig(self.dp_epsilon, self.dp_delta, self.dp_clip) if self.dp_epsilon is not None else None
        config = HybridAlphaConfig(
            ids, blocks[0].shape[1] + 1, self.rounds, self.scheme, min_parties=self.min_parties, deadline=self.deadline,
            frac_bits=self.frac_bits, max_abs=self.max_abs, group=self.group, dp=dp,
        )
        trainers = {pid: LogisticTrainer(b, lab, self.learning_rate, self.local_epochs) for pid, b, lab in zip(ids, blocks, labels)}
        roles, inputs = hybridalpha_roles(config, trainers, np.zeros(config.n_params))
        out = run_local(roles, inputs, timeout=self.timeout)
        model = out[config.aggregator]["model"]
        self.coef_, self.intercept_ = model[:-1], float(model[-1])
        self.history_ = out[config.aggregator]["history"]
        self.communication_ = CommunicationReport.from_stats(out.stats)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = blocks[0].shape[1]
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = check_matrix(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the model was fitted on {self.n_features_in_}")
        return X @ self.coef_ + self.intercept_

    def predict_proba(self, X: Any) -> np.ndarray:
        p = logistic(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(np.int64)


# ---------------------------------------------------------------- FedV


@dataclass(frozen=True)
class FedVConfig:
    """What every FedV role agrees on (public): ids, column counts, sizes and training parameters.

    ``widths`` are the data columns of each party in ``parties`` order; the active party (label
    holder) appends the intercept column when ``fit_intercept``. Batches are contiguous blocks of
    ``batch_size`` rows in the agreed row order (``0``: the full batch). ``frac_bits`` quantises
    data, weights and errors; ``max_abs_x`` bounds ``|X|`` (and ``|y|``), ``max_abs_w`` the weights,
    ``max_abs_e`` the per-sample errors (out-of-range values raise ``ValueError``). The aggregator
    starts from weights uniform in ``(-init_scale, init_scale)`` (CSPRNG): the TPA refuses
    feature-step keys with a party's weights all zero.
    """

    parties: tuple[str, ...]
    widths: tuple[int, ...]
    n_samples: int
    active: str
    model: str = "logistic"
    epochs: int = 10
    batch_size: int = 0
    learning_rate: float = 0.5
    alpha: float = 0.0
    fit_intercept: bool = True
    tpa: str = "tpa"
    aggregator: str = "aggregator"
    frac_bits: int = 10
    max_abs_x: float = 16.0
    max_abs_w: float = 64.0
    max_abs_e: float = 64.0
    min_nonzero: int = 2
    init_scale: float = 0.01
    group: str = DEFAULT_GROUP.name
    record_gradients: bool = False

    def __post_init__(self) -> None:
        ids = check_party_ids(self.parties, "parties")
        check_party_ids((*ids, self.tpa, self.aggregator), "party, tpa and aggregator ids")
        object.__setattr__(self, "parties", ids)
        object.__setattr__(self, "widths", tuple(check_int("widths entries", w, 1) for w in self.widths))
        if len(self.widths) != len(ids):
            raise ValueError(f"widths needs one entry per party ({len(ids)}), got {len(self.widths)}")
        if self.active not in ids:
            raise ValueError(f"active party {self.active!r} is not one of the parties {list(ids)}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        check_int("n_samples", self.n_samples, 1)
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 0)
        check_number("learning_rate", self.learning_rate)
        if not isinstance(self.alpha, (int, float)) or self.alpha < 0:
            raise ValueError(f"alpha must be a non-negative number, got {self.alpha!r}")
        check_int("frac_bits", self.frac_bits, 1)
        for name in ("max_abs_x", "max_abs_e", "init_scale"):
            check_number(name, getattr(self, name))
        if check_number("max_abs_w", self.max_abs_w) < 1:
            raise ValueError("max_abs_w must be at least 1 (the label slot's weight is -1)")
        check_int("min_nonzero", self.min_nonzero, 1)
        group_by_name(self.group)

    def width(self, pid: str) -> int:
        """Columns the party encrypts (its data, plus the intercept column at the active party)."""
        extra = 1 if pid == self.active and self.fit_intercept else 0
        return self.widths[self.parties.index(pid)] + extra

    @property
    def dim(self) -> int:
        return max(self.width(p) for p in self.parties)

    @property
    def batch(self) -> int:
        return self.batch_size or self.n_samples

    def batches(self) -> list[np.ndarray]:
        return [np.arange(s, min(s + self.batch, self.n_samples)) for s in range(0, self.n_samples, self.batch)]

    @property
    def label_slot(self) -> bool:
        return self.model == "linear"

    @property
    def n_slots(self) -> int:
        """Feature-step MIFE slots: one per party, plus the label slot for linear models."""
        return len(self.parties) + int(self.label_slot)

    def bound(self, value: float) -> int:
        return int(value * 2**self.frac_bits)


@dataclass
class FedVPolicy:
    """FedV's TPA policy: feature-step keys must weight every party and fix the label slot at -1;
    sample-step keys need at least ``min_nonzero`` non-zero entries; labels are never reused."""

    config: FedVConfig
    used: set = field(default_factory=set)

    def refusal(self, msg: Mapping[str, Any]) -> str | None:
        cfg = self.config
        if msg.get("type") == "fwd":
            weights = np.asarray(msg.get("weights"))
            if weights.shape != (cfg.n_slots, cfg.dim):
                return f"feature-step weights must have shape ({cfg.n_slots}, {cfg.dim})"
            if not all(np.any(weights[i]) for i in range(len(cfg.parties))):
                return "a feature-step key must give every party non-zero weights (no isolation)"
            if cfg.label_slot and weights[-1].tolist() != [-(2**cfg.frac_bits)] + [0] * (cfg.dim - 1):
                return "the label slot's weight must be exactly -1"
        elif msg.get("type") == "bwd":
            vector = np.asarray(msg.get("vector"))
            target = msg.get("party")
            if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < len(cfg.parties):
                return f"sample-step request for an unknown party {target!r}"
            if vector.shape != (cfg.batch,):
                return f"sample-step vectors must have {cfg.batch} entries"
            if np.count_nonzero(vector) < cfg.min_nonzero:
                return f"a sample-step key needs at least {cfg.min_nonzero} non-zero entries (isolates samples)"
        else:
            return f"unknown request type {msg.get('type')!r}"
        key = label_bytes(msg.get("label"))
        if key in self.used:
            return f"label {msg.get('label')!r} was already used for a key"
        self.used.add(key)
        return None


def fedv_tpa(party: Party, *, config: FedVConfig) -> dict:
    """TPA role: one feature-step MIFE (slots = parties, plus a label slot for linear models) and one
    sample-step FE per party; then serve key requests under :class:`FedVPolicy` until stopped."""
    params = group_by_name(config.group)
    bx, bw, be = config.bound(config.max_abs_x), config.bound(config.max_abs_w), config.bound(config.max_abs_e)
    n_slots = config.n_slots
    fwd = MIFEMasterKey.setup(n_slots, config.dim, bx, bw, params)
    bwd = [MIFEMasterKey.setup(1, config.batch, bx, be, params) for _ in config.parties]
    for i, pid in enumerate(config.parties):
        keys = {"fwd": fwd.slot_key(i).to_wire(), "bwd": bwd[i].slot_key(0).to_wire()}
        if config.label_slot and pid == config.active:
            keys["label"] = fwd.slot_key(n_slots - 1).to_wire()
        party.send(pid, keys)
    policy = FedVPolicy(config)
    log: dict[str, list] = {"granted": [], "refused": []}
    while True:
        msg = party.recv(config.aggregator)
        if not isinstance(msg, dict) or msg.get("type") == "stop":
            return log
        reason = policy.refusal(msg)
        if reason is not None:
            log["refused"].append((msg.get("label"), reason))
            party.send(config.aggregator, {"refused": reason})
            continue
        log["granted"].append(msg["label"])
        if msg["type"] == "fwd":
            key = fwd.keygen(np.asarray(msg["weights"], dtype=np.int64), msg["label"], int(msg["rows"]))
        else:
            key = bwd[msg["party"]].keygen(np.asarray(msg["vector"], dtype=np.int64).reshape(1, -1), msg["label"], int(msg["rows"]))
        party.send(config.aggregator, key.to_wire())


def fedv_party(party: Party, *, config: FedVConfig, X: Any, y: Any = None) -> dict:
    """Data-holder role: per batch, encrypt the rows (feature step) and the columns (sample step)."""
    idx = config.parties.index(party.id)
    X = check_matrix(X, "X")
    if X.shape != (config.n_samples, config.widths[idx]):
        raise ValueError(f"X has shape {X.shape}, the configuration says ({config.n_samples}, {config.widths[idx]})")
    if config.fit_intercept and party.id == config.active:
        X = np.hstack([X, np.ones((X.shape[0], 1))])
    bx = config.bound(config.max_abs_x)
    xq = quantise(X, config.frac_bits, bx, "X")
    yq = None
    if party.id == config.active:
        y = check_labels(y, config.n_samples, binary=config.model != "linear")
        yq = quantise(y, config.frac_bits, bx, "y")
    keys = party.recv(config.tpa)
    fwd, bwd = MIFESlotKey.from_wire(keys["fwd"]), MIFESlotKey.from_wire(keys["bwd"])
    label_key = MIFESlotKey.from_wire(keys["label"]) if "label" in keys else None
    if party.id == config.active and config.model != "linear":
        party.send(config.aggregator, {"y": y})
    batches = 0
    while True:
        msg = party.recv(config.aggregator)
        if msg.get("type") == "stop":
            return {"batches": batches}
        rows = np.asarray(msg["rows"], dtype=np.int64)
        if rows.ndim != 1 or rows.size == 0 or rows.size > config.batch or rows.min() < 0 or rows.max() >= config.n_samples:
            raise ValueError("malformed batch request from the aggregator")
        epoch, b = int(msg["epoch"]), int(msg["batch"])
        selected = xq[rows]
        block = np.zeros((rows.size, config.dim), dtype=np.int64)
        block[:, : xq.shape[1]] = selected
        columns = np.zeros((xq.shape[1], config.batch), dtype=np.int64)
        columns[:, : rows.size] = selected.T
        out = {
            "fwd": fwd.encrypt(block, (epoch, b, "fwd")).to_wire(),
            "bwd": bwd.encrypt(columns, (epoch, b, "bwd", idx)).to_wire(),
        }
        if label_key is not None:
            ycol = np.zeros((rows.size, config.dim), dtype=np.int64)
            ycol[:, 0] = yq[rows]
            out["label"] = label_key.encrypt(ycol, (epoch, b, "fwd")).to_wire()
        party.send(config.aggregator, out)
        batches += 1


def _request_key(party: Party, config: FedVConfig, request: dict) -> MIFEFunctionKey:
    party.send(config.tpa, request)
    reply = party.recv(config.tpa)
    if "refused" in reply:
        raise KeyRequestRefused(reply["refused"])
    return MIFEFunctionKey.from_wire(reply, group_by_name(config.group))


def fedv_errors(config: FedVConfig, z: np.ndarray, y: np.ndarray | None) -> np.ndarray:
    """Per-sample loss derivative: residual (linear, ``z`` is already ``w^T x - y``), ``sigmoid(z) - y``
    (logistic), or the hinge subgradient ``-s 1[s z < 1]`` with ``s = 2y - 1`` (SVM)."""
    if config.model == "linear":
        return z
    if config.model == "logistic":
        return logistic(z) - y
    s = 2.0 * y - 1.0
    return -s * (s * z < 1.0)


def fedv_aggregator(party: Party, *, config: FedVConfig) -> dict:
    """Aggregator role: hold the model and run gradient descent, each gradient from the two FE steps."""
    params = group_by_name(config.group)
    f = config.frac_bits
    bx, bw, be = config.bound(config.max_abs_x), config.bound(config.max_abs_w), config.bound(config.max_abs_e)
    y = None if config.model == "linear" else np.asarray(party.recv(config.active)["y"], dtype=np.float64)
    n_slots = config.n_slots
    fwd_bound, bwd_bound = n_slots * config.dim * bx * bw, config.batch * bx * be
    for bound in (fwd_bound, bwd_bound):
        dlog_table(params, bound)  # setup: the baby-step tables are reused by every decryption
    noise = NoiseSource()
    weights = {pid: (noise.uniform(config.width(pid)) - 0.5) * (2 * config.init_scale) for pid in config.parties}
    initial = {pid: w.copy() for pid, w in weights.items()}
    history = []
    for epoch in range(config.epochs):
        start, before = time.perf_counter(), party.stats.snapshot()
        for b, rows in enumerate(config.batches()):
            party.send_all(config.parties, {"type": "batch", "epoch": epoch, "batch": b, "rows": rows})
            cts = {pid: party.recv(pid) for pid in config.parties}
            w_matrix = np.zeros((n_slots, config.dim), dtype=np.int64)
            for i, pid in enumerate(config.parties):
                w_matrix[i, : config.width(pid)] = quantise(weights[pid], f, bw, f"weights of {pid}")
            fwd_cts = {i: MIFECiphertext.from_wire(cts[pid]["fwd"], params) for i, pid in enumerate(config.parties)}
            if config.label_slot:
                w_matrix[-1, 0] = -(2**f)
                fwd_cts[n_slots - 1] = MIFECiphertext.from_wire(cts[config.active]["label"], params)
            label = (epoch, b, "fwd")
            key = _request_key(party, config, {"type": "fwd", "label": label, "weights": w_matrix, "rows": rows.size})
            z = np.asarray(mife_decrypt(params, key, fwd_cts, fwd_bound), dtype=np.float64) / 2 ** (2 * f)
            e_q = np.zeros(config.batch, dtype=np.int64)
            e_q[: rows.size] = quantise(fedv_errors(config, z, None if y is None else y[rows]), f, be, "errors")
            grads = []
            for i, pid in enumerate(config.parties):
                blabel = (epoch, b, "bwd", i)
                request = {"type": "bwd", "party": i, "label": blabel, "vector": e_q, "rows": config.width(pid)}
                bkey = _request_key(party, config, request)
                ct = MIFECiphertext.from_wire(cts[pid]["bwd"], params)
                g = np.asarray(mife_decrypt(params, bkey, {0: ct}, bwd_bound), dtype=np.float64)
                grad = g / 2 ** (2 * f) / rows.size + config.alpha * _penalised(config, pid, weights[pid])
                weights[pid] = weights[pid] - config.learning_rate * grad
                grads.append(grad)
            if config.record_gradients:
                history.append({"epoch": epoch, "batch": b, "gradient": np.concatenate(grads)})
        delta = party.stats.snapshot() - before
        history.append({"epoch": epoch, "seconds": time.perf_counter() - start, "bytes": delta.bytes_sent + delta.bytes_received})
    party.send_all([*config.parties, config.tpa], {"type": "stop"})
    return {"weights": weights, "initial": initial, "history": history}


def _penalised(config: FedVConfig, pid: str, w: np.ndarray) -> np.ndarray:
    """``w`` with the intercept entry zeroed (the L2 penalty skips the intercept)."""
    if config.fit_intercept and pid == config.active:
        w = w.copy()
        w[-1] = 0.0
    return w


def plaintext_fedv(
    X_parts: Sequence[np.ndarray], y: np.ndarray, config: FedVConfig, initial: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The same gradient descent in float64 (no quantisation) from the same initial weights."""
    blocks = {pid: np.asarray(Xp, dtype=np.float64) for pid, Xp in zip(config.parties, X_parts)}
    if config.fit_intercept:
        blocks[config.active] = np.hstack([blocks[config.active], np.ones((config.n_samples, 1))])
    weights = {pid: np.array(initial[pid], dtype=np.float64) for pid in config.parties}
    for _ in range(config.epochs):
        for rows in config.batches():
            z = sum(blocks[p][rows] @ weights[p] for p in config.parties)
            if config.model == "linear":
                z = z - y[rows]
            e = fedv_errors(config, z, y[rows])
            for pid in config.parties:
                grad = blocks[pid][rows].T @ e / rows.size + config.alpha * _penalised(config, pid, weights[pid])
                weights[pid] = weights[pid] - config.learning_rate * grad
    return weights


def fedv_roles(config: FedVConfig, X_parts: Sequence[np.ndarray], y: np.ndarray) -> tuple[dict, dict]:
    """Roles and inputs for :func:`mpcml.run_local` (or the process launcher)."""
    roles: dict[str, Callable[..., Any]] = {config.tpa: partial(fedv_tpa, config=config),
                                            config.aggregator: partial(fedv_aggregator, config=config)}
    inputs: dict[str, dict] = {}
    for pid, Xp in zip(config.parties, X_parts):
        roles[pid] = partial(fedv_party, config=config)
        inputs[pid] = {"X": Xp, "y": y if pid == config.active else None}
    return roles, inputs


class FedVEstimator(BaseEstimator):
    """FedV training over vertically partitioned data (``model`` = ``"linear"``, ``"logistic"`` or ``"svm"``).

    ``fit(X_parts, y)``: ``X_parts`` a list of per-party column blocks of the same rows, ``y``
    held by party ``label_party``. After ``fit``: ``coef_``, ``intercept_``, ``history_`` and
    ``communication_``. ``predict`` gives scores (linear) or 0/1 labels (logistic, SVM).
    """

    def __init__(self, *, model: str = "logistic", epochs: int = 10, batch_size: int = 0, learning_rate: float = 0.5,
                 alpha: float = 0.0, fit_intercept: bool = True, label_party: int = 0, frac_bits: int = 10,
                 max_abs_x: float = 16.0, max_abs_w: float = 64.0, max_abs_e: float = 64.0,
                 group: str = DEFAULT_GROUP.name, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.model, self.epochs, self.batch_size, self.learning_rate = model, epochs, batch_size, learning_rate
        self.alpha, self.fit_intercept, self.label_party, self.frac_bits = alpha, fit_intercept, label_party, frac_bits
        self.max_abs_x, self.max_abs_w, self.max_abs_e = max_abs_x, max_abs_w, max_abs_e
        self.group, self.timeout = group, timeout

    def fit(self, X: Any, y: Any) -> "FedVEstimator":
        blocks = check_vertical_parts(X, "X")
        if not isinstance(self.label_party, int) or not 0 <= self.label_party < len(blocks):
            raise ValueError(f"label_party must be an index in [0, {len(blocks)}), got {self.label_party!r}")
        y = check_labels(y, blocks[0].shape[0], binary=self.model != "linear")
        ids = tuple(f"party-{i}" for i in range(len(blocks)))
        config = FedVConfig(
            ids, tuple(b.shape[1] for b in blocks), blocks[0].shape[0], ids[self.label_party], self.model, self.epochs,
            self.batch_size, self.learning_rate, self.alpha, self.fit_intercept, frac_bits=self.frac_bits,
            max_abs_x=self.max_abs_x, max_abs_w=self.max_abs_w, max_abs_e=self.max_abs_e, group=self.group,
        )
        roles, inputs = fedv_roles(config, blocks, y)
        out = run_local(roles, inputs, timeout=self.timeout)
        weights = out[config.aggregator]["weights"]
        coef = [weights[pid][: config.widths[i]] for i, pid in enumerate(ids)]
        self.coef_ = np.concatenate(coef)
        self.intercept_ = float(weights[config.active][-1]) if self.fit_intercept else 0.0
        self.history_ = out[config.aggregator]["history"]
        self.communication_ = CommunicationReport.from_stats(out.stats)
        self.n_features_in_ = int(self.coef_.size)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = np.hstack(check_vertical_parts(X, "X")) if isinstance(X, (list, tuple)) else check_matrix(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the model was fitted on {self.n_features_in_}")
        return X @ self.coef_ + self.intercept_

    def predict(self, X: Any) -> np.ndarray:
        scores = self.decision_function(X)
        return scores if self.model == "linear" else (scores > 0).astype(np.int64)
