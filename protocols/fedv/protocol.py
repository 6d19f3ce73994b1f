"""FedV's roles: data holders (the active one holds the labels), the aggregator and the TPA; :func:`roles`.

:func:`roles` is the one entry point the estimators, the party app and the tests use. The steps
(numbered as in the code):

Set-up:
  1. Each party sends the aggregator its public facts: rows, columns, ``ceil(log2 max|x|)``; the
     active party also the number of outputs (one-vs-rest models) and, for the linear model,
     ``ceil(log2 max|y|)``.
  2. The aggregator checks the facts and sends them to the TPA and the parties; every role
     computes the same plan (:func:`~protocols.fedv.config.plan`). For logistic regression and
     the SVM the active party sends the aggregator its labels.
  3. The TPA sets up one feature-step MIFE (a slot per party, plus the label slot of the linear
     model) and one sample-step MIFE per party, and sends each party its slot keys.
Per batch (contiguous rows in the agreed order):
  4. The aggregator shuffles the batch's rows and each party's columns with fresh secret
     permutations (CSPRNG) and sends them to the parties.
  5. Each party encrypts its quantised block twice, rows as given (feature step, label
     ``(epoch, batch, "fwd")``) and columns as given (sample step, ``(epoch, batch, "bwd", i)``);
     the active party of a linear model also its targets in the label slot.
  6. The aggregator checks every weight against the analysed bound (the run-time guard).
Per batch and one-vs-rest model ``k``:
  7. Feature step: the aggregator asks the TPA for a key for its quantised weights (columns
     permuted as sent) and decrypts ``z = X_B w`` (linear: ``X_B w - y_B``), rows permuted.
  8. It computes the errors ``e`` (``z``, ``sigmoid(z) - y`` or the hinge subgradient).
  9. Sample step: unless fewer than ``min_nonzero`` errors are non-zero (then no data gradient),
     it asks for a key for ``e`` per party and decrypts ``X_p^T e``, the party's gradient block.
  10. It takes the step ``w_p <- w_p - eta (X_p^T e / B + alpha w_p)`` (no penalty on the intercept).
End:
  11. The aggregator stops the parties and the TPA; it holds the model.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, Callable, Mapping

import numpy as np

from mpcml.csprng import Csprng
from mpcml.dlog import dlog_table
from mpcml.fe import MIFECiphertext, MIFEFunctionKey, MIFEMasterKey, MIFESlotKey, group_by_name, mife_decrypt
from mpcml.party import Party
from mpcml.schema import Array, Int, ListOf, Nothing, OneOf, Record, Str

from ..common import check_matrix, check_targets, logistic, magnitude_bits
from ..fe_authority import (
    CIPHERTEXT,
    FUNCTION_KEY,
    SLOT_KEY,
    STOP,
    LabelLedger,
    quantise,
    request_key,
    search_bound,
    serve_keys,
)
from ..progress import Progress
from .config import FedVConfig, FedVPlan, guard_error, plan, plan_from_facts

BITS = Int(-1100, 1100)
FACTS = Record(rows=Int(1), cols=Int(1), x_bits=BITS, outputs=OneOf(Nothing(), Int(1, 10_000)),
               y_bits=OneOf(Nothing(), BITS))
PLAN = Record(widths=ListOf(Int(1)), rows=Int(1), outputs=Int(1, 10_000), x_bits=BITS, y_shift=BITS)
KEYS = Record(optional={"label": SLOT_KEY}, fwd=SLOT_KEY, bwd=SLOT_KEY)
BATCH = Record(type=Str(("batch",)), epoch=Int(0), batch=Int(0), rows=Array(np.int64, ndim=1),
               columns=Array(np.int64, ndim=1))
CIPHERTEXTS = Record(optional={"label": CIPHERTEXT}, fwd=CIPHERTEXT, bwd=CIPHERTEXT)


def errors(model: str, z: np.ndarray, y: np.ndarray | None) -> np.ndarray:
    """Step 8, the derivative of the loss in ``z``: the residual (linear; ``z`` is already ``w^T x - y``),
    ``sigmoid(z) - y`` (logistic), or the hinge subgradient ``-s 1[s z < 1]`` with ``s = 2y - 1`` (SVM)."""
    if model == "linear":
        return z
    if model == "logistic":
        return logistic(z) - y
    s = 2.0 * y - 1.0
    return -s * (s * z < 1.0)


def loss(model: str, z: np.ndarray, y: np.ndarray | None) -> float:
    """The batch's mean loss at the weights before the step (what the aggregator can compute from ``z``)."""
    if model == "linear":
        return float(np.mean(z**2) / 2)
    if model == "logistic":
        return float(np.mean(np.logaddexp(0.0, z) - y * z))
    return float(np.mean(np.maximum(0.0, 1.0 - (2.0 * y - 1.0) * z)))


def _agreed(party: Party, config: FedVConfig) -> FedVPlan:
    facts = party.recv(config.aggregator, expect=PLAN, what="set-up plan")
    if len(facts["widths"]) != len(config.parties):
        raise ValueError(f"the plan from {config.aggregator!r} has {len(facts['widths'])} widths for "
                         f"{len(config.parties)} parties")
    return plan(config, tuple(facts["widths"]), facts["rows"], facts["outputs"], facts["x_bits"],
                facts["y_shift"] if config.linear else None)


# --- the TPA ---------------------------------------------------------------------------------------


class FedVPolicy:
    """The TPA's policy: refuse a feature-step key that leaves a party's weights all zero (it would isolate
    the others' contribution) or changes the label slot's weight -1, a sample-step key with fewer than
    ``min_nonzero`` non-zero entries (it would isolate samples), and more keys under a label than
    there are one-vs-rest models."""

    def __init__(self, config: FedVConfig, agreed: FedVPlan) -> None:
        self.config = config
        self.label_row = [-(2**config.frac_bits)] + [0] * (agreed.dim - 1)
        self.ledger = LabelLedger(per_label=agreed.outputs)

    def refusal(self, request: Mapping[str, Any]) -> str | None:
        config = self.config
        if request["step"] == "fwd":
            weights = request["weights"]
            if not all(np.any(weights[i]) for i in range(len(config.parties))):
                return "a feature-step key must give every party non-zero weights (no isolation)"
            if config.linear and weights[-1].tolist() != self.label_row:
                return "the label slot's weight must be exactly -1"
        elif np.count_nonzero(request["vector"]) < config.min_nonzero:
            return f"a sample-step key needs at least {config.min_nonzero} non-zero entries (isolates samples)"
        return self.ledger.refusal(_label(request))


def fedv_tpa(party: Party, *, config: FedVConfig) -> dict[str, list]:
    """The TPA (steps 3 and 7-9): the keys, then key requests under :class:`FedVPolicy` until stopped."""
    agreed = _agreed(party, config)
    group = group_by_name(config.group)
    bx, bw, be = agreed.units(agreed.x_max), agreed.units(agreed.weight_bound), agreed.units(agreed.error_bound)
    # 3. the keys
    feature = MIFEMasterKey.setup(config.n_slots, agreed.dim, bx, bw, group)
    sample = [MIFEMasterKey.setup(1, agreed.batch, bx, be, group) for _ in config.parties]
    for i, pid in enumerate(config.parties):
        keys = {"fwd": feature.slot_key(i).to_wire(), "bwd": sample[i].slot_key(0).to_wire()}
        if config.linear and pid == config.active:
            keys["label"] = feature.slot_key(config.n_slots - 1).to_wire()
        party.send(pid, keys)
    policy = FedVPolicy(config, agreed)

    def answer(request: dict) -> Any:
        if request["step"] == "fwd":
            return feature.keygen(request["weights"], _label(request), request["rows"]).to_wire()
        vector = request["vector"].reshape(1, -1)
        return sample[request["party"]].keygen(vector, _label(request), agreed.width(request["party"])).to_wire()

    common = {"epoch": Int(0, config.epochs - 1), "batch": Int(0, len(agreed.batches()) - 1),
              "model": Int(0, agreed.outputs - 1)}
    request = OneOf(
        Record(step=Str(("fwd",)), weights=Array(np.int64, shape=(config.n_slots, agreed.dim)),
               rows=Int(1, agreed.batch), **common),
        Record(step=Str(("bwd",)), party=Int(0, len(config.parties) - 1), vector=Array(np.int64, shape=(agreed.batch,)),
               **common))
    return serve_keys(party, config.aggregator, expect=request, refusal=policy.refusal, answer=answer, label=_label)


def _label(request: Mapping[str, Any]) -> tuple:
    """The FE label a request is for: ``(epoch, batch, "fwd")`` or ``(epoch, batch, "bwd", party)``."""
    base = (request["epoch"], request["batch"], request["step"])
    return base if request["step"] == "fwd" else (*base, request["party"])


# --- the data holders ------------------------------------------------------------------------------


def _holder_input(config: FedVConfig, pid: str, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A party's block and (active party) labels as a ``(n, K)`` matrix, checked locally."""
    X = check_matrix(X, f"X of party {pid!r}")
    if pid != config.active:
        if y is not None:
            raise ValueError(f"party {pid!r} is not the active party but was given labels y")
        return X, None
    if y is None:
        raise ValueError(f"the active party {pid!r} must provide y")
    Y = check_targets(y, X.shape[0], binary=not config.linear, name=f"y of party {pid!r}")
    if config.linear and Y.shape[1] != 1:
        raise ValueError(f"y of party {pid!r} must be one target per row for the linear model, got shape {Y.shape}")
    return X, Y


def party_facts(config: FedVConfig, X: np.ndarray, Y: np.ndarray | None) -> dict[str, Any]:
    """Step 1: the public facts a party announces (what they reveal is in :mod:`protocols.fedv`)."""
    return {"rows": int(X.shape[0]), "cols": int(X.shape[1]), "x_bits": magnitude_bits(X),
            "outputs": None if Y is None else int(Y.shape[1]),
            "y_bits": magnitude_bits(Y) if Y is not None and config.linear else None}


def fedv_party(party: Party, *, config: FedVConfig, X: Any, y: Any = None) -> dict[str, int]:
    """A data holder (steps 1, 2 and 5): per batch, its block encrypted for both FE steps."""
    X, Y = _holder_input(config, party.id, X, y)
    i = config.parties.index(party.id)
    # 1.-2. facts and plan
    party.send(config.aggregator, party_facts(config, X, Y))
    agreed = _agreed(party, config)
    if (agreed.rows, agreed.widths[i]) != X.shape:
        raise ValueError(f"the plan says ({agreed.rows}, {agreed.widths[i]}) for party {party.id!r}, X is {X.shape}")
    f = config.frac_bits
    xq = quantise(X, f)
    if party.id == config.active and config.fit_intercept:
        xq = np.hstack([xq, np.full((X.shape[0], 1), 2**f, dtype=np.int64)])
    yq = None
    if Y is not None and config.linear:
        yq = quantise(Y[:, 0] / 2.0**agreed.y_shift, f)
    elif Y is not None:
        party.send(config.aggregator, {"y": Y})
    keys = party.recv(config.tpa, expect=KEYS, what="FE slot keys")
    feature, sample = MIFESlotKey.from_wire(keys["fwd"]), MIFESlotKey.from_wire(keys["bwd"])
    label_slot = MIFESlotKey.from_wire(keys["label"]) if "label" in keys else None
    width = agreed.width(i)
    batches = 0
    while True:
        msg = party.recv(config.aggregator, expect=OneOf(STOP, BATCH), what="batch request")
        if msg["type"] == "stop":
            return {"batches": batches}
        rows, columns = msg["rows"], msg["columns"]
        if rows.size > agreed.batch or rows.min() < 0 or rows.max() >= agreed.rows or \
                sorted(columns.tolist()) != list(range(width)):
            raise ValueError(f"batch request from {config.aggregator!r} with rows or columns out of range")
        # 5. the block, rows and columns in the order given, for both steps
        block = xq[rows][:, columns]
        forward = np.zeros((rows.size, agreed.dim), dtype=np.int64)
        forward[:, :width] = block
        backward = np.zeros((width, agreed.batch), dtype=np.int64)
        backward[:, : rows.size] = block.T
        epoch, b = msg["epoch"], msg["batch"]
        out = {"fwd": feature.encrypt(forward, (epoch, b, "fwd")).to_wire(),
               "bwd": sample.encrypt(backward, (epoch, b, "bwd", i)).to_wire()}
        if label_slot is not None:
            targets = np.zeros((rows.size, agreed.dim), dtype=np.int64)
            targets[:, 0] = yq[rows]
            out["label"] = label_slot.encrypt(targets, (epoch, b, "fwd")).to_wire()
        party.send(config.aggregator, out)
        batches += 1


# --- the aggregator --------------------------------------------------------------------------------


class _Decryptor:
    """The aggregator's side of the key service for one batch (steps 7 and 9)."""

    def __init__(self, party: Party, config: FedVConfig, agreed: FedVPlan, epoch: int, batch: int,
                 cts: Mapping[str, Any]) -> None:
        self.party, self.config, self.agreed = party, config, agreed
        self.group = group_by_name(config.group)
        self.epoch, self.batch = epoch, batch
        self.forward = {i: MIFECiphertext.from_wire(cts[p]["fwd"], self.group) for i, p in enumerate(config.parties)}
        if config.linear:
            self.forward[config.n_slots - 1] = MIFECiphertext.from_wire(cts[config.active]["label"], self.group)
        self.backward = [MIFECiphertext.from_wire(cts[p]["bwd"], self.group) for p in config.parties]

    def _key(self, request: dict[str, Any]) -> MIFEFunctionKey:
        reply = request_key(self.party, self.config.tpa, {**request, "epoch": self.epoch, "batch": self.batch}, FUNCTION_KEY, "function key")
        return MIFEFunctionKey.from_wire(reply, self.group)

    def scores(self, weights: np.ndarray, rows: int, model: int) -> np.ndarray:
        bound = self.agreed.search(self.agreed.scores_bound(weights[: len(self.config.parties)]), self.epoch, self.batch,
                                   "feature")
        key = self._key({"step": "fwd", "model": model, "weights": weights, "rows": rows})
        return np.asarray(mife_decrypt(self.group, key, self.forward, bound), dtype=np.int64)

    def gradient(self, vector: np.ndarray, i: int, model: int) -> np.ndarray:
        bound = self.agreed.search(self.agreed.gradient_bound(vector), self.epoch, self.batch, "sample")
        key = self._key({"step": "bwd", "model": model, "party": i, "vector": vector})
        return np.asarray(mife_decrypt(self.group, key, {0: self.backward[i]}, bound), dtype=np.int64)


def fedv_aggregator(party: Party, *, config: FedVConfig, progress: Progress | None = None) -> dict[str, Any]:
    """The aggregator (steps 2, 4 and 6-11): it holds the model and runs gradient descent.

    Returns ``coef`` ``(K, d)`` and ``intercept`` ``(K,)`` in the targets' units, the ``plan``, ``skipped`` (batch-model
    steps without a data gradient) and a per-epoch history (seconds, bytes, loss).
    ``progress`` gets a line per epoch with the mean loss (which the aggregator computes from ``z``).
    """
    # 2. facts, plan, labels
    facts = party.gather(config.parties, expect=FACTS, what="set-up facts")
    if facts[config.active]["outputs"] is None:
        raise ValueError(f"the active party {config.active!r} announced no labels")
    agreed = plan_from_facts(config, facts)
    party.send_all([config.tpa, *config.parties], agreed.to_wire())
    Y = None
    if not config.linear:
        Y = party.recv(config.active, expect=Record(y=Array(np.float64, shape=(agreed.rows, agreed.outputs))),
                       what="labels")["y"]
    group, f = group_by_name(config.group), config.frac_bits
    dlog_table(group, search_bound(group, 0))  # built once, reused by every decryption
    rng = Csprng()
    weights = [np.full((agreed.width(i), agreed.outputs), config.init_scale) for i in range(len(config.parties))]
    active = config.parties.index(config.active)
    penalised = [np.ones(w.shape[0]) for w in weights]
    if config.fit_intercept:
        penalised[active][-1] = 0.0
    history: list[dict[str, Any]] = []
    skipped = 0
    for epoch in range(config.epochs):
        start, before, losses = time.perf_counter(), party.stats.snapshot(), []
        for b, block in enumerate(agreed.batches()):
            # 4. secret permutations of the batch's rows and of each party's columns
            rows = block[rng.permutation(block.size)]
            columns = [rng.permutation(agreed.width(i)).astype(np.int64) for i in range(len(config.parties))]
            for i, pid in enumerate(config.parties):
                party.send(pid, {"type": "batch", "epoch": epoch, "batch": b, "rows": rows, "columns": columns[i]})
            cts = party.gather(config.parties, expect=CIPHERTEXTS, what="batch ciphertexts")
            keys = _Decryptor(party, config, agreed, epoch, b, cts)
            # 6. the guard
            largest = max(float(np.max(np.abs(w))) for w in weights)
            if largest > agreed.weight_bound:
                raise guard_error(epoch, b, largest, agreed)
            for k in range(agreed.outputs):
                # 7. feature step
                matrix = np.zeros((config.n_slots, agreed.dim), dtype=np.int64)
                for i, w in enumerate(weights):
                    matrix[i, : agreed.width(i)] = agreed.quantise_weights(w[columns[i], k])
                if config.linear:
                    matrix[-1, 0] = -(2**f)
                z = keys.scores(matrix, rows.size, k) / 2.0 ** (2 * f)
                # 8. errors
                target = None if Y is None else Y[rows, k]
                losses.append(loss(config.model, z, target))
                vector = np.zeros(agreed.batch, dtype=np.int64)
                vector[: rows.size] = quantise(errors(config.model, z, target), f)
                enough = np.count_nonzero(vector) >= config.min_nonzero
                skipped += not enough
                for i, w in enumerate(weights):
                    # 9. sample step, 10. the gradient step
                    g_int = np.zeros(agreed.width(i), dtype=np.int64)
                    if enough:
                        g_int[columns[i]] = keys.gradient(vector, i, k)
                    gradient = g_int / 2.0 ** (2 * f) / rows.size + config.alpha * w[:, k] * penalised[i]
                    w[:, k] = w[:, k] - config.learning_rate * gradient
        delta = party.stats.snapshot() - before
        entry = {"epoch": epoch, "seconds": time.perf_counter() - start, "bytes": delta.bytes_sent + delta.bytes_received,
                 "loss": float(np.mean(losses)) * (4.0**agreed.y_shift if config.linear else 1.0)}
        history.append(entry)
        if progress is not None:
            progress(epoch, loss=entry["loss"])
    largest = max(float(np.max(np.abs(w))) for w in weights)
    if largest > agreed.weight_bound:
        raise guard_error(config.epochs - 1, len(agreed.batches()) - 1, largest, agreed)
    # 11. stop
    party.send_all([*config.parties, config.tpa], {"type": "stop"})
    scale = 2.0**agreed.y_shift
    coef = np.vstack([w[: agreed.widths[i]] for i, w in enumerate(weights)]).T * scale
    intercept = weights[active][-1] * scale if config.fit_intercept else np.zeros(agreed.outputs)
    return {"coef": coef, "intercept": intercept, "plan": agreed.to_wire(), "skipped": skipped,
            "history": history}


def roles(config: FedVConfig, data: Mapping[str, tuple[Any, Any]], *, progress: Progress | None = None
          ) -> tuple[dict[str, Callable[..., Any]], dict[str, dict[str, Any]]]:
    """Every role and its inputs for one run: the same for the estimators, the app and the tests.

    ``data`` maps a party to its ``(X, y)`` (``y`` only at the active party: 0/1 labels, a vector
    or one column per one-vs-rest model; the linear model's targets); parties missing from
    ``data`` (other processes) get no inputs here. ``progress`` goes to the aggregator.
    """
    party_roles: dict[str, Callable[..., Any]] = {config.tpa: partial(fedv_tpa, config=config),
                                                  config.aggregator: partial(fedv_aggregator, config=config)}
    inputs: dict[str, dict[str, Any]] = {config.tpa: {}, config.aggregator: {"progress": progress}}
    for pid in config.parties:
        party_roles[pid] = partial(fedv_party, config=config)
        if pid in data:
            inputs[pid] = {"X": data[pid][0], "y": data[pid][1]}
    return party_roles, inputs
