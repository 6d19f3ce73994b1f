"""FedV (protocols.fedv) against its plaintext replay, its range analysis, its wire view and the scikit-learn
contract.

Tolerance of the replays: the FE decryptions return the exact integers ``X_B w`` and ``X_B^T e`` on the
quantised values and :func:`plaintext_fedv` computes the same integers and the same float steps, so
the two agree to the last bit; :func:`replay_tolerance` allows one unit ``2^-frac_bits`` per step
(a weight's rounding boundary crossed through a different float order; stable steps do not
amplify it). FE runs on secp256k1; data sets are cut to a few dozen rows for speed.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from protocols.common import logistic
from protocols.estimator import Vertical
from protocols.fedv import (
    FedVClassifier,
    FedVConfig,
    FedVEstimator,
    FedVRegressor,
    plaintext_fedv,
    plan,
    reference_plan,
    replay_tolerance,
)
from protocols.fedv.protocol import FedVPolicy
from tests.contract import assert_persists, run_both_ways

G = "secp256k1"


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, ...]:
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X[:, :12], y, test_size=0.3, random_state=1, stratify=y)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train)[:96], scaler.transform(X_test), y_train[:96], y_test


@pytest.fixture(scope="module")
def diabetes() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X)[:80], y[:80]  # targets in their own units (up to 346)


def assert_replays(est, blocks: list, y: np.ndarray) -> float:
    """The secure model equals the plaintext replay within :func:`replay_tolerance`; returns the error."""
    ids = tuple(f"party-{i}" for i in range(len(blocks)))
    config = est.make_config(parties=ids, active=ids[est.label_party])
    targets = est.one_vs_rest(np.searchsorted(est.classes_, y)) if is_classifier(est) else y
    reference = plaintext_fedv(blocks, targets, config)
    coef, intercept = np.atleast_2d(est.coef_), np.atleast_1d(est.intercept_)
    error = max(float(np.max(np.abs(coef - reference["coef"]))), float(np.max(np.abs(intercept - reference["intercept"]))))
    tolerance = replay_tolerance(config, reference_plan(config, blocks, targets))
    assert error <= tolerance, f"{error:.3g} > {tolerance:.3g}"
    assert est.skipped_ == reference["skipped"]
    return error


# --- the secure fits replay the plaintext algorithm -------------------------------------------------


def test_logistic_regression_replays_plaintext(cancer, transport) -> None:
    X, X_test, y, y_test = cancer
    blocks = np.array_split(X, 3, axis=1)
    est = FedVClassifier(epochs=3, batch_size=32, alpha=0.05, label_party=1, group=G).fit(blocks, y)
    assert assert_replays(est, blocks, y) == 0.0  # measured: bit for bit
    assert est.score(X_test, y_test) > 0.9 and est.communication_.total_bytes > 0
    assert set(est.communication_.per_party) == {"party-0", "party-1", "party-2", "tpa", "aggregator"}


def test_svm_takes_minus_one_and_one_and_replays(cancer) -> None:
    X, X_test, y, y_test = cancer
    blocks = np.array_split(X, 2, axis=1)
    signs = np.where(y == 1, 1, -1)
    est = FedVClassifier(model="svm", epochs=2, learning_rate=0.1, group=G).fit(blocks, signs)
    assert list(est.classes_) == [-1, 1] and set(np.unique(est.predict(X_test))) <= {-1, 1}
    assert_replays(est, blocks, signs)
    assert not hasattr(est, "predict_proba")  # no probabilities from a hinge loss
    assert est.score(X_test, np.where(y_test == 1, 1, -1)) > 0.85


def test_linear_regression_replays_with_its_targets_scaled(diabetes) -> None:
    X, y = diabetes
    blocks = np.array_split(X, 2, axis=1)
    est = FedVRegressor(epochs=3, batch_size=40, learning_rate=0.1, alpha=0.01, group=G).fit(blocks, y * 2000)
    assert reference_plan(est.make_config(parties=("a", "b"), active="a"), blocks, y * 2000).y_shift == 20
    assert_replays(est, blocks, y * 2000)
    assert est.coef_.shape == (10,) and isinstance(est.intercept_, float) and is_regressor(est)
    assert est.history_[-1]["loss"] < est.history_[0]["loss"]


def test_a_batch_with_too_few_errors_takes_no_data_gradient_and_warns() -> None:
    data = np.random.default_rng(3)  # test data only
    X = data.normal(size=(16, 2))
    y = (X[:, 0] > 0).astype(int)
    blocks = [X[:, :1] * 4, X[:, 1:]]  # separable along the first column: the hinge errors thin out
    with pytest.warns(UserWarning, match="fewer than min_nonzero=2 non-zero errors"):
        est = FedVClassifier(model="svm", batch_size=4, learning_rate=0.5, group=G).fit(blocks, y)  # 10 epochs
    assert est.skipped_ > 0
    assert_replays(est, blocks, y)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(scale=st.sampled_from([1e-3, 1e-1, 1.0, 30.0, 1e3]), target=st.sampled_from([1e-2, 1.0, 1e4, 1e7]),
       holders=st.integers(2, 5), linear=st.booleans(), seed=st.integers(0, 2**16))
def test_generated_data_gives_the_replay_or_an_early_error(runs, scale, target, holders, linear, seed) -> None:
    data = np.random.default_rng(seed)
    n, d = 12, holders + 1
    X = data.normal(size=(n, d)) * scale * data.uniform(0.1, 1, size=d)
    w = data.normal(size=d) / scale
    y = target * (X @ w + data.normal(size=n)) if linear else np.r_[0, 1, (X @ w > 0)[2:]].astype(int)
    blocks = np.array_split(X, holders, axis=1)
    est = (FedVRegressor if linear else FedVClassifier)(epochs=2, batch_size=6, group=G)
    config = est.make_config(parties=tuple(f"party-{i}" for i in range(holders)), active="party-0")
    try:
        replay = plaintext_fedv(blocks, y, config)
    except (ValueError, OverflowError) as refused:
        replay = refused
    runs.clear()
    try:
        est.fit(blocks, y)
    except ValueError as exc:
        assert runs == [], f"refused after the run started: {exc}"
        assert isinstance(replay, ValueError), "the secure fit refused data the analysis accepts"
        return
    except OverflowError:
        assert isinstance(replay, OverflowError), "the guard stopped a run the replay completes"
        return
    assert not isinstance(replay, ValueError)
    assert_replays(est, blocks, y)


# --- the range analysis ------------------------------------------------------------------------------


def test_range_analysis_scales_the_targets_and_refuses_before_any_party_starts(cancer, runs) -> None:
    X, _, y, _ = cancer
    config = FedVConfig(model="linear", parties=("a", "b"), active="a")
    agreed = plan(config, (6, 6), 96, 1, 2, 23)
    assert agreed.y_shift == 23 and agreed.weight_bound == 2.0**6  # 2^(8 - x_bits)
    assert agreed.feature_bound < 2**62 and agreed.sample_bound < 2**62
    proved = plan(FedVConfig(parties=("a", "b"), active="a", epochs=4, batch_size=32, learning_rate=0.5), (6, 6), 96,
                  1, 2, None)
    assert proved.weight_bound == pytest.approx(0.01 + 4 * 3 * 0.5 * 4)  # init + steps * eta * x_max
    with pytest.raises(ValueError, match=r"frac_bits=30: .* leave no room .* use frac_bits=\d+"):
        FedVClassifier(frac_bits=30, epochs=100, group=G).fit([X[:, :6] * 1e5, X[:, 6:]], y)
    assert runs == []


def test_a_diverging_fit_stops_with_the_epoch_named_as_the_replay_does(diabetes) -> None:
    X, y = diabetes
    blocks = np.array_split(X * 4, 2, axis=1)
    est = FedVRegressor(learning_rate=1.0, epochs=4, batch_size=0, group=G)
    with pytest.raises(OverflowError, match=r"FedV stopped in epoch \d, batch 1: .* lower learning_rate") as secure:
        est.fit(blocks, y)
    config = est.make_config(parties=("party-0", "party-1"), active="party-0")
    with pytest.raises(OverflowError) as plain:
        plaintext_fedv(blocks, y, config)
    assert str(secure.value) == str(plain.value)


def test_policy_rules() -> None:
    config = FedVConfig(model="linear", parties=("a", "b"), active="a")
    agreed = plan(config, (2, 2), 4, 1, 0, 0)
    policy = FedVPolicy(config, agreed)
    w = np.ones((3, 3), dtype=np.int64)
    w[-1] = [-(2**10), 0, 0]
    fwd = {"step": "fwd", "epoch": 0, "batch": 0, "model": 0, "weights": w, "rows": 4}
    assert policy.refusal(fwd) is None
    assert "already had 1 key" in policy.refusal(fwd)
    isolating = w.copy()
    isolating[1] = 0
    assert "every party" in policy.refusal({**fwd, "batch": 1, "weights": isolating})
    leaky = w.copy()
    leaky[-1] = [-1, 0, 0]
    assert "label slot" in policy.refusal({**fwd, "batch": 2, "weights": leaky})
    one = {"step": "bwd", "epoch": 0, "batch": 0, "model": 0, "party": 0, "vector": np.array([0, 5, 0, 0])}
    assert "at least 2" in policy.refusal(one)
    with pytest.raises(ValueError, match="active party"):
        FedVConfig(parties=("a", "b"), active="z")
    with pytest.raises(ValueError, match="min_nonzero"):
        FedVConfig(parties=("a", "b"), active="a", min_nonzero=1)


# --- what each role receives -------------------------------------------------------------------------


def test_wire_view_matches_the_leakage_statement(cancer, wire_log) -> None:
    """The TPA gets the plan, per batch a feature-step request (weights, columns secretly permuted) and a
    sample-step request per party (errors, rows secretly permuted), and stop: nothing else."""
    X, _, y, _ = cancer
    blocks = np.array_split(X, 2, axis=1)
    est = FedVClassifier(epochs=2, batch_size=0, group=G).fit(blocks, y)
    to_tpa = [(sender, m) for receiver, sender, m in wire_log if receiver == "tpa"]
    assert {sender for sender, _ in to_tpa} == {"aggregator"}
    batch = [("batch", "epoch", "model", "rows", "step", "weights")] + [("batch", "epoch", "model", "party", "step",
                                                                          "vector")] * 2
    assert [tuple(sorted(m)) for _, m in to_tpa] == [("outputs", "rows", "widths", "x_bits", "y_shift"), *batch,
                                                     *batch, ("type",)]
    # recompute the first step: the quantised errors of the initial weights, then the weights after it
    f, n = 10, len(y)
    xq = [np.rint(b * 2**f).astype(np.int64) for b in blocks]
    xq[0] = np.hstack([xq[0], np.full((n, 1), 2**f)])
    start = [np.full(x.shape[1], round(0.01 * 2**f)) for x in xq]
    z = sum(x @ w for x, w in zip(xq, start)) / 4.0**f
    errors = np.rint((logistic(z) - y) * 2**f).astype(np.int64)
    eta = FedVConfig.defaults()["learning_rate"]
    after = [np.rint((0.01 - eta * (x.T @ errors) / 4.0**f / n) * 2**f).astype(np.int64) for x in xq]
    # the TPA sees the errors as a multiset, rows secretly permuted: in row order the signs would give every label
    vector = to_tpa[2][1]["vector"]
    assert sorted(vector) == sorted(errors) and np.all(np.sign(errors) == 1 - 2 * y)
    assert np.mean(np.sign(vector) == 1 - 2 * y) < 0.75
    # and each party's weights as a multiset, columns secretly permuted
    weights = to_tpa[4][1]["weights"]
    assert all(sorted(weights[i][: w.size]) == sorted(w) for i, w in enumerate(after))
    assert any(list(weights[i][: w.size]) != list(w) for i, w in enumerate(after))
    assert est.coef_.shape == (1, 12)
    # the aggregator gets the facts, the labels (documented), ciphertexts and keys; a passive party requests and keys
    to_aggregator = {tuple(sorted(m)) for receiver, _, m in wire_log if receiver == "aggregator"}
    assert to_aggregator == {("cols", "outputs", "rows", "x_bits", "y_bits"), ("y",), ("bwd", "fwd"),
                             ("d", "label", "y", "z", "zg")}
    to_passive = {tuple(sorted(m)) for receiver, sender, m in wire_log if receiver == "party-1"}
    assert to_passive == {("outputs", "rows", "widths", "x_bits", "y_shift"), ("bwd", "fwd"),
                          ("batch", "columns", "epoch", "rows", "type"), ("type",)}


# --- the scikit-learn contract -----------------------------------------------------------------------


@pytest.mark.slow
def test_wine_one_vs_rest_in_one_run_matches_scikit_learn() -> None:
    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    plain = OneVsRestClassifier(LogisticRegression()).fit(X_train, y_train).score(X_test, y_test)
    blocks = np.array_split(X_train, 2, axis=1)
    est = FedVClassifier(epochs=5, group=G).fit(blocks, y_train)
    assert est.coef_.shape == (3, 13) and est.intercept_.shape == (3,)
    assert est.score(X_test, y_test) >= plain - 0.02
    np.testing.assert_allclose(est.predict_proba(X_test).sum(axis=1), 1.0)
    assert_replays(est, blocks, y_train)


def test_string_labels_pipeline_and_cross_validation(cancer) -> None:
    X, X_test, y, y_test = cancer
    names = np.array(["benign", "malignant"])[1 - y]
    model = Pipeline([("scale", StandardScaler()),
                      ("fedv", FedVClassifier(partition=Vertical(6, 6), epochs=2, group=G))])
    assert cross_val_score(model, X, names, cv=2).min() > 0.85
    est = model.fit(X, names)[-1]
    assert list(est.classes_) == ["benign", "malignant"] and est.coef_.shape == (1, 12) and is_classifier(est)
    assert np.mean(model.predict(X_test) == np.array(["benign", "malignant"])[1 - y_test]) > 0.85
    with pytest.raises(ValueError, match="single class"):
        FedVClassifier(partition=Vertical(6, 6)).fit(X, np.zeros(len(y)))
    with pytest.raises(ValueError, match="use FedVRegressor"):
        FedVClassifier(model="linear", partition=Vertical(6, 6)).fit(X, y)


def test_save_load_blocks_feature_names_and_tampering(cancer, tmp_path) -> None:
    import pandas as pd

    X, X_test, y, _ = cancer
    columns = [f"f{i}" for i in range(12)]
    frame = pd.DataFrame(X, columns=columns)
    est = FedVClassifier(epochs=1, group=G).fit([frame.iloc[:, :5], frame.iloc[:, 5:]], y)
    assert list(est.feature_names_in_) == columns and est.block_widths_ == [5, 7]
    test = pd.DataFrame(X_test, columns=columns)
    np.testing.assert_array_equal(est.predict(test), est.predict([X_test[:, :5], X_test[:, 5:]]))
    with pytest.raises(ValueError, match="feature names"):
        est.predict(test[columns[::-1]])
    assert_persists(est, X_test, tmp_path, other=FedVRegressor)


def test_verbose_logs_a_line_per_epoch_with_the_loss(cancer, caplog) -> None:
    X, _, y, _ = cancer
    with caplog.at_level(logging.INFO, logger="protocols.progress"):
        FedVClassifier(epochs=3, verbose=2, group=G).fit(np.array_split(X, 2, axis=1), y)
    lines = [r.getMessage() for r in caplog.records if r.name == "protocols.progress"]
    assert [line.split(":")[1].split()[:2] for line in lines] == [["epoch", "1/3"], ["epoch", "2/3"], ["epoch", "3/3"]]
    losses = [float(line.rsplit("loss", 1)[1]) for line in lines]
    assert losses == sorted(losses, reverse=True)


def test_deprecated_fedv_estimator_still_works(cancer) -> None:
    X, X_test, y, y_test = cancer
    with pytest.warns(DeprecationWarning, match="FedVClassifier or FedVRegressor"):
        est = FedVEstimator(model="logistic", epochs=2, group=G).fit(np.array_split(X, 2, axis=1), y)
    assert est.coef_.shape == (12,) and isinstance(est.intercept_, float)
    assert np.mean(est.predict(X_test) == y_test) > 0.85


def test_sklearn_conventions_and_bad_input(cancer) -> None:
    X, X_test, y, _ = cancer
    est = FedVClassifier(epochs=1, group=G)
    with pytest.raises(NotFittedError):
        est.predict(X_test)
    assert clone(est).get_params() == est.get_params()
    assert FedVClassifier().epochs == FedVRegressor().epochs == FedVConfig.defaults()["epochs"]
    with pytest.raises(TypeError, match="unexpected parameters"):
        FedVClassifier(epoch=3)
    with pytest.raises(ValueError, match="same number of rows"):
        est.fit([X[:, :6], X[:-1, 6:]], y)
    with pytest.raises(ValueError, match="label_party"):
        FedVClassifier(label_party=2).fit([X[:, :6], X[:, 6:]], y)
    with pytest.raises(ValueError, match="model"):
        FedVClassifier(model="tree").fit([X[:, :6], X[:, 6:]], y)


DIVERGES = ("gradient descent at learning_rate=0.3 diverges on the check's unscaled features (|x| up to 2^7), as the "
            "plaintext algorithm does; the run-time guard stops it with OverflowError")


@pytest.mark.slow  # about 60 s: every scikit-learn check is a real secure fit
def test_scikit_learn_estimator_checks() -> None:
    from sklearn.utils.estimator_checks import check_estimator

    check_estimator(FedVClassifier(partition=Vertical(parts=2), epochs=1, group=G))
    check_estimator(FedVRegressor(partition=Vertical(parts=2), epochs=1, group=G), expected_failed_checks={
        "check_fit_idempotent": DIVERGES, "check_fit_check_is_fitted": DIVERGES, "check_n_features_in": DIVERGES})


# --- as processes ------------------------------------------------------------------------------------


def test_app_options_check_and_model_hook(tmp_path) -> None:
    from parties.apps import load_app, party_model, run_app_local

    options = {"group": G, "epochs": "1", "rows": "60"}
    app = load_app("fedv")
    data = app.demo_data(tmp_path, 0, options)
    outputs = run_app_local("fedv", data, options, timeout=120)
    result = app.check(outputs, data, options)
    assert result.ok, result.summary
    model = party_model(app, outputs["aggregator"], "aggregator", app.DEMO_PARTIES, options)
    blocks = [np.loadtxt(data["alice"], delimiter=",")[:, :-1]] + [np.loadtxt(data[p], delimiter=",") for p in ("bob", "carol")]
    np.testing.assert_allclose(model.decision_function(blocks),
                               np.hstack(blocks) @ outputs["aggregator"]["coef"][0] + outputs["aggregator"]["intercept"][0])
    assert party_model(app, outputs["bob"], "bob", app.DEMO_PARTIES, options) is None
    with pytest.raises(ValueError, match=r"unknown option 'epocs'; valid options: alpha, batch_size"):
        run_app_local("fedv", data, {"epocs": "1"})


@pytest.mark.slow
def test_processes_match_run_local(tmp_path) -> None:
    options = {"group": G, "epochs": "2", "rows": "120"}
    local, remote = run_both_ways("fedv", options, tmp_path)
    assert remote.outputs.stats["bob"].bytes_sent == local.stats["bob"].bytes_sent
