"""HybridAlpha's roles: parties, aggregator and TPA, the local trainer, and :func:`roles`.

:func:`roles` is the one entry point the estimator, the party app and the tests use. The steps
(numbered as in the code):

Set-up:
  1. Each party sends the aggregator its public facts: the number of model parameters and
     ``ceil(log2 max|x|)`` of its data (``None`` for custom local updates).
  2. The aggregator runs the range analysis (:func:`~protocols.hybridalpha.config.plan`) on the
     facts of the parties that answered and sends the plan to the TPA and to those parties.
  3. Key set-up by the scheme (:meth:`~protocols.hybridalpha.schemes.AggregationScheme.setup`);
     every party and the TPA tell the aggregator they are ready.
Per round ``r``:
  4. The aggregator sends the global model to the parties still in the federation.
  5. Each party computes its update (``local_update(model, r)``), with DP clips it to L2 norm
     ``C`` and adds ``N(0, sigma^2 / t)``, quantises it, checks the agreed bound and sends it
     encrypted.
  6. The aggregator keeps what arrives before ``deadline``; a party that misses it is a dropout
     from then on.
  7. The aggregator asks the TPA for a key for the responders (0/1 weights); the TPA applies
     its policy (:class:`KeyPolicy`) and answers with the key or a refusal.
  8. The aggregator decrypts the exact integer sum and adds the mean update to the model (a
     refused round leaves the model unchanged).
End:
  9. The aggregator sends the final model to the parties still in and stops the TPA.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Mapping

import numpy as np

from mpcml.dp import NoiseSource, clip_l2
from mpcml.party import Party
from mpcml.schema import Array, Int, ListOf, Nothing, OneOf, Record, Str

from ..common import check_matrix, check_targets, logistic, magnitude_bits
from ..fe_authority import READY, KeyRequestRefused, LabelLedger, quantise, request_key, serve_keys
from ..progress import Progress
from .config import HybridAlphaConfig, Plan, plan, update_guard_error
from .schemes import make_scheme

FACTS = Record(n_params=Int(1, 10**8), x_bits=OneOf(Nothing(), Int(-1100, 1100)))
PLAN = Record(parties=ListOf(Str()), n_params=Int(1, 10**8), bound=Int(low=1))
MODEL = Record(type=Str(("model",)), round=Int(low=0), model=Array(np.float64, ndim=1))
FINAL = Record(type=Str(("stop",)), model=Array(np.float64, ndim=1))


class LocalLogistic:
    """FedAvg's local step (McMahan et al. 2017) for L2-penalised logistic regression, ``K`` one-vs-rest models
    at once: ``local_epochs`` full-batch steps ``W <- W - eta (X^T (sigmoid(X W) - Y) / n + alpha W_pen)`` from
    the global model (``X`` with a column of ones when ``fit_intercept``; ``W_pen`` without the intercept row).
    The update is ``W_local - W_global``, flattened row-major from the ``(columns, K)`` matrix."""

    def __init__(self, config: HybridAlphaConfig, X: Any, Y: Any, name: str = "X") -> None:
        X = check_matrix(X, name)
        self.Y = check_targets(Y, X.shape[0], binary=True, name=f"the labels of {name}", both_classes=False)
        self.x_bits = magnitude_bits(X)
        self.X = np.hstack([X, np.ones((X.shape[0], 1))]) if config.fit_intercept else X
        self.keep = np.ones((self.X.shape[1], 1))
        if config.fit_intercept:
            self.keep[-1] = 0.0
        self.config = config

    def facts(self) -> dict[str, Any]:
        return {"n_params": self.X.shape[1] * self.Y.shape[1], "x_bits": self.x_bits}

    def __call__(self, model: np.ndarray, rnd: int = 0) -> np.ndarray:
        config, X, n = self.config, self.X, self.X.shape[0]
        start = np.asarray(model, dtype=np.float64).reshape(X.shape[1], self.Y.shape[1])
        W = start
        for _ in range(config.local_epochs):
            W = W - config.learning_rate * (X.T @ (logistic(X @ W) - self.Y) / n + config.alpha * W * self.keep)
        return (W - start).ravel()


@dataclass
class KeyPolicy:
    """HybridAlpha's inference-prevention policy at the TPA: refuse a key for fewer than ``min_parties``
    responders, and a second key for a round's label."""

    min_parties: int
    ledger: LabelLedger = field(default_factory=LabelLedger)

    def refusal(self, weights: list[int], label: tuple) -> str | None:
        if sum(1 for w in weights if w) < self.min_parties:
            return f"only {sum(weights)} non-zero weights; the policy needs at least {self.min_parties} parties"
        return self.ledger.refusal(label)


def _privatise(update: np.ndarray, config: HybridAlphaConfig, noise: NoiseSource | None) -> tuple[np.ndarray, bool]:
    """Step 5's DP (Truex et al. 2019): clip to L2 norm ``C``, add ``N(0, sigma_p^2)``; ``(update, clipped)``."""
    if noise is None:
        return update, False
    clipped = float(np.linalg.norm(update)) > config.dp_clip
    return clip_l2(update, config.dp_clip) + noise.gaussian(update.shape, config.party_sigma), clipped


def hybridalpha_party(party: Party, *, config: HybridAlphaConfig, local_update: Callable[..., np.ndarray],
                      drop_after: int | None = None) -> dict[str, Any]:
    """A data holder (steps 1, 3, 5 and 9). ``local_update(model, round)`` returns the update and has
    ``facts()``; ``drop_after=k`` simulates a crash at round ``k``. Returns the final model (``None`` if
    this party dropped out), the rounds it answered, its status, how many of its updates DP clipped and
    the CPU seconds it spent encrypting."""
    # 1. public facts
    party.send(config.aggregator, local_update.facts())
    agreed = Plan.from_wire(party.recv(config.aggregator, expect=PLAN, what="set-up plan"))
    if party.id not in agreed.parties or agreed.n_params != local_update.facts()["n_params"]:
        raise ValueError(f"the plan from {config.aggregator!r} leaves party {party.id!r} out or has another model size")
    # 3. keys
    scheme = make_scheme(config, agreed)
    scheme.setup(party)
    party.send(config.aggregator, {"ready": 0})
    noise = NoiseSource() if config.dp_epsilon is not None else None
    result: dict[str, Any] = {"model": None, "rounds": 0, "status": "finished", "clipped": 0, "encrypt_seconds": 0.0}
    while True:
        try:
            msg = party.recv(config.aggregator, party.timeout + config.deadline, expect=OneOf(MODEL, FINAL),
                             what="model")
        except TimeoutError:
            return {**result, "status": "timed out"}
        if msg["type"] == "stop":
            return {**result, "model": msg["model"]}
        rnd = msg["round"]
        if drop_after is not None and rnd >= drop_after:
            return {**result, "status": "dropped"}
        # 5. update, DP, quantisation with the agreed bound, encryption
        update = np.asarray(local_update(msg["model"], rnd), dtype=np.float64)
        if update.shape != (agreed.n_params,):
            raise ValueError(f"local_update returned shape {update.shape}, expected ({agreed.n_params},)")
        update, clipped = _privatise(update, config, noise)
        ints = quantise(update, config.frac_bits)
        if np.max(np.abs(ints)) > agreed.bound:
            raise update_guard_error(rnd, party.id, float(np.max(np.abs(update))), config, agreed)
        start = time.thread_time()  # this party's CPU time: parties in one process share the interpreter
        payload = scheme.encrypt(ints, rnd)
        result["encrypt_seconds"] += time.thread_time() - start
        party.send(config.aggregator, {"round": rnd, "payload": payload})
        result["rounds"] += 1
        result["clipped"] += int(clipped)


def hybridalpha_tpa(party: Party, *, config: HybridAlphaConfig) -> dict[str, list]:
    """The TPA (steps 3 and 7): keys from the plan, then key requests under :class:`KeyPolicy` until stopped."""
    agreed = Plan.from_wire(party.recv(config.aggregator, expect=PLAN, what="set-up plan"))
    # 3. keys
    scheme = make_scheme(config, agreed)
    scheme.setup(party)
    party.send(config.aggregator, {"ready": 0})
    policy = KeyPolicy(config.min_parties)
    request = Record(round=Int(0, config.rounds - 1), weights=ListOf(Int(0, 1), length=len(agreed.parties)),
                     **scheme.extra)
    # 7. the policy, then the key
    return serve_keys(party, config.aggregator, expect=request, timeout=party.timeout + config.deadline,
                      refusal=lambda r: policy.refusal(r["weights"], config.label(r["round"])),
                      answer=scheme.answer, label=lambda r: config.label(r["round"]))


def _send_each(party: Party, peers: list[str], message: Any) -> list[str]:
    """Send ``message`` to each peer, acknowledged; those whose channel fails (a dead process) are left out."""
    reached = []
    for pid in peers:
        try:
            party.send(pid, message, acknowledged=True)
            reached.append(pid)
        except TimeoutError:
            continue
    return reached


def hybridalpha_aggregator(party: Party, *, config: HybridAlphaConfig, initial_model: np.ndarray | None = None,
                           progress: Progress | None = None) -> dict[str, Any]:
    """The aggregator (steps 2, 4, 6-9): federated averaging of whoever answers each round.

    Returns the model, the plan, a per-round history (responders, seconds, bytes through the
    aggregator, the refusal reason of a refused round) and the set-up seconds. ``progress`` gets a
    line per round with the responders and the norm of the mean update (which the aggregator learns).
    """
    start = time.perf_counter()
    setup_deadline = time.monotonic() + party.timeout + config.deadline
    facts = party.gather(config.parties, deadline=setup_deadline, at_least=config.min_parties, expect=FACTS,
                         what="set-up facts")
    # 2. the range analysis, sent to the TPA and the parties that answered
    agreed = plan(config, facts)
    party.send_all([config.tpa, *agreed.parties], agreed.to_wire())
    # 3. keys; wait until the TPA and the parties are ready
    scheme = make_scheme(config, agreed)
    scheme.setup(party)
    party.recv(config.tpa, party.timeout + config.deadline, expect=READY, what="TPA ready")
    ready = party.gather(agreed.parties, deadline=time.monotonic() + party.timeout + config.deadline,
                         at_least=config.min_parties, expect=READY, what="party ready")
    active = [p for p in agreed.parties if p in ready]
    model = np.zeros(agreed.n_params) if initial_model is None else np.array(initial_model, dtype=np.float64)
    if model.shape != (agreed.n_params,):
        raise ValueError(f"initial_model has shape {model.shape}, the parties' models have {agreed.n_params} parameters")
    setup_seconds = time.perf_counter() - start
    history = []
    for rnd in range(config.rounds):
        start, before = time.perf_counter(), party.stats.snapshot()
        # 4. the model
        reached = _send_each(party, active, {"type": "model", "round": rnd, "model": model})
        # 6. the updates that arrive before the deadline
        update = Record(round=Int(rnd, rnd), payload=scheme.payload)
        received = party.gather(reached, deadline=time.monotonic() + config.deadline, at_least=0, expect=update,
                                what=f"round {rnd} update")
        active = [p for p in active if p in received]
        payloads = {p: received[p]["payload"] for p in agreed.parties if p in received}
        weights = [int(p in received) for p in agreed.parties]
        entry: dict[str, Any] = {"round": rnd, "responders": list(payloads)}
        mean = np.zeros_like(model)
        try:
            if not payloads:
                raise KeyRequestRefused("no party answered before the deadline")
            # 7. the key (or the decrypted sum) from the TPA
            reply = request_key(party, config.tpa, {"round": rnd, "weights": weights, **scheme.combine(payloads, rnd)},
                                scheme.reply, "key", party.timeout + config.deadline)
            # 8. the exact sum, then the mean update
            mean = scheme.decrypt(reply, payloads, weights, rnd) / 2.0**config.frac_bits / len(payloads)
            model = model + mean
        except KeyRequestRefused as exc:
            entry["refused"] = str(exc)
        delta = party.stats.snapshot() - before
        entry.update(seconds=time.perf_counter() - start, bytes=delta.bytes_sent + delta.bytes_received)
        history.append(entry)
        if progress is not None:
            progress(rnd, responders=len(payloads), update_norm=float(np.linalg.norm(mean)))
    # 9. the final model to the parties still in, then stop the TPA
    _send_each(party, active, {"type": "stop", "model": model})
    party.send(config.tpa, {"type": "stop"})
    return {"model": model, "plan": agreed.to_wire(), "history": history, "setup_seconds": setup_seconds}


def roles(config: HybridAlphaConfig, data: Mapping[str, Any], *, progress: Progress | None = None,
          initial_model: np.ndarray | None = None, drop_after: Mapping[str, int] | None = None
          ) -> tuple[dict[str, Callable[..., Any]], dict[str, dict[str, Any]]]:
    """Every role and its inputs for one run: the same for the estimator, the app and the tests.

    ``data`` maps a party to its ``(X, Y)`` (``Y`` 0/1, a vector or one column per one-vs-rest
    model; trained by :class:`LocalLogistic`) or to a ``local_update(model, round)`` callable with
    ``facts()``. Parties missing from ``data`` (other processes) get no inputs here; ``progress``
    goes to the aggregator.
    """
    drop_after = dict(drop_after or {})
    party_roles: dict[str, Callable[..., Any]] = {config.tpa: partial(hybridalpha_tpa, config=config),
                                                  config.aggregator: partial(hybridalpha_aggregator, config=config)}
    inputs: dict[str, dict[str, Any]] = {config.tpa: {},
                                         config.aggregator: {"progress": progress, "initial_model": initial_model}}
    for pid in config.parties:
        party_roles[pid] = partial(hybridalpha_party, config=config)
        if pid in data:
            value = data[pid]
            local = value if callable(value) else LocalLogistic(config, *value, name=f"X of party {pid!r}")
            inputs[pid] = {"local_update": local, "drop_after": drop_after.get(pid)}
    return party_roles, inputs
