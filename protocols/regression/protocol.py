"""The roles of secure regression: data holders, compute parties, the dealer, and secure prediction.

:func:`roles` is the one entry point the estimators, the party app and the tests use. The steps
(numbered as in the code):

Set-up, every party:
  1. Each holder checks its block locally and announces its public facts to every other party:
     rows, columns, ``ceil(log2 max|x|)``, for the labels ``ceil(log2 max|y|)`` (squared loss)
     and the number of outputs ``K`` (one-vs-rest classes).
  2. Every party checks the facts against the partition and runs the range analysis
     (:func:`protocols.regression.config.plan`), which refuses the run or fixes the scales.
Training, at the compute parties (the holders by default):
  3. Holders secret-share their blocks (and targets, divided by ``2^y_shift``) with the players.
  4. The players agree on the public batch-order seed (the leader's CSPRNG) and open the masked
     matrix ``X - A`` once.
  5. Per mini-batch: ``z = X_B w`` (one opening), ``p = sigmoid(z)`` (or ``z``), ``e = p - y_B``,
     ``g = X_B^T e`` (one opening), ``w <- w (1 - eta alpha) - (eta / B) g`` (one truncation).
  6. Per epoch, the guard: one secure comparison of every weight with the analysed bound; the
     count of weights outside it is opened (with ``||dw||^2`` when ``tol`` is set), and a
     non-zero count stops every party with ``OverflowError`` naming the epoch.
  7. Output: weights revealed to every holder, each holder its own, or left shared.
With differential privacy (``dp_epsilon``/``dp_noise_multiplier``), steps 4-6 are DP-SGD instead
(:func:`protocols.regression.privacy.train_private`: the agreed seed keys the Poisson batches; the
clipping bounds once; per step the clipped sum, every party's shared noise and the update; no guard:
the range analysis of step 2 bounds every intermediate from the public options). PEA's aids
(horizontal only): with ``dp_projection`` each holder multiplies its block by the public projection
before step 3 and step 7 maps the revealed weights back (``coef = P w``); with ``dp_local_epochs`` each
holder trains its local DP model before step 3 and shares ``(n_h / n) w_h`` after its data, and the
players start from the sum (:mod:`protocols.regression.privacy`).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from mpcml import fixedpoint
from mpcml.csprng import SEED_BYTES, new_seed
from mpcml.masked import MaskedMatrix
from mpcml.nonlinear import sigmoid
from mpcml.party import Party
from mpcml.schema import Bool, Bytes, Int, Nothing, OneOf, Record, Tuple
from mpcml.tensor import SharedTensor
from mpcml.session import Session, receive_revealed, send_input
from mpcml.triples import run_dealer

from ..common import check_matrix, check_targets, magnitude_bits
from ..progress import Progress
from .config import STEP_BITS, RegressionConfig, Scales, batch_schedule, guard_error, plan
from ..dp_sgd import DPPlan
from .privacy import check_holder_block, dp_plan, dp_scales, local_init, projection, train_private

FACTS = Record(rows=Int(low=1), cols=Int(low=1), x_bits=Int(-64, 2048), y_bits=OneOf(Nothing(), Int(-64, 2048)),
               outputs=Int(1, 10_000))
PROGRESS = Tuple(Int(low=-1), Bool())


# --- 1.-2. set-up: local checks, public facts, range analysis -----------------------------------------


def holder_input(config: RegressionConfig, holder: str, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """One holder's block and targets, checked locally (no message): ``y`` as an ``(n, K)`` matrix."""
    X = check_matrix(X, f"X of holder {holder!r}")
    if config.dp:
        check_holder_block(config, X, holder)
    if not config.has_labels(holder):
        if y is not None:
            raise ValueError(f"holder {holder!r} is not the label holder but was given labels y")
        return X, None
    if y is None:
        raise ValueError(f"holder {holder!r} must provide labels y")
    return X, check_targets(y, X.shape[0], binary=config.loss == "logistic", name=f"y of holder {holder!r}",
                            both_classes=config.partition == "vertical")


def holder_facts(config: RegressionConfig, X: np.ndarray, y: np.ndarray | None) -> dict[str, Any]:
    """The public facts a holder announces (step 1): what they reveal is in the module docstring (with DP
    ``x_bits`` is that of the public ``dp_feature_bound``, not of the data)."""
    x_bits = magnitude_bits(config.dp_feature_bound if config.dp else X)
    return {"rows": int(X.shape[0]), "cols": int(X.shape[1]), "x_bits": x_bits,
            "y_bits": magnitude_bits(y) if y is not None and config.loss == "squared" else None,
            "outputs": int(y.shape[1]) if y is not None else 1}


def scales_from_facts(config: RegressionConfig, facts: Mapping[str, Mapping[str, Any]]) -> tuple[Scales, int, int]:
    """Step 2: ``(scales, n_rows, n_outputs)`` from every holder's facts; ``ValueError`` naming the mismatch."""
    ordered = [facts[h] for h in config.holders]
    rows, cols = [f["rows"] for f in ordered], [f["cols"] for f in ordered]
    if config.partition == "vertical" and len(set(rows)) != 1:
        raise ValueError(f"vertical blocks X must have the same number of rows at every holder, got {rows}")
    if config.partition == "horizontal" and len(set(cols)) != 1:
        raise ValueError(f"horizontal blocks X must have the same number of columns at every holder, got {cols}")
    labelled = [f for h, f in zip(config.holders, ordered) if config.has_labels(h)]
    outputs = {f["outputs"] for f in labelled}
    if len(outputs) != 1:
        raise ValueError(f"the holders' labels have different numbers of outputs {sorted(outputs)}")
    n_rows = rows[0] if config.partition == "vertical" else sum(rows)
    n_features = sum(cols) if config.partition == "vertical" else cols[0]
    y_bits = max((f["y_bits"] for f in labelled if f["y_bits"] is not None), default=None)
    if config.dp:
        local_rows = tuple(rows) if config.partition == "horizontal" else ()
        return dp_scales(config, n_rows, n_features, y_bits, outputs.pop(), local_rows), n_rows, 1
    scales = plan(config, n_rows, n_features, max(f["x_bits"] for f in ordered), y_bits)
    return scales, n_rows, outputs.pop()


def plan_from_facts(config: RegressionConfig, facts: Mapping[str, Mapping[str, Any]]) -> DPPlan:
    """The DP plan of a run from the holders' facts (after :func:`scales_from_facts` accepted them)."""
    ordered = [facts[h] for h in config.holders]
    rows = tuple(f["rows"] for f in ordered)
    if config.partition == "vertical":
        return dp_plan(config, rows[0], sum(f["cols"] for f in ordered))
    return dp_plan(config, sum(rows), ordered[0]["cols"], rows)


def _agree_facts(party: Party, config: RegressionConfig, mine: dict | None) -> dict[str, dict]:
    """Holders send their facts to every other party and every party gathers the holders' facts."""
    if mine is not None:
        party.send_all([p for p in dict.fromkeys((*config.holders, *config.players)) if p != party.id], mine)
    others = [h for h in config.holders if h != party.id]
    facts = party.gather(others, expect=FACTS, what="set-up facts")
    return {**facts, **({party.id: mine} if mine is not None else {})}


# --- 3. inputs and outputs between holders and compute parties --------------------------------------


def _input(session: Session, value: np.ndarray | None, owner: str, name: str) -> SharedTensor:
    """This player's share of ``owner``'s array, whether or not ``owner`` is a player (an outsider runs
    :func:`mpcml.session.send_input`)."""
    if owner in session.players:
        return session.input(value, owner, name=name)
    return session.input_external(owner, name=name)


def _shared_inputs(session: Session, config: RegressionConfig, X: Any, y: Any, init: np.ndarray | None
                   ) -> tuple[SharedTensor, SharedTensor, SharedTensor | None]:
    """The players' shares of the stacked data (intercept column appended) and targets, and with
    ``dp_local_epochs`` the sum of the holders' weighted local models (``init``: this holder's)."""
    me = session.party.id
    blocks, labels = [], []
    for h in config.holders:
        blocks.append(_input(session, X if h == me else None, h, f"X of holder {h!r}"))
        if config.has_labels(h):
            labels.append(_input(session, y if h == me else None, h, f"y of holder {h!r}"))
    xs = SharedTensor.concatenate(blocks, axis=1 if config.partition == "vertical" else 0)
    ys = SharedTensor.concatenate(labels, axis=0)
    if config.fit_intercept:
        xs = SharedTensor.concatenate([xs, session.public(np.ones((xs.shape[0], 1)))], axis=1)
    start = None
    if config.dp and config.dp_local_epochs:
        for h in config.holders:
            share = _input(session, init if h == me else None, h, f"local model of holder {h!r}")
            start = share if start is None else start + share
    return xs, ys, start


def _agree_seed(session: Session, config: RegressionConfig) -> bytes:
    if config.seed is not None:
        return config.seed
    if session.is_leader:
        seed = new_seed()
        session.party.send_all(session.others, seed)
        return seed
    return session.party.recv(session.players[0], expect=Bytes(SEED_BYTES), what="batch-order seed")


# --- 4.-6. training at the compute parties ---------------------------------------------------------


def step_factors(config: RegressionConfig, epoch: int, batch_rows: int, n_weights: int) -> tuple[np.ndarray, int]:
    """The public factors ``(1 - eta alpha)`` per weight (1 for the intercept) and ``eta / B``, as
    integers with :data:`STEP_BITS` fractional bits: the plaintext replay uses the same ones."""
    step = config.step_size(epoch)
    keep = np.full(n_weights, 1.0 - step * config.alpha)
    if config.fit_intercept:
        keep[-1] = 1.0
    return np.rint(keep * 2.0**STEP_BITS).astype(np.int64), int(round(step / batch_rows * 2.0**STEP_BITS))


def _step(masked: MaskedMatrix, w: SharedTensor, ys: SharedTensor, rows: np.ndarray, config: RegressionConfig,
          k_keep: np.ndarray, k_step: int) -> SharedTensor:
    """Step 5 on one batch: the products stay at ``2 frac_bits`` until a truncation they need anyway."""
    f = w.session.frac_bits
    z = masked.matmul(w, rows, truncate=False)
    p = sigmoid(z, config.sigmoid, extra_bits=f) if config.loss == "logistic" else z.truncate()
    grad = masked.t_matmul(p - ys[rows], rows, truncate=False)
    # w * keep - step * (grad >> f), both truncations in the rounds of one; the factors carry STEP_BITS bits
    return grad.truncate_update(w * k_keep[:, None], k_step, STEP_BITS)


def _epoch_check(w: SharedTensor, previous: SharedTensor, config: RegressionConfig,
                 scales: Scales) -> tuple[int, float | None]:
    """Step 6: ``(weights outside the bound, ||dw||^2 or None)``, opened in one round after the comparison."""
    bound = scales.weight_bound
    outside = SharedTensor.stack([w + bound, (-w) + bound]).ltz_bits()
    opened = [(outside.sum() * (1 << w.session.frac_bits)).reshape(1)]
    if config.tol is not None:
        delta = w - previous
        opened.append((delta * delta).sum(keepdims=True).reshape(1))
    values = SharedTensor.concatenate(opened).reveal()
    return int(round(values[0])), (float(values[1]) if config.tol is not None else None)


def _plan(seed: bytes, n: int, config: RegressionConfig) -> Iterator[tuple[tuple, np.ndarray | None, int]]:
    """The steps of training, ``(key, rows, epoch)``: every mini-batch, then the epoch's guard (the
    dealer's randomness for each is prefetched a step ahead: :meth:`mpcml.session.Session.prefetched`)."""
    schedule = batch_schedule(seed, n, config.epochs, config.batch_size)
    for epoch in range(config.epochs):
        for _ in range(-(-n // config.batch_size)):
            _, rows = next(schedule)
            yield ("batch", len(rows)), rows, epoch
        yield ("guard",), None, epoch


def train_shared(session: Session, xs: SharedTensor, ys: SharedTensor, config: RegressionConfig, scales: Scales,
                 seed: bytes, on_epoch: Callable[[int, bool, float | None], None] | None = None
                 ) -> tuple[SharedTensor, int]:
    """Steps 4-6: mini-batch gradient descent on shared ``(xs, ys)``; shared ``(d, K)`` weights and epochs run."""
    n, d = xs.shape
    # 4. the masked matrix X - A, opened once
    masked = MaskedMatrix(xs)
    w = session.zeros((d, ys.shape[1]))
    previous = w
    epochs_run = 0
    steps = session.prefetched(_plan(seed, n, config))
    for key, rows, epoch in steps:
        if key[0] == "batch":
            # 5. one mini-batch step
            w = _step(masked, w, ys, rows, config, *step_factors(config, epoch, len(rows), d))
            continue
        epochs_run = epoch + 1
        # 6. the guard (and the early-stopping norm)
        outside, change = _epoch_check(w, previous, config, scales)
        if outside:
            raise guard_error(epoch, scales, config)
        stop = change is not None and change <= config.tol**2
        previous = w
        if on_epoch is not None:
            on_epoch(epoch, stop, change)
        if stop:
            break
    steps.close()
    masked.release()
    return w, epochs_run


# --- the roles ---------------------------------------------------------------------------------


def _weights_out(weights: np.ndarray, config: RegressionConfig, scales: Scales, P: np.ndarray | None
                 ) -> dict[str, Any]:
    """Revealed ``(d, K)`` weights in the targets' units: ``coef`` ``(K, features)`` and ``intercept`` ``(K,)``
    (with ``dp_projection`` mapped back to the raw features, ``P w``)."""
    weights = weights * 2.0**scales.y_shift
    if P is not None:
        weights = np.concatenate([P @ weights[:P.shape[1]], weights[P.shape[1]:]])
    if config.fit_intercept:
        return {"coef": weights[:-1].T, "intercept": weights[-1]}
    return {"coef": weights.T, "intercept": np.zeros(weights.shape[1])}


def regression_party(party: Party, X: Any = None, y: Any = None, *, config: RegressionConfig,
                     progress: Progress | None = None) -> dict[str, Any]:
    """Role of a data holder and/or compute party in secure training (steps 1-7 of the module docstring).

    Holders pass their block ``X`` (and ``y`` if they hold labels: a vector, or an ``(n, K)``
    0/1 matrix for one-vs-rest); compute parties without data pass nothing. Returns
    ``{"coef", "intercept", "weights_share", "n_epochs", "y_shift", "seed"}``: the revealed
    weights (``coef`` ``(K, features)``, ``intercept`` ``(K,)``; ``None`` where this party learns
    none), this player's share of the ``(d, K)`` weights (``"shared"`` output), the epochs run, the
    public target scale and the batch-order seed (public to the players). ``progress`` is called
    after every epoch with the seconds elapsed (and the weight change when ``tol`` is set).
    """
    is_holder, is_player = party.id in config.holders, party.id in config.players
    if not (is_holder or is_player):
        raise ValueError(f"party {party.id!r} is neither a holder nor a compute party of this run")
    mine = None
    if is_holder:
        X, y = holder_input(config, party.id, X, y)
        mine = holder_facts(config, X, y)
    elif X is not None or y is not None:
        raise ValueError(f"compute party {party.id!r} holds no data; X and y must be None")
    # 1.-2. public facts and the range analysis
    facts = _agree_facts(party, config, mine)
    scales, _, _ = scales_from_facts(config, facts)
    result: dict[str, Any] = {"coef": None, "intercept": None, "weights_share": None, "n_epochs": 0,
                              "y_shift": scales.y_shift, "seed": None}
    if y is not None:
        y = y * 2.0**-scales.y_shift
    dp = plan_from_facts(config, facts) if config.dp else None
    P = projection(config, facts[config.holders[0]]["cols"]) if config.dp else None
    init = None
    if is_holder and P is not None:
        X = X @ P
    if is_holder and dp is not None and config.dp_local_epochs:
        init = local_init(config, dp, X, y, party.id)
    if not is_player:
        # 3. a holder outside the compute parties shares its data, then follows progress
        for name, value in (("X", X), ("y", y), ("local model", init)):
            if value is not None:
                send_input(party, config.players, fixedpoint.encode(value, config.frac_bits, name=name))
        return _await_outcome(party, config, scales, result, progress, P)

    session = config.session(party)
    # 3. shares of every block
    xs, ys, start = _shared_inputs(session, config, X, y, init)
    outsiders = [h for h in config.holders if h not in config.players]

    def epoch_done(epoch: int, stop: bool, change: float | None) -> None:
        if session.is_leader:
            party.send_all(outsiders, [epoch, stop])
        if progress is not None:
            progress(epoch, **({"weight_change": change ** 0.5} if change is not None else {}))

    result["seed"] = _agree_seed(session, config)
    try:
        if config.dp:
            # 4.-6. with DP: DP-SGD on Poisson batches (protocols.regression.privacy)
            w = train_private(session, xs, ys, config, dp, result["seed"], lambda epoch: epoch_done(epoch, False, None),
                              start)
            result["n_epochs"] = config.epochs
        else:
            w, result["n_epochs"] = train_shared(session, xs, ys, config, scales, result["seed"], epoch_done)
    except OverflowError:
        if session.is_leader:
            party.send_all(outsiders, [-1, False])
        session.close()
        raise
    if session.is_leader:
        party.send_all(outsiders, [-1, True])
    # 7. output
    if config.output == "shared":
        result["weights_share"] = w.share
    elif config.output == "reveal":
        result.update(_weights_out(w.reveal(), config, scales, P))
        for h in outsiders:
            w.reveal_outside(h)
    else:
        _deliver_own(session, w, config, result, scales, {h: facts[h]["cols"] for h in config.holders})
    session.close()
    return result


def _await_outcome(party: Party, config: RegressionConfig, scales: Scales, result: dict[str, Any],
                   progress: Progress | None, P: np.ndarray | None) -> dict[str, Any]:
    """A holder outside the compute parties follows progress, then receives its output."""
    leader = config.players[0]
    while True:
        epoch, finished = party.recv(leader, expect=PROGRESS, what="progress message")
        if epoch < 0:
            if not finished:
                raise OverflowError(f"the compute parties stopped: the run-time guard of {leader!r} found a weight "
                                    f"out of range (see its error)")
            break
        result["n_epochs"] = epoch + 1
        if progress is not None:
            progress(epoch)
    if config.output == "reveal":
        result.update(_weights_out(receive_revealed(party, config.players, config.frac_bits), config, scales, P))
    elif config.output == "own":
        _receive_own(party, config, result, scales)
    return result


def _own_pieces(config: RegressionConfig, widths: Mapping[str, int], d: int) -> list[tuple[str, slice, str]]:
    """``(holder, weight rows, key)``: each holder's columns, and the intercept for the label holder."""
    stops = np.cumsum([widths[h] for h in config.holders])
    pieces = [(h, slice(int(stop - widths[h]), int(stop)), "coef") for h, stop in zip(config.holders, stops)]
    if config.fit_intercept:
        pieces.append((config.label_holder, slice(d - 1, d), "intercept"))
    return pieces


def _deliver_own(session: Session, w: SharedTensor, config: RegressionConfig, result: dict, scales: Scales,
                 widths: Mapping[str, int]) -> None:
    """Reveal each holder's own weights to it (the intercept to the label holder)."""
    for holder, piece, key in _own_pieces(config, widths, w.shape[0]):
        if holder not in session.players:
            w[piece].reveal_outside(holder)
            continue
        value = w[piece].reveal(to=holder)
        if value is not None:
            value = value * 2.0**scales.y_shift
            result[key] = value.T if key == "coef" else value[0]


def _receive_own(party: Party, config: RegressionConfig, result: dict, scales: Scales) -> None:
    result["coef"] = receive_revealed(party, config.players, config.frac_bits).T * 2.0**scales.y_shift
    if config.fit_intercept and party.id == config.label_holder:
        result["intercept"] = receive_revealed(party, config.players, config.frac_bits)[0] * 2.0**scales.y_shift


def regression_dealer(party: Party, *, config: RegressionConfig) -> dict[str, int]:
    """Role of the dealer: Beaver triples, truncation pairs and comparison material for the players."""
    return run_dealer(party, config.players)


def roles(config: RegressionConfig, data: Mapping[str, tuple[Any, Any]], *, progress: Progress | None = None
          ) -> tuple[dict[str, Callable[..., Any]], dict[str, dict[str, Any]]]:
    """Every party's role and inputs for one training run: the same for the estimators, the app and the tests.

    ``data`` maps a holder to its ``(X, y)`` (``y`` ``None`` for a vertical holder without labels);
    holders missing from ``data`` (other processes) get no inputs here. ``progress`` goes to the
    party that reports (the leading compute party).
    """
    party_roles: dict[str, Callable[..., Any]] = {}
    inputs: dict[str, dict[str, Any]] = {}
    for pid in dict.fromkeys((*config.holders, *config.players)):
        party_roles[pid] = partial(regression_party, config=config)
        inputs[pid] = {"progress": progress} if pid == config.players[0] else {}
        if pid in data:
            inputs[pid].update(X=data[pid][0], y=data[pid][1])
    if config.uses_dealer:
        party_roles[config.dealer] = partial(regression_dealer, config=config)
        inputs[config.dealer] = {}
    return party_roles, inputs
