"""Dropout-resilient coded training: exact decoding, dropouts, accuracy, privacy, refusals."""

from __future__ import annotations

import itertools
from functools import partial

import numpy as np
import pytest
from scipy.stats import chisquare
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from mpcml.csprng import Csprng
from mpcml.lagrange import DEFAULT_PRIME, lagrange_matrix
from mpcml.local import PartyFailed, run_local
from protocols.coded import (
    SIGMOID_SLOPE,
    CodedConfig,
    CodedLinearRegression,
    CodedLogisticRegression,
    RoundFailed,
    client_setup,
    coded_client,
    coded_gradient,
    decode_gradient,
    encode_data,
    coded_server,
    headroom,
    plaintext_training,
    plan_frac_bits,
    quantized_data,
    quantized_gradient,
    quantized_weights,
    zero_masks,
    server_setup,
)

ROUND_TIMEOUT = 0.5  # seconds: only rounds that fail wait this long


def synthetic_parts(n_clients: int, rows: int, cols: int, seed: int, logistic: bool = True) -> list:
    data = np.random.default_rng(seed)
    parts = []
    for i in range(n_clients):
        X = np.clip(data.normal(size=(rows + i, cols)), -2.5, 2.5)
        score = X @ np.linspace(-1, 1, cols) + 0.2
        y = (score + 0.3 * data.normal(size=rows + i) > 0).astype(float) if logistic else np.clip(score, -3, 3)
        parts.append((X, y))
    return parts


def clients(n: int) -> tuple[str, ...]:
    return tuple(f"c{i}" for i in range(n))


def run_training(config: CodedConfig, parts: list, client_roles: dict | None = None):
    roles = {c: partial(coded_client, config=config) for c in config.clients}
    roles.update(client_roles or {})
    roles[config.server] = partial(coded_server, config=config)
    inputs = {c: {"X": X, "y": y} for c, (X, y) in zip(config.clients, parts)}
    return run_local(roles, inputs, timeout=20)


def encoded_stacks(config: CodedConfig, parts: list, frac_bits: int) -> list[np.ndarray]:
    """What each client holds after sharing, computed directly from the code (no parties)."""
    per_client = [encode_data(config, quantized_data(config, X, y, frac_bits), Csprng()) for X, y in parts]
    return [np.concatenate([shares[j] for shares in per_client], axis=1) for j in range(len(config.clients))]


@pytest.mark.parametrize("model", ["logistic", "linear"])
def test_decoded_gradient_is_exact_for_every_subset_of_responders(model):
    parts = synthetic_parts(5, 7, 3, seed=1, logistic=model == "logistic")
    config = CodedConfig("server", clients(5), model=model, n_blocks=1, n_masks=1, feature_bound=2.5, target_bound=3)
    assert config.recovery_threshold == 3
    frac_bits = plan_frac_bits(config, [X.shape[0] for X, _ in parts], 4)
    stacks = encoded_stacks(config, parts, frac_bits)
    assert frac_bits >= 12  # two primes: P ~ 2^62
    weights_q = quantized_weights(config, np.array([0.5, -1.25, 2.0, 0.75]), frac_bits)
    results = {c: coded_gradient(stack, weights_q, config.primes) for c, stack in zip(config.clients, stacks)}
    expected = quantized_gradient(config, parts, weights_q, frac_bits)
    assert np.max(np.abs(expected)) > 2**31  # beyond what one prime could hold
    for subset in itertools.combinations(config.clients, 3):
        assert np.array_equal(decode_gradient(config, {c: results[c] for c in subset}), expected), subset
    one_prime = CodedConfig("server", clients(5), model=model, n_blocks=1, n_masks=1, feature_bound=2.5,
                            target_bound=3, primes=(DEFAULT_PRIME,))
    f1 = plan_frac_bits(one_prime, [X.shape[0] for X, _ in parts], 4)
    weights_q = quantized_weights(one_prime, np.array([0.5, -1.25, 2.0, 0.75]), f1)
    stacks = encoded_stacks(one_prime, parts, f1)
    results = {c: coded_gradient(stack, weights_q, one_prime.primes) for c, stack in zip(one_prime.clients, stacks)}
    for subset in itertools.combinations(one_prime.clients, 3):
        decoded = decode_gradient(one_prime, {c: results[c] for c in subset})
        assert np.array_equal(decoded, quantized_gradient(one_prime, parts, weights_q, f1)), subset


def test_protocol_rounds_cover_every_responder_subset_and_match_plaintext():
    """N = 5, R = 3: round r silences the r-th pair, so the 10 rounds decode from all 10 subsets of 3."""
    parts = synthetic_parts(5, 6, 3, seed=2)
    silent = tuple(itertools.combinations(clients(5), 2))
    config = CodedConfig("server", clients(5), n_blocks=1, n_masks=1, n_rounds=len(silent), feature_bound=2.5,
                         learning_rate=0.5, silent=silent, round_timeout=ROUND_TIMEOUT)
    out = run_training(config, parts)
    result = out["server"]
    assert [set(r) for r in result["responders"]] == [set(clients(5)) - set(s) for s in silent]
    assert np.array_equal(result["weights"], plaintext_training(config, parts, result["frac_bits"]))


def test_random_dropouts_each_round_on_a_larger_case():
    parts = synthetic_parts(10, 12, 5, seed=3)
    est = CodedLogisticRegression(n_blocks=2, n_masks=2, n_rounds=15, dropout_rate=0.3, random_state=4,
                                  round_timeout=ROUND_TIMEOUT).fit(parts)
    assert est.recovery_threshold_ == 7 and list(est.decode_counts_) == [7] * 15
    for silent, used in zip(est.config_.silent, est.responders_):
        assert len(silent) == 3 and not set(silent) & set(used)
    assert len({tuple(s) for s in est.config_.silent}) > 1
    weights = plaintext_training(est.config_, [(X, y) for X, y in parts], est.frac_bits_)
    assert np.array_equal(est.coef_, weights[:-1]) and est.intercept_ == weights[-1]
    assert est.setup_bytes_ > 0 and np.all(est.round_bytes_ > 0) and est.communication_.total_bytes > est.setup_bytes_


def breast_cancer_clients(n_clients: int):
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = np.clip(scaler.transform(X_train), -3, 3), np.clip(scaler.transform(X_test), -3, 3)
    order = np.random.default_rng(0).permutation(len(y_train))
    parts = list(zip(np.array_split(X_train[order], n_clients), np.array_split(y_train[order], n_clients)))
    return parts, X_test, y_test


def accuracy(weights: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(((X @ weights[:-1] + weights[-1]) > 0) == y))


def test_logistic_with_30_percent_dropouts_matches_full_participation_on_breast_cancer():
    parts, X_test, y_test = breast_cancer_clients(10)
    est = CodedLogisticRegression(n_blocks=2, n_masks=2, n_rounds=40, learning_rate=0.5, dropout_rate=0.3,
                                  feature_bound=3.0, random_state=0, round_timeout=5.0).fit(parts)
    full = plaintext_training(est.config_, parts, est.frac_bits_)  # every client, every round
    coded_accuracy = est.score(X_test, y_test)
    assert abs(coded_accuracy - accuracy(full, X_test, y_test)) <= 0.01
    assert coded_accuracy > 0.93
    assert all(len(s) == 3 for s in est.config_.silent)


def test_linear_regression_matches_plaintext_and_approaches_least_squares():
    X, y = load_diabetes(return_X_y=True)
    X = np.clip(StandardScaler().fit_transform(X), -3, 3)
    y = (y - y.mean()) / y.std()
    parts = list(zip(np.array_split(X, 6), np.array_split(y, 6)))
    est = CodedLinearRegression(n_blocks=1, n_masks=1, n_rounds=60, learning_rate=0.3, n_dropouts=2,
                                random_state=1, round_timeout=5.0).fit(parts)
    weights = plaintext_training(est.config_, parts, est.frac_bits_)
    assert np.array_equal(est.coef_, weights[:-1])
    # float gradient descent on the unquantised data: the only difference is rounding data and weights to
    # 2^-f (f = 14 here); the per-round gradient error is below 20 * 2^-f and GD contracts it
    float_w, design = np.zeros(11), np.column_stack([X, np.ones(len(y))])
    for _ in range(60):
        float_w -= 0.3 * design.T @ (design @ float_w - y) / len(y)
    assert est.frac_bits_ >= 12
    np.testing.assert_allclose(np.r_[est.coef_, est.intercept_], float_w, atol=20 * 2.0**-est.frac_bits_)
    exact = LinearRegression().fit(X, y)
    assert est.score(X, y) >= exact.score(X, y) - 0.01


def test_t_colluding_clients_shares_are_uniform_and_independent_of_the_target_data():
    """Two colluders (T = 2) hold the target's shares; binned jointly into 8 x 8 cells they are uniform for
    real data and for all-zero data. K + T = 4 colluders can interpolate the data (power check)."""
    n, t, k = 8, 2, 2
    config = CodedConfig("server", clients(n), n_blocks=k, n_masks=t, feature_bound=3.0, round_timeout=ROUND_TIMEOUT)
    data = np.random.default_rng(5)
    real = (np.clip(data.normal(size=(1200, 6)), -3, 3), (data.random(1200) > 0.5).astype(float))
    zeros = (np.zeros((1200, 6)), np.r_[np.zeros(600), np.ones(600)])
    filler = synthetic_parts(n - 1, 5, 6, seed=6)

    def holder(party, X, y):
        return client_setup(party, config, X, y).stack

    for target in (real, zeros):
        parts = [target, *filler]
        roles = {c: holder for c in config.clients}
        roles["server"] = lambda party: server_setup(party, config)
        out = run_local(roles, {c: {"X": X, "y": y} for c, (X, y) in zip(config.clients, parts)}, timeout=20)
        target_rows = -(-target[0].shape[0] // k)
        held = {c: out[c][0, :target_rows] for c in config.clients}  # the target's share (first prime) comes first
        for pair in itertools.combinations(config.clients[1:], t):
            a, b = (held[c].ravel() * 8 // DEFAULT_PRIME for c in pair)
            assert chisquare(np.bincount(a * 8 + b, minlength=64)).pvalue > 1e-6, pair
        four = config.clients[1 : 1 + k + t]
        coeffs = lagrange_matrix([config.codes[0].alphas[config.clients.index(c)] for c in four], [1], DEFAULT_PRIME)[0]
        recovered = sum(int(c) * held[p].astype(object) for c, p in zip(coeffs, four)) % DEFAULT_PRIME
        expected = quantized_data(config, *target, out["server"][0])[:target_rows] % DEFAULT_PRIME
        assert np.array_equal(recovered.astype(np.int64), expected)


def test_server_view_is_uniform_beyond_the_decoded_aggregates():
    """With the zero masks the polynomial the server interpolates from R results equals the aggregate
    gradient at beta_1 (K = 1) and is uniform elsewhere (jointly at two other points, 4 x 4 bins). Without
    them the binned values look uniform too (chi-square has no power against this structural leak): the
    point checked here is that the masks leave decoding exact and the rest of the view uniform."""
    parts = synthetic_parts(5, 6, 3, seed=12)
    config = CodedConfig("server", clients(5), n_blocks=1, n_masks=1, n_rounds=1, feature_bound=2.5,
                         primes=(DEFAULT_PRIME,))
    frac_bits = plan_frac_bits(config, [X.shape[0] for X, _ in parts], 4)
    weights_q = quantized_weights(config, np.array([0.5, -1.0, 0.25, 0.1]), frac_bits)
    expected = quantized_gradient(config, parts, weights_q, frac_bits) % DEFAULT_PRIME
    responders = [config.codes[0].alphas[j] for j in (4, 1, 2)]
    at = lagrange_matrix(responders, [1, 2, 1000], DEFAULT_PRIME)
    rng, others = Csprng(), []
    for _ in range(200):
        stacks = encoded_stacks(config, parts, frac_bits)
        masks = sum(zero_masks(config, 4, rng) for _ in parts)  # every client's masks, summed per worker
        results = [(coded_gradient(stacks[j], weights_q, config.primes)[0] + masks[j, 0, 0]) % DEFAULT_PRIME
                   for j in (4, 1, 2)]
        values = np.array([sum(int(c) * r.astype(object) for c, r in zip(row, results)) % DEFAULT_PRIME for row in at])
        assert np.array_equal(values[0].astype(np.int64), expected)
        others.append(values[1:].astype(np.int64) * 4 // DEFAULT_PRIME)
    cells = np.concatenate([o[0] * 4 + o[1] for o in others])
    assert chisquare(np.bincount(cells, minlength=16)).pvalue > 1e-6


def test_round_fails_naming_missing_clients_when_fewer_than_r_answer():
    parts = synthetic_parts(5, 6, 3, seed=7)
    config = CodedConfig("server", clients(5), n_blocks=1, n_masks=1, n_rounds=3, feature_bound=2.5,
                         silent=((), ("c1", "c3")), round_timeout=ROUND_TIMEOUT)

    def crashes_after_setup(party, X, y):
        client_setup(party, config, X, y)
        return {}

    with pytest.raises(PartyFailed, match="party 'server'") as info:
        run_training(config, parts, {"c4": crashes_after_setup})
    cause = info.value.__cause__
    assert isinstance(cause, RoundFailed) and cause.round_index == 1
    assert "missing clients: c1, c3, c4" in str(cause) and "R = 3" in str(cause)


def test_crashed_client_is_a_dropout_and_training_still_matches():
    parts = synthetic_parts(5, 6, 3, seed=8)
    config = CodedConfig("server", clients(5), n_blocks=1, n_masks=1, n_rounds=4, feature_bound=2.5,
                         silent=(("c0",),) * 4, round_timeout=ROUND_TIMEOUT)

    def crashes_after_one_round(party, X, y):
        state = client_setup(party, config, X, y)
        party.recv(config.server)
        return {"state": state.frac_bits}

    out = run_training(config, parts, {"c2": crashes_after_one_round})
    assert all("c2" not in r and "c0" not in r for r in out["server"]["responders"])
    assert np.array_equal(out["server"]["weights"], plaintext_training(config, parts, out["server"]["frac_bits"]))
    assert out["c1"]["rounds_answered"] == 4 and out["c0"]["rounds_answered"] == 0


def test_configuration_that_cannot_tolerate_the_dropouts_is_refused_with_arithmetic():
    parts = synthetic_parts(10, 6, 3, seed=9)
    est = CodedLogisticRegression(n_blocks=3, n_masks=2, n_dropouts=4)
    with pytest.raises(ValueError, match=r"n_dropouts = 4 dropouts but N - R = 10 - \(\(K \+ T - 1\) \* 2 \+ 1\) = 10 - \(\(3 \+ 2 - 1\) \* 2 \+ 1\) = 1"):
        est.fit(parts)
    with pytest.raises(ValueError, match=r"R = \(K \+ T - 1\) \* d \+ 1 = \(5 \+ 2 - 1\) \* 2 \+ 1 = 13 exceeds n_workers = 10"):
        CodedLogisticRegression(n_blocks=5, n_masks=2).fit(parts)
    with pytest.raises(ValueError, match="silent\\[0\\] has 3 dropouts"):
        CodedConfig("server", clients(5), n_blocks=1, n_masks=1, silent=(("c1", "c2", "c3"),))
    with pytest.raises(ValueError, match="n_dropouts or dropout_rate"):
        CodedLogisticRegression(n_dropouts=1, dropout_rate=0.1).fit(parts)


def test_headroom_is_computed_and_an_overflowing_precision_is_refused():
    config = CodedConfig("server", clients(4), n_blocks=1, n_masks=1, feature_bound=2.0, weight_bound=4.0, frac_bits=20)
    largest, arithmetic = headroom(config, [10, 10, 10, 10], 4, 3)
    x, w, v = 16, 32, int(np.ceil(0.5 / SIGMOID_SLOPE * 64))
    assert largest == 40 * x * (4 * x * w + v)
    assert f"40 * 16 * (4 * 16 * 32 + {v})" in arithmetic
    with pytest.raises(ValueError, match=r"frac_bits = 20 overflows the field: B X \(d X W \+ V\) = 40 \* 2097152"):
        plan_frac_bits(config, [10, 10, 10, 10], 4)
    auto = CodedConfig("server", clients(4), n_blocks=1, n_masks=1, feature_bound=2.0, weight_bound=4.0)
    f = plan_frac_bits(auto, [10] * 4, 4)
    assert headroom(auto, [10] * 4, 4, f)[0] <= (auto.modulus - 1) // 2
    too_fine = CodedConfig("server", clients(4), n_blocks=1, n_masks=1, feature_bound=2.0, weight_bound=4.0,
                           frac_bits=f + 1)
    with pytest.raises(ValueError, match=f"frac_bits = {f + 1} overflows"):
        plan_frac_bits(too_fine, [10] * 4, 4)


def test_bad_input_is_refused_before_any_message():
    parts = synthetic_parts(4, 6, 3, seed=10)
    bad = [(parts[0][0] * 10, parts[0][1]), *parts[1:]]
    with pytest.raises(ValueError, match="feature_bound = 2.5"):
        CodedLogisticRegression(n_blocks=1, feature_bound=2.5).fit(bad)
    with pytest.raises(ValueError, match="labels 0 and 1"):
        CodedLogisticRegression(n_blocks=1).fit([(X, y * 2) for X, y in parts])
    with pytest.raises(ValueError, match="same number of columns"):
        CodedLogisticRegression(n_blocks=1).fit([(parts[0][0][:, :2], parts[0][1]), *parts[1:]])
    with pytest.raises(ValueError, match="model must be one of"):
        CodedConfig("server", clients(4), model="poisson", n_blocks=1)


def test_estimator_conventions():
    est = CodedLogisticRegression(n_blocks=1, n_rounds=3)
    with pytest.raises(NotFittedError):
        est.predict(np.zeros((1, 3)))
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    fitted = copy.fit(synthetic_parts(3, 6, 3, seed=11))
    assert fitted is copy and fitted.predict_proba(np.zeros((2, 3))).shape == (2, 2)


@pytest.mark.slow  # six interpreters start up: 50-100 s on a loaded 2-core machine
def test_processes_equal_in_process_and_a_killed_client_is_a_dropout(tmp_path):
    """Server and five client processes over gRPC with mutual TLS; client-4 is killed after round 10.
    Training goes on without it and ends with exactly the weights of the in-process run."""
    from parties.apps import load_app, run_app_local
    from parties.launcher import last_line, parties_running, wait_for_log, write_loopback_federation
    from parties.node import PartyResult

    app = load_app("coded")
    options = {"n_blocks": "1", "n_masks": "1", "rounds": "120", "dropouts": "1", "round_timeout": "5"}
    roles = {"server": "server", **{f"client-{i}": "client" for i in range(5)}}
    data = app.demo_data(tmp_path, 1, options)
    local = run_app_local("coded", data, options, federation=roles, timeout=20)
    federation = write_loopback_federation(roles, tmp_path, timeout=30.0)
    with parties_running("coded", data, {**options, "progress": "1"}, work_dir=tmp_path, federation=federation) as procs:
        wait_for_log(tmp_path / "server.log", "round 10:", procs["server"], timeout=120)  # start-up on a loaded 2-core machine
        procs["client-4"].kill()
        for pid in roles:
            if pid != "client-4":
                assert procs[pid].wait(timeout=90) == 0, last_line(tmp_path / f"{pid}.log")
    server = PartyResult.from_bytes((tmp_path / "server.out").read_bytes()).output
    assert np.array_equal(server["weights"], local["server"]["weights"])
    assert app.check({**local, "server": server}, data, options).ok
    assert "client-4" not in set(server["responders"][-1]) and len(server["responders"]) == 120
    late = [r for r in server["responders"][20:] if "client-4" in r]
    assert not late, "a killed client cannot answer"
