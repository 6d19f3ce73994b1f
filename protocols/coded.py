"""Dropout-resilient coded training with Lagrange coded computing (DReS-FL style).

Shao, Sun, Li, Chen, Zhang, Yang, "DReS-FL: Dropout-Resilient Secure Federated Learning for
Non-IID Clients via Secret Data Sharing", NeurIPS 2022; coding by Lagrange coded computing
(Yu et al., AISTATS 2019, :mod:`mpcml.lagrange`).

Protocol. ``N`` clients and one server. Before training each client ``i`` appends a ones column
(intercept) to its features, quantises them at ``f`` fractional bits and its target term
``v_i`` at ``2f``, splits its rows into ``K`` blocks (zero rows pad the last block; they add
nothing to the gradient), Lagrange-encodes the blocks with ``T`` uniform masks and sends the
share at ``alpha_j`` to client ``j``. Every client then holds the stack ``S_j`` of the shares of
all clients' data, which is the evaluation at ``alpha_j`` of one polynomial of degree
``K + T - 1``. Each round the server sends the quantised model ``w`` (``f`` bits); client ``j``
returns ``g_j = S_X^T (S_X w + S_v)``, the evaluation at ``alpha_j`` of a polynomial of degree
``2 (K + T - 1)``. From the first ``R = 2 (K + T - 1) + 1`` results the server interpolates its
values at ``beta_1..beta_K``, ``sum_i X_ik^T (X_ik w + v_ik)``, lifts them to signed integers and
sums them: the exact integer gradient ``G`` of the quantised model.

Field. Everything runs modulo two primes below ``2^31`` at once (``primes``; independent masks
per prime) and the server combines the decoded residues by the Chinese remainder theorem, so
values up to ``(P - 1)/2`` with ``P = p_1 p_2 ~ 2^62`` come out exact; with one prime the
precision would be about 4 bits instead of 13 on breast cancer.

Models (both have a gradient of degree 2 in the data):

- linear regression: ``grad = X^T (X w - y) / m``, so ``v = -y``;
- logistic regression with the sigmoid replaced by its least-squares line on ``[-4, 4]``,
  ``sigma(z) ~ 1/2 + c z`` with ``c = SIGMOID_SLOPE = 0.1532`` (max error 0.131 on the interval):
  ``grad = c X^T (X w + (1/2 - y)/c) / m``, so ``v = (1/2 - y)/c``.

The server updates ``w <- clip(w - lr (G c / (2^(3f) m) + alpha w), +-weight_bound)`` (``c = 1``
for linear; ``alpha`` is an L2 penalty, not applied to the intercept).

Headroom, computed and checked: a decoded value, and their sum, is a sum over at most
``B = sum_i m_i`` rows of ``x (x . w + v)`` in integers, so ``|value| <= B X (d X W + V)`` with
``X = ceil(bx 2^f)``, ``W = ceil(bw 2^f)``, ``V = ceil(bv 2^(2f))`` (``bx`` feature bound, at
least 1 with the intercept; ``bw`` weight bound; ``bv`` bound on ``|v|``; ``d`` columns). It must
stay at most ``(P - 1)/2`` so the signed lift is exact, and ``V``, ``W`` below half the smaller
prime; ``f`` is the largest value that satisfies both, or the user's ``frac_bits`` is refused
with the arithmetic.

Dropouts. A round succeeds once ``R`` clients have answered; clients that have not answered
by then (silent, slow or dead) are skipped, and their late answers are discarded. If fewer
than ``R`` answer within ``round_timeout`` seconds the round fails with :class:`RoundFailed`
naming the missing clients. Simulated dropouts (``silent``) are clients the server tells to stay
silent in a round. A client the transport cannot reach is skipped for the rest of the run.

Threat model: semi-honest clients and server, no collusion between the server and clients. Any
``T`` colluding clients learn nothing about another client's data: each client's shares at any
``T`` points are uniform in the field (information-theoretic). Public: every client's row count,
the number of features, all parameters. The server learns the model, which clients answered, and
per round the ``K`` per-block aggregate gradients ``sum_i X_ik^T (X_ik w + v_ik)`` (hence the global
gradient) and nothing else: in setup every client also sends every other client its evaluations
of fresh random polynomials, one per round, that vanish at ``beta_1..beta_K`` (degree ``R - 1``,
:func:`zero_masks`); each client adds the sum to its coded result, so the polynomial the server
interpolates equals ``g`` at ``beta_1..beta_K`` and is uniformly random in its other ``R - K``
degrees of freedom. Setup needs all ``N`` clients.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from mpcml.csprng import Csprng
from mpcml.lagrange import (
    DEFAULT_PRIME,
    LagrangeCode,
    check_prime,
    crt_combine,
    field_matmul,
    lagrange_matrix,
    quantize,
    random_field,
    to_signed,
)
from mpcml.local import run_local
from mpcml.party import DEFAULT_TIMEOUT, Party, PartyTimeout

from .common import (
    CommunicationReport,
    check_horizontal_pairs,
    check_int,
    check_labels,
    check_matrix,
    check_number,
    check_party_ids,
)

MODELS = ("logistic", "linear")
DEGREE = 2
SIGMOID_FIT_RANGE = 4.0
_GRID = np.linspace(-SIGMOID_FIT_RANGE, SIGMOID_FIT_RANGE, 4001)
SIGMOID_SLOPE = float(np.polyfit(_GRID, 1.0 / (1.0 + np.exp(-_GRID)), 1)[0])
_LISTEN_SECONDS = 0.1
DEFAULT_PRIMES = (DEFAULT_PRIME, 2**31 - 19)


class RoundFailed(RuntimeError):
    """Fewer than ``R`` clients answered within a round's deadline."""

    def __init__(self, round_index: int, missing: Sequence[str], answered: int, threshold: int, deadline: float) -> None:
        self.round_index, self.missing = round_index, tuple(missing)
        super().__init__(
            f"round {round_index} failed: only {answered} of the R = {threshold} results needed arrived within "
            f"{deadline:g}s; missing clients: {', '.join(missing)}"
        )


@dataclass(frozen=True)
class CodedConfig:
    """Public parameters every party agrees on. ``silent[r]`` lists the clients told to stay silent in round ``r``."""

    server: str
    clients: tuple[str, ...]
    model: str = "logistic"
    n_blocks: int = 2
    n_masks: int = 1
    n_rounds: int = 50
    learning_rate: float = 1.0
    alpha: float = 0.0
    feature_bound: float = 1.0
    target_bound: float = 1.0
    weight_bound: float = 8.0
    frac_bits: int | None = None
    primes: tuple[int, ...] = DEFAULT_PRIMES
    round_timeout: float = 10.0
    silent: tuple[tuple[str, ...], ...] = ()
    codes: tuple[LagrangeCode, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        clients = check_party_ids(self.clients, "clients")
        object.__setattr__(self, "clients", clients)
        check_party_ids((self.server, *clients), "server and clients")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        check_int("n_blocks", self.n_blocks, 1)
        check_int("n_masks", self.n_masks, 1)
        check_int("n_rounds", self.n_rounds, 1)
        for name in ("learning_rate", "feature_bound", "target_bound", "weight_bound", "round_timeout"):
            check_number(name, getattr(self, name))
        check_number("alpha", self.alpha, positive=False)
        if self.frac_bits is not None:
            check_int("frac_bits", self.frac_bits, 1)
        primes = tuple(check_prime(p) for p in self.primes)
        if not primes or len(set(primes)) != len(primes) or math.prod(primes) >= 2**63:
            raise ValueError(f"primes must be one or two distinct primes below 2^31 (product below 2^63), got {primes}")
        object.__setattr__(self, "primes", primes)
        codes = tuple(LagrangeCode(len(clients), self.n_blocks, self.n_masks, DEGREE, p) for p in primes)
        object.__setattr__(self, "codes", codes)
        silent = tuple(tuple(str(c) for c in s) for s in self.silent)
        object.__setattr__(self, "silent", silent)
        if len(silent) > self.n_rounds:
            raise ValueError(f"silent lists {len(silent)} rounds but n_rounds = {self.n_rounds}")
        for r, group in enumerate(silent):
            unknown = set(group) - set(clients)
            if unknown:
                raise ValueError(f"silent[{r}] names unknown clients {sorted(unknown)}")
            self.check_tolerates(len(set(group)), f"silent[{r}] has")

    @property
    def recovery_threshold(self) -> int:
        return self.codes[0].recovery_threshold

    @property
    def modulus(self) -> int:
        """The product of the primes: decoded gradients are exact residues modulo it (Chinese remainders)."""
        return math.prod(self.primes)

    def check_tolerates(self, n_dropouts: int, what: str = "n_dropouts =") -> None:
        """``ValueError`` with the arithmetic if ``n_dropouts`` silent clients leave fewer than ``R``."""
        n, k, t = len(self.clients), self.n_blocks, self.n_masks
        if n_dropouts > n - self.recovery_threshold:
            raise ValueError(
                f"{what} {n_dropouts} dropouts but N - R = {n} - ((K + T - 1) * {DEGREE} + 1) = "
                f"{n} - (({k} + {t} - 1) * {DEGREE} + 1) = {n - self.recovery_threshold} can be tolerated; "
                f"lower n_blocks (K) or n_masks (T), or add clients"
            )

    @property
    def target_term_bound(self) -> float:
        """Bound on ``|v|``: ``1/(2c)`` for logistic, ``target_bound`` for linear."""
        return 0.5 / SIGMOID_SLOPE if self.model == "logistic" else self.target_bound

    @property
    def gradient_scale(self) -> float:
        return SIGMOID_SLOPE if self.model == "logistic" else 1.0


def headroom(config: CodedConfig, rows: Sequence[int], n_cols: int, frac_bits: int) -> tuple[int, str]:
    """The largest magnitude a decoded value can take, and the arithmetic behind it (see the module docstring)."""
    n_rows = sum(int(m) for m in rows)
    x_max = math.ceil(max(config.feature_bound, 1.0) * 2**frac_bits)
    w_max = math.ceil(config.weight_bound * 2**frac_bits)
    v_max = math.ceil(config.target_term_bound * 2 ** (2 * frac_bits))
    largest = n_rows * x_max * (n_cols * x_max * w_max + v_max)
    return largest, (
        f"B X (d X W + V) = {n_rows} * {x_max} * ({n_cols} * {x_max} * {w_max} + {v_max}) = {largest} "
        f"at f = {frac_bits} fractional bits (B = sum_i m_i rows, X = ceil(bx 2^f), W = ceil(bw 2^f), "
        f"V = ceil(bv 2^2f)); the field allows (P - 1)/2 = {(config.modulus - 1) // 2} (P = {' * '.join(map(str, config.primes))})"
    )


def _overflow(config: CodedConfig, rows: Sequence[int], n_cols: int, frac_bits: int) -> str | None:
    """Why ``frac_bits`` does not fit (headroom beyond ``(P - 1)/2``, or ``v``/``w`` beyond the smallest prime), or None."""
    largest, arithmetic = headroom(config, rows, n_cols, frac_bits)
    if largest > (config.modulus - 1) // 2:
        return arithmetic
    half = (min(config.primes) - 1) // 2
    for name, value in (("V = ceil(bv 2^2f)", math.ceil(config.target_term_bound * 2 ** (2 * frac_bits))),
                        ("W = ceil(bw 2^f)", math.ceil(config.weight_bound * 2**frac_bits))):
        if value > half:
            return f"{name} = {value} at f = {frac_bits} exceeds (p - 1)/2 = {half} of the smallest prime"
    return None


def plan_frac_bits(config: CodedConfig, rows: Sequence[int], n_cols: int) -> int:
    """``config.frac_bits`` if its headroom fits, else the largest ``f`` that fits; ``ValueError`` with the arithmetic."""
    if config.frac_bits is not None:
        reason = _overflow(config, rows, n_cols, config.frac_bits)
        if reason:
            raise ValueError(f"frac_bits = {config.frac_bits} overflows the field: {reason}")
        return config.frac_bits
    for f in range(30, 0, -1):
        if _overflow(config, rows, n_cols, f) is None:
            return f
    raise ValueError(f"no precision fits the field: {_overflow(config, rows, n_cols, 1)}")


def check_client_data(config: CodedConfig, X: Any, y: Any, name: str = "X") -> tuple[np.ndarray, np.ndarray]:
    """A client's features and targets, checked against the public bounds."""
    X = check_matrix(X, name)
    y = check_labels(y, X.shape[0], binary=config.model == "logistic", name=f"y of {name}")
    if np.max(np.abs(X)) > config.feature_bound:
        raise ValueError(f"{name} has a feature of magnitude {np.max(np.abs(X)):.6g} > feature_bound = {config.feature_bound:g}")
    if config.model == "linear" and np.max(np.abs(y)) > config.target_bound:
        raise ValueError(f"y of {name} has a target of magnitude {np.max(np.abs(y)):.6g} > target_bound = {config.target_bound:g}")
    return X, y


def quantized_data(config: CodedConfig, X: np.ndarray, y: np.ndarray, frac_bits: int) -> np.ndarray:
    """``[X | 1 | v]`` as signed integers: features and the ones column at ``f`` bits, ``v`` at ``2f``."""
    v = -y if config.model == "linear" else (0.5 - y) / SIGMOID_SLOPE
    p = min(config.primes)
    features = quantize(np.column_stack([X, np.ones(X.shape[0])]), frac_bits, p, name="X")
    return to_signed(np.column_stack([features, quantize(v, 2 * frac_bits, p, name="v")]), p)


def quantized_weights(config: CodedConfig, weights: np.ndarray, frac_bits: int) -> np.ndarray:
    """``round(w 2^f)`` modulo each prime: shape ``(n_primes, d)``."""
    return np.stack([quantize(weights, frac_bits, p, name="weights") for p in config.primes])


def encode_data(config: CodedConfig, data: np.ndarray, rng: Csprng) -> np.ndarray:
    """Every client's coded shares of ``data`` (signed integers), shape ``(N, n_primes, ceil(m/K), cols)``.

    Rows are split into ``K`` blocks (zero rows pad the last); each prime has its own masks.
    """
    k = config.n_blocks
    per_block = -(-data.shape[0] // k)
    padded = np.zeros((k * per_block, data.shape[1]), dtype=np.int64)
    padded[: data.shape[0]] = data
    blocks = padded.reshape(k, per_block, data.shape[1])
    return np.stack([code.encode(blocks % p, rng) for code, p in zip(config.codes, config.primes)], axis=1)


def zero_masks(config: CodedConfig, n_cols: int, rng: Csprng) -> np.ndarray:
    """Every client's evaluations of fresh random polynomials that vanish at ``beta_1..beta_K``, one per round.

    Shape ``(N, n_primes, n_rounds, n_cols)``. Each polynomial has degree ``R - 1``: zero at the ``K``
    data points and uniform values at ``R - K`` further points beyond every ``alpha``. The clients
    add the sum of everyone's masks to their coded results, which leaves the decoded values at
    ``beta_1..beta_K`` unchanged and makes the rest of the polynomial the server interpolates uniform.
    """
    k, r = config.n_blocks, config.recovery_threshold
    code = config.codes[0]
    free_nodes = [code.alphas[-1] + 1 + i for i in range(r - k)]
    out = []
    for p in config.primes:
        basis = lagrange_matrix(list(code.betas[:k]) + free_nodes, code.alphas, p)[:, k:]
        values = random_field(rng, (r - k, config.n_rounds * n_cols), p)
        out.append(field_matmul(basis, values, p).reshape(len(config.clients), config.n_rounds, n_cols))
    return np.stack(out, axis=1)


def coded_gradient(stack: np.ndarray, weights_q: np.ndarray, primes: Sequence[int]) -> np.ndarray:
    """``S_X^T (S_X w + S_v)`` modulo each prime for a stack ``[S_X | S_v]`` of shape ``(n_primes, rows, cols)``."""
    out = []
    for share, w, p in zip(stack, weights_q, primes):
        features, v = share[:, :-1], share[:, -1]
        out.append(field_matmul(features.T, (field_matmul(features, w, p) + v) % p, p))
    return np.stack(out)


def decode_gradient(config: CodedConfig, results: Mapping[str, np.ndarray]) -> np.ndarray:
    """The signed integer gradient ``G`` from ``{client: coded result}`` (the first ``R`` entries are used)."""
    indices = {config.clients.index(c): np.asarray(g, dtype=np.int64) for c, g in results.items()}
    residues = [code.decode({i: g[j] for i, g in indices.items()}) for j, code in enumerate(config.codes)]
    return to_signed(crt_combine(residues, config.primes), config.modulus).sum(axis=0)


def quantized_gradient(config: CodedConfig, parts: Sequence[tuple[np.ndarray, np.ndarray]], weights_q: np.ndarray,
                       frac_bits: int) -> np.ndarray:
    """Plaintext reference: the integer ``sum_rows x (x . w + v)`` of the quantised model, computed in int64."""
    return _integer_gradient(config, [quantized_data(config, X, y, frac_bits) for X, y in parts], weights_q)


def _integer_gradient(config: CodedConfig, datas: Sequence[np.ndarray], weights_q: np.ndarray) -> np.ndarray:
    """``sum_rows x (x . w + v)`` in int64 over already quantised ``[X | 1 | v]`` blocks."""
    total = np.zeros(weights_q.shape[-1], dtype=np.int64)
    w = to_signed(weights_q[0], config.primes[0])
    for data in datas:
        features, v = data[:, :-1], data[:, -1]
        total += features.T @ (features @ w + v)
    return total


def update(config: CodedConfig, weights: np.ndarray, gradient: np.ndarray, frac_bits: int, n_rows: int) -> np.ndarray:
    """One gradient step from the integer gradient ``G`` (see the module docstring)."""
    grad = gradient.astype(np.float64) * (config.gradient_scale / (2.0 ** (3 * frac_bits) * n_rows))
    penalty = config.alpha * np.concatenate([weights[:-1], [0.0]])
    return np.clip(weights - config.learning_rate * (grad + penalty), -config.weight_bound, config.weight_bound)


def plaintext_training(config: CodedConfig, parts: Sequence[tuple[np.ndarray, np.ndarray]], frac_bits: int) -> np.ndarray:
    """Full-participation training of the same quantised polynomial model in plaintext; weights (intercept last)."""
    n_rows = sum(X.shape[0] for X, _ in parts)
    weights = np.zeros(parts[0][0].shape[1] + 1)
    datas = [quantized_data(config, X, y, frac_bits) for X, y in parts]  # the data do not change between rounds
    for _ in range(config.n_rounds):
        weights_q = quantized_weights(config, weights, frac_bits)
        weights = update(config, weights, _integer_gradient(config, datas, weights_q), frac_bits, n_rows)
    return weights


# --- roles ---------------------------------------------------------------------------------------


@dataclass
class ClientState:
    """What a client keeps after coded data sharing: its stack of everyone's shares, the summed zero masks
    for every round (``(n_primes, n_rounds, d)``) and the plan."""

    stack: np.ndarray
    zero_mask: np.ndarray
    frac_bits: int
    setup_bytes_sent: int


def client_setup(party: Party, config: CodedConfig, X: Any, y: Any) -> ClientState:
    """Announce the row count, receive the plan, and exchange coded shares with every other client."""
    X, y = check_client_data(config, X, y, name=f"X of {party.id}")
    party.check_peer(config.server, "server")
    party.send(config.server, {"rows": X.shape[0], "features": X.shape[1]})
    plan = party.recv(config.server)
    if "error" in plan:
        raise ValueError(f"the server refused the configuration: {plan['error']}")
    frac_bits = int(plan["frac_bits"])
    shares = encode_data(config, quantized_data(config, X, y, frac_bits), party.rng)
    masks = zero_masks(config, X.shape[1] + 1, party.rng)
    index = config.clients.index(party.id)
    for j, client in enumerate(config.clients):
        if client != party.id:
            party.send(client, {"data": shares[j].astype(np.uint32), "zero": masks[j].astype(np.uint32)})
    received = {client: party.recv(client) for client in config.clients if client != party.id}
    received[party.id] = {"data": shares[index], "zero": masks[index]}
    n_primes, cols = len(config.primes), X.shape[1] + 2
    for client, m in zip(config.clients, plan["rows"]):
        expected = {"data": (n_primes, -(-int(m) // config.n_blocks), cols), "zero": (n_primes, config.n_rounds, cols - 1)}
        for key, shape in expected.items():
            if np.shape(received[client].get(key)) != shape:
                raise ValueError(f"{key} share from {client!r} has shape {np.shape(received[client].get(key))}, expected {shape}")
    stack = np.concatenate([np.asarray(received[c]["data"], dtype=np.int64) for c in config.clients], axis=1)
    mask = sum(np.asarray(received[c]["zero"], dtype=np.int64) for c in config.clients) % np.array(config.primes)[:, None, None]
    return ClientState(stack, mask, frac_bits, party.stats.bytes_sent)


def client_rounds(party: Party, config: CodedConfig, state: ClientState) -> dict[str, Any]:
    """Answer each round's model with the coded gradient until the server says stop."""
    answered = 0
    while True:
        msg = party.recv(config.server)
        if msg.get("stop"):  # "error" says why the server gave up (it raises RoundFailed itself)
            return {"rounds_answered": answered, "setup_bytes_sent": state.setup_bytes_sent,
                    "error": msg.get("error", "")}
        if msg["silent"]:
            continue
        gradient = coded_gradient(state.stack, np.asarray(msg["weights"], dtype=np.int64), config.primes)
        gradient = (gradient + state.zero_mask[:, int(msg["round"])]) % np.array(config.primes)[:, None]
        party.send(config.server, {"round": msg["round"], "gradient": gradient.astype(np.uint32)})
        answered += 1


def coded_client(party: Party, config: CodedConfig, X: Any, y: Any) -> dict[str, Any]:
    """Client role: coded data sharing, then one coded gradient per round."""
    return client_rounds(party, config, client_setup(party, config, X, y))


def server_setup(party: Party, config: CodedConfig) -> tuple[int, list[int], int]:
    """Collect the row counts, plan ``frac_bits`` (or tell every client why not) and announce the plan."""
    announced = {c: party.recv(c) for c in config.clients}
    rows = [int(announced[c]["rows"]) for c in config.clients]
    features = {int(a["features"]) for a in announced.values()}
    try:
        if len(features) != 1:
            raise ValueError(f"clients disagree on the number of features: {sorted(features)}")
        (n_features,) = features
        frac_bits = plan_frac_bits(config, rows, n_features + 1)
    except ValueError as exc:
        party.send_all(config.clients, {"error": str(exc)})
        raise
    party.send_all(config.clients, {"frac_bits": frac_bits, "rows": rows})
    return frac_bits, rows, n_features


class _Mailroom:
    """Per client one sender and one receiver thread, so a dead or slow client never holds up the others.

    Messages to one client keep their order. A send the transport cannot deliver within the
    party's timeout (``TimeoutError``) marks that client unreachable; later messages to it are
    dropped. Received messages join one queue in arrival order.
    """

    def __init__(self, party: Party, clients: Sequence[str]) -> None:
        self._party = party
        self._outgoing: dict[str, queue.Queue] = {c: queue.Queue() for c in clients}
        self._arrivals: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._unreachable: set[str] = set()
        self._closed = threading.Event()
        self._senders = [threading.Thread(target=self._send, args=(c,), daemon=True) for c in clients]
        self._receivers = [threading.Thread(target=self._receive, args=(c,), daemon=True) for c in clients]
        for thread in (*self._senders, *self._receivers):
            thread.start()

    def _send(self, client: str) -> None:
        while (message := self._outgoing[client].get()) is not None:
            if client in self.unreachable:
                continue
            try:
                self._party.send(client, message)
            except TimeoutError:
                with self._lock:
                    self._unreachable.add(client)

    def _receive(self, client: str) -> None:
        while not self._closed.is_set():
            try:
                self._arrivals.put((client, self._party.recv(client, timeout=_LISTEN_SECONDS)))
            except PartyTimeout:
                continue
            except Exception as exc:  # noqa: BLE001 - handed to the server thread, which raises it
                self._arrivals.put((client, exc))
                return

    @property
    def unreachable(self) -> set[str]:
        with self._lock:
            return set(self._unreachable)

    def post(self, client: str, message: dict) -> None:
        self._outgoing[client].put(message)

    def collect(self, config: CodedConfig, round_index: int) -> dict[str, np.ndarray]:
        """The first ``R`` results of round ``round_index`` in arrival order; answers to earlier rounds are dropped."""
        threshold = config.recovery_threshold
        deadline = time.monotonic() + config.round_timeout
        got: dict[str, np.ndarray] = {}
        while len(got) < threshold and (remaining := deadline - time.monotonic()) > 0:
            try:
                client, message = self._arrivals.get(timeout=remaining)
            except queue.Empty:
                break
            if isinstance(message, Exception):
                raise message
            if isinstance(message, dict) and message.get("round") == round_index:
                got[client] = np.asarray(message["gradient"], dtype=np.int64)
        if len(got) < threshold:
            missing = [c for c in config.clients if c not in got]
            raise RoundFailed(round_index, missing, len(got), threshold, config.round_timeout)
        return got

    def close(self, flush_seconds: float) -> None:
        """Deliver what is queued, waiting at most ``flush_seconds`` in all (a sender still blocked then is
        talking to a dead client and is abandoned; the transport's timeout ends it), and stop listening."""
        for q in self._outgoing.values():
            q.put(None)
        deadline = time.monotonic() + flush_seconds
        for thread in self._senders:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._closed.set()
        for thread in self._receivers:
            thread.join(_LISTEN_SECONDS + 1.0)


def coded_server(party: Party, config: CodedConfig, verbose: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Server role: plan the precision, then per round send the model, decode the first ``R`` results, update."""
    frac_bits, rows, n_features = server_setup(party, config)
    weights = np.zeros(n_features + 1)
    responders, round_seconds, decode_seconds, round_bytes = [], [], [], []
    mail = _Mailroom(party, config.clients)
    try:
        for r in range(config.n_rounds):
            start, before = time.perf_counter(), party.stats.snapshot()
            silent = set(config.silent[r]) if r < len(config.silent) else set()
            weights_q = quantized_weights(config, weights, frac_bits)
            for client in config.clients:
                mail.post(client, {"round": r, "weights": weights_q, "stop": False, "silent": client in silent})
            got = mail.collect(config, r)
            decode_start = time.perf_counter()
            gradient = decode_gradient(config, got)
            decode_seconds.append(time.perf_counter() - decode_start)
            weights = update(config, weights, gradient, frac_bits, sum(rows))
            responders.append(list(got))
            round_seconds.append(time.perf_counter() - start)
            delta = party.stats.snapshot() - before
            round_bytes.append(delta.bytes_sent + delta.bytes_received)
            if verbose is not None:
                verbose(f"round {r}: decoded from {', '.join(got)} in {round_seconds[-1] * 1e3:.1f} ms")
    except RoundFailed as exc:
        for client in config.clients:
            mail.post(client, {"stop": True, "error": str(exc)})
        mail.close(config.round_timeout)
        raise
    for client in config.clients:
        mail.post(client, {"stop": True})
    mail.close(config.round_timeout)
    return {
        "weights": weights, "frac_bits": frac_bits, "responders": responders, "unreachable": sorted(mail.unreachable),
        "round_seconds": np.array(round_seconds), "decode_seconds": np.array(decode_seconds),
        "round_bytes": np.array(round_bytes, dtype=np.int64),
    }


def dropout_schedule(clients: Sequence[str], n_rounds: int, n_dropouts: int, seed: int | None) -> tuple[tuple[str, ...], ...]:
    """``n_dropouts`` clients chosen uniformly at random per round (a simulation choice, not a secret)."""
    picker = np.random.default_rng(seed)
    return tuple(tuple(sorted(str(c) for c in picker.choice(list(clients), n_dropouts, replace=False)))
                 for _ in range(n_rounds))


# --- scikit-learn style estimators ----------------------------------------------------------------


class _CodedRegression(BaseEstimator):
    """Shared machinery of :class:`CodedLogisticRegression` and :class:`CodedLinearRegression`.

    ``fit([(X_1, y_1), ..., (X_N, y_N)])`` runs client ``client-i`` per pair and a ``server`` in
    this process (one thread each). ``n_dropouts`` clients (or ``round(dropout_rate * N)``) are
    told to stay silent in each round, chosen at random (``random_state``). ``feature_bound=None``
    takes the largest ``|x|`` over all clients' data (a simulation convenience: in a federation
    the bound is an agreed public parameter), likewise ``target_bound``. After ``fit``: ``coef_``,
    ``intercept_``, ``n_iter_``, ``frac_bits_``, ``recovery_threshold_``, ``responders_`` (client ids
    decoded from, per round), ``decode_counts_``, ``round_bytes_`` (server bytes per round),
    ``setup_bytes_`` (bytes sent by all clients in setup), ``round_seconds_``, ``decode_seconds_`` and
    ``communication_``.
    """

    _model = "linear"

    def _config(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> CodedConfig:
        clients = tuple(f"client-{i}" for i in range(len(parts)))
        if self.dropout_rate is not None and self.n_dropouts:
            raise ValueError("give n_dropouts or dropout_rate, not both")
        if self.dropout_rate is not None:
            rate = check_number("dropout_rate", self.dropout_rate, positive=False)
            if rate >= 1:
                raise ValueError(f"dropout_rate must be in [0, 1), got {rate}")
            n_dropouts = int(round(rate * len(parts)))
        else:
            n_dropouts = check_int("n_dropouts", self.n_dropouts, 0)
        feature_bound = self.feature_bound
        if feature_bound is None:
            feature_bound = max(float(np.max(np.abs(X))) for X, _ in parts) or 1.0
        target_bound = 1.0  # unused by the logistic model, whose target term is bounded by 1/(2c)
        if self._model == "linear":
            target_bound = self.target_bound
            if target_bound is None:
                target_bound = max(float(np.max(np.abs(y))) for _, y in parts) or 1.0
        config = CodedConfig(
            server="server", clients=clients, model=self._model, n_blocks=self.n_blocks, n_masks=self.n_masks,
            n_rounds=self.n_rounds, learning_rate=self.learning_rate, alpha=self.alpha, feature_bound=feature_bound,
            target_bound=target_bound, weight_bound=self.weight_bound, frac_bits=self.frac_bits, primes=self.primes,
            round_timeout=self.round_timeout,
        )
        config.check_tolerates(n_dropouts)
        silent = dropout_schedule(clients, self.n_rounds, n_dropouts, self.random_state) if n_dropouts else ()
        config = replace(config, silent=silent)
        plan_frac_bits(config, [X.shape[0] for X, _ in parts], parts[0][0].shape[1] + 1)
        return config

    def _parts(self, parts: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        blocks, labels = check_horizontal_pairs(parts, "X", binary=self._model == "logistic")
        return list(zip(blocks, labels))

    def fit(self, parts: Any, y: Any = None) -> "_CodedRegression":
        if y is not None:
            raise ValueError("pass the clients' data as fit([(X_1, y_1), ..., (X_N, y_N)]) with y=None")
        parts = self._parts(parts)
        config = self._config(parts)
        for (X, y_i), client in zip(parts, config.clients):
            check_client_data(config, X, y_i, name=f"X of {client}")
        roles: dict[str, Callable[..., Any]] = {c: partial(coded_client, config=config) for c in config.clients}
        roles[config.server] = partial(coded_server, config=config)
        out = run_local(roles, {c: {"X": X, "y": y_i} for c, (X, y_i) in zip(config.clients, parts)},
                        timeout=self.timeout)
        result = out[config.server]
        self.config_ = config
        self.n_features_in_ = parts[0][0].shape[1]
        self.coef_, self.intercept_ = result["weights"][:-1], float(result["weights"][-1])
        self.n_iter_ = config.n_rounds
        self.frac_bits_ = result["frac_bits"]
        self.recovery_threshold_ = config.recovery_threshold
        self.responders_ = result["responders"]
        self.decode_counts_ = np.array([len(r) for r in self.responders_])
        self.round_seconds_ = result["round_seconds"]
        self.decode_seconds_ = result["decode_seconds"]
        self.round_bytes_ = result["round_bytes"]
        self.setup_bytes_ = sum(out[c]["setup_bytes_sent"] for c in config.clients)
        self.communication_ = CommunicationReport.from_stats(out.stats)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "config_")
        X = check_matrix(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the model was fitted on {self.n_features_in_}")
        return X @ self.coef_ + self.intercept_


def _init(self: Any, **params: Any) -> None:
    for name, value in params.items():
        setattr(self, name, value)


class CodedLinearRegression(RegressorMixin, _CodedRegression):
    """Linear regression (squared loss, full-batch gradient descent) by dropout-resilient coded training."""

    _model = "linear"

    def __init__(self, *, n_blocks: int = 2, n_masks: int = 1, n_rounds: int = 100, learning_rate: float = 0.5,
                 alpha: float = 0.0, n_dropouts: int = 0, dropout_rate: float | None = None,
                 feature_bound: float | None = None, target_bound: float | None = None, weight_bound: float = 8.0,
                 frac_bits: int | None = None, primes: tuple[int, ...] = DEFAULT_PRIMES, round_timeout: float = 10.0,
                 timeout: float = DEFAULT_TIMEOUT, random_state: int | None = None) -> None:
        _init(self, n_blocks=n_blocks, n_masks=n_masks, n_rounds=n_rounds, learning_rate=learning_rate, alpha=alpha,
              n_dropouts=n_dropouts, dropout_rate=dropout_rate, feature_bound=feature_bound, target_bound=target_bound,
              weight_bound=weight_bound, frac_bits=frac_bits, primes=primes, round_timeout=round_timeout,
              timeout=timeout, random_state=random_state)

    def predict(self, X: Any) -> np.ndarray:
        return self.decision_function(X)


class CodedLogisticRegression(ClassifierMixin, _CodedRegression):
    """Logistic regression with the fitted linear sigmoid (``SIGMOID_SLOPE``) by dropout-resilient coded training.

    ``predict`` thresholds the score at 0; ``predict_proba`` applies the exact logistic function to it.
    """

    _model = "logistic"

    def __init__(self, *, n_blocks: int = 2, n_masks: int = 1, n_rounds: int = 100, learning_rate: float = 1.0,
                 alpha: float = 0.0, n_dropouts: int = 0, dropout_rate: float | None = None,
                 feature_bound: float | None = None, weight_bound: float = 8.0, frac_bits: int | None = None,
                 primes: tuple[int, ...] = DEFAULT_PRIMES, round_timeout: float = 10.0, timeout: float = DEFAULT_TIMEOUT,
                 random_state: int | None = None) -> None:
        _init(self, n_blocks=n_blocks, n_masks=n_masks, n_rounds=n_rounds, learning_rate=learning_rate, alpha=alpha,
              n_dropouts=n_dropouts, dropout_rate=dropout_rate, feature_bound=feature_bound, weight_bound=weight_bound,
              frac_bits=frac_bits, primes=primes, round_timeout=round_timeout, timeout=timeout,
              random_state=random_state)

    def fit(self, parts: Any, y: Any = None) -> "CodedLogisticRegression":
        super().fit(parts, y)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(np.int64)
