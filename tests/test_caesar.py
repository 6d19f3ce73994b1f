"""CAESAR against its plaintext replay, its range analysis, its wire view and the estimator contract.

Every protocol test compares the secure weights with :func:`reference_fit` (the same batches from
the agreed seed, the same sigmoid approximation and rounded constants, the features quantised as
the parties encode them) within :func:`replay_tolerance`, which is derived from the fixed point
(see its docstring): per step, 4 units ``2^-16`` of residual error (four floored shares of ``z``)
times ``lr sqrt(||X_S||^2/|S|)``, plus the two floored shares of ``eta e`` (``2^-fw`` each, 1/8
of a unit by the choice of ``fs``), carried through non-expanding steps. It is an L2 bound per
model, so it bounds every single weight.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import protocols.caesar.protocol
import protocols.estimator
from mpcml import run_local
from mpcml.he import MASK_SIGMA, EncryptedArray
from protocols.caesar import (
    CaesarConfig,
    CaesarLogisticRegression,
    make_sparse_logistic,
    reference_fit,
    replay_tolerance,
    roles,
)
from protocols.caesar.config import plan, schedule_facts
from protocols.caesar.packing import unpack_masked
from protocols.caesar.protocol import encoded_blocks
from protocols.estimator import Vertical
from tests.contract import assert_persists, run_both_ways

KEY = 1024


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, ...]:
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=2, stratify=y)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def halves(X: np.ndarray) -> list:
    return [X[:, : X.shape[1] // 2], X[:, X.shape[1] // 2 :]]


def assert_replays(est: CaesarLogisticRegression, blocks: list, y: np.ndarray) -> float:
    """The secure weights equal the plaintext replay's within the derived tolerance; returns error / tolerance."""
    targets = est.one_vs_rest(np.searchsorted(est.classes_, y))
    coef, intercept = reference_fit(blocks, targets, est.config_, est.batch_seed_)
    tolerance = replay_tolerance(blocks, est.config_, est.batch_seed_)
    error = max(np.max(np.abs(est.coef_ - coef)), np.max(np.abs(est.intercept_ - intercept)))
    assert error <= tolerance, f"{error:.3g} > {tolerance:.3g}"
    assert np.max(np.abs(coef)) > 10 * tolerance  # the model moved: not a comparison of two near-zero vectors
    return error / tolerance


# --- the secure fits replay the plaintext algorithm -------------------------------------------------


def test_breast_cancer_replays_plaintext_over_both_transports(cancer, transport, he_scheme) -> None:
    X, y = cancer[0][:160], cancer[2][:160]
    est = CaesarLogisticRegression(he=he_scheme, key_bits=KEY, epochs=3, batch_size=64, l2=0.02, random_state=0)
    est.fit(halves(X), y)
    assert est.coef_.shape == (1, 30) and est.intercept_.shape == (1,) and est.n_iter_ == 3
    assert_replays(est, halves(X), y)
    assert est.communication_.total_bytes > 0 and est.communication_.rounds > 0
    assert len(est.epoch_seconds_) == len(est.epoch_bytes_) == 3


def test_generalises_like_scikit_learn(cancer) -> None:
    X_train, X_test, y_train, y_test = cancer
    est = CaesarLogisticRegression(key_bits=KEY, epochs=4, random_state=0).fit(halves(X_train), y_train)
    plain = LogisticRegression().fit(X_train, y_train)
    assert est.score(halves(X_test), y_test) >= plain.score(X_test, y_test) - 0.02


def test_sparse_one_hot_replays_and_reports_the_loss(he_scheme) -> None:
    X, y, _ = make_sparse_logistic(300, 200, 0.05, seed=3)
    blocks = [X[:, :100], X[:, 100:]]
    est = CaesarLogisticRegression(he=he_scheme, key_bits=KEY, learning_rate=1.0, epochs=2, batch_size=100, report_loss=True,
                                   random_state=4).fit(blocks, y)
    assert_replays(est, blocks, y)
    losses: list[float] = []
    reference_fit(blocks, y, est.config_, est.batch_seed_, losses=losses)
    # |e_secure - e_replay| <= 4 units + max ||x_i|| * (the weights' tolerance) =: delta per residual, so each mean
    # of e^2 moves by at most delta (2 E + delta), E = 1 + Z/4 >= |e| with Z the analysis' bound on |z|; the
    # loss's own floors (of s_P = -eta e_P / 2^20) add at most E / 8 units
    scales = plan(est.config_, schedule_facts(est.config_, est.batch_seed_, encoded_blocks(est.config_, blocks), 1))
    top = 1 + scales.z_bound / 4
    delta = 4 * 2.0**-16 + np.sqrt(X.multiply(X).sum(axis=1).max() + 1) * replay_tolerance(blocks, est.config_,
                                                                                              est.batch_seed_)
    np.testing.assert_allclose(est.epoch_loss_, losses, rtol=0, atol=delta * (2 * top + delta) + top * 2.0**-19)


def test_cubic_sigmoid_replays_plaintext(he_scheme) -> None:
    gen = np.random.default_rng(5)
    X = gen.normal(size=(60, 4)) * 0.5
    y = (X @ np.array([1.0, -1.0, 0.5, 0.0]) + gen.normal(size=60) * 0.3 > 0).astype(int)
    est = CaesarLogisticRegression(he=he_scheme, key_bits=KEY, sigmoid="cubic", learning_rate=0.5, epochs=2, batch_size=30,
                                   random_state=5).fit(halves(X), y)
    assert_replays(est, halves(X), y)


def test_wine_one_vs_rest_in_one_run_matches_scikit_learn() -> None:
    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    plain = OneVsRestClassifier(LogisticRegression()).fit(X_train, y_train).score(X_test, y_test)
    est = CaesarLogisticRegression(key_bits=KEY, learning_rate=0.5, epochs=6, batch_size=32, random_state=1)
    est.fit(halves(X_train), y_train)
    assert est.coef_.shape == (3, 13) and est.intercept_.shape == (3,)
    assert est.score(X_test, y_test) >= plain - 0.02
    np.testing.assert_allclose(est.predict_proba(X_test).sum(axis=1), 1.0)
    assert_replays(est, halves(X_train), y_train)


def test_string_labels_and_a_single_class(cancer) -> None:
    X_train, X_test, y_train, y_test = cancer
    names = np.array(["benign", "malignant"])[1 - y_train]
    est = CaesarLogisticRegression(key_bits=KEY, epochs=1, random_state=2).fit(halves(X_train[:128]), names[:128])
    assert list(est.classes_) == ["benign", "malignant"] and est.coef_.shape == (1, 30)
    assert np.mean(est.predict(X_test) == np.array(["benign", "malignant"])[1 - y_test]) > 0.9
    with pytest.raises(ValueError, match="single class"):
        CaesarLogisticRegression(key_bits=KEY).fit(halves(X_train), np.zeros(len(y_train)))


def test_sparse_blocks_and_a_full_sparse_matrix_predict_alike() -> None:
    X, y, _ = make_sparse_logistic(120, 40, 0.1, seed=8)
    est = CaesarLogisticRegression(key_bits=KEY, learning_rate=1.0, epochs=1, batch_size=60, random_state=1)
    est.fit([X[:, :20], X[:, 20:]], y)
    np.testing.assert_allclose(est.decision_function(X), est.decision_function([X[:, :20], X[:, 20:]]), rtol=1e-12)
    np.testing.assert_allclose(est.decision_function(X), est.decision_function(X.toarray()), rtol=1e-12)


# --- the range analysis: the plaintext model or a clear error before any message ----------------------


def test_a_column_scaled_by_1e4_is_refused_before_any_message_naming_it(cancer, runs) -> None:
    """Issue 14 case 6: refused before any party starts, naming party, column, bound and a learning rate that works."""
    X, y = cancer[0], cancer[2]
    scaled = X.copy()
    scaled[:, 18] *= 1e4  # column 3 of party b's block
    message = (r"party 'b' has mini-batches with \|\|X_S\|\|\^2/\|S\| up to .*its column 3 has \|x\| up to .*stable for "
               r"learning_rate <= .*exceeds 2\^40.*Standardise the features of party 'b', or use learning_rate <= ")
    with pytest.raises(ValueError, match=message):
        CaesarLogisticRegression(key_bits=KEY).fit(halves(scaled), y)  # the defaults, as in the issue
    assert runs == []
    with pytest.raises(ValueError, match=message) as refused:  # a smaller case, to try the suggestion quickly
        CaesarLogisticRegression(key_bits=KEY, random_state=3).fit(halves(scaled[:128]), y[:128])
    assert runs == []
    works = float(str(refused.value).rsplit("<= ", 1)[1])
    with pytest.warns(ConvergenceWarning):  # accepted: bounded, but beyond the stable step
        est = CaesarLogisticRegression(key_bits=KEY, learning_rate=works, random_state=3).fit(halves(scaled[:128]),
                                                                                              y[:128])
    coef, intercept = reference_fit(halves(scaled[:128]), y[:128], est.config_, est.batch_seed_)
    assert np.max(np.abs(est.coef_ - coef)) <= replay_tolerance(halves(scaled[:128]), est.config_, est.batch_seed_)


def test_a_large_learning_rate_on_dense_data_warns_and_still_replays(cancer) -> None:
    """The documented learning_rate=4 on standardised data: bounded by the analysis, warned about, no overflow."""
    X, y = cancer[0][:128], cancer[2][:128]
    with pytest.warns(ConvergenceWarning, match="learning_rate=4 exceeds the stable step"):
        est = CaesarLogisticRegression(key_bits=KEY, learning_rate=4.0, epochs=2, batch_size=128,
                                       random_state=0).fit(halves(X), y)
    assert_replays(est, halves(X), y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proba = est.predict_proba(np.vstack([X, 1e4 * X]))  # scores far beyond exp's range
    assert np.all(np.isfinite(proba)) and np.allclose(proba.sum(axis=1), 1.0)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    scale=st.sampled_from([1e-3, 1e-1, 1.0, 30.0, 1e3]),
    learning_rate=st.sampled_from([0.05, 0.5, 4.0]),
    sigmoid=st.sampled_from(["linear", "cubic"]),
    sparse=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_generated_data_gives_the_replay_or_an_early_error(runs, scale, learning_rate, sigmoid, sparse, seed) -> None:
    data = np.random.default_rng(seed)
    n, d = 24, 5
    X = data.normal(size=(n, d)) * scale * data.uniform(0.1, 1, size=d)
    if sparse:
        X = sp.csr_matrix(X * (data.random((n, d)) < 0.4))
    y = np.arange(n) % 2
    model = CaesarLogisticRegression(key_bits=KEY, learning_rate=learning_rate, sigmoid=sigmoid, epochs=2, batch_size=8,
                                     random_state=seed)
    blocks = [X[:, :2], X[:, 2:]]
    runs.clear()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(blocks, y)
    except ValueError as exc:
        assert runs == [], f"refused after the run started: {exc}"
        assert "range analysis" in str(exc)
        return
    coef, intercept = reference_fit(blocks, y, model.config_, model.batch_seed_)
    tolerance = replay_tolerance(blocks, model.config_, model.batch_seed_)
    assert max(np.max(np.abs(model.coef_ - coef)), np.max(np.abs(model.intercept_ - intercept))) <= tolerance


# --- what crosses the wire ---------------------------------------------------------------------------


@pytest.mark.parametrize("sigmoid", ["linear", "cubic"])
def test_wire_view_both_parties_receive_ciphertexts_or_uniformly_masked_values(monkeypatch, wire_log, sigmoid,
                                                                              he_scheme) -> None:
    """Issue 15 items 10-11: what each party receives, checked against the leakage statement, for A and for B.

    A masked value ``v + 2^B + U`` (``U`` uniform on ``[0, 2^(B+40))``, ``|v| < 2^B``) decrypted by
    its receiver must look uniform: ``(t - 2^B) / 2^(B+40)`` passes a Kolmogorov-Smirnov test at
    each party separately (without the mask it would be ``v``, far below ``2^(B+40)``).
    """
    keys: dict[int, object] = {}
    real = protocols.caesar.protocol.generate_keypair

    def recording(scheme, bits):
        assert scheme == he_scheme
        public, private = real(scheme, bits)
        keys[int(public.n)] = private
        return public, private

    monkeypatch.setattr(protocols.caesar.protocol, "generate_keypair", recording)
    gen = np.random.default_rng(9)
    X = gen.normal(size=(96, 6))
    y = (X[:, 0] - X[:, 4] > 0).astype(int)
    est = CaesarLogisticRegression(he=he_scheme, key_bits=KEY, learning_rate=0.15, epochs=2, batch_size=32, l2=0.05,
                                   report_loss=True, sigmoid=sigmoid, random_state=1).fit(halves(X), y)
    hellos = {receiver: m for receiver, _, m in wire_log if isinstance(m, dict) and "digest" in m}
    own_key = {receiver: keys[int(hellos[sender]["pk"]["n"])] for receiver, sender in (("a", "b"), ("b", "a"))}
    uniform: dict[str, list[float]] = {"a": [], "b": []}
    fresh: dict[str, list[int]] = {"a": [], "b": []}
    for receiver, sender, message in wire_log:
        fields = set(message) if isinstance(message, dict) else None
        if fields == {"pk", "digest", "seed"}:  # step 1: public key, options digest, B's seed
            assert (message["seed"] is None) == (sender == "a")
        elif fields == {"rows", "cols", "x_frac_bits", "row_norm", "spread", "outputs"}:  # step 2: the public facts
            assert message["rows"] == 96
        elif fields == {"kind", "count", "bound_bits", "enc"}:  # masked under the receiver's own key
            bound = message["bound_bits"]
            values = unpack_masked(own_key[receiver], message, message["count"], bound)
            assert all(0 <= int(t) < 1 << (bound + MASK_SIGMA + 1) for t in values)
            uniform[receiver] += [float(int(t) - (1 << bound)) / 2.0 ** (bound + MASK_SIGMA) for t in values]
        elif fields == {"shape", "frac_bits", "c"}:  # ciphertexts under the sender's key, fresh each time
            fresh[receiver] += message["c"]
        elif fields == {"bound_bits", "enc"}:  # report_loss: one masked sum under the receiver's key
            value = int(own_key[receiver].decrypt_int(EncryptedArray.from_wire(own_key[receiver].public_key,
                                                                                 message["enc"]))[()])
            assert 0 <= value < 1 << (message["bound_bits"] + MASK_SIGMA + 1)
        elif isinstance(message, list):  # the receiver's own weights masked by its own mask: its output
            assert len(message) == {"a": 3, "b": 4}[receiver]
        else:
            pytest.fail(f"{receiver} received an unexpected message from {sender}: {str(message)[:80]}")
    for party in ("a", "b"):
        assert len(uniform[party]) > 2 * 96, party
        assert stats.kstest(uniform[party], "uniform").pvalue > 1e-4, party
        assert len(set(fresh[party])) == len(fresh[party]) > 100, party
    assert_replays(est, halves(X), y)


# --- outputs and secure prediction -------------------------------------------------------------------


def test_outputs_own_reveal_and_shared_with_secure_prediction(cancer, he_scheme) -> None:
    X_train, X_test, y_train, _ = cancer
    X, y = X_train[:128], y_train[:128]
    options = dict(he=he_scheme, key_bits=KEY, epochs=2, batch_size=64, random_state=5)
    own = CaesarLogisticRegression(**options).fit(halves(X), y)
    reveal = CaesarLogisticRegression(output="reveal", **options).fit(halves(X), y)
    shared = CaesarLogisticRegression(output="shared", **options).fit(halves(X), y)
    assert_replays(own, halves(X), y)
    assert_replays(reveal, halves(X), y)
    assert not hasattr(shared, "coef_") and set(shared.weight_shares_) == {"a", "b"}
    # secure prediction uses the shared run's exact weights (within the replay tolerance of the replay, like
    # the revealed run's: 2 tolerances apart, times the query rows' norm) on X quantised to 2^-16 (half a unit
    # per entry, times ||w||_1)
    tolerance = replay_tolerance(halves(X), reveal.config_, reveal.batch_seed_)
    rows = X_test[:20]
    bound = (np.linalg.norm(np.hstack([rows, np.ones((20, 1))]), axis=1).max() * 2 * tolerance
             + 2.0**-17 * np.abs(reveal.coef_).sum() + 1e-12)
    np.testing.assert_allclose(shared.decision_function(rows), reveal.decision_function(rows), rtol=0, atol=bound)
    np.testing.assert_array_equal(shared.predict(rows), reveal.predict(rows))
    with pytest.raises(ValueError, match="shared"):
        shared.save("unused.npz")


def test_secure_prediction_wire_view(cancer, wire_log, he_scheme) -> None:
    """A learns nothing from prediction but public facts, ciphertexts and masked values; B learns the scores."""
    X, y = cancer[0][:64], cancer[2][:64]
    shared = CaesarLogisticRegression(he=he_scheme, key_bits=KEY, epochs=1, output="shared", random_state=2).fit(halves(X), y)
    wire_log.clear()
    shared.decision_function(cancer[1][:10])
    to_a = [m for receiver, _, m in wire_log if receiver == "a"]
    kinds = [tuple(sorted(m)) if isinstance(m, dict) else type(m).__name__ for m in to_a]
    assert kinds == [("cols", "pk", "row_norm", "rows", "x_frac_bits"), ("c", "frac_bits", "shape"),
                     ("bound_bits", "count", "enc", "kind")]


# --- the scikit-learn contract -----------------------------------------------------------------------


def test_pipeline_and_cross_validation_with_a_simulated_partition(cancer) -> None:
    X, _, y, _ = cancer
    model = Pipeline([("scale", StandardScaler()),
                      ("lr", CaesarLogisticRegression(partition=Vertical(15, 15), key_bits=KEY, epochs=1,
                                                      random_state=0))])
    assert cross_val_score(model, X[:240], y[:240], cv=2).min() > 0.9
    with pytest.raises(ValueError, match="splits 20 columns but X has 30"):
        CaesarLogisticRegression(partition=Vertical(10, 10)).fit(X, y)
    with pytest.raises(ValueError, match="exactly two blocks"):
        CaesarLogisticRegression(partition=Vertical(10, 10, 10), key_bits=KEY).fit(X, y)


def test_save_load_round_trip_and_tampering(cancer, tmp_path) -> None:
    X_train, X_test, y_train, _ = cancer
    est = CaesarLogisticRegression(key_bits=KEY, epochs=1, random_state=3).fit(halves(X_train[:128]),
                                                                               np.where(y_train[:128] == 1, "yes", "no"))
    assert_persists(est, X_test, tmp_path)


def test_predict_on_blocks_and_full_matrix_and_feature_names(cancer) -> None:
    import pandas as pd

    X_train, X_test, y_train, _ = cancer
    columns = [f"f{i}" for i in range(30)]
    frame = pd.DataFrame(X_train[:128], columns=columns)
    est = CaesarLogisticRegression(key_bits=KEY, epochs=1, random_state=0).fit([frame.iloc[:, :10], frame.iloc[:, 10:]],
                                                                               y_train[:128])
    assert list(est.feature_names_in_) == columns
    test = pd.DataFrame(X_test, columns=columns)
    np.testing.assert_allclose(est.decision_function(test), est.decision_function([X_test[:, :10], X_test[:, 10:]]),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="feature names"):
        est.predict(test[columns[::-1]])


def test_verbose_logs_a_line_per_epoch_with_the_loss(cancer, caplog) -> None:
    X, y = cancer[0][:96], cancer[2][:96]
    with caplog.at_level(logging.INFO, logger="protocols.progress"):
        CaesarLogisticRegression(key_bits=KEY, epochs=3, batch_size=48, report_loss=True, verbose=2,
                                 random_state=0).fit(halves(X), y)
    lines = [r.getMessage() for r in caplog.records if r.name == "protocols.progress"]
    assert [line.split(":")[1].strip().split()[:2] for line in lines] == [["epoch", "1/3"], ["epoch", "2/3"],
                                                                            ["epoch", "3/3"]]
    assert all("loss" in line for line in lines)


def test_estimator_conventions_and_input_errors() -> None:
    gen = np.random.default_rng(0)
    X, y = gen.normal(size=(20, 4)), np.arange(20) % 2
    model = CaesarLogisticRegression(key_bits=KEY)
    assert clone(model).get_params() == model.get_params()
    assert model.learning_rate == CaesarConfig.defaults()["learning_rate"]
    with pytest.raises(NotFittedError):
        model.predict(halves(X))
    with pytest.raises(ValueError, match="same number of rows"):
        model.fit([X[:, :2], X[:10, 2:]], y)
    with pytest.raises(ValueError, match="exactly two blocks"):
        model.fit([X[:, :1], X[:, 1:2], X[:, 2:]], y)
    with pytest.raises(ValueError, match="sigmoid"):
        CaesarLogisticRegression(sigmoid="tanh").fit(halves(X), y)
    with pytest.raises(ValueError, match="learning_rate"):
        CaesarLogisticRegression(learning_rate=-1).fit(halves(X), y)
    with pytest.raises(ValueError, match="l2 must satisfy"):
        CaesarLogisticRegression(learning_rate=1.0, l2=2.0).fit(halves(X), y)
    with pytest.raises(ValueError, match=r"X\[0\] contains NaN"):
        bad = X[:, :2].copy()
        bad[0, 0] = np.nan
        model.fit([bad, X[:, 2:]], y)
    with pytest.raises(TypeError, match="unexpected parameters"):
        CaesarLogisticRegression(epocs=3)


@pytest.mark.parametrize("expected, sent", [("ou", "paillier"), ("paillier", "ou")])
def test_a_peer_key_of_another_scheme_is_refused_at_set_up(monkeypatch, expected, sent) -> None:
    """Each party checks the key it receives with ``public_key_from_wire(..., config.he)``: a peer whose key
    pair is of another scheme (here both, as if each had been built with the other) is refused."""
    real = protocols.caesar.protocol.generate_keypair
    monkeypatch.setattr(protocols.caesar.protocol, "generate_keypair", lambda scheme, bits: real(sent, bits))
    gen = np.random.default_rng(0)
    X, y = gen.normal(size=(20, 4)), np.arange(20) % 2
    with pytest.raises(Exception, match=f"expected a {expected} public key from the peer, got '{sent}'"):
        CaesarLogisticRegression(he=expected, key_bits=KEY, epochs=1).fit(halves(X), y)


def test_parties_with_different_options_refuse_at_set_up() -> None:
    gen = np.random.default_rng(0)
    X, y = gen.normal(size=(20, 4)), np.arange(20) % 2
    mine, theirs = CaesarConfig(key_bits=KEY), CaesarConfig(key_bits=KEY, epochs=3)
    role_a, inputs_a = roles(mine, {"a": (X[:, :2], None)})
    role_b, inputs_b = roles(theirs, {"b": (X[:, 2:], y)})
    with pytest.raises(Exception, match="different training parameters"):
        run_local({"a": role_a["a"], "b": role_b["b"]}, {"a": inputs_a["a"], "b": inputs_b["b"]}, timeout=20)


# --- as party processes --------------------------------------------------------------------------------


@pytest.mark.slow  # two party processes
def test_processes_match_in_process_run(tmp_path) -> None:
    options = {"key_bits": str(KEY), "rows": "60", "cols": "20", "density": "0.1", "epochs": "1", "batch_size": "30",
               "random_state": "7"}
    local, remote = run_both_ways("caesar", options, tmp_path, seed=4)
    # same messages and rounds; the runs differ only in fresh keys and masks (ciphertext widths, last-bit rounding)
    for pid in ("alice", "bob"):
        a, b = local.stats[pid].as_dict(), remote.outputs.stats[pid].as_dict()
        assert {k: a[k] for k in ("messages_sent", "messages_received", "rounds")} == \
            {k: b[k] for k in ("messages_sent", "messages_received", "rounds")}
        assert abs(a["bytes_sent"] - b["bytes_sent"]) <= 0.02 * a["bytes_sent"]


@pytest.mark.slow  # two party processes
def test_party_saves_the_revealed_model_and_predict_uses_it(tmp_path) -> None:
    from parties.apps import load_app, read_csv, write_csv
    from parties.cli import main
    from parties.launcher import party_command, spawn, write_loopback_federation

    app = load_app("caesar")
    options = {"key_bits": str(KEY), "rows": "80", "cols": "20", "density": "0.1", "epochs": "2", "batch_size": "40",
               "output": "reveal", "learning_rate": "1.0"}
    data = app.demo_data(tmp_path, 0, options)
    federation = write_loopback_federation(app.DEMO_PARTIES, tmp_path / "run", timeout=60)
    model_file = tmp_path / "bob-model.npz"
    procs = {pid: spawn(party_command(federation, pid, "caesar", data[pid], options, tmp_path / f"{pid}.out")
                        + (["--model", str(model_file)] if pid == "bob" else []), tmp_path / f"{pid}.log")
             for pid in app.DEMO_PARTIES}
    assert all(proc.wait(120) == 0 for proc in procs.values()), [(tmp_path / f"{p}.log").read_text() for p in procs]
    X = np.hstack([read_csv(data["alice"]), read_csv(data["bob"])[:, :-1]])
    write_csv(tmp_path / "X.csv", X)
    assert main(["predict", "--model", str(model_file), "--data", str(tmp_path / "X.csv"),
                 "--output", str(tmp_path / "P.csv")]) == 0
    table = np.loadtxt(tmp_path / "P.csv", delimiter=",", skiprows=1)
    model = CaesarLogisticRegression.load(model_file)
    np.testing.assert_array_equal(table[:, 0], model.predict(X))
    np.testing.assert_allclose(table[:, 1:], model.predict_proba(X), rtol=1e-15)


@pytest.mark.slow  # about 100 s: every scikit-learn check is a real secure fit
def test_scikit_learn_estimator_checks() -> None:
    """scikit-learn's checks with ``partition=Vertical(parts=2)``: the columns of whatever X halved between A and B."""
    from sklearn.utils.estimator_checks import check_estimator

    check_estimator(CaesarLogisticRegression(partition=Vertical(parts=2), key_bits=KEY, epochs=1, random_state=0),
                    expected_failed_checks={
        "check_fit_idempotent": "the floors of randomly masked integer shares differ between runs (a few units "
                                "2^-16 per step): two fits agree within replay_tolerance, not to the check's 1e-7",
        "check_fit2d_1feature": "CAESAR needs a column at each of its two parties; one feature cannot be split",
    })
