"""Secure regression (protocols/regression.py) and the masked matrix (mpcml/masked.py) against plaintext."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from mpcml import DealerTriples, Session, run_dealer, run_local
from mpcml.masked import MaskedMatrix
from protocols.regression import (
    RegressionConfig,
    SecureLinearRegression,
    SecureLogisticRegression,
    plaintext_sgd,
    seed_from_random_state,
)

# fixed point: 16 fractional bits, one unit (1.5e-5) of error per truncation
UNIT = 2.0**-16


def test_masked_matrix_products() -> None:
    players = ("a", "b", "c")
    data = np.random.default_rng(1)
    X, w, e = data.normal(size=(40, 6)), data.normal(size=6), data.normal(size=9)
    rows = data.choice(40, 9, replace=False)

    def player(party):
        session = Session(party, players, DealerTriples(party, players, "dealer"))
        x = session.input(X if party.id == "a" else None, "a")
        wv = session.input(w if party.id == "b" else None, "b")
        ev = session.input(e if party.id == "c" else None, "c")
        masked = MaskedMatrix(x)
        out = [masked.matmul(wv).reveal(), masked.matmul(wv, rows).reveal(), masked.t_matmul(ev, rows).reveal()]
        with pytest.raises(ValueError, match="rows"):
            masked.matmul(wv, np.array([0, 40]))
        masked.release()
        session.close()
        return out

    out = run_local({**{p: player for p in players}, "dealer": lambda party: run_dealer(party, players)})
    full, batch, back = out["a"]
    # products of encoded values: error from encoding X, w (UNIT/2 each, times |w|_1, |X|_1) plus one truncation
    assert np.max(np.abs(full - X @ w)) < 20 * UNIT
    assert np.max(np.abs(batch - X[rows] @ w)) < 20 * UNIT
    assert np.max(np.abs(back - X[rows].T @ e)) < 20 * UNIT


@pytest.fixture(scope="module")
def diabetes() -> tuple[np.ndarray, np.ndarray]:
    # gradient descent needs comparable feature scales; R^2 is invariant to this affine rescaling
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X), (y - y.mean()) / y.std()


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


@pytest.mark.parametrize("partition", ["vertical", "horizontal"])
@pytest.mark.parametrize("holders", [2, 3])
def test_linear_regression_diabetes(diabetes, partition: str, holders: int) -> None:
    X, y = diabetes
    est = SecureLinearRegression(partition=partition, label_party=holders - 1 if partition == "vertical" else 0,
                                 random_state=holders).fit(*_split(X, y, holders, partition))
    assert r2_score(y, est.predict(X)) > LinearRegression().fit(X, y).score(X, y) - 0.01
    coef, intercept = plaintext_sgd(X, y, est.config_, est.config_.seed)
    # the secure run follows the float algorithm up to accumulated truncation error
    assert np.max(np.abs(est.coef_ - coef)) < 1e-2
    assert abs(est.intercept_ - intercept) < 1e-2
    assert est.n_iter_ == est.epochs
    assert est.communication_.total_bytes > 0


@pytest.mark.parametrize("partition", ["vertical", "horizontal"])
@pytest.mark.parametrize("holders", [2, 3])
def test_logistic_regression_breast_cancer(cancer, partition: str, holders: int) -> None:
    X_train, X_test, y_train, y_test = cancer
    est = SecureLogisticRegression(partition=partition, random_state=holders)
    est.fit(*_split(X_train, y_train, holders, partition))
    coef, intercept = plaintext_sgd(X_train, y_train, est.config_, est.config_.seed)
    plain_auc = roc_auc_score(y_test, X_test @ coef + intercept)
    secure_auc = roc_auc_score(y_test, est.predict_proba(X_test)[:, 1])
    assert secure_auc >= 0.99
    assert abs(secure_auc - plain_auc) <= 0.005
    assert est.score(X_test, y_test) > 0.93
    assert set(np.unique(est.predict(X_test))) <= {0, 1}


def _bytes_per_iteration(X: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    blocks = np.array_split(X, 2, axis=1)
    one = SecureLogisticRegression(epochs=1, random_state=0).fit(blocks, y)
    three = SecureLogisticRegression(epochs=3, random_state=0).fit(blocks, y)
    per_epoch = (three.communication_.total_bytes - one.communication_.total_bytes) / 2
    return per_epoch / -(-X.shape[0] // one.batch_size), one.communication_.total_bytes - per_epoch


def test_per_iteration_communication_is_independent_of_rows(cancer) -> None:
    X_train, _, y_train, _ = cancer
    n, d = 384, X_train.shape[1]  # whole batches of 32 only, so every iteration has the same size
    per_iteration, setup = _bytes_per_iteration(X_train[:n], y_train[:n])
    per_iteration_half, setup_half = _bytes_per_iteration(X_train[: n // 2], y_train[: n // 2])
    # the masked matrix X - A is opened once at setup (n x (d + 1) elements from each of 2 players) ...
    assert setup > 2 * n * (d + 1) * 8 > setup_half
    # ... so an iteration costs the same whatever the number of rows: O(batch + features)
    assert abs(per_iteration - per_iteration_half) < 0.03 * per_iteration


def test_outputs_own_and_shared_with_secure_prediction(cancer) -> None:
    X_train, X_test, y_train, y_test = cancer
    blocks = np.array_split(X_train, 3, axis=1)
    reveal = SecureLogisticRegression(epochs=3, random_state=5).fit(blocks, y_train)
    own = SecureLogisticRegression(epochs=3, random_state=5, output="own", label_party=1).fit(blocks, y_train)
    shared = SecureLogisticRegression(epochs=3, random_state=5, output="shared").fit(blocks, y_train)
    assert np.max(np.abs(own.coef_ - reveal.coef_)) < 1e-2
    assert abs(own.intercept_ - reveal.intercept_) < 1e-2
    assert not hasattr(shared, "coef_")
    secure_scores = shared.decision_function(X_test)
    assert np.max(np.abs(secure_scores - reveal.decision_function(X_test))) < 0.05
    assert roc_auc_score(y_test, shared.predict_proba(X_test)[:, 1]) > 0.98


def test_dealer_free_paillier_triples_follow_the_plaintext_algorithm(diabetes) -> None:
    X, y = diabetes[0][:120], diabetes[1][:120]
    blocks = np.array_split(X, 2, axis=1)
    est = SecureLinearRegression(epochs=2, batch_size=40, random_state=3, triples="paillier", key_bits=1024).fit(blocks, y)
    assert set(est.communication_.per_party) == {"holder-0", "holder-1"}  # no dealer
    coef, intercept = plaintext_sgd(X, y, est.config_, est.config_.seed)
    # per step one truncation of the update (one unit 2^-16) plus the residual's truncation error (<= 2 units)
    # times lr max|x| (0.1 x 3.8 here): under 2 units a step, 6 steps; measured 1.2-1.8 units over three seeds
    tolerance = 6 * 2 * 2.0**-est.config_.frac_bits
    assert np.max(np.abs(est.coef_ - coef)) < tolerance
    assert abs(est.intercept_ - intercept) < tolerance
    with pytest.raises(ValueError, match="exactly two compute parties"):
        SecureLinearRegression(triples="paillier").fit(np.array_split(X, 3, axis=1), y)
    with pytest.raises(ValueError, match="triples"):
        SecureLinearRegression(triples="ot").fit(blocks, y)


def test_two_servers_compute_for_many_holders(diabetes) -> None:
    X, y = diabetes
    parts = list(zip(np.array_split(X, 4), np.array_split(y, 4)))
    est = SecureLinearRegression(partition="horizontal", n_servers=2, epochs=10, random_state=3).fit(parts)
    coef, intercept = plaintext_sgd(X, y, est.config_, est.config_.seed)
    assert np.max(np.abs(est.coef_ - coef)) < 1e-2
    stats = est.communication_.per_party
    assert set(stats) == {"holder-0", "holder-1", "holder-2", "holder-3", "server-0", "server-1", "dealer"}
    # holders send their shares once: their traffic does not grow with the epochs
    assert stats["holder-1"]["bytes_sent"] < 2 * 8 * (X.shape[0] // 4 + 1) * (X.shape[1] + 1) + 1000


def test_servers_keep_shared_weights_and_predict_securely(diabetes) -> None:
    X, y = diabetes
    parts = list(zip(np.array_split(X, 3), np.array_split(y, 3)))
    shared = SecureLinearRegression(partition="horizontal", n_servers=2, output="shared", epochs=5,
                                    random_state=2).fit(parts)
    assert set(shared.weight_shares_) == {"server-0", "server-1"}
    coef, intercept = plaintext_sgd(X, y, shared.config_, shared.config_.seed)
    # holder-0 (not a compute party) queries; the servers only hold shares of the weights
    assert np.max(np.abs(shared.predict(X[:50]) - (X[:50] @ coef + intercept))) < 1e-2


def test_servers_deliver_own_weights_and_stop_early(diabetes) -> None:
    X, y = diabetes
    blocks = np.array_split(X, 3, axis=1)
    own = SecureLinearRegression(n_servers=2, output="own", label_party=2, decay=0.2, tol=1e-2, epochs=40,
                                 random_state=4).fit(blocks, y)
    assert own.n_iter_ < 40
    reveal = SecureLinearRegression(decay=0.2, epochs=own.n_iter_, random_state=4).fit(blocks, y)
    assert np.max(np.abs(own.coef_ - reveal.coef_)) < 1e-2
    assert abs(own.intercept_ - reveal.intercept_) < 1e-2


def test_l2_decay_and_early_stop(diabetes) -> None:
    X, y = diabetes
    est = SecureLinearRegression(alpha=0.1, decay=0.2, tol=1e-3, epochs=50, random_state=0)
    est.fit(np.array_split(X, 2, axis=1), y)
    assert est.n_iter_ < 50
    full = SecureLinearRegression(alpha=0.1, decay=0.2, epochs=est.n_iter_, random_state=0)
    coef, intercept = plaintext_sgd(X, y, full._config(2), full._config(2).seed)
    assert np.max(np.abs(est.coef_ - coef)) < 1e-2
    # the penalty shrinks the weights relative to the unpenalised fit
    assert np.linalg.norm(est.coef_) < np.linalg.norm(LinearRegression().fit(X, y).coef_)


def test_bad_input(cancer) -> None:
    X_train, _, y_train, _ = cancer
    a, b = np.array_split(X_train, 2, axis=1)
    with pytest.raises(ValueError, match="same number of rows"):
        SecureLogisticRegression().fit([a, b[:-1]], y_train)
    with pytest.raises(ValueError, match="only the labels 0 and 1"):
        SecureLogisticRegression().fit([a, b], y_train * 2.0)
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SecureLogisticRegression().fit([bad, b], y_train)
    with pytest.raises(ValueError, match="at least 2"):
        SecureLogisticRegression().fit([X_train], y_train)
    with pytest.raises(ValueError, match="at least 2"):
        SecureLogisticRegression(partition="horizontal").fit([(X_train, y_train)])
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
        RegressionConfig("squared", ("alice",))
    with pytest.raises(ValueError, match="dealer"):
        RegressionConfig("squared", ("alice", "dealer"))


def test_sklearn_conventions(cancer) -> None:
    X_train, X_test, y_train, _ = cancer
    est = SecureLogisticRegression(epochs=2, batch_size=64)
    with pytest.raises(NotFittedError):
        est.predict(X_test)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    copy.fit(np.array_split(X_train, 2, axis=1), y_train)
    blocks = np.array_split(X_test, 2, axis=1)
    assert np.allclose(copy.decision_function(blocks), copy.decision_function(X_test))
    with pytest.raises(ValueError, match="features"):
        copy.predict(X_test[:, :5])


def test_random_state_reproduces_batch_order() -> None:
    assert seed_from_random_state(4) == seed_from_random_state(4) != seed_from_random_state(5)
    assert seed_from_random_state(None) is None


@pytest.mark.slow  # spawns one process per party: 30-40 s of start-up on the shared 2-core machine
def test_party_processes_match_in_process(tmp_path) -> None:
    from parties.apps import load_app, run_app_local
    from parties.launcher import run_processes

    options = {"epochs": "2", "batch_size": "64"}
    app = load_app("regression")
    data = app.demo_data(tmp_path, 0, options)
    local = run_app_local("regression", data, options, timeout=60)
    remote = run_processes("regression", data, options, work_dir=tmp_path / "run", secure=True, timeout=60)
    for outputs in (local, remote.outputs):
        result = app.check(outputs, data, options)
        assert result.ok, result.summary
    # same batches, same messages: identical byte counts; weights equal up to the truncation rounding
    assert {p: s.as_dict() for p, s in remote.outputs.stats.items()} == {p: s.as_dict() for p, s in local.stats.items()}
    for pid in ("alice", "bob"):
        np.testing.assert_allclose(remote.outputs[pid]["coef"], local[pid]["coef"], rtol=0, atol=1e-3)
        assert abs(remote.outputs[pid]["intercept"] - local[pid]["intercept"]) < 1e-3


def test_values_outside_the_fixed_point_range_are_rejected(cancer) -> None:
    X_train, _, y_train, _ = cancer
    a, b = np.array_split(X_train, 2, axis=1)
    with pytest.raises(ValueError, match="fixed-point range"):
        SecureLogisticRegression(epochs=1).fit([a, b * 1e15], y_train)


def test_party_app_runs_dealer_free_without_a_dealer_party(tmp_path) -> None:
    from parties.apps import load_app, read_csv, run_app_local, write_csv

    app = load_app("regression")
    options = {"loss": "squared", "epochs": "1", "batch_size": "30", "triples": "paillier", "key_bits": "1024"}
    (tmp_path / "full").mkdir()
    full = app.demo_data(tmp_path / "full", 0, options)
    data = {pid: write_csv(tmp_path / f"{pid}.csv", read_csv(path)[:60])
            for pid, path in full.items()}
    local = run_app_local("regression", data, options, federation={"alice": "label", "bob": "holder"}, timeout=120)
    result = app.check(local, data, options)
    assert result.ok, result.summary
    with pytest.raises(ValueError, match="exactly one party with role 'dealer'"):
        run_app_local("regression", data, {**options, "triples": "dealer"}, federation={"alice": "label", "bob": "holder"})
