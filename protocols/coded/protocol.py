"""The roles of coded training: the clients and the server, and :func:`roles` used by every deployment.

Client (steps as numbered in the code):
  1. Check its data locally and announce its public facts to the server
     (:func:`protocols.coded.analysis.client_facts`).
  2. Receive the plan (row counts and scales), or the server's refusal.
  3. Quantise ``[X | 1 | v]`` at the plan's scales, cut the rows into ``K`` blocks, Lagrange-encode
     them with ``T`` uniform masks per prime, draw the zero masks for every round, send client
     ``j`` its share and its zero-mask evaluations, and gather everyone's: the stack ``S`` is the
     evaluation at ``alpha_j`` of one polynomial of degree ``K + T - 1`` holding all clients' data.
  4. Each round: receive the model ``W``; unless told to stay silent, return
     ``S_X^T (S_X W + S_V)`` plus the round's summed zero masks (a polynomial of degree
     ``2 (K + T - 1)`` evaluated at ``alpha_j``), until the server says stop.
Server (steps 3-4 are the clients' alone):
  1. Gather every client's facts.
  2. Run the range analysis (:func:`protocols.coded.analysis.plan`): the step, the scales and the
     guard's bound, or a refusal sent to every client.
  5. Each round: the guard (every output's ``||u||_2`` within the analysed range, else
     ``OverflowError``); send the quantised model to every client without ever waiting on a send
     (:class:`_Courier`).
  6. Gather the first ``R`` results of this round (late answers to earlier rounds are discarded);
     interpolate at ``beta_1..beta_K``, combine the primes, lift to signed integers and sum the
     blocks: the exact integer gradient ``G``; step ``w <- w - eta (c G / (2^e B) + alpha w)``.
  7. Tell every reachable client to stop.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mpcml.party import Party, PartyTimeout
from mpcml.schema import Array, Bool, Int, ListOf, OneOf, Record, Str

from ..common import check_labels, check_matrix
from ..progress import Progress
from .analysis import FACTS, Plan, Scales, check_weights, client_facts, plan
from .coding import CodedStack, decode_gradient, design, encode_data, residues, weight_integers, zero_masks
from .config import CodedConfig

logger = logging.getLogger(__name__)

PLAN = Record(rows=ListOf(Int(1, 2**40)), x_bits=Int(-64, 1100), frac_x=Int(1, 64), frac_v=Int(-10_000, 10_000))
REFUSAL = Record(error=Str())
STOP = Record(stop=Str())


class RoundFailed(RuntimeError):
    """Fewer than ``R`` clients answered within a round's deadline."""

    def __init__(self, round_index: int, missing: Sequence[str], answered: int, threshold: int, deadline: float) -> None:
        self.round_index, self.missing = round_index, tuple(missing)
        super().__init__(
            f"round {round_index} failed: only {answered} of the R = {threshold} results needed arrived within "
            f"{deadline:g}s; missing clients: {', '.join(missing)}"
        )


def _round_spec(config: CodedConfig, scales: Scales) -> Record:
    return Record(round=Int(0, config.n_rounds - 1), silent=Bool(),
                  weights=Array(np.uint32, shape=(len(config.primes), scales.n_features + 1, scales.n_outputs)))


def _result_spec(config: CodedConfig, scales: Scales) -> Record:
    return Record(round=Int(0, config.n_rounds - 1),
                  result=Array(np.uint32, shape=(len(config.primes), scales.n_features + 1, scales.n_outputs)))


def _share_spec(config: CodedConfig, scales: Scales, rows: int) -> Record:
    width = scales.n_features + 1
    n_primes = len(config.primes)
    return Record(data=Array(np.uint32, shape=(n_primes, -(-rows // config.n_blocks), width + scales.n_outputs)),
                  zero=Array(np.uint32, shape=(n_primes, config.n_rounds, width * scales.n_outputs)))


# --- the client ------------------------------------------------------------------------------------


def client_input(config: CodedConfig, client: str, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """A client's features and targets as ``(rows, outputs)``, checked locally (no message).

    Logistic: labels 0/1 (a client may hold one class only), or an ``(rows, K)`` 0/1 matrix for
    one-vs-rest. Linear: real targets.
    """
    X = check_matrix(X, f"X of client {client!r}")
    name = f"y of client {client!r}"
    if config.model == "logistic" and np.ndim(y) == 2:
        Y = np.asarray(y, dtype=np.float64)
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"{name} has {Y.shape[0]} rows but X has {X.shape[0]}")
    else:
        Y = check_labels(y, X.shape[0], binary=False, name=name)[:, None]
    if config.model == "logistic" and not np.all((Y == 0) | (Y == 1)):
        raise ValueError(f"{name} must hold the labels 0 and 1 (one-vs-rest: 0/1 columns), got "
                         f"{np.unique(Y)[:10].tolist()}")
    return X, Y


@dataclass
class ClientState:
    """What a client keeps after the set-up: the scales, its stack of everyone's shares, the summed zero
    masks of every round ``(n_primes, n_rounds, (d + 1) outputs)`` and its set-up bytes."""

    scales: Scales
    stack: CodedStack
    mask: np.ndarray
    setup_bytes: int


def client_setup(party: Party, config: CodedConfig, X: Any, y: Any) -> ClientState:
    """Client steps 1-3: local checks, public facts, the plan, coded data sharing."""
    # 1. local checks, then the public facts
    X, Y = client_input(config, party.id, X, y)
    party.check_peer(config.server, "server")
    party.send(config.server, client_facts(config, X, Y))
    # 2. the plan, or the refusal
    reply = party.recv(config.server, expect=OneOf(PLAN, REFUSAL), what="plan")
    if "error" in reply:
        raise ValueError(f"the server refused the run: {reply['error']}")
    if len(reply["rows"]) != len(config.clients):
        raise ValueError(f"the server's plan lists {len(reply['rows'])} row counts for {len(config.clients)} clients")
    scales = Scales.from_wire(reply, X.shape[1], Y.shape[1])
    # 3. coded data sharing
    stack, mask = _share(party, config, scales, design(config, scales, X, Y))
    return ClientState(scales, CodedStack(stack, scales.n_features + 1), mask, party.stats.bytes_sent)


def client_rounds(party: Party, config: CodedConfig, state: ClientState) -> dict[str, Any]:
    """Client step 4: one coded result per round until the server says stop."""
    primes = np.array(config.primes)[:, None, None]
    round_spec = OneOf(_round_spec(config, state.scales), STOP)
    answered = 0
    while True:
        message = party.recv(config.server, expect=round_spec, what="round message")
        if "stop" in message:
            return {"rounds_answered": answered, "setup_bytes_sent": state.setup_bytes, "stopped": message["stop"]}
        if message["silent"]:
            continue
        result = state.stack.gradient(message["weights"].astype(np.int64), config.primes)
        result = (result + state.mask[:, message["round"]].reshape(result.shape)) % primes
        try:
            party.send(config.server, {"round": message["round"], "result": result.astype(np.uint32)}, acknowledged=True)
        except Exception as exc:  # noqa: BLE001 - a server that finished without this result refuses it; see below
            stop = _stop_after_refusal(party, config, round_spec, exc)
            return {"rounds_answered": answered, "setup_bytes_sent": state.setup_bytes, "stopped": stop}
        answered += 1


def _stop_after_refusal(party: Party, config: CodedConfig, round_spec: OneOf, failure: Exception) -> str:
    """The server's stop, when it refused a late result because it had finished; else ``failure`` re-raised.

    A slow client may still be computing its answer to the last round when the other clients'
    results complete it: the server then delivers the stop (:meth:`_Courier.finish` waits for the
    delivery) and shuts down, refusing the late result. The stop is then already waiting here,
    behind at most newer round messages that need no answer any more.
    """
    while True:
        try:
            message = party.recv(config.server, config.round_timeout, expect=round_spec, what="round message")
        except Exception:  # noqa: BLE001 - no stop waiting: the refusal was the real failure
            raise failure from None
        if "stop" in message:
            logger.info("%s: the server had finished without this client's last result: %s", party.id, failure)
            return message["stop"]


def coded_client(party: Party, X: Any, y: Any, *, config: CodedConfig) -> dict[str, Any]:
    """Client role (steps 1-4 of the module docstring); returns what it did, for the record."""
    return client_rounds(party, config, client_setup(party, config, X, y))


def _share(party: Party, config: CodedConfig, scales: Scales, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 3: ``(stack, summed zero masks)`` after exchanging coded shares with every other client."""
    shares = encode_data(config, data, party.rng)
    masks = zero_masks(config, (scales.n_features + 1) * scales.n_outputs, party.rng)
    others = [c for c in config.clients if c != party.id]
    for client in others:
        j = config.clients.index(client)
        party.send(client, {"data": shares[j].astype(np.uint32), "zero": masks[j].astype(np.uint32)})
    received = party.gather(others, what="coded share")
    mine = config.clients.index(party.id)
    pieces = {party.id: {"data": shares[mine], "zero": masks[mine]}}
    for client, message in received.items():
        rows = scales.rows[config.clients.index(client)]
        pieces[client] = _share_spec(config, scales, rows).validate(message, client, "coded share")
    primes = np.array(config.primes)[:, None, None]
    stack = np.concatenate([pieces[c]["data"].astype(np.int64) % primes for c in config.clients], axis=1)
    mask = sum(pieces[c]["zero"].astype(np.int64) for c in config.clients) % primes
    return stack, mask


# --- the server ------------------------------------------------------------------------------------


class _Courier:
    """The server's sends, none of which may hold up a round.

    An acknowledged send returns once the message is delivered, or (over gRPC) fails after the
    party's timeout when the client is dead; that failure makes the client a dropout, not the run's. So a client's messages go out on a daemon thread that lives while it
    has something to send, and a message posted while the previous one is still in flight waits
    in a one-message slot, replacing any older waiting message (a newer round's model makes the
    older one stale): at most one thread and one waiting message per client, messages in order,
    and a slow client gets the newest model as soon as it can take it. A client whose send fails
    is unreachable for the rest of the run.
    """

    def __init__(self, party: Party) -> None:
        self._party = party
        self._lock = threading.Lock()
        self._senders: dict[str, threading.Thread] = {}
        self._busy: set[str] = set()
        self._waiting: dict[str, dict] = {}
        self.unreachable: set[str] = set()

    def post(self, client: str, message: dict) -> None:
        """Send ``message`` to ``client`` in the background (dropped if the client is unreachable)."""
        with self._lock:
            if client in self.unreachable:
                return
            if client in self._busy:
                self._waiting[client] = message
                return
            self._busy.add(client)
            sender = threading.Thread(target=self._drain, args=(client, message), daemon=True,
                                      name=f"{self._party.id}-to-{client}")
            self._senders[client] = sender
        sender.start()

    def _drain(self, client: str, message: dict | None) -> None:
        while message is not None:
            try:
                self._party.send(client, message, acknowledged=True)
            except Exception as exc:  # noqa: BLE001 - a dead or refusing client is a dropout, not a server failure
                logger.warning("%s: client %r is unreachable from now on: %s", self._party.id, client, exc)
                with self._lock:
                    self.unreachable.add(client)
                    self._waiting.pop(client, None)
                    self._busy.discard(client)
                return
            with self._lock:
                message = self._waiting.pop(client, None)
                if message is None:
                    self._busy.discard(client)

    def finish(self, clients: Sequence[str], message: dict, seconds: float) -> None:
        """Deliver ``message`` (last) to every reachable client, waiting at most ``seconds`` in all."""
        deadline = time.monotonic() + seconds
        for client in clients:
            self.post(client, message)
        for sender in list(self._senders.values()):
            sender.join(max(0.0, deadline - time.monotonic()))


def server_plan(party: Party, config: CodedConfig) -> Plan:
    """Server steps 1-2: gather the facts, plan, and tell every client the plan or the refusal."""
    facts = party.gather(config.clients, expect=FACTS, what="set-up facts")
    try:
        plan_ = plan(config, facts)
    except ValueError as exc:
        party.send_all(config.clients, {"error": str(exc)})
        raise
    party.send_all(config.clients, plan_.to_wire())
    return plan_


def server_update(config: CodedConfig, plan_: Plan, weights: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """One step ``w <- w - eta (g + alpha w)``; the intercept (last row) is not penalised."""
    penalty = config.alpha * weights
    penalty[-1] = 0.0
    return weights - plan_.step * (gradient + penalty)


def coded_server(party: Party, *, config: CodedConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Server role (steps 1-2 and 5-7 of the module docstring): returns the model and the run's record.

    ``weights`` is ``(d + 1, outputs)`` with the intercept last. ``progress`` is called after every
    round with ``loss_change`` (the training objective minus its value at ``w = 0``, computed from
    the revealed gradients as ``w^T (g(w) + g(0)) / 2`` plus the penalty) and ``grad_norm``.
    """
    plan_ = server_plan(party, config)
    factors = plan_.gradient_factors(config.slope)[:, None]
    result_spec = _result_spec(config, plan_)
    weights = np.zeros((plan_.n_features + 1, plan_.n_outputs))
    first_gradient = None
    record: dict[str, list] = {"responders": [], "round_seconds": [], "decode_seconds": [], "round_bytes": []}
    courier = _Courier(party)
    try:
        for r in range(config.n_rounds):
            start, before = time.perf_counter(), party.stats.snapshot()
            # 5. the guard, then the model to every client
            check_weights(r, weights, plan_, config)
            quantised = residues(config, weight_integers(plan_, weights)).astype(np.uint32)
            silent = config.schedule[r]
            for client in config.clients:
                courier.post(client, {"round": r, "weights": quantised, "silent": client in silent})
            # 6. the first R results of this round, decoded
            got = _gather_round(party, config, r, [c for c in config.clients if c not in silent], result_spec)
            decode_start = time.perf_counter()
            gradient = decode_gradient(config, got) * factors
            record["decode_seconds"].append(time.perf_counter() - decode_start)
            first_gradient = gradient if first_gradient is None else first_gradient
            if progress is not None:
                _report(progress, r, config, weight_integers(plan_, weights) * 2.0 ** -plan_.weight_exponents[:, None],
                        gradient, first_gradient)
            weights = server_update(config, plan_, weights, gradient)
            record["responders"].append(list(got))
            record["round_seconds"].append(time.perf_counter() - start)
            delta = party.stats.snapshot() - before
            record["round_bytes"].append(delta.bytes_sent + delta.bytes_received)
    except Exception as exc:
        # 7. (on failure: a round without R results, the guard, a malformed result) stop every client, with the reason
        courier.finish(config.clients, {"stop": str(exc)}, config.round_timeout)
        raise
    # 7. stop
    courier.finish(config.clients, {"stop": ""}, config.round_timeout)
    return {"weights": weights, "x_bits": plan_.x_bits, "frac_x": plan_.frac_x, "frac_v": plan_.frac_v,
            "step": plan_.step, "n_rounds": config.n_rounds, "unreachable": sorted(courier.unreachable),
            **{k: (v if k == "responders" else np.array(v)) for k, v in record.items()}}


def _report(progress: Progress, round_index: int, config: CodedConfig, weights: np.ndarray, gradient: np.ndarray,
            first_gradient: np.ndarray) -> None:
    """A progress line: the objective's change since ``w = 0`` (exact for a quadratic) and the gradient's norm."""
    penalty = config.alpha / 2 * float(np.sum(weights[:-1] ** 2))
    change = float(np.sum(weights * (gradient + first_gradient))) / 2 + penalty
    progress(round_index, loss_change=change, grad_norm=float(np.linalg.norm(gradient)))


def _gather_round(party: Party, config: CodedConfig, round_index: int, answering: Sequence[str],
                  spec: Record) -> dict[str, np.ndarray]:
    """Step 6: the first ``R`` results of ``round_index``; :class:`RoundFailed` if they do not arrive in time."""

    def current(sender: str, message: Any) -> bool:
        return spec.validate(message, sender, "coded result")["round"] == round_index

    threshold = config.recovery_threshold
    try:
        got = party.gather(answering, first=threshold, deadline=time.monotonic() + config.round_timeout,
                           accept=current, what="coded result")
    except PartyTimeout as exc:
        missing = [c for c in config.clients if c not in answering or c in exc.peers]
        raise RoundFailed(round_index, missing, len(answering) - len(exc.peers), threshold,
                          config.round_timeout) from None
    return {client: message["result"] for client, message in got.items()}


def roles(config: CodedConfig, data: Mapping[str, tuple[Any, Any]], *, progress: Progress | None = None
          ) -> tuple[dict[str, Callable[..., Any]], dict[str, dict[str, Any]]]:
    """Every party's role and inputs for one run: the same for the estimators, the app and the tests.

    ``data`` maps a client to its ``(X, y)``; clients missing from it (other processes) get no
    inputs here. ``progress`` goes to the server, which learns the per-round figures.
    """
    party_roles: dict[str, Callable[..., Any]] = {config.server: partial(coded_server, config=config)}
    inputs: dict[str, dict[str, Any]] = {config.server: {"progress": progress}}
    for client in config.clients:
        party_roles[client] = partial(coded_client, config=config)
        if client in data:
            inputs[client] = {"X": data[client][0], "y": data[client][1]}
    return party_roles, inputs
