"""Secure regression against its plaintext replay, the range analysis, and the estimator contract.

Every protocol test compares the secure weights with :func:`plaintext_sgd` (the same batches,
sigmoid approximation, quantisation, target scale and rounded step factors) within
:func:`replay_tolerance`, which is derived from the number of truncations per step (see its
docstring): a few units ``2^-16`` per step.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mpcml.masked import MaskedMatrix
from protocols.estimator import Horizontal, Vertical
from protocols.regression import (
    RegressionConfig,
    SecureLinearRegression,
    SecureLogisticRegression,
    plaintext_sgd,
    reference_scales,
    replay_tolerance,
)
from tests.conftest import bits_balanced, message_leaves
from tests.contract import assert_persists, run_both_ways

UNIT = 2.0**-16


def test_masked_matrix_products(spmd) -> None:
    """MaskedMatrix on either engine (beaver: the SecureML mask opened once; rss3: replicated products)."""
    data = np.random.default_rng(1)
    X, w, e = data.normal(size=(40, 6)), data.normal(size=6), data.normal(size=9)
    rows = data.choice(40, 9, replace=False)

    def body(session):
        a, b, c = session.players
        x = session.input(X if session.party.id == a else None, a)
        wv = session.input(w if session.party.id == b else None, b)
        ev = session.input(e if session.party.id == c else None, c)
        masked = MaskedMatrix(x)
        out = [masked.matmul(wv).reveal(), masked.matmul(wv, rows).reveal(), masked.t_matmul(ev, rows).reveal()]
        with pytest.raises(ValueError, match="rows"):
            masked.matmul(wv, np.array([0, 40]))
        masked.release()
        return out

    full, batch, back = spmd(3, body)["p0"]
    # encoding X, w (half a unit each, times |w|_1 <= 6 * 3 and |X|_1 <= 6 * 3) plus one truncation
    assert np.max(np.abs(full - X @ w)) < 20 * UNIT
    assert np.max(np.abs(batch - X[rows] @ w)) < 20 * UNIT
    assert np.max(np.abs(back - X[rows].T @ e)) < 20 * UNIT


@pytest.fixture(scope="module")
def diabetes() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X), y  # targets in their own units (up to 346)


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, ...]:
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=1, stratify=y)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def _split(X: np.ndarray, y: np.ndarray, holders: int, partition: str) -> tuple[list, np.ndarray | None]:
    if partition == "vertical":
        return np.array_split(X, holders, axis=1), y
    return list(zip(np.array_split(X, holders), np.array_split(y, holders))), None


def assert_replays(est, X: np.ndarray, y: np.ndarray) -> float:
    """The secure weights equal the plaintext replay's within the derived tolerance; returns the error in units."""
    coef, intercept = plaintext_sgd(X, y, replace(est.config_, epochs=est.n_iter_), est.batch_seed_)
    coef = coef[0] if np.ndim(est.coef_) == 1 else coef
    intercept = intercept[0] if np.ndim(est.intercept_) == 0 else intercept
    tolerance = replay_tolerance(est.config_, X, est.batch_seed_, est.n_iter_, est.y_shift_)
    error = max(np.max(np.abs(est.coef_ - coef)), np.max(np.abs(est.intercept_ - intercept)))
    assert error <= tolerance, f"{error:.3g} > {tolerance:.3g}"
    return error / 2.0 ** (est.y_shift_ - est.config_.frac_bits)


# --- the secure fits replay the plaintext algorithm -------------------------------------------------


def _compute_parties(engine: str, holders: int) -> dict[str, int]:
    """The estimator's topology on ``engine``: rss3 computes on exactly three parties, the holders or three servers."""
    return {"engine": engine, "n_servers": 3 if engine == "rss3" and holders != 3 else 0}


@pytest.mark.parametrize("partition", ["vertical", "horizontal"])
@pytest.mark.parametrize("holders", [2, 3])
def test_linear_regression_replays_plaintext_sgd(diabetes, partition: str, holders: int, engine: str,
                                                 transport: str) -> None:
    X, y = diabetes[0][:200], diabetes[1][:200]
    est = SecureLinearRegression(partition=partition, label_party=holders - 1 if partition == "vertical" else 0,
                                 epochs=4, batch_size=50, alpha=0.05, decay=0.2, random_state=holders,
                                 **_compute_parties(engine, holders))
    est.fit(*_split(X, y, holders, partition))
    assert est.y_shift_ == 9  # max |y| = 346 < 2^9: the targets are trained as y / 512
    assert_replays(est, X, y)
    assert est.n_iter_ == est.epochs and est.communication_.total_bytes > 0
    assert ("dealer" in est.communication_.per_party) == (engine == "beaver")


@pytest.mark.parametrize("sigmoid", ["linear", "spline"])
@pytest.mark.parametrize("partition", ["vertical", "horizontal"])
def test_logistic_regression_replays_plaintext_sgd(cancer, partition: str, sigmoid: str, engine: str) -> None:
    X, y = cancer[0][:160], cancer[2][:160]
    holders = 3 if engine == "rss3" else 2
    est = SecureLogisticRegression(partition=partition, sigmoid=sigmoid, epochs=10, batch_size=64, alpha=0.02,
                                   learning_rate=0.2, random_state=7, engine=engine).fit(*_split(X, y, holders, partition))
    assert_replays(est, X, y)


def test_logistic_regression_generalises_like_scikit_learn(cancer) -> None:
    X_train, X_test, y_train, y_test = cancer
    est = SecureLogisticRegression(random_state=0).fit(np.array_split(X_train, 3, axis=1), y_train)
    plain = LogisticRegression().fit(X_train, y_train)
    assert est.score(X_test, y_test) >= plain.score(X_test, y_test) - 0.02
    assert set(np.unique(est.predict(X_test))) <= {0, 1}


def test_wine_one_vs_rest_in_one_run_matches_scikit_learn() -> None:
    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    plain = OneVsRestClassifier(LogisticRegression()).fit(X_train, y_train).score(X_test, y_test)
    for partition in ("vertical", "horizontal"):
        est = SecureLogisticRegression(partition=partition, epochs=20, random_state=1)
        est.fit(*_split(X_train, y_train, 2, partition))
        assert est.coef_.shape == (3, 13) and est.intercept_.shape == (3,)
        assert est.score(X_test, y_test) >= plain - 0.02
        np.testing.assert_allclose(est.predict_proba(X_test).sum(axis=1), 1.0)
        assert_replays(est, X_train, est.one_vs_rest(np.searchsorted(est.classes_, y_train)))


def test_string_labels_map_back(cancer) -> None:
    X_train, X_test, y_train, y_test = cancer
    names = np.array(["benign", "malignant"])[1 - y_train]
    est = SecureLogisticRegression(epochs=3, random_state=2).fit(np.array_split(X_train, 2, axis=1), names)
    assert list(est.classes_) == ["benign", "malignant"]
    assert est.coef_.shape == (1, X_train.shape[1])
    assert np.mean(est.predict(X_test) == np.array(["benign", "malignant"])[1 - y_test]) > 0.9
    with pytest.raises(ValueError, match="single class"):
        SecureLogisticRegression().fit(np.array_split(X_train, 2, axis=1), np.zeros(len(y_train)))


# --- the range analysis: the plaintext model or a clear error before any message ----------------------


def test_targets_in_the_hundreds_of_thousands_are_scaled(diabetes) -> None:
    X, y = diabetes
    prices = 2000.0 * y  # up to 6.9e5, like house prices in dollars
    est = SecureLinearRegression(epochs=3, random_state=0).fit(np.array_split(X, 2, axis=1), prices)
    assert est.y_shift_ == 20
    assert_replays(est, X, prices)
    small = SecureLinearRegression(epochs=3, random_state=0).fit(np.array_split(X, 2, axis=1), y)
    np.testing.assert_allclose(est.coef_, 2000 * small.coef_, rtol=0, atol=2000 * 64 * UNIT * 2**9)


def test_features_too_large_for_the_ring_are_refused_before_any_message(cancer, runs) -> None:
    X, _, y, _ = cancer
    a, b = np.array_split(X, 2, axis=1)
    with pytest.raises(ValueError, match=r"30 features with \|x\| up to 2\^44 leave no room.*overflow whatever the weights.*standardise"):
        SecureLogisticRegression().fit([a, b * 1e12], y)
    assert runs == []


def test_diverging_descent_stops_with_the_epoch_named_as_the_replay_does(diabetes) -> None:
    X, y = diabetes
    est = SecureLinearRegression(learning_rate=1.5, epochs=5, batch_size=442, random_state=0)
    with pytest.raises(OverflowError, match=r"after epoch \d: a weight left the range.*lower learning_rate") as secure:
        est.fit(np.array_split(X * 3, 2, axis=1), y)
    config = est.make_config(holders=("a", "b"), label_holder="a")
    with pytest.raises(OverflowError) as plain:
        plaintext_sgd(X * 3, y, config)
    assert str(secure.value) == str(plain.value)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    feature_scale=st.sampled_from([1e-3, 1e-1, 1.0, 30.0, 1e3]),
    target_scale=st.sampled_from([1e-2, 1.0, 1e4, 1e7]),
    holders=st.integers(2, 5),
    partition=st.sampled_from(["vertical", "horizontal"]),
    logistic=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_generated_data_gives_the_plaintext_model_or_an_early_error(runs, feature_scale, target_scale, holders,
                                                                    partition, logistic, seed) -> None:
    data = np.random.default_rng(seed)
    n, d = 12 * holders, holders + 2
    X = data.normal(size=(n, d)) * feature_scale * data.uniform(0.1, 1, size=d)
    w = data.normal(size=d) / feature_scale
    y = (X @ w > 0).astype(float) if logistic else target_scale * (X @ w + data.normal(size=n))
    model = (SecureLogisticRegression if logistic else SecureLinearRegression)(
        partition=partition, epochs=2, batch_size=16, random_state=seed)
    config = model.make_config(holders=("a", "b"), label_holder="a" if partition == "vertical" else None)
    runs.clear()
    try:
        plain = plaintext_sgd(X, y, config)  # the same public batch order as the secure run (random_state)
    except (ValueError, OverflowError) as refused:
        plain = refused
    try:
        model.fit(*_split(X, y, holders, partition))
    except ValueError as exc:
        assert runs == [], f"refused after the run started: {exc}"
        assert isinstance(plain, ValueError), "the secure fit refused data the analysis accepts"
        return
    except OverflowError as exc:
        if not isinstance(plain, OverflowError):
            # the replay ran on: at the epoch the guard stopped, its weights were within the replay tolerance of the bound
            epoch = int(str(exc).split("after epoch ")[1].split(":")[0])
            scales = reference_scales(config, X, np.asarray(y)[:, None])
            coef, intercept = plaintext_sgd(X, y, replace(config, epochs=epoch))
            weights = np.max(np.abs(np.concatenate([coef.ravel(), intercept]))) * 2.0**-scales.y_shift
            slack = replay_tolerance(config, X, config.seed, epoch, 0)
            assert weights + slack >= scales.weight_bound, "the guard stopped a run the replay completes"
        return
    assert not isinstance(plain, ValueError)
    assert_replays(model, X, y)


def test_wire_view_matches_the_leakage_statement(cancer, wire_log) -> None:
    """The dealer receives only requests (shapes, kinds); holders' openings are uniform ring elements."""
    X, y = cancer[0][:128], cancer[2][:128]
    SecureLogisticRegression(epochs=2, batch_size=64, random_state=0).fit(np.array_split(X, 2, axis=1), y)
    to_dealer = [m for receiver, _, m in wire_log if receiver == "dealer"]
    assert to_dealer and all(not isinstance(m, np.ndarray) or m.dtype != np.uint64 for m in message_leaves(to_dealer))
    facts = [m for receiver, _, m in wire_log if isinstance(m, dict) and "x_bits" in m]
    assert {tuple(sorted(m)) for m in facts} == {("cols", "outputs", "rows", "x_bits", "y_bits")}
    # what a holder receives from the other: masked ring words (uniform in every bit) and masked single bits
    # (the comparisons' e = msb XOR b, uniform on {0, 1}); five standard deviations of the bit-balance test
    arrays = [a.ravel() for _, sender, m in wire_log if sender.startswith("holder")
              for a in message_leaves([m]) if isinstance(a, np.ndarray) and a.dtype == np.uint64]
    words = np.concatenate([a for a in arrays if a.size and a.max() > 1])
    single = np.concatenate([a for a in arrays if a.size and a.max() <= 1])
    assert words.size > 10_000 and bits_balanced(words)
    assert single.size > 1000 and abs(single.mean() - 0.5) < 5 * 0.5 / np.sqrt(single.size)



# --- outputs, servers, triples ---------------------------------------------------------------------


def test_outputs_own_and_shared_with_secure_prediction(cancer, engine) -> None:
    X_train, X_test, y_train, _ = cancer
    X_train, y_train = X_train[:200], y_train[:200]
    blocks = np.array_split(X_train, 3, axis=1)
    reveal = SecureLogisticRegression(epochs=3, random_state=5, engine=engine).fit(blocks, y_train)
    own = SecureLogisticRegression(epochs=3, random_state=5, output="own", label_party=1, engine=engine).fit(blocks, y_train)
    shared = SecureLogisticRegression(epochs=3, random_state=5, output="shared", engine=engine).fit(blocks, y_train)
    # the same run (same seed, same triples' distribution): both replay the plaintext algorithm
    assert_replays(own, X_train, y_train)
    assert_replays(reveal, X_train, y_train)
    assert not hasattr(shared, "coef_")
    # secure prediction: one product of encoded X (half a unit times |w|_1) plus one truncation
    secure_scores = shared.decision_function(X_test)
    bound = (np.abs(X_test).max() * np.abs(reveal.coef_).sum() + 2) * UNIT + 2 * replay_tolerance(
        reveal.config_, X_train, reveal.batch_seed_, 3, 0)
    assert np.max(np.abs(secure_scores - reveal.decision_function(X_test))) < bound
    with pytest.raises(ValueError, match="shared"):
        shared.save("unused.npz")


def test_dealer_free_paillier_triples_follow_the_plaintext_algorithm(diabetes, he_scheme) -> None:
    X, y = diabetes[0][:120], diabetes[1][:120]
    blocks = np.array_split(X, 2, axis=1)
    est = SecureLinearRegression(epochs=2, batch_size=40, random_state=3, triples="paillier", he=he_scheme,
                                 key_bits=1024).fit(blocks, y)
    assert set(est.communication_.per_party) == {"holder-0", "holder-1"}  # no dealer
    assert_replays(est, X, y)
    with pytest.raises(ValueError, match="exactly two compute parties"):
        SecureLinearRegression(triples="paillier").fit(np.array_split(X, 3, axis=1), y)
    with pytest.raises(ValueError, match="triples"):
        SecureLinearRegression(triples="ot").fit(blocks, y)


def test_two_servers_compute_for_many_holders(diabetes) -> None:
    X, y = diabetes
    parts = list(zip(np.array_split(X, 4), np.array_split(y, 4)))
    est = SecureLinearRegression(partition="horizontal", n_servers=2, epochs=2, random_state=3).fit(parts)
    assert_replays(est, X, y)
    stats = est.communication_.per_party
    assert set(stats) == {"holder-0", "holder-1", "holder-2", "holder-3", "server-0", "server-1", "dealer"}
    # holders send their shares once: their traffic does not grow with the epochs
    assert stats["holder-1"]["bytes_sent"] < 2 * 8 * (X.shape[0] // 4 + 1) * (X.shape[1] + 1) + 1000


def test_servers_keep_shared_weights_and_predict_securely(diabetes) -> None:
    X, y = diabetes
    parts = list(zip(np.array_split(X, 3), np.array_split(y, 3)))
    shared = SecureLinearRegression(partition="horizontal", n_servers=2, output="shared", epochs=2,
                                    random_state=2).fit(parts)
    assert set(shared.weight_shares_) == {"server-0", "server-1"}
    coef, intercept = plaintext_sgd(X, y, shared.config_, shared.batch_seed_)
    bound = (X.shape[1] * 8 * replay_tolerance(shared.config_, X, shared.batch_seed_, 2, shared.y_shift_)
             + (np.abs(X).max() * np.abs(coef).sum() / 2**9 + 2) * UNIT * 2**9)
    assert np.max(np.abs(shared.predict(X[:50]) - (X[:50] @ coef[0] + intercept[0]))) < bound


def test_servers_deliver_own_weights_and_stop_early(diabetes) -> None:
    X, y = diabetes
    blocks = np.array_split(X, 3, axis=1)
    own = SecureLinearRegression(n_servers=2, output="own", label_party=2, decay=0.2, tol=1e-2, epochs=40,
                                 random_state=4).fit(blocks, y)
    assert own.n_iter_ < 40
    assert_replays(own, X, y)


# --- the scikit-learn contract ---------------------------------------------------------------------


def test_pipeline_cross_validation_and_grid_search_with_a_simulated_partition(cancer) -> None:
    X, _, y, _ = cancer
    model = Pipeline([("scale", StandardScaler()),
                      ("lr", SecureLogisticRegression(partition=Vertical(15, 15), epochs=3, random_state=0))])
    scores = cross_val_score(model, X, y, cv=3)
    assert scores.min() > 0.9
    horizontal = SecureLinearRegression(partition=Horizontal(3), epochs=10, random_state=0)
    Xd, yd = load_diabetes(return_X_y=True)
    assert cross_val_score(horizontal, StandardScaler().fit_transform(Xd), yd, cv=2).min() > 0.3
    with pytest.raises(ValueError, match="splits 20 columns but X has 30"):
        SecureLogisticRegression(partition=Vertical(10, 10)).fit(X, y)


def test_save_load_round_trip_and_tampering(cancer, tmp_path) -> None:
    X_train, X_test, y_train, _ = cancer
    est = SecureLogisticRegression(epochs=2, random_state=3).fit(np.array_split(X_train, 2, axis=1),
                                                                 np.where(y_train == 1, "yes", "no"))
    assert_persists(est, X_test, tmp_path, other=SecureLinearRegression)


def test_predict_on_blocks_and_full_matrix_and_feature_names(cancer) -> None:
    import pandas as pd

    X_train, X_test, y_train, _ = cancer
    columns = [f"f{i}" for i in range(30)]
    frame = pd.DataFrame(X_train, columns=columns)
    est = SecureLogisticRegression(epochs=2, random_state=0).fit([frame.iloc[:, :10], frame.iloc[:, 10:]], y_train)
    assert list(est.feature_names_in_) == columns
    test = pd.DataFrame(X_test, columns=columns)
    np.testing.assert_allclose(est.decision_function(test), est.decision_function([X_test[:, :10], X_test[:, 10:]]),
                               rtol=1e-12)
    np.testing.assert_array_equal(est.predict(test), est.predict([X_test[:, :10], X_test[:, 10:]]))
    with pytest.raises(ValueError, match="feature names"):
        est.predict(test[columns[::-1]])


def test_verbose_logs_a_line_per_epoch(cancer, caplog) -> None:
    X_train, _, y_train, _ = cancer
    with caplog.at_level(logging.INFO, logger="protocols.progress"):
        SecureLogisticRegression(epochs=3, tol=1e-9, verbose=2, random_state=0).fit(
            np.array_split(X_train, 2, axis=1), y_train)
    lines = [r.getMessage() for r in caplog.records if r.name == "protocols.progress"]
    assert [line.split(":")[1].strip().split()[:2] for line in lines] == [["epoch", "1/3"], ["epoch", "2/3"],
                                                                            ["epoch", "3/3"]]
    assert all("weight_change" in line for line in lines)


def test_sklearn_conventions(cancer) -> None:
    X_train, X_test, y_train, _ = cancer
    est = SecureLogisticRegression(epochs=2, batch_size=64)
    with pytest.raises(NotFittedError):
        est.predict(X_test)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    assert SecureLinearRegression().epochs == SecureLogisticRegression().epochs == RegressionConfig.defaults()["epochs"]
    copy.fit(np.array_split(X_train, 2, axis=1), y_train)
    with pytest.raises(ValueError, match="features"):
        copy.predict(X_test[:, :5])
    with pytest.raises(TypeError, match="unexpected parameters"):
        SecureLogisticRegression(epocs=3)


def test_bad_input(cancer) -> None:
    X_train, _, y_train, _ = cancer
    a, b = np.array_split(X_train, 2, axis=1)
    with pytest.raises(ValueError, match="same number of rows"):
        SecureLogisticRegression().fit([a, b[:-1]], y_train)
    with pytest.raises(ValueError, match="only the labels 0 and 1|finite|NaN"):
        SecureLinearRegression().fit([a, b], np.where(y_train == 1, np.nan, 0.0))
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SecureLogisticRegression().fit([bad, b], y_train)
    with pytest.raises(ValueError, match="at least 2"):
        SecureLogisticRegression().fit([X_train], y_train)
    with pytest.raises(TypeError, match="pairs"):
        SecureLogisticRegression(partition="horizontal").fit([X_train])
    with pytest.raises(ValueError, match="same number of columns"):
        SecureLinearRegression(partition="horizontal").fit([(a, y_train), (X_train, y_train)])
    with pytest.raises(ValueError, match="learning_rate"):
        SecureLinearRegression(learning_rate=-1.0).fit([a, b], y_train)
    with pytest.raises(ValueError, match="sigmoid"):
        SecureLogisticRegression(sigmoid="tanh").fit([a, b], y_train)
    with pytest.raises(ValueError, match="own"):
        SecureLinearRegression(partition="horizontal", output="own").fit([(a, y_train), (a, y_train)])
    with pytest.raises(ValueError, match="label_party"):
        SecureLinearRegression(label_party=2).fit([a, b], y_train)
    with pytest.raises(ValueError, match="holders"):
        RegressionConfig(holders=("alice",), label_holder="alice")
    with pytest.raises(ValueError, match="dealer"):
        RegressionConfig(holders=("alice", "dealer"), label_holder="alice")
    with pytest.raises(ValueError, match=r'engine="rss3" needs exactly three compute parties.*n_servers=3'):
        SecureLogisticRegression(engine="rss3").fit([a, b], y_train)
    with pytest.raises(ValueError, match=r'engine="rss3" needs exactly three compute parties'):
        SecureLinearRegression(engine="rss3", n_servers=2).fit(np.array_split(X_train, 3, axis=1), y_train)
    with pytest.raises(ValueError, match=r"triples='paillier' applies to engine=\"beaver\" only"):
        SecureLinearRegression(engine="rss3", triples="paillier").fit(np.array_split(X_train, 3, axis=1), y_train)
    with pytest.raises(ValueError, match="engine must be one of"):
        SecureLinearRegression(engine="aby3").fit([a, b], y_train)


def test_per_iteration_communication_is_independent_of_rows(cancer) -> None:
    X_train, _, y_train, _ = cancer

    def per_iteration(n: int) -> tuple[float, float]:
        blocks = np.array_split(X_train[:n], 2, axis=1)
        one = SecureLogisticRegression(epochs=1, random_state=0).fit(blocks, y_train[:n])
        three = SecureLogisticRegression(epochs=3, random_state=0).fit(blocks, y_train[:n])
        epoch = (three.communication_.total_bytes - one.communication_.total_bytes) / 2
        return epoch / (n // 32), one.communication_.total_bytes - epoch

    n, d = 384, X_train.shape[1]  # whole batches of 32 only, so every iteration has the same size
    full, setup = per_iteration(n)
    half, setup_half = per_iteration(n // 2)
    # the masked matrix X - A is opened once at setup (n x (d + 1) elements from each of 2 players) ...
    assert setup > 2 * n * (d + 1) * 8 > setup_half
    # ... so an iteration costs the same whatever the number of rows (the guard's per-epoch cost aside)
    assert abs(full - half) < 0.1 * full


@pytest.mark.slow  # spawns one process per party
def test_party_processes_match_in_process(tmp_path, engine) -> None:
    """The demo federation (three holders and a dealer, which has nothing to do on rss3) as processes."""
    options = {"epochs": "2", "batch_size": "64", "random_state": "3", "engine": engine}
    local, remote = run_both_ways("regression", options, tmp_path)
    # same batches, same messages: identical byte counts
    assert {p: s.as_dict() for p, s in remote.outputs.stats.items()} == {p: s.as_dict() for p, s in local.stats.items()}


def test_party_app_options(tmp_path) -> None:
    from parties.apps import load_app, read_csv, run_app_local, write_csv

    app = load_app("regression")
    options = {"loss": "squared", "epochs": "1", "batch_size": "30", "triples": "paillier", "key_bits": "1024"}
    (tmp_path / "full").mkdir()
    full = app.demo_data(tmp_path / "full", 0, options)
    # paillier: two holders, alice (with the labels) and bob
    data = {pid: write_csv(tmp_path / f"{pid}.csv", read_csv(full[pid])[:60]) for pid in ("alice", "bob")}
    local = run_app_local("regression", data, options, federation={"alice": "label", "bob": "holder"}, timeout=120)
    result = app.check(local, data, options)
    assert result.ok, result.summary
    with pytest.raises(ValueError, match="exactly one party with role 'dealer'"):
        run_app_local("regression", data, {**options, "triples": "dealer"}, federation={"alice": "label", "bob": "holder"})
    with pytest.raises(ValueError, match=r"unknown option 'epocs'; valid options: alpha, batch_size, decay, dp_clip, "
                                         r"dp_colluders, dp_delta, dp_epsilon, dp_feature_bound, dp_local_epochs, "
                                         r"dp_noise_multiplier, dp_projection, "
                                         r"engine, epochs"):
        run_app_local("regression", data, {"epocs": "1"})
    with pytest.raises(ValueError, match="option 'epochs' must be int, got 'two'"):
        run_app_local("regression", data, {"epochs": "two"})


NOT_IDEMPOTENT = ("secure truncation is randomised (at most one unit 2^-16 per truncation): two fits agree within "
                  "replay_tolerance, not to the check's 1e-7")
DIVERGES = ("mini-batch SGD with learning_rate=0.1 diverges on the check's unscaled blobs, as the plaintext algorithm "
            "does; the run-time guard stops it with OverflowError")


@pytest.mark.slow  # about 30 s: every scikit-learn check is a real secure fit
def test_scikit_learn_estimator_checks() -> None:
    from sklearn.utils.estimator_checks import check_estimator

    check_estimator(SecureLogisticRegression(partition=Horizontal(2)),
                    expected_failed_checks={"check_fit_idempotent": NOT_IDEMPOTENT})
    check_estimator(SecureLinearRegression(partition=Horizontal(2)), expected_failed_checks={
        "check_fit_idempotent": DIVERGES, "check_fit_check_is_fitted": DIVERGES, "check_n_features_in": DIVERGES,
        "check_regressor_data_not_an_array": NOT_IDEMPOTENT, "check_supervised_y_2d": NOT_IDEMPOTENT})


def test_replay_tolerance_takes_the_small_gram_matrix_of_a_wide_batch():
    """lambda_max(X^T X) from X X^T when X is wide (the 1,000 x 20,000 CAESAR case needs no 20,000^2 matrix):
    equal to the tall formula to float rounding on both shapes."""
    from protocols.regression.reference import top_gram_eigenvalue

    data = np.random.default_rng(3)
    for shape in ((8, 50), (50, 8)):
        xb = data.normal(size=shape)
        assert np.isclose(top_gram_eigenvalue(xb), np.linalg.eigvalsh(xb.T @ xb)[-1], rtol=1e-12)
