"""Secure linear and logistic regression by mini-batch gradient descent on secret-shared data.

Chen, Li, Fang et al., "Secret sharing based secure regressions with applications" (2020),
with the masked-matrix trick of SecureML (Mohassel and Zhang, S&P 2017). Each data holder
secret-shares its block (vertical: its feature columns of the common rows, one holder also the
labels; horizontal: its rows and their labels) among the compute parties, who run

    w <- w * (1 - eta_t * alpha) - (eta_t / B) * X_B^T (g(X_B w) - y_B),   eta_t = eta / (1 + decay * t)

on shares, with ``g`` the identity (squared loss) or a sigmoid approximation
(:data:`mpcml.nonlinear.SIGMOID_METHODS`); the intercept, when fitted, is a public column of
ones and is not penalised. ``X`` is opened once masked (:class:`mpcml.masked.MaskedMatrix`), so
an iteration opens ``|w|`` elements for ``X_B w`` and ``B`` for ``X_B^T e``: communication
O(batch + features) per iteration, plus the sigmoid and three truncations.

Compute parties. By default the holders themselves compute, with a dealer (the "server-aided"
model of the paper) supplying Beaver triples: nobody else sees a share, and for the usual 2-3
holders this is cheapest. Every opening is all-to-all, so with ``k`` compute parties an
iteration sends ``k (k - 1) (B + d)`` elements; with many holders pass ``compute_parties``
(e.g. two servers): holders then only send their shares once and receive the output.

Dealer-free: with ``triples="paillier"`` (exactly two compute parties) the players make the
triples themselves with Paillier (:class:`mpcml.paillier_triples.PaillierTriples`, ``key_bits``):
no third party, at the price of homomorphic work proportional to every product's size, the masked
matrix's ``n x d`` included (orders of magnitude slower than the dealer; CAESAR's setting).

Threat model: semi-honest parties; the dealer (if any) does not collude with any compute party, and
the compute parties do not all collude. What each role learns:

- data holders: their own data, the shapes of the others' blocks (row and column counts), and
  the output (``output="reveal"``: every weight; ``"own"``, vertical only: their own columns'
  weights, the label holder also the intercept; ``"shared"``: nothing, the weights stay
  shared for :func:`prediction_party`). With ``tol`` set, also the squared norm of each
  epoch's weight change (one number per epoch, used for early stopping).
- compute parties that hold no data: the shapes and the same early-stopping numbers.
- the dealer: the shapes, the (public) mini-batch order and the number of iterations.

Precision: ``frac_bits`` (default 16) fractional bits in Z_2^64; every product is truncated
(error at most one unit, 2^-16, per step). The update multiplies by the public factors
``1 - eta alpha`` and ``eta / B`` carried with 30 fractional bits, so weights and steps must stay
below 2^(62 - 30 - frac_bits) = 2^16 in magnitude; standardised inputs keep them far below.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from mpcml import fixedpoint
from mpcml.csprng import SEED_BYTES, Csprng, new_seed
from mpcml.masked import MaskedMatrix
from mpcml.paillier_triples import PaillierTriples
from mpcml.party import DEFAULT_TIMEOUT, Party
from mpcml.tensor import Session, SharedTensor
from mpcml.triples import DealerTriples, TripleSource, run_dealer
from protocols.common import (
    CommunicationReport,
    check_horizontal_pairs,
    check_int,
    check_labels,
    check_matrix,
    check_number,
    check_party_ids,
    check_vertical_parts,
    run_parties,
)

LOSSES = ("squared", "logistic")
PARTITIONS = ("vertical", "horizontal")
OUTPUTS = ("reveal", "own", "shared")
TRIPLES = ("dealer", "paillier")
DEFAULT_SIGMOID = "linear"  # best test AUC against the exact-sigmoid algorithm in our measurements (docs/regression.md)
_SCALE_BITS = 30  # fractional bits of the public step-size factors in the fused update


def sigmoid_methods() -> tuple[str, ...]:
    from mpcml.nonlinear import SIGMOID_METHODS

    return tuple(SIGMOID_METHODS)


def seed_from_random_state(random_state: int | None) -> bytes | None:
    """A 32-byte batch-order seed from an integer (reproducible runs), or ``None`` (fresh seed)."""
    if random_state is None:
        return None
    if not isinstance(random_state, (int, np.integer)) or isinstance(random_state, bool):
        raise TypeError(f"random_state must be an int or None, got {type(random_state).__name__}")
    return hashlib.sha256(b"mpcml.regression.batches" + int(random_state).to_bytes(16, "big", signed=True)).digest()


def batch_schedule(seed: bytes, n_rows: int, epochs: int, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(epoch, rows)`` for every mini-batch: a fresh public permutation per epoch from ``seed``."""
    stream = Csprng(seed)
    for epoch in range(epochs):
        order = stream.permutation(n_rows)
        for start in range(0, n_rows, batch_size):
            yield epoch, order[start : start + batch_size]


@dataclass(frozen=True)
class RegressionConfig:
    """Everything the parties of one training run must agree on (the same at every party)."""

    loss: str
    holders: tuple[str, ...]
    partition: str = "vertical"
    label_holder: str | None = None
    dealer: str = "dealer"
    triples: str = "dealer"
    key_bits: int = 2048
    compute_parties: tuple[str, ...] | None = None
    learning_rate: float = 0.1
    epochs: int = 10
    batch_size: int = 64
    alpha: float = 0.0
    fit_intercept: bool = True
    decay: float = 0.0
    tol: float | None = None
    sigmoid: str = DEFAULT_SIGMOID
    output: str = "reveal"
    frac_bits: int = fixedpoint.DEFAULT_FRAC_BITS
    seed: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        holders = check_party_ids(self.holders, "holders")
        if len(holders) < 2:
            raise ValueError(f"holders must name at least two data holders, got {list(holders)}")
        object.__setattr__(self, "holders", holders)
        if self.partition not in PARTITIONS:
            raise ValueError(f"partition must be one of {PARTITIONS}, got {self.partition!r}")
        if self.partition == "vertical":
            label = holders[0] if self.label_holder is None else self.label_holder
            if label not in holders:
                raise ValueError(f"label_holder {label!r} is not among the holders {list(holders)}")
            object.__setattr__(self, "label_holder", label)
        elif self.label_holder is not None:
            raise ValueError("label_holder applies to vertical partitions only (every horizontal holder has labels)")
        if self.compute_parties is not None:
            players = check_party_ids(self.compute_parties, "compute_parties")
            if len(players) < 2:
                raise ValueError(f"compute_parties must name at least two parties, got {list(players)}")
            object.__setattr__(self, "compute_parties", players)
        if self.triples not in TRIPLES:
            raise ValueError(f"triples must be one of {TRIPLES}, got {self.triples!r}")
        if self.triples == "paillier" and len(self.players) != 2:
            raise ValueError(f'triples="paillier" needs exactly two compute parties, got {list(self.players)}')
        check_int("key_bits", self.key_bits, 1024)
        if self.dealer in self.players or self.dealer in holders:
            raise ValueError(f"the dealer {self.dealer!r} cannot also hold data or compute")
        check_number("learning_rate", self.learning_rate)
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 1)
        check_number("alpha", self.alpha, positive=False)
        check_number("decay", self.decay, positive=False)
        if self.tol is not None:
            check_number("tol", self.tol)
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise TypeError(f"fit_intercept must be a bool, got {self.fit_intercept!r}")
        if self.loss == "logistic" and self.sigmoid not in sigmoid_methods():
            raise ValueError(f"sigmoid must be one of {sigmoid_methods()}, got {self.sigmoid!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.output == "own" and self.partition != "vertical":
            raise ValueError('output="own" needs a vertical partition (horizontal holders share every weight)')
        fixedpoint.check_frac_bits(self.frac_bits)
        if self.seed is not None and (not isinstance(self.seed, bytes) or len(self.seed) != SEED_BYTES):
            raise ValueError(f"seed must be {SEED_BYTES} bytes or None")

    @property
    def players(self) -> tuple[str, ...]:
        """The compute parties: ``compute_parties`` if given, else the holders."""
        return self.compute_parties if self.compute_parties is not None else self.holders

    def triple_source(self, party: Party) -> TripleSource:
        """A compute party's Beaver triples: from the dealer, or made by the two players with Paillier."""
        if self.triples == "paillier":
            return PaillierTriples(party, self.players, key_bits=self.key_bits)
        return DealerTriples(party, self.players, self.dealer)

    def has_labels(self, holder: str) -> bool:
        return self.partition == "horizontal" or holder == self.label_holder

    def step_size(self, epoch: int) -> float:
        return self.learning_rate / (1.0 + self.decay * epoch)


def check_holder_input(config: RegressionConfig, holder: str, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Local checks of one holder's block (and labels when it should have them)."""
    X = check_matrix(X, f"X of holder {holder!r}")
    if not config.has_labels(holder):
        if y is not None:
            raise ValueError(f"holder {holder!r} is not the label holder but was given labels y")
        return X, None
    if y is None:
        raise ValueError(f"holder {holder!r} must provide labels y")
    return X, check_labels(y, X.shape[0], binary=config.loss == "logistic", name=f"y of holder {holder!r}")


def _exchange_shapes(party: Party, config: RegressionConfig, shape: tuple[int, int]) -> None:
    """Holders tell each other their block shapes and check they fit the partition."""
    others = [h for h in config.holders if h != party.id]
    party.send_all(others, [int(shape[0]), int(shape[1])])
    shapes = {party.id: shape}
    for h in others:
        msg = party.recv(h)
        if not (isinstance(msg, list) and len(msg) == 2 and all(isinstance(v, int) and v > 0 for v in msg)):
            raise ValueError(f"holder {h!r} sent a malformed shape")
        shapes[h] = (msg[0], msg[1])
    check_block_shapes(config, shapes)


def check_block_shapes(config: RegressionConfig, shapes: dict[str, tuple[int, ...]]) -> None:
    """Row counts must agree across vertical blocks, column counts across horizontal ones."""
    ordered = [shapes[h] for h in config.holders]
    if config.partition == "vertical" and len({r for r, _ in ordered}) != 1:
        raise ValueError(f"vertical blocks X must have the same number of rows at every holder, got {[r for r, _ in ordered]}")
    if config.partition == "horizontal" and len({c for _, c in ordered}) != 1:
        raise ValueError(f"horizontal blocks X must have the same number of columns at every holder, got {[c for _, c in ordered]}")


# --- moving inputs and outputs between holders and compute parties --------------------------


def _share_to_players(party: Party, encoded: np.ndarray, players: Sequence[str]) -> None:
    """A holder that does not compute splits an encoded array among the players (seeds + one array)."""
    rest = encoded.copy()
    for pid in players[:-1]:
        seed = new_seed()
        party.send(pid, [seed, list(encoded.shape)])
        rest -= Csprng(seed).random_uint64(encoded.shape)
    party.send(players[-1], rest)


def _input(session: Session, value: np.ndarray | None, owner: str, name: str) -> SharedTensor:
    """This player's share of ``owner``'s array, whether or not ``owner`` is a player."""
    if owner in session.players:
        return session.input(value, owner, name=name)
    msg = session.party.recv(owner)
    if session.index == len(session.players) - 1:
        if not (isinstance(msg, np.ndarray) and msg.dtype == np.uint64 and msg.ndim in (1, 2)):
            raise ValueError(f"holder {owner!r} sent a malformed share of {name}")
        return SharedTensor(session, msg)
    if not (isinstance(msg, list) and len(msg) == 2 and isinstance(msg[0], bytes) and isinstance(msg[1], list)
            and len(msg[1]) in (1, 2) and all(isinstance(d, int) and d >= 0 for d in msg[1])):
        raise ValueError(f"holder {owner!r} sent a malformed share seed for {name}")
    return SharedTensor(session, Csprng(msg[0]).random_uint64(tuple(int(d) for d in msg[1])))


def _send_inputs(party: Party, config: RegressionConfig, X: np.ndarray, y: np.ndarray | None) -> None:
    _share_to_players(party, fixedpoint.encode(X, config.frac_bits, name="X"), config.players)
    if y is not None:
        _share_to_players(party, fixedpoint.encode(y, config.frac_bits, name="y"), config.players)


def _receive_opened(party: Party, players: Sequence[str], frac_bits: int) -> np.ndarray:
    """An outsider reconstructs a value from every player's share."""
    total = None
    for pid in players:
        share = party.recv(pid)
        if not (isinstance(share, np.ndarray) and share.dtype == np.uint64):
            raise ValueError(f"compute party {pid!r} sent a malformed output share")
        if total is not None and share.shape != total.shape:
            raise ValueError(f"compute party {pid!r} sent an output share of shape {share.shape}")
        total = share.copy() if total is None else total + share
    return fixedpoint.decode(total, frac_bits)


# --- training at the compute parties --------------------------------------------------------


def _shared_inputs(
    session: Session, config: RegressionConfig, X: Any, y: Any
) -> tuple[SharedTensor, SharedTensor, dict[str, tuple[int, int]]]:
    """The players' shares of the stacked data, and each holder's weight span ``[start, stop)``."""
    me = session.party.id
    blocks, labels = [], []
    for h in config.holders:
        blocks.append(_input(session, X if h == me else None, h, f"X of holder {h!r}"))
        if config.has_labels(h):
            labels.append(_input(session, y if h == me else None, h, f"y of holder {h!r}"))
    check_block_shapes(config, {h: b.shape for h, b in zip(config.holders, blocks)})
    widths = [b.shape[1] if config.partition == "vertical" else 0 for b in blocks]
    stops = np.cumsum(widths)
    spans = {h: (int(stop - width), int(stop)) for h, width, stop in zip(config.holders, widths, stops)}
    xs = SharedTensor.concatenate(blocks, axis=1 if config.partition == "vertical" else 0)
    ys = SharedTensor.concatenate(labels, axis=0)
    if xs.shape[0] != ys.shape[0]:
        raise ValueError(f"labels have {ys.shape[0]} rows but the features have {xs.shape[0]}")
    if config.fit_intercept:
        xs = SharedTensor.concatenate([xs, session.public(np.ones((xs.shape[0], 1)))], axis=1)
    return xs, ys, spans


def _agree_seed(session: Session, config: RegressionConfig) -> bytes:
    if config.seed is not None:
        return config.seed
    if session.is_leader:
        seed = new_seed()
        session.party.send_all(session.others, seed)
        return seed
    seed = session.party.recv(session.players[0])
    if not (isinstance(seed, bytes) and len(seed) == SEED_BYTES):
        raise ValueError(f"player {session.players[0]!r} sent a malformed batch-order seed")
    return seed


def _update(
    session: Session, w: SharedTensor, grad: SharedTensor, keep: np.ndarray, step: float
) -> SharedTensor:
    """``w * keep - step * grad`` with one truncation (public factors carry _SCALE_BITS bits)."""
    k_keep = np.rint(keep * 2.0**_SCALE_BITS).astype(np.int64).view(np.uint64)
    k_step = np.uint64(int(round(step * 2.0**_SCALE_BITS)))
    return SharedTensor(session, session.truncate(w.share * k_keep - grad.share * k_step, _SCALE_BITS))


def train_shared(
    session: Session,
    xs: SharedTensor,
    ys: SharedTensor,
    config: RegressionConfig,
    seed: bytes,
    on_epoch: Callable[[int, bool], None] | None = None,
) -> tuple[SharedTensor, int]:
    """Mini-batch gradient descent on shared ``(xs, ys)``; returns shared weights and epochs run."""
    n, d = xs.shape
    masked = MaskedMatrix(xs)
    keep_mask = np.ones(d)
    if config.fit_intercept:
        keep_mask[-1] = 0.0
    w = session.zeros(d)
    previous = w
    epochs_run = 0
    schedule = batch_schedule(seed, n, config.epochs, config.batch_size)
    if config.loss == "logistic":
        from mpcml.nonlinear import sigmoid
    for epoch in range(config.epochs):
        step = config.step_size(epoch)
        keep = 1.0 - step * config.alpha * keep_mask
        for _ in range(-(-n // config.batch_size)):
            _, rows = next(schedule)
            z = masked.matmul(w, rows)
            pred = sigmoid(z, method=config.sigmoid) if config.loss == "logistic" else z
            grad = masked.t_matmul(pred - ys[rows], rows)
            w = _update(session, w, grad, keep, step / len(rows))
        epochs_run = epoch + 1
        stop = False
        if config.tol is not None:
            delta = w - previous
            stop = bool((delta * delta).sum(keepdims=True).reveal()[0] <= config.tol**2)
            previous = w
        if on_epoch is not None:
            on_epoch(epoch, stop)
        if stop:
            break
    masked.release()
    return w, epochs_run


# --- the roles -------------------------------------------------------------------------------


def _split(weights: np.ndarray, config: RegressionConfig) -> dict[str, Any]:
    if config.fit_intercept:
        return {"coef": weights[:-1], "intercept": float(weights[-1])}
    return {"coef": weights, "intercept": 0.0}


def regression_party(
    party: Party,
    X: Any = None,
    y: Any = None,
    *,
    config: RegressionConfig,
    on_epoch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Role of a data holder and/or compute party in secure training.

    Holders pass their block ``X`` (and ``y`` if they hold labels); compute parties without data
    pass nothing. Returns ``{"coef", "intercept", "weights_share", "n_epochs"}``: the revealed
    weights (``None`` where this party learns none), this player's share of the weights
    (``"shared"`` output, else ``None``) and the number of epochs run.
    ``on_epoch(epoch)`` is a progress callback.
    """
    is_holder = party.id in config.holders
    is_player = party.id in config.players
    if not (is_holder or is_player):
        raise ValueError(f"party {party.id!r} is neither a holder nor a compute party of this run")
    if is_holder:
        X, y = check_holder_input(config, party.id, X, y)
        _exchange_shapes(party, config, X.shape)
    elif X is not None or y is not None:
        raise ValueError(f"compute party {party.id!r} holds no data; X and y must be None")
    result: dict[str, Any] = {"coef": None, "intercept": None, "weights_share": None, "n_epochs": 0}
    if not is_player:
        _send_inputs(party, config, X, y)
        return _await_outcome(party, config, result, on_epoch)

    session = Session(party, config.players, config.triple_source(party), config.frac_bits)
    xs, ys, spans = _shared_inputs(session, config, X, y)
    outsiders = [h for h in config.holders if h not in config.players]

    def epoch_done(epoch: int, stop: bool) -> None:
        if session.is_leader:
            party.send_all(outsiders, [epoch, stop])
        if on_epoch is not None:
            on_epoch(epoch)

    w, result["n_epochs"] = train_shared(session, xs, ys, config, _agree_seed(session, config), epoch_done)
    if session.is_leader:
        party.send_all(outsiders, [-1, True])
    if config.output == "shared":
        result["weights_share"] = w.share
    elif config.output == "reveal":
        result.update(_split(w.reveal(), config))
        for h in outsiders:
            party.send(h, w.share)
    else:
        _deliver_own(session, w, config, spans, result)
    session.close()
    return result


def _await_outcome(
    party: Party, config: RegressionConfig, result: dict[str, Any], on_epoch: Callable[[int], None] | None
) -> dict[str, Any]:
    """A holder outside the compute parties follows progress, then receives its output."""
    leader = config.players[0]
    while True:
        msg = party.recv(leader)
        if not (isinstance(msg, list) and len(msg) == 2 and isinstance(msg[0], int)):
            raise ValueError(f"compute party {leader!r} sent a malformed progress message")
        if msg[0] < 0:
            break
        result["n_epochs"] = msg[0] + 1
        if on_epoch is not None:
            on_epoch(msg[0])
    if config.output == "reveal":
        result.update(_split(_receive_opened(party, config.players, config.frac_bits), config))
    elif config.output == "own":
        _receive_own(party, config, result)
    return result


def _deliver_own(
    session: Session, w: SharedTensor, config: RegressionConfig, spans: dict[str, tuple[int, int]], result: dict
) -> None:
    """Reveal each holder's own weights to it (the intercept to the label holder)."""
    pieces = [(h, slice(*spans[h]), "coef") for h in config.holders]
    if config.fit_intercept:
        pieces.append((config.label_holder, slice(w.shape[0] - 1, w.shape[0]), "intercept"))
    for holder, piece, key in pieces:
        if holder not in session.players:
            session.party.send(holder, w[piece].share)
            continue
        value = w[piece].reveal(to=holder)
        if value is not None:
            result[key] = value if key == "coef" else float(value[0])


def _receive_own(party: Party, config: RegressionConfig, result: dict) -> None:
    result["coef"] = _receive_opened(party, config.players, config.frac_bits)
    if config.fit_intercept and party.id == config.label_holder:
        result["intercept"] = float(_receive_opened(party, config.players, config.frac_bits)[0])


def regression_dealer(party: Party, *, config: RegressionConfig) -> dict[str, int]:
    """Role of the dealer: Beaver triples and truncation pairs for the compute parties; with
    ``triples="paillier"`` the players make their own, and a dealer that was started anyway ends at once."""
    if config.triples != "dealer":
        return {}
    return run_dealer(party, config.players)


def _dealer_roles(config: RegressionConfig) -> dict[str, Callable[..., Any]]:
    """The dealer's role for :func:`run_parties`, if the configuration uses one."""
    return {config.dealer: partial(regression_dealer, config=config)} if config.triples == "dealer" else {}


# --- secure prediction on shared weights --------------------------------------------------------


def prediction_party(
    party: Party,
    X: Any = None,
    weights_share: np.ndarray | None = None,
    *,
    config: RegressionConfig,
    querier: str | None = None,
) -> np.ndarray | None:
    """Role in secure prediction with weights left shared by ``output="shared"`` training.

    Vertical: every holder passes its columns of the same query rows; horizontal: only
    ``querier`` (default: the first holder) passes full rows. Compute parties pass their
    ``weights_share``. The scores ``X @ w + b`` are revealed to the querier (vertical default:
    the label holder), who returns them (probabilities follow with the logistic function);
    everyone else returns ``None`` and learns only the number of query rows.
    """
    querier = querier or (config.label_holder if config.partition == "vertical" else config.holders[0])
    if querier not in config.holders:
        raise ValueError(f"querier {querier!r} is not among the holders {list(config.holders)}")
    suppliers = config.holders if config.partition == "vertical" else (querier,)
    if party.id in suppliers:
        X = check_matrix(X, f"X of holder {party.id!r}")
    elif X is not None:
        raise ValueError(f"party {party.id!r} supplies no query rows; X must be None")
    if party.id not in config.players:
        if party.id in suppliers:
            _share_to_players(party, fixedpoint.encode(X, config.frac_bits, name="X"), config.players)
        return _receive_opened(party, config.players, config.frac_bits) if party.id == querier else None
    weights_share = np.asarray(weights_share, dtype=np.uint64) if weights_share is not None else None
    if weights_share is None or weights_share.ndim != 1:
        raise ValueError(f"compute party {party.id!r} needs its 1-D weights_share")
    session = Session(party, config.players, config.triple_source(party), config.frac_bits)
    blocks = [_input(session, X if h == party.id else None, h, f"X of holder {h!r}") for h in suppliers]
    xs = SharedTensor.concatenate(blocks, axis=1)
    w = SharedTensor(session, weights_share)
    width = w.shape[0] - int(config.fit_intercept)
    if xs.shape[1] != width:
        raise ValueError(f"the query has {xs.shape[1]} features but the model has {width}")
    scores = xs @ w[:width]
    if config.fit_intercept:
        scores = scores + w[width:]
    if querier in session.players:
        result = scores.reveal(to=querier)
    else:
        party.send(querier, scores.share)
        result = None
    session.close()
    return result


# --- the plaintext reference -----------------------------------------------------------------------


def logistic(z: np.ndarray) -> np.ndarray:
    """The exact logistic function, computed stably."""
    return np.exp(-np.logaddexp(0.0, -z))


def plaintext_sgd(
    X: np.ndarray,
    y: np.ndarray,
    config: RegressionConfig,
    seed: bytes,
    activation: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, float]:
    """The same mini-batch algorithm in float64 numpy (exact sigmoid unless ``activation`` is given).

    ``X`` is the stacked feature matrix (vertical blocks side by side, horizontal blocks on top
    of each other in holder order). Returns ``(coef, intercept)``; no early stopping.
    """
    n = X.shape[0]
    if config.fit_intercept:
        X = np.hstack([X, np.ones((n, 1))])
    keep_mask = np.ones(X.shape[1])
    if config.fit_intercept:
        keep_mask[-1] = 0.0
    g = (activation or logistic) if config.loss == "logistic" else (lambda z: z)
    w = np.zeros(X.shape[1])
    for epoch, rows in batch_schedule(seed, n, config.epochs, config.batch_size):
        step = config.step_size(epoch)
        xb = X[rows]
        w = w * (1.0 - step * config.alpha * keep_mask) - (step / len(rows)) * (xb.T @ (g(xb @ w) - y[rows]))
    return (w[:-1], float(w[-1])) if config.fit_intercept else (w, 0.0)


# --- scikit-learn style estimators ----------------------------------------------------------------


class _SecureRegression(BaseEstimator):
    """Shared machinery of :class:`SecureLinearRegression` and :class:`SecureLogisticRegression`.

    ``fit(X, y)`` runs every party in this process (one thread each, :func:`mpcml.run_local`):
    vertically ``X`` is a list of per-holder column blocks of the same rows and ``y`` the labels
    (held by holder ``label_party``); with ``partition="horizontal"`` ``X`` is a list of
    ``(X_i, y_i)`` pairs, one per holder, and ``y`` is ``None``. Holders are named
    ``holder-0, holder-1, ...``; with ``n_servers > 0`` the computation runs on ``server-0, ...``
    instead of the holders. After ``fit``: ``coef_``, ``intercept_``, ``n_iter_`` (epochs) and
    ``communication_`` (:class:`~protocols.common.CommunicationReport`).
    """

    _loss = "squared"

    def _config(self, n_holders: int) -> RegressionConfig:
        holders = tuple(f"holder-{i}" for i in range(n_holders))
        label = self._label_index(n_holders)
        if not isinstance(self.n_servers, (int, np.integer)) or self.n_servers == 1 or self.n_servers < 0:
            raise ValueError(f"n_servers must be 0 (the holders compute) or at least 2, got {self.n_servers!r}")
        return RegressionConfig(
            loss=self._loss,
            holders=holders,
            partition=self.partition,
            label_holder=holders[label] if self.partition == "vertical" else None,
            compute_parties=tuple(f"server-{i}" for i in range(self.n_servers)) or None,
            learning_rate=self.learning_rate,
            epochs=self.epochs,
            batch_size=self.batch_size,
            alpha=self.alpha,
            fit_intercept=self.fit_intercept,
            decay=self.decay,
            tol=self.tol,
            sigmoid=getattr(self, "sigmoid", DEFAULT_SIGMOID),
            output=self.output,
            frac_bits=self.frac_bits,
            triples=self.triples,
            key_bits=self.key_bits,
            seed=seed_from_random_state(self.random_state),
        )

    def _label_index(self, n_holders: int) -> int:
        if not isinstance(self.label_party, (int, np.integer)) or not 0 <= self.label_party < n_holders:
            raise ValueError(f"label_party must be an index in [0, {n_holders}), got {self.label_party!r}")
        return int(self.label_party)

    def _blocks(self, X: Any, y: Any) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        if self.partition not in PARTITIONS:
            raise ValueError(f"partition must be one of {PARTITIONS}, got {self.partition!r}")
        if self.partition == "vertical":
            blocks = check_vertical_parts(X, "X")
            labels: list[np.ndarray | None] = [None] * len(blocks)
            labels[self._label_index(len(blocks))] = check_labels(y, blocks[0].shape[0], binary=self._loss == "logistic")
            return blocks, labels
        if y is not None:
            raise ValueError('with partition="horizontal" pass X as a list of (X_i, y_i) pairs and y=None')
        blocks, labels = check_horizontal_pairs(X, "X", binary=self._loss == "logistic")
        return blocks, list(labels)

    def fit(self, X: Any, y: Any = None) -> "_SecureRegression":
        blocks, labels = self._blocks(X, y)
        config = self._config(len(blocks))
        roles: dict[str, Callable[..., Any]] = {}
        inputs: dict[str, tuple] = {}
        for h, block, label in zip(config.holders, blocks, labels):
            roles[h] = partial(regression_party, config=config)
            inputs[h] = (block, label)
        for s in config.compute_parties or ():
            roles[s] = partial(regression_party, config=config)
        roles.update(_dealer_roles(config))
        out = run_parties(roles, inputs, self.timeout)
        self.config_ = config
        self.n_features_in_ = sum(b.shape[1] for b in blocks) if config.partition == "vertical" else blocks[0].shape[1]
        self.n_iter_ = out[config.players[0]]["n_epochs"]
        self.communication_ = CommunicationReport.from_stats(out.stats)
        if config.output == "shared":
            self.weight_shares_ = {p: out[p]["weights_share"] for p in config.players}
            self.widths_ = [b.shape[1] for b in blocks]
        elif config.output == "reveal":
            self.coef_, self.intercept_ = out[config.holders[0]]["coef"], out[config.holders[0]]["intercept"]
        else:
            self.coef_ = np.concatenate([out[h]["coef"] for h in config.holders])
            self.intercept_ = out[config.label_holder]["intercept"] if config.fit_intercept else 0.0
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Scores ``X @ coef_ + intercept_``; ``X`` a full matrix or a list of per-holder blocks.

        With ``output="shared"`` the scores are computed by secure prediction
        (:func:`prediction_party`) and only the querier learns them.
        """
        check_is_fitted(self, "config_")
        if self.config_.output == "shared":
            return self._secure_scores(X)
        if isinstance(X, (list, tuple)):
            X = np.hstack(check_vertical_parts(X, "X")) if self.config_.partition == "vertical" else np.vstack(X)
        X = check_matrix(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the model was fitted on {self.n_features_in_}")
        return X @ self.coef_ + self.intercept_

    def _secure_scores(self, X: Any) -> np.ndarray:
        config = self.config_
        if config.partition == "vertical":
            if not isinstance(X, (list, tuple)):
                X = np.split(check_matrix(X, "X"), np.cumsum(self.widths_)[:-1], axis=1)
            blocks = check_vertical_parts(X, "X")
            querier = config.label_holder
            inputs = {h: {"X": b} for h, b in zip(config.holders, blocks)}
        else:
            querier = config.holders[0]
            inputs = {querier: {"X": check_matrix(np.vstack(X) if isinstance(X, (list, tuple)) else X, "X")}}
        for p in config.players:
            inputs.setdefault(p, {})["weights_share"] = self.weight_shares_[p]
        roles = {p: partial(prediction_party, config=config, querier=querier) for p in (*config.holders, *config.players)}
        roles.update(_dealer_roles(config))
        return run_parties(roles, inputs, self.timeout)[querier]


def _init_params(self: Any, learning_rate: float, epochs: int, batch_size: int, alpha: float, fit_intercept: bool,
                 decay: float, tol: float | None, partition: str, label_party: int, output: str, n_servers: int,
                 frac_bits: int, random_state: int | None, timeout: float, triples: str, key_bits: int) -> None:
    self.learning_rate, self.epochs, self.batch_size, self.alpha = learning_rate, epochs, batch_size, alpha
    self.fit_intercept, self.decay, self.tol, self.partition = fit_intercept, decay, tol, partition
    self.label_party, self.output, self.n_servers, self.frac_bits = label_party, output, n_servers, frac_bits
    self.random_state, self.timeout, self.triples, self.key_bits = random_state, timeout, triples, key_bits


class SecureLinearRegression(RegressorMixin, _SecureRegression):
    """Secure linear regression (squared loss) by mini-batch gradient descent; see :mod:`protocols.regression`."""

    _loss = "squared"

    def __init__(self, *, learning_rate: float = 0.1, epochs: int = 20, batch_size: int = 64, alpha: float = 0.0,
                 fit_intercept: bool = True, decay: float = 0.0, tol: float | None = None,
                 partition: str = "vertical", label_party: int = 0, output: str = "reveal", n_servers: int = 0,
                 frac_bits: int = fixedpoint.DEFAULT_FRAC_BITS, random_state: int | None = None,
                 timeout: float = DEFAULT_TIMEOUT, triples: str = "dealer", key_bits: int = 2048) -> None:
        _init_params(self, learning_rate, epochs, batch_size, alpha, fit_intercept, decay, tol, partition,
                     label_party, output, n_servers, frac_bits, random_state, timeout, triples, key_bits)

    def predict(self, X: Any) -> np.ndarray:
        return self.decision_function(X)


class SecureLogisticRegression(ClassifierMixin, _SecureRegression):
    """Secure logistic regression with a sigmoid approximation (``sigmoid``); see :mod:`protocols.regression`.

    ``predict_proba`` applies the exact logistic function to the learned scores.
    """

    _loss = "logistic"

    def __init__(self, *, learning_rate: float = 0.1, epochs: int = 10, batch_size: int = 32, alpha: float = 0.0,
                 fit_intercept: bool = True, decay: float = 0.0, tol: float | None = None,
                 partition: str = "vertical", label_party: int = 0, output: str = "reveal", n_servers: int = 0,
                 sigmoid: str = DEFAULT_SIGMOID, frac_bits: int = fixedpoint.DEFAULT_FRAC_BITS,
                 random_state: int | None = None, timeout: float = DEFAULT_TIMEOUT, triples: str = "dealer",
                 key_bits: int = 2048) -> None:
        _init_params(self, learning_rate, epochs, batch_size, alpha, fit_intercept, decay, tol, partition,
                     label_party, output, n_servers, frac_bits, random_state, timeout, triples, key_bits)
        self.sigmoid = sigmoid

    def fit(self, X: Any, y: Any = None) -> "SecureLogisticRegression":
        super().fit(X, y)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        p = logistic(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(np.int64)
