"""Dropout-resilient coded training against its plaintext replay, the range analysis, privacy and the estimators.

Tolerances. The protocol computes the exact integer gradient of the quantised model (Lagrange
decoding and the Chinese remainder lift are exact while every decoded integer stays below half the
field, which the range analysis guarantees) and the server's step is the same floating-point
expression as the replay's, so the secure weights equal :func:`plaintext_training`'s **bit for bit**:
tolerance 0, whoever drops out. What quantisation costs against float gradient descent of the
same polynomial model is bounded separately (:func:`float_gap_bound`).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mpcml.csprng import Csprng
from mpcml.lagrange import DEFAULT_PRIME, lagrange_matrix
from mpcml.local import PartyFailed, make_local_parties, run_local, run_threads
from protocols.coded import (
    CodedConfig,
    CodedLinearRegression,
    CodedLogisticRegression,
    RoundFailed,
    Scales,
    SIGMOID_SLOPE,
    client_setup,
    coded_gradient,
    decode_gradient,
    design,
    encode_data,
    plaintext_training,
    plan,
    roles,
    zero_masks,
)
from protocols.coded.coding import residues, weight_integers
from protocols.estimator import Horizontal
from tests.contract import assert_persists

ROUND_TIMEOUT = 0.5  # seconds: only rounds that fail wait this long
MIN_P_VALUE = 1e-6  # chi-square tests: a false alarm once in a million runs
P = DEFAULT_PRIME


def clients(n: int) -> tuple[str, ...]:
    return tuple(f"c{i}" for i in range(n))


def synthetic_parts(n_clients: int, rows: int, cols: int, seed: int, logistic: bool = True) -> list:
    data = np.random.default_rng(seed)
    parts = []
    for i in range(n_clients):
        X = data.normal(size=(rows + i, cols))
        score = X @ np.linspace(-1, 1, cols) + 0.2
        y = (score + 0.3 * data.normal(size=rows + i) > 0).astype(float) if logistic else 40 * score + 7
        parts.append((X, y))
    return parts


def run_training(config: CodedConfig, parts: list, replaced: dict | None = None, progress=None):
    party_roles, inputs = roles(config, dict(zip(config.clients, parts)), progress=progress)
    party_roles.update(replaced or {})
    return run_local(party_roles, inputs, timeout=20)


def assert_replays(config: CodedConfig, parts: list, weights: np.ndarray) -> None:
    """Tolerance 0 (see the module docstring)."""
    expected, _ = plaintext_training(config, parts)
    assert np.array_equal(weights, expected), np.max(np.abs(weights - expected))


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, ...]:
    """Issue 14's setting: standardised with StandardScaler, not clipped."""
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=2, stratify=y)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


# --- the coded arithmetic is exact ------------------------------------------------------------------


def test_sigmoid_slope_is_the_least_squares_line_on_minus_4_to_4():
    grid = np.linspace(-4, 4, 4001)  # the definition: least squares on 4001 equally spaced points
    slope, intercept = np.polyfit(grid, 1 / (1 + np.exp(-grid)), 1)
    assert abs(SIGMOID_SLOPE - slope) < 1e-12 and abs(intercept - 0.5) < 1e-12


@pytest.mark.parametrize("primes", [(DEFAULT_PRIME, 2**31 - 19), (DEFAULT_PRIME,)])
@pytest.mark.parametrize("model", ["logistic", "linear"])
def test_decoded_gradient_is_exact_for_every_subset_of_responders(model, primes):
    parts = synthetic_parts(6, 9, 3, seed=1, logistic=model == "logistic")
    config = CodedConfig(clients=clients(6), model=model, n_blocks=2, n_masks=1, n_rounds=1, primes=primes)
    assert config.recovery_threshold == 5
    # scales that fit one prime (a few bits) or use the two primes' room (far beyond 2^31)
    the_plan = Scales(tuple(len(y) for _, y in parts), 3, 1, x_bits=2, frac_x=4 if len(primes) == 1 else 16,
                      frac_v=6 if len(primes) == 1 else 24)
    datas = [design(config, the_plan, X, y[:, None]) for X, y in parts]
    shares = [encode_data(config, data, Csprng()) for data in datas]
    stacks = [np.concatenate([s[j] for s in shares], axis=1) for j in range(6)]
    weights = weight_integers(the_plan, np.array([[0.5], [-1.25], [2.0], [0.75]]))
    results = {c: coded_gradient(stack, residues(config, weights), config.primes) for c, stack in zip(config.clients, stacks)}
    pooled = np.vstack(datas)
    expected = pooled[:, :4].T @ (pooled[:, :4] @ weights + pooled[:, 4:])
    assert np.max(np.abs(expected)) > 2**31 if len(primes) == 2 else np.max(np.abs(expected)) < P // 2
    for subset in itertools.combinations(config.clients, 5):
        assert np.array_equal(decode_gradient(config, {c: results[c] for c in subset}), expected), subset


# --- the protocol replays the plaintext algorithm exactly --------------------------------------------


@pytest.mark.parametrize("model", ["logistic", "linear"])
def test_protocol_replays_plaintext_training_over_both_transports(transport, model):
    """K = 2, T = 1, N = 6 (R = 5); the 6 rounds silence each client once, so every 5-subset decodes one round."""
    parts = synthetic_parts(6, 7, 3, seed=2, logistic=model == "logistic")
    estimator = (CodedLogisticRegression if model == "logistic" else CodedLinearRegression)(
        n_blocks=2, n_masks=1, n_rounds=6, alpha=0.05, n_dropouts=1, random_state=3, round_timeout=5.0)
    estimator.fit(parts)
    assert [len(r) for r in estimator.responders_] == [5] * 6
    silent = [set(estimator.config_.clients) - set(r) for r in estimator.responders_]
    assert all(len(s) == 1 for s in silent)
    weights = np.r_[np.atleast_2d(estimator.coef_).reshape(-1, 3).T, np.atleast_1d(estimator.intercept_)[None, :]]
    config = replace(estimator.config_, n_dropouts=0)
    assert_replays(config, parts, weights)
    assert estimator.n_iter_ == 6 and estimator.communication_.total_bytes > estimator.setup_bytes_ > 0


def test_rounds_cover_every_responder_subset_and_match_plaintext():
    """N = 5, R = 3: round r silences the r-th pair, so the 10 rounds decode from all 10 subsets of 3."""
    parts = synthetic_parts(5, 6, 3, seed=4)
    silent = tuple(itertools.combinations(clients(5), 2))
    config = CodedConfig(clients=clients(5), n_masks=1, n_rounds=len(silent), silent=silent, round_timeout=ROUND_TIMEOUT)
    result = run_training(config, parts)["server"]
    assert [set(r) for r in result["responders"]] == [set(clients(5)) - set(s) for s in silent]
    assert_replays(config, parts, result["weights"])


def float_gap_bound(est, X: np.ndarray, y: np.ndarray, trajectory: list) -> float:
    """Bound on ``||w_quantised - w_float||_2`` after the rounds of ``trajectory`` (the float weights per round).

    Both runs take the step ``eta`` on quadratics whose Hessians ``H`` (float data) and ``H_q``
    (quantised data) have ``eta lambda <= 1``, so ``||I - eta H|| <= 1`` and an error is never
    amplified; each round adds at most ``eta (||H_q|| q + ||H_q - H|| ||w_t|| + ||b_q - b||)`` with
    ``q = ||Q(w) - w||_2 <= sqrt(sum_j 2^(-2 e_j)) / 2`` (the weights' rounding, exponents ``e_j``)
    and ``||w_t|| <= ||w_float,t|| + (the bound so far)``.
    """
    plan_, c, m = est.plan_, est.config_.slope, X.shape[0]
    D = np.column_stack([X, np.ones(m)])
    Dq = np.rint(D * 2.0**plan_.data_exponents) / 2.0**plan_.data_exponents
    v = -y if est.config_.model == "linear" else (0.5 - y) / c
    vq = np.rint(v * 2.0**plan_.frac_v) / 2.0**plan_.frac_v
    H, Hq = c * D.T @ D / m, c * Dq.T @ Dq / m
    b_gap = np.linalg.norm(c * (Dq.T @ vq - D.T @ v) / m)
    q = 0.5 * np.sqrt(np.sum(2.0 ** (-2 * plan_.weight_exponents)))
    bound = 0.0
    for w in trajectory[:-1]:
        bound += plan_.step * (np.linalg.norm(Hq, 2) * q + np.linalg.norm(Hq - H, 2) * (np.linalg.norm(w) + bound)
                               + b_gap)
    return bound


def own_float_descent(parts: list, rounds: int, learning_rate: float, alpha: float, logistic: bool) -> list:
    """Float gradient descent of the polynomial model written here from the definitions (own slope, own
    curvature bound), independent of the library: the trajectory of weights, intercept last."""
    grid = np.linspace(-4, 4, 4001)  # the definition: least squares on 4001 equally spaced points
    c = np.polyfit(grid, 1 / (1 + np.exp(-grid)), 1)[0] if logistic else 1.0
    designs = [np.column_stack([X, np.ones(len(y))]) for X, y in parts]
    lam = sum(2.0 ** (np.ceil(4 * np.log2(np.linalg.eigvalsh(D.T @ D)[-1] * (1 + 1e-9))) / 4) for D in designs)
    D, y = np.vstack(designs), np.concatenate([p[1] for p in parts])
    m = len(y)
    eta = learning_rate / (c * lam / m + alpha)
    v = (0.5 - y) / c if logistic else -y
    w, trajectory = np.zeros(D.shape[1]), [np.zeros(D.shape[1])]
    for _ in range(rounds):
        w = w - eta * (c * D.T @ (D @ w + v) / m + alpha * np.r_[w[:-1], 0.0])
        trajectory.append(w)
    return trajectory


@pytest.mark.parametrize("model", ["logistic", "linear"])
def test_quantised_model_follows_float_descent_of_the_polynomial_model(cancer, model):
    """The secure model against float gradient descent written in this test from the definitions, within
    :func:`float_gap_bound`; catches a changed step, slope, penalty, intercept or round count even where
    the protocol and the replay share the code."""
    X, y = cancer[0][:240], (cancer[2][:240] if model == "logistic" else 100 * cancer[0][:240, 0] + 30 * cancer[2][:240])
    parts = list(zip(np.array_split(X, 6), np.array_split(y, 6)))
    cls = CodedLogisticRegression if model == "logistic" else CodedLinearRegression
    est = cls(n_rounds=10, alpha=0.02, learning_rate=0.9).fit(parts)
    trajectory = own_float_descent(parts, 10, 0.9, 0.02, model == "logistic")
    secure = np.r_[np.ravel(est.coef_), np.ravel(est.intercept_)]
    gap, bound = np.linalg.norm(secure - trajectory[-1]), float_gap_bound(est, X, y, trajectory)
    assert gap <= bound, (gap, bound)
    assert bound < 0.05 * np.linalg.norm(trajectory[-1] - trajectory[-2]) * 10  # the check has teeth


# --- issue 14: defaults on standardised data, no silent clipping -----------------------------------------


@pytest.mark.parametrize("n_dropouts", [0, 3])
def test_defaults_on_standardised_breast_cancer_match_float_descent_and_scikit_learn(cancer, n_dropouts):
    X_train, X_test, y_train, y_test = cancer
    parts = list(zip(np.array_split(X_train, 10), np.array_split(y_train, 10)))
    est = CodedLogisticRegression(n_dropouts=n_dropouts, random_state=0).fit(parts)
    assert est.config_.masks == 3 and est.recovery_threshold_ == 7  # the default T = ceil(N / 4)
    float_w = own_float_descent(parts, est.n_iter_, 1.0, 0.0, True)[-1]
    float_accuracy = np.mean(((X_test @ float_w[:-1] + float_w[-1]) > 0) == y_test)
    assert est.score(X_test, y_test) == float_accuracy > 0.94
    assert est.score(X_test, y_test) >= LogisticRegression().fit(X_train, y_train).score(X_test, y_test) - 0.02
    assert_replays(replace(est.config_, n_dropouts=0), parts, np.r_[est.coef_.T, est.intercept_[None, :]])


def test_linear_regression_on_raw_make_regression_output_is_not_clipped():
    X, y, true_coef = make_regression(n_samples=300, n_features=6, noise=1.0, coef=True, random_state=0)
    assert np.max(np.abs(true_coef)) > 80  # ten times the old weight_bound that clipped them
    parts = list(zip(np.array_split(X, 6), np.array_split(y, 6)))
    est = CodedLinearRegression().fit(parts)
    exact = LinearRegression().fit(X, y)
    assert est.score(X, y) > exact.score(X, y) - 1e-3
    np.testing.assert_allclose(est.coef_, exact.coef_, atol=0.02 * np.max(np.abs(exact.coef_)))
    assert_replays(est.config_, parts, np.r_[est.coef_, est.intercept_][:, None])


def test_diabetes_targets_in_their_own_units(transport):
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    parts = list(zip(np.array_split(X, 5), np.array_split(y, 5)))
    est = CodedLinearRegression(n_rounds=60).fit(parts)
    assert est.score(X, y) > LinearRegression().fit(X, y).score(X, y) - 0.02
    assert_replays(est.config_, parts, np.r_[est.coef_, est.intercept_][:, None])


def test_the_guard_stops_the_run_with_the_round_named_as_the_replay_does(monkeypatch):
    """The analysis proves the weights stay in range for a stable step; the guard is what would stop a run
    that left it. Shrink the guard's bound so that round 3's weights leave it: both runs stop alike."""
    import protocols.coded.protocol
    import protocols.coded.reference

    parts = synthetic_parts(5, 8, 3, seed=5)
    config = CodedConfig(clients=clients(5), n_masks=1, n_rounds=6)
    weights, the_plan = plaintext_training(replace(config, n_rounds=3), parts)
    limit = the_plan.scaled_norms(weights)[0] * 0.999
    for module in (protocols.coded.protocol, protocols.coded.reference):
        monkeypatch.setattr(module, "plan", lambda *a: replace(plan(*a), weight_limit=limit))
    with pytest.raises(OverflowError, match=r"before round 4: the weights' scaled norm .* lower learning_rate") as plain:
        plaintext_training(config, parts)
    with pytest.raises(PartyFailed) as secure:
        run_training(config, parts)
    assert str(secure.value.__cause__) == str(plain.value)


def test_a_plan_without_enough_precision_is_refused_naming_the_parameters(runs):
    config = CodedConfig(clients=clients(5), n_masks=1, n_rounds=10**6)
    facts = {c: {"rows": 2**28, "cols": 2000, "outputs": 1, "x_bits": 3, "y_bits": None, "curvature": 4 * 40}
             for c in config.clients}
    with pytest.raises(ValueError, match=r"cannot keep 10 bits of precision.*lower n_rounds or learning_rate"):
        plan(config, facts)
    with pytest.raises(ValueError, match="disagree on the number of features"):
        plan(config, {**facts, "c0": {**facts["c0"], "cols": 3}})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    feature_scale=st.sampled_from([1e-3, 1e-1, 1.0, 30.0, 1e3]),
    target_scale=st.sampled_from([1e-2, 1.0, 1e4, 1e7]),
    n_clients=st.integers(3, 7),
    n_masks=st.sampled_from([None, 1]),
    logistic=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_generated_data_gives_the_plaintext_model_or_an_early_error(runs, feature_scale, target_scale, n_clients,
                                                                    n_masks, logistic, seed):
    data = np.random.default_rng(seed)
    d = int(data.integers(1, 5))
    parts = []
    for i in range(n_clients):
        X = data.normal(size=(6 + i, d)) * feature_scale * data.uniform(0.1, 1, size=d)
        score = X @ data.normal(size=d) / feature_scale
        parts.append((X, (score > 0).astype(float) if logistic else target_scale * (score + data.normal(size=6 + i))))
    model = (CodedLogisticRegression if logistic else CodedLinearRegression)(n_masks=n_masks, n_rounds=5)
    runs.clear()
    try:
        model.fit(parts)
    except ValueError as exc:
        assert runs == [], f"refused after the run started: {exc}"
        return
    except OverflowError:
        with pytest.raises(OverflowError):
            plaintext_training(model.config_, parts)
        return
    assert_replays(model.config_, parts, np.r_[np.atleast_2d(model.coef_).reshape(-1, d).T,
                                                np.atleast_1d(model.intercept_)[None, :]])


# --- dropouts ------------------------------------------------------------------------------------------


def test_round_fails_naming_missing_clients_when_fewer_than_r_answer():
    parts = synthetic_parts(5, 6, 3, seed=7)
    config = CodedConfig(clients=clients(5), n_masks=1, n_rounds=3, silent=((), ("c1", "c3")),
                         round_timeout=ROUND_TIMEOUT)

    def dead_after_setup(party, X, y):
        client_setup(party, config, X, y)
        return {}

    with pytest.raises(PartyFailed, match="party 'server'") as info:
        run_training(config, parts, {"c4": dead_after_setup})
    cause = info.value.__cause__
    assert isinstance(cause, RoundFailed) and cause.round_index == 1
    assert "missing clients: c1, c3, c4" in str(cause) and "R = 3" in str(cause)


def test_a_send_that_blocks_on_a_dead_client_never_holds_up_a_round():
    """The server's send to c5 blocks for 3 s and then fails, as gRPC does for a dead peer: the rounds go
    on without waiting, c5 is skipped and then unreachable, and the weights are the replay's."""
    parts = synthetic_parts(6, 6, 3, seed=8)
    config = CodedConfig(clients=clients(6), n_rounds=8, round_timeout=5.0)  # T = 2, R = 5
    party_roles, inputs = roles(config, dict(zip(config.clients, parts)))

    def dead_after_setup(party, X, y, config):
        client_setup(party, config, X, y)
        return {}

    party_roles["c5"] = lambda party, X, y: dead_after_setup(party, X, y, config)
    parties = make_local_parties(list(party_roles), timeout=20)
    server = parties["server"]
    deliver = server._send_bytes
    setup_done = []

    def blocking(to, segments, acknowledged):
        if to == "c5" and setup_done:
            time.sleep(3.0)
            raise TimeoutError("c5 is dead")
        deliver(to, segments, acknowledged)
        if to == config.clients[-1]:
            setup_done.append(True)  # the plan has gone to every client

    server._send_bytes = blocking
    start = time.monotonic()
    out = run_threads(parties, party_roles, inputs, parties["server"].abort_all)
    result = out["server"]
    assert all("c5" not in r for r in result["responders"]) and result["unreachable"] == ["c5"]
    assert time.monotonic() - start < 3.0 + 2 * ROUND_TIMEOUT + 5.0  # the final stop waits on c5's send once
    assert_replays(config, parts, result["weights"])



def test_a_late_last_result_refused_by_a_finished_server_ends_the_client_normally():
    """Over gRPC a slow client's answer to the last round can reach a server that already had R
    results from the others, sent the stop and shut down: the send is refused (CANCELLED). The
    client then finds the stop waiting and ends normally; the server's weights are the replay's."""
    parts = synthetic_parts(6, 6, 3, seed=9)
    config = CodedConfig(clients=clients(6), n_rounds=4, round_timeout=5.0)  # T = 2, R = 5
    party_roles, inputs = roles(config, dict(zip(config.clients, parts)))
    parties = make_local_parties(list(party_roles), timeout=20)
    late = parties["c5"]
    deliver, to_server = late._send_bytes, []

    def refused_at_the_end(to, segments, acknowledged):
        if to == "server":
            to_server.append(True)
            if len(to_server) == 1 + config.n_rounds:  # the facts, then one result per round: the last one
                time.sleep(0.5)  # the other five complete the round meanwhile
                raise RuntimeError("party 'server' refused a message from 'c5' (CANCELLED)")
        deliver(to, segments, acknowledged)

    late._send_bytes = refused_at_the_end
    out = run_threads(parties, party_roles, inputs, parties["server"].abort_all)
    assert "c5" not in out["server"]["responders"][-1] and out["c5"]["stopped"] == ""
    assert out["c5"]["rounds_answered"] == config.n_rounds - 1
    assert_replays(config, parts, out["server"]["weights"])


def test_a_refused_result_without_a_stop_is_the_clients_failure():
    """A refusal while the server is not stopping (no stop arrives within the round timeout) raises the refusal."""
    parts = synthetic_parts(5, 6, 3, seed=10)
    config = CodedConfig(clients=clients(5), n_masks=1, n_rounds=3, round_timeout=ROUND_TIMEOUT)  # R = 3
    party_roles, inputs = roles(config, dict(zip(config.clients, parts)))
    parties = make_local_parties(list(party_roles), timeout=20)
    server = parties["server"]
    server_deliver, client_deliver, to_server = server._send_bytes, parties["c4"]._send_bytes, []

    def refused(to, segments, acknowledged):
        if to == "server":
            to_server.append(True)
            if len(to_server) == 2:  # the first result
                raise RuntimeError("party 'server' refused a message from 'c4' (CANCELLED)")
        client_deliver(to, segments, acknowledged)

    def silent_to_c4(to, segments, acknowledged):
        if to != "c4" or not to_server[1:]:
            server_deliver(to, segments, acknowledged)

    parties["c4"]._send_bytes, server._send_bytes = refused, silent_to_c4
    with pytest.raises(PartyFailed, match="party 'c4'") as info:
        run_threads(parties, party_roles, inputs, server.abort_all)
    assert "refused a message from 'c4'" in str(info.value.__cause__)


# --- privacy: what T clients, T + 1 clients and the server can learn -------------------------------------


def _received(wire_log: list, receiver: str, sender: str, key: str) -> list:
    return [m[key] for r, s, m in wire_log if r == receiver and s == sender and isinstance(m, dict) and key in m]


def test_t_colluding_clients_learn_nothing_and_t_plus_one_recover_labels(wire_log):
    """N = 7, K = 2, T = 2 (R = 7). Any two colluders' shares of client c0's data are jointly uniform
    (8 x 8 bins) for real data and for constant data; three colluders cancel both masks and recover
    every one of c0's 0/1 labels exactly."""
    config = CodedConfig(clients=clients(7), n_blocks=2, n_masks=2, n_rounds=1)
    data = np.random.default_rng(5)
    real = (data.normal(size=(1200, 6)), (data.random(1200) > 0.5).astype(float))
    constant = (np.ones((1200, 6)), np.r_[np.zeros(600), np.ones(600)])
    filler = synthetic_parts(6, 5, 6, seed=6)
    for target in (real, constant):
        wire_log.clear()
        run_training(config, [target, *filler])
        held = {c: _received(wire_log, c, "c0", "data")[0][0].astype(np.int64) for c in config.clients[1:]}
        for pair in itertools.combinations(config.clients[1:], 2):
            a, b = (held[c].ravel() * 8 // P for c in pair)
            assert chisquare(np.bincount(a * 8 + b, minlength=64)).pvalue > MIN_P_VALUE, pair
    # three colluders: a combination of their shares free of both masks is a X_1 + b X_2 (mod p)
    colluders = config.clients[1:4]
    alphas = [config.codes[0].alphas[config.clients.index(c)] for c in colluders]
    basis = lagrange_matrix(config.codes[0].betas, alphas, P).astype(object)  # rows: colluders; columns: beta_1..4
    m2, m3 = basis[:, 2], basis[:, 3]
    lam = [(m2[1] * m3[2] - m2[2] * m3[1]) % P, (m2[2] * m3[0] - m2[0] * m3[2]) % P, (m2[0] * m3[1] - m2[1] * m3[0]) % P]
    a, b = (sum(l * basis[i, k] for i, l in enumerate(lam)) % P for k in (0, 1))
    labels_column = -1
    combined = sum(l * held[c][:, labels_column].astype(object) for l, c in zip(lam, colluders)) % P
    plan_message = _received(wire_log, "c1", "server", "frac_v")[0]
    v0, v1 = (int(np.rint((0.5 - label) / SIGMOID_SLOPE * 2.0**plan_message)) % P for label in (0, 1))
    table = {(a * x1 + b * x2) % P: (l1, l2) for (x1, l1), (x2, l2) in itertools.product([(v0, 0), (v1, 1)], repeat=2)}
    recovered = np.array([table[int(value)] for value in combined])  # a KeyError would mean no recovery
    labels = constant[1]  # the last target: its two blocks are rows 0..599 and 600..1199
    np.testing.assert_array_equal(recovered[:, 0], labels[:600])
    np.testing.assert_array_equal(recovered[:, 1], labels[600:])


def _null_vector(rows: list[list[int]], p: int) -> list[int]:
    """A non-zero ``x`` with ``rows @ x = 0 (mod p)`` for a wide matrix (Gaussian elimination in Python ints)."""
    matrix = [[v % p for v in row] for row in rows]
    n = len(matrix[0])
    pivots, r = [], 0
    for col in range(n):
        pivot = next((i for i in range(r, len(matrix)) if matrix[i][col]), None)
        if pivot is None:
            continue
        matrix[r], matrix[pivot] = matrix[pivot], matrix[r]
        inverse = pow(matrix[r][col], -1, p)
        matrix[r] = [v * inverse % p for v in matrix[r]]
        for i in range(len(matrix)):
            if i != r and matrix[i][col]:
                factor = matrix[i][col]
                matrix[i] = [(v - factor * w) % p for v, w in zip(matrix[i], matrix[r])]
        pivots.append(col)
        r += 1
    free = next(c for c in range(n) if c not in pivots)
    x = [0] * n
    x[free] = 1
    for row, col in zip(matrix, pivots):
        x[col] = -row[free] % p
    return x


def test_wire_view_matches_the_leakage_statement(wire_log):
    """What each role receives, against the docstring of :mod:`protocols.coded`.

    - the server: the documented facts, then coded results that are uniform field elements;
    - the server's interpolant: its values at beta_1 (the aggregate gradient) are affine in the models,
      so over 4 rounds with 2 weights a combination with sum(lambda_r [w_r; 1]) = 0 cancels them; its
      values anywhere else carry fresh zero masks, so the same combination does not cancel (without the
      zero masks it would: the result would be affine in the model at every point);
    - a client: the plan (exactly the documented fields), the model every round, and from every other
      client one share and one set of zero-mask evaluations, uniform in the field.
    """
    parts = synthetic_parts(5, 400, 1, seed=9)
    config = CodedConfig(clients=clients(5), n_rounds=4)  # T = 2, K = 1: R = 5
    run_training(config, parts)
    facts = [m for r, s, m in wire_log if r == "server" and isinstance(m, dict) and "rows" in m]
    assert len(facts) == 5 and {tuple(sorted(m)) for m in facts} == {("cols", "curvature", "outputs", "rows", "x_bits",
                                                                      "y_bits")}
    to_server = [m for r, s, m in wire_log if r == "server"]
    assert all(set(m) in ({"round", "result"}, set(facts[0])) for m in to_server)
    results = np.concatenate([m["result"][0].ravel() for m in to_server if "result" in m]).astype(np.int64)
    assert chisquare(np.bincount(results * 4 // P, minlength=4)).pvalue > MIN_P_VALUE
    # the interpolant at beta_1 (the aggregate) and at two other points, per round, from all 5 results
    alphas = list(config.codes[0].alphas)
    at = lagrange_matrix(alphas, [config.codes[0].betas[0], config.codes[0].betas[1], 10**6], P).astype(object)
    values, models = [], []
    for r in range(4):
        by_client = {s: m["result"][0].astype(object).ravel() for rr, s, m in wire_log
                     if rr == "server" and isinstance(m, dict) and m.get("round") == r and "result" in m}
        results_r = [by_client[c] for c in config.clients]
        values.append([sum(int(row[j]) * results_r[j] for j in range(5)) % P for row in at])
        models.append(_received(wire_log, "c0", "server", "weights")[r][0].astype(object).ravel())
    lam = _null_vector([[int(w[k]) for w in models] for k in range(2)] + [[1] * 4], P)
    combined = [sum(lam[r] * values[r][point] for r in range(4)) % P for point in range(3)]
    assert np.all(combined[0] == 0)  # the aggregate gradient is affine in the model
    assert np.all(combined[1] != 0) and np.all(combined[2] != 0)  # the rest is masked afresh every round
    # the clients' view
    for client in config.clients:
        plans = [m for r, s, m in wire_log if r == client and s == "server" and isinstance(m, dict) and "frac_v" in m]
        assert len(plans) == 1 and set(plans[0]) == {"rows", "x_bits", "frac_x", "frac_v"}
        rounds = _received(wire_log, client, "server", "weights")
        assert len(rounds) == 4
        from_clients = [m for r, s, m in wire_log if r == client and s in config.clients]
        assert len(from_clients) == 4 and all(set(m) == {"data", "zero"} for m in from_clients)
    shares = np.concatenate([m["data"][0].ravel() for r, s, m in wire_log if isinstance(m, dict) and "data" in m])
    zeros = np.concatenate([m["zero"][0].ravel() for r, s, m in wire_log if isinstance(m, dict) and "zero" in m])
    for values_, bins in ((shares.astype(np.int64), 16), (zeros.astype(np.int64), 4)):  # 6000 and 160 values
        assert values_.size >= 40 * bins and chisquare(np.bincount(values_ * bins // P, minlength=bins)).pvalue > MIN_P_VALUE


def test_the_zero_masks_vanish_at_the_data_points_and_are_uniform_elsewhere():
    config = CodedConfig(clients=clients(7), n_blocks=2, n_masks=1, n_rounds=50, primes=(P,))  # R = 5
    masks = zero_masks(config, 3, Csprng())[:, 0]  # (N, rounds, width)
    code = config.codes[0]
    nodes = [code.alphas[j] for j in range(5)]
    at = lagrange_matrix(nodes, [*code.betas[:2], 10**6], P).astype(object)
    values = np.array([[sum(int(c) * masks[j].astype(object) for c, j in zip(row, range(5))) % P] for row in at])
    assert np.all(values[0] == 0) and np.all(values[1] == 0)
    assert chisquare(np.bincount((values[2].astype(np.int64) * 8 // P).ravel(), minlength=8)).pvalue > MIN_P_VALUE


# --- refusals -----------------------------------------------------------------------------------------


def test_configurations_that_cannot_decode_are_refused_with_arithmetic(runs):
    parts = synthetic_parts(4, 6, 3, seed=9)
    with pytest.raises(ValueError, match=r"R = 2 \(K \+ T - 1\) \+ 1 = 2 \(1 \+ 2 - 1\) \+ 1 = 5 .* only N = 4 clients.*"
                                         r"default T = max\(2, ceil\(N / 4\)\)"):
        CodedLogisticRegression().fit(parts)
    with pytest.raises(ValueError, match=r"n_dropouts = 2 dropouts but N - R = 4 - \(2 \(K \+ T - 1\) \+ 1\) = "
                                         r"4 - \(2 \(1 \+ 1 - 1\) \+ 1\) = 1 can be tolerated"):
        CodedLogisticRegression(n_masks=1, n_dropouts=2).fit(parts)
    with pytest.raises(ValueError, match="silent\\[0\\] has 3 dropouts"):
        CodedConfig(clients=clients(5), n_masks=1, silent=(("c1", "c2", "c3"),))
    with pytest.raises(ValueError, match="learning_rate .* must be below 2"):
        CodedLogisticRegression(n_masks=1, learning_rate=2.0).fit(parts)
    with pytest.raises(ValueError, match="model must be one of"):
        CodedConfig(clients=clients(4), model="poisson", n_masks=1)
    with pytest.raises(ValueError, match="labels"):
        CodedLogisticRegression(n_masks=1).fit([(X, np.zeros(len(y))) for X, y in parts])
    with pytest.raises(ValueError, match="same number of columns"):
        CodedLogisticRegression(n_masks=1).fit([(parts[0][0][:, :2], parts[0][1]), *parts[1:]])
    with pytest.raises(ValueError, match="NaN"):
        CodedLinearRegression(n_masks=1).fit([(np.full((3, 3), np.nan), np.zeros(3)), *parts[1:]])
    with pytest.raises(ValueError, match=r"client 'client-1' has features up to 2\^66\d; .* below 2\^256"):
        CodedLinearRegression(n_masks=1).fit([parts[0], (parts[1][0] * 1e200, parts[1][1]), *parts[2:]])
    assert runs == []


# --- the scikit-learn contract ------------------------------------------------------------------------


def test_wine_one_vs_rest_in_one_run_matches_scikit_learn():
    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    plain = OneVsRestClassifier(LogisticRegression()).fit(X_train, y_train).score(X_test, y_test)
    parts = list(zip(np.array_split(X_train, 5), np.array_split(y_train, 5)))
    est = CodedLogisticRegression().fit(parts)
    assert est.coef_.shape == (3, 13) and est.intercept_.shape == (3,)
    assert est.score(X_test, y_test) >= plain - 0.02
    np.testing.assert_allclose(est.predict_proba(X_test).sum(axis=1), 1.0)
    targets = [est.one_vs_rest(np.searchsorted(est.classes_, yi)) for _, yi in parts]
    assert_replays(est.config_, [(X, t) for (X, _), t in zip(parts, targets)], np.r_[est.coef_.T, est.intercept_[None, :]])
    # one run for the three classes: the features are coded once (two more target columns per row) and every
    # round carries the three models, so the messages are those of one binary fit; the bytes grow with the
    # zero masks (one per round and output): measured 2.4x one binary fit, against 3x for three fits
    binary = CodedLogisticRegression().fit([(X, (yi == 0).astype(float)) for X, yi in parts])
    messages = [sum(p["messages_sent"] for p in e.communication_.per_party.values()) for e in (est, binary)]
    assert messages[0] == messages[1]
    assert est.communication_.total_bytes < 0.85 * 3 * binary.communication_.total_bytes


def test_string_labels_map_back(cancer):
    X_train, X_test, y_train, y_test = cancer
    names = np.array(["benign", "malignant"])[1 - y_train]
    parts = list(zip(np.array_split(X_train, 5), np.array_split(names, 5)))
    est = CodedLogisticRegression(n_rounds=30).fit(parts)
    assert list(est.classes_) == ["benign", "malignant"] and est.coef_.shape == (1, 30)
    assert np.mean(est.predict(X_test) == np.array(["benign", "malignant"])[1 - y_test]) > 0.9
    with pytest.raises(ValueError, match="single class"):
        CodedLogisticRegression().fit([(X, np.zeros(len(X))) for X, _ in parts])


def test_pipeline_and_cross_validation_with_a_simulated_partition(cancer):
    X, _, y, _ = cancer
    model = Pipeline([("scale", StandardScaler()), ("coded", CodedLogisticRegression(partition=Horizontal(5), n_rounds=20))])
    assert cross_val_score(model, X, y, cv=3).min() > 0.9
    Xd, yd = load_diabetes(return_X_y=True)
    scores = cross_val_score(CodedLinearRegression(partition=Horizontal(5), n_rounds=40), StandardScaler().fit_transform(Xd), yd, cv=2)
    assert scores.min() > 0.3


def test_save_load_round_trip_and_tampering(cancer, tmp_path):
    X_train, X_test, y_train, _ = cancer
    est = CodedLogisticRegression(partition=Horizontal(5), n_rounds=5).fit(X_train, np.where(y_train == 1, "yes", "no"))
    assert_persists(est, X_test, tmp_path, other=CodedLinearRegression)


def test_predict_on_blocks_and_full_matrix_and_feature_names(cancer):
    import pandas as pd

    X_train, X_test, y_train, _ = cancer
    columns = [f"f{i}" for i in range(30)]
    frame = pd.DataFrame(X_train, columns=columns)
    parts = [(frame.iloc[rows], y_train[rows]) for rows in np.array_split(np.arange(len(y_train)), 5)]
    est = CodedLogisticRegression(n_rounds=5).fit(parts)
    assert list(est.feature_names_in_) == columns
    test = pd.DataFrame(X_test, columns=columns)
    blocks = [X_test[:50], X_test[50:]]
    np.testing.assert_allclose(est.decision_function(X_test), est.decision_function(blocks), rtol=1e-12)
    np.testing.assert_array_equal(est.predict(test), est.predict(blocks))
    with pytest.raises(ValueError, match="feature names"):
        est.predict(test[columns[::-1]])


def test_verbose_logs_a_line_per_round_with_the_loss_change(cancer, caplog):
    X_train, _, y_train, _ = cancer
    parts = list(zip(np.array_split(X_train, 5), np.array_split(y_train, 5)))
    with caplog.at_level(logging.INFO, logger="protocols.progress"):
        CodedLogisticRegression(n_rounds=3, verbose=2).fit(parts)
    lines = [r.getMessage() for r in caplog.records if r.name == "protocols.progress"]
    assert [line.split(":")[1].strip().split()[:2] for line in lines] == [["round", "1/3"], ["round", "2/3"],
                                                                            ["round", "3/3"]]
    changes = [float(line.split("loss_change ")[1].split(",")[0]) for line in lines]
    assert changes[0] == 0.0 and changes[2] < changes[1] < 0  # the objective falls from its value at w = 0


def test_loss_change_is_the_objective_change(cancer):
    """The server's loss_change (from the revealed gradients) equals the objective computed from the data."""
    from protocols.progress import Progress

    X, y = cancer[0][:200], cancer[2][:200].astype(float)
    parts = list(zip(np.array_split(X, 5), np.array_split(y, 5)))
    config = CodedConfig(clients=clients(5), n_rounds=4, alpha=0.1)
    progress = Progress(4, "round")
    result = run_training(config, parts, progress=progress)["server"]
    weights, _ = plaintext_training(replace(config, n_rounds=3), parts)
    _, the_plan = plaintext_training(config, parts)
    used = weight_integers(the_plan, weights) * 2.0 ** -the_plan.weight_exponents[:, None]
    D = np.column_stack([X, np.ones(len(y))])

    def objective(w):
        c = SIGMOID_SLOPE
        return np.mean((0.5 + c * D @ w[:, 0] - y) ** 2) / (2 * c) + 0.1 / 2 * np.sum(w[:-1] ** 2)

    quantisation = 1e-3 * abs(objective(used) - objective(0 * used))
    assert abs(progress.history[3]["loss_change"] - (objective(used) - objective(0 * used))) < quantisation
    assert result["n_rounds"] == 4


def test_sklearn_conventions():
    est = CodedLogisticRegression(n_rounds=3)
    with pytest.raises(NotFittedError):
        est.predict(np.zeros((1, 3)))
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    assert CodedLogisticRegression().n_rounds == CodedLinearRegression().n_rounds == CodedConfig.defaults()["n_rounds"]
    fitted = copy.fit(synthetic_parts(5, 6, 3, seed=11))
    assert fitted is copy and fitted.predict_proba(np.zeros((2, 3))).shape == (2, 2)
    with pytest.raises(ValueError, match="features"):
        fitted.predict(np.zeros((2, 5)))
    with pytest.raises(TypeError, match="unexpected parameters"):
        CodedLogisticRegression(n_round=3)


def test_check_estimator_passes_with_a_simulated_partition():
    """scikit-learn's own checks, every one (the array-API check is skipped unless SCIPY_ARRAY_API is set); coded
    training is deterministic (full batches, no random order) and exact, so fitting twice gives the same model."""
    from sklearn.utils.estimator_checks import check_estimator

    check_estimator(CodedLogisticRegression(partition=Horizontal(5), n_rounds=5), on_skip=None)
    check_estimator(CodedLinearRegression(partition=Horizontal(5), n_rounds=5), on_skip=None)


# --- the party app ------------------------------------------------------------------------------------


def test_party_app_matches_plaintext_and_its_model_predicts(tmp_path):
    from parties.apps import AppContext, load_app, run_app_local

    app = load_app("coded")
    options = {"model": "linear", "n_rounds": "20", "n_dropouts": "2", "random_state": "1"}
    data = app.demo_data(tmp_path, 0, options)
    out = run_app_local("coded", data, options, timeout=30)
    result = app.check(out, data, options)
    assert result.ok, result.summary
    ctx = AppContext("server", "server", dict(app.DEMO_PARTIES), options=options, app=app)
    model = app.model(out["server"], ctx)
    model.save(tmp_path / "model.npz")
    loaded = CodedLinearRegression.load(tmp_path / "model.npz")
    X = np.loadtxt(data["client-0"], delimiter=",")[:, :-1]
    np.testing.assert_allclose(loaded.predict(X), X @ out["server"]["weights"][:-1, 0] + out["server"]["weights"][-1, 0])
    assert app.model(out["client-0"], AppContext("client-0", "client", dict(app.DEMO_PARTIES), options=options, app=app)) is None
    with pytest.raises(ValueError, match=r"unknown option 'n_rouds'; valid options: alpha, learning_rate, model"):
        run_app_local("coded", data, {"n_rouds": "1"})


@pytest.mark.slow  # six interpreters start up: 50-100 s on a loaded 2-core machine
def test_processes_equal_in_process_and_a_killed_client_is_a_dropout(tmp_path):
    """Server and five client processes over gRPC with mutual TLS; client-4 is killed after round 10.
    Training goes on without it and ends with exactly the weights of the in-process run."""
    from parties.apps import load_app, run_app_local
    from parties.launcher import last_line, parties_running, write_loopback_federation
    from tests.conftest import wait_for_log
    from parties.node import PartyResult

    app = load_app("coded")
    options = {"n_masks": "1", "n_rounds": "120", "n_dropouts": "1", "round_timeout": "5", "random_state": "0"}
    federation_roles = {"server": "server", **{f"client-{i}": "client" for i in range(5)}}
    data = app.demo_data(tmp_path, 1, options)
    data = {pid: path for pid, path in data.items() if pid in federation_roles}
    local = run_app_local("coded", data, options, federation=federation_roles, timeout=20)
    federation = write_loopback_federation(federation_roles, tmp_path, timeout=30.0)
    with parties_running("coded", data, options, work_dir=tmp_path, federation=federation,
                         extra_args=["--verbose"]) as procs:
        wait_for_log(tmp_path / "server.log", "round 11/", procs["server"], timeout=120)
        procs["client-4"].kill()
        for pid in federation_roles:
            if pid != "client-4":
                assert procs[pid].wait(timeout=90) == 0, last_line(tmp_path / f"{pid}.log")
    server = PartyResult.from_bytes((tmp_path / "server.out").read_bytes()).output
    assert np.array_equal(server["weights"], local["server"]["weights"])
    assert app.check({**local, "server": server}, {p: data[p] for p in data}, options).ok
    assert "client-4" in server["unreachable"] and len(server["responders"]) == 120
    assert not [r for r in server["responders"][20:] if "client-4" in r], "a killed client cannot answer"
