"""CAESAR (protocols/caesar.py) against the plaintext algorithm and scikit-learn, plus what crosses the wire."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import protocols.caesar as caesar
from mpcml import PartyFailed, run_local
from mpcml.paillier import MASK_SIGMA, EncryptedArray, PublicKey
from protocols.caesar import (
    CaesarLogisticRegression,
    CaesarParams,
    make_sparse_logistic,
    reference_fit,
    run_party_a,
    run_party_b,
    weight_error_bound,
)

KEY = 1024


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=2, stratify=y)
    scaler = StandardScaler().fit(Xtr)
    return scaler.transform(Xtr), scaler.transform(Xte), ytr, yte


def test_breast_cancer_auc_and_weights_match_plaintext(cancer) -> None:
    Xtr, Xte, ytr, yte = cancer
    model = CaesarLogisticRegression(learning_rate=0.5, epochs=2, batch_size=64, l2=0.01, shuffle=False, key_bits=KEY)
    model.fit([Xtr[:, :12], Xtr[:, 12:]], ytr)
    auc = roc_auc_score(yte, model.predict_proba([Xte[:, :12], Xte[:, 12:]])[:, 1])
    sk_auc = roc_auc_score(yte, LogisticRegression().fit(Xtr, ytr).decision_function(Xte))
    assert auc >= 0.98 and abs(auc - sk_auc) <= 0.01, (auc, sk_auc)

    params = model._params()
    ref_w, ref_b = reference_fit([Xtr[:, :12], Xtr[:, 12:]], ytr, params)
    tol = weight_error_bound([Xtr], ref_w, params, len(ytr))
    np.testing.assert_allclose(model.coef_[0], np.concatenate(ref_w), atol=tol, rtol=0)
    assert abs(model.intercept_[0] - ref_b) <= tol
    assert model.communication_.total_bytes > 0 and model.communication_.rounds > 0
    assert set(model.predict([Xte[:, :12], Xte[:, 12:]])) <= {0, 1}


def test_sparse_one_hot_matches_plaintext_and_learns() -> None:
    X, y, _ = make_sparse_logistic(500, 300, 0.02, seed=3)
    Xtr, Xte, ytr, yte = X[:400], X[400:], y[:400], y[400:]
    blocks = [Xtr[:, :150], Xtr[:, 150:]]
    model = CaesarLogisticRegression(learning_rate=1.0, epochs=2, batch_size=100, shuffle=False, key_bits=KEY,
                                     report_loss=True).fit(blocks, ytr)
    params = model._params()
    losses: list[float] = []
    ref_w, ref_b = reference_fit(blocks, ytr, params, losses=losses)
    np.testing.assert_allclose(model.epoch_loss_, losses, atol=1e-3, rtol=0)  # residual error ~2^-14 per row
    np.testing.assert_allclose(model.coef_[0], np.concatenate(ref_w), atol=weight_error_bound(blocks, ref_w, params, 400))
    auc = roc_auc_score(yte, model.decision_function([Xte[:, :150], Xte[:, 150:]]))
    ref_auc = roc_auc_score(yte, Xte @ np.concatenate(ref_w) + ref_b)
    assert abs(auc - ref_auc) <= 0.01 and auc > 0.6, (auc, ref_auc)


def test_cubic_sigmoid_matches_plaintext() -> None:
    gen = np.random.default_rng(5)
    X = gen.normal(size=(60, 4)) * 0.5
    y = (X @ np.array([1.0, -1.0, 0.5, 0.0]) + gen.normal(size=60) * 0.3 > 0).astype(int)
    params = CaesarParams(learning_rate=0.5, epochs=2, batch_size=30, sigmoid="cubic", shuffle=False, key_bits=KEY)
    out = run_local({"a": run_party_a, "b": run_party_b},
                    {"a": ("b", X[:, :2], params), "b": ("a", X[:, 2:], y, params)})
    ref_w, ref_b = reference_fit([X[:, :2], X[:, 2:]], y, params)
    tol = weight_error_bound([X], ref_w, params, 60)
    np.testing.assert_allclose(np.concatenate([out["a"], out["b"]["coef"]]), np.concatenate(ref_w), atol=tol)
    assert abs(out["b"]["intercept"] - ref_b) <= tol
    assert np.abs(ref_w[0]).max() > 10 * tol  # the model moved: the comparison is not between two zero vectors


def test_party_a_receives_only_ciphertexts_or_uniformly_masked_values(monkeypatch) -> None:
    keys = {}
    real_generate = caesar.generate_keypair

    def recording_generate(bits):
        pk, sk = real_generate(bits)
        keys[int(pk.n)] = sk
        return pk, sk

    monkeypatch.setattr(caesar, "generate_keypair", recording_generate)
    received, sent = [], []

    def spied_a(party, *args):
        recv, send = party.recv, party.send
        party.recv = lambda frm, timeout=None: received.append(recv(frm, timeout)) or received[-1]
        party.send = lambda to, obj: sent.append(obj) or send(to, obj)
        return run_party_a(party, *args)

    gen = np.random.default_rng(9)
    X = gen.normal(size=(96, 6))
    y = (X[:, 0] - X[:, 4] > 0).astype(int)
    params = CaesarParams(learning_rate=0.3, epochs=2, batch_size=32, l2=0.05, key_bits=KEY, report_loss=True)
    out = run_local({"a": spied_a, "b": run_party_b}, {"a": ("b", X[:, :3], params), "b": ("a", X[:, 3:], y, params)})

    a_key = PublicKey.from_wire(sent[0]["pk"])
    b_key = PublicKey.from_wire(received[0]["pk"])
    assert a_key != b_key and set(keys) == {int(a_key.n), int(b_key.n)}
    uniform, b_ciphertexts = [], []
    for message in received:
        kind = message["kind"]
        if kind == "setup":
            assert set(message) == {"kind", "pk", "rows", "cols", "x_frac_bits", "params"}
        elif kind == "order":  # public by design: the batch indices
            assert sorted(message["rows"]) == list(range(96))
        elif kind in ("residual", "share"):  # ciphertexts under B's key, fresh each time
            enc = EncryptedArray.from_wire(b_key, message["enc"])
            b_ciphertexts += [int(c) for c in enc.ciphertexts.flat]
        elif kind == "masked":  # ciphertexts under A's key of values masked with sigma uniform bits
            bound = message["bound_bits"]
            slots = caesar.unpack_masked(keys[int(a_key.n)], message, message["count"], bound)
            assert all(0 <= int(t) < 1 << (bound + MASK_SIGMA + 1) for t in slots)
            uniform += [float(int(t) - (1 << bound)) / 2.0 ** (bound + MASK_SIGMA) for t in slots]
        elif kind == "masked_sum":  # report_loss: one ciphertext under A's key of a sigma-bit masked sum
            bound = message["bound_bits"]
            value = int(keys[int(a_key.n)].decrypt_int(EncryptedArray.from_wire(a_key, message["enc"]))[()])
            assert 0 <= value < 1 << (bound + MASK_SIGMA + 1)
        elif kind == "opened":  # A's own weights masked with A's own mask: A's output
            assert len(message["values"]) == 3
        else:
            pytest.fail(f"A received an unexpected message kind {kind!r}")
    assert len(set(b_ciphertexts)) == len(b_ciphertexts) > 100
    assert len(uniform) == 2 * 96 + 3 * 4  # z every epoch; B's 3 weights + intercept at 2 decays and the reveal
    assert stats.kstest(uniform, "uniform").pvalue > 1e-4
    # the shuffled run (orders drawn by B's CSPRNG) is the plaintext algorithm on those orders
    ref_w, ref_b = reference_fit([X[:, :3], X[:, 3:]], y, params, orders=out["b"]["orders"])
    tol = weight_error_bound([X], ref_w, params, 96)
    np.testing.assert_allclose(np.concatenate([out["a"], out["b"]["coef"]]), np.concatenate(ref_w), atol=tol, rtol=0)
    assert not np.array_equal(out["b"]["orders"][0], np.arange(96))


def test_estimator_conventions_and_input_errors() -> None:
    gen = np.random.default_rng(0)
    X, y = gen.normal(size=(20, 4)), np.arange(20) % 2
    model = CaesarLogisticRegression(key_bits=KEY)
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        model.predict([X[:, :2], X[:, 2:]])
    with pytest.raises(ValueError, match="same number of rows"):
        model.fit([X[:, :2], X[:10, 2:]], y)
    with pytest.raises(ValueError, match="y"):
        model.fit([X[:, :2], X[:, 2:]], y + 1)
    with pytest.raises(ValueError, match="exactly two"):
        model.fit([X[:, :1], X[:, 1:2], X[:, 2:]], y)
    with pytest.raises(ValueError, match="sigmoid"):
        CaesarLogisticRegression(sigmoid="tanh").fit([X[:, :2], X[:, 2:]], y)
    with pytest.raises(ValueError, match="learning_rate"):
        CaesarLogisticRegression(learning_rate=-1).fit([X[:, :2], X[:, 2:]], y)
    with pytest.raises(ValueError, match=r"X\[0\] contains NaN"):
        bad = X[:, :2].copy()
        bad[0, 0] = np.nan
        model.fit([bad, X[:, 2:]], y)


def test_parties_with_different_parameters_refuse() -> None:
    gen = np.random.default_rng(0)
    X, y = gen.normal(size=(20, 4)), np.arange(20) % 2
    pa, pb = CaesarParams(key_bits=KEY), CaesarParams(key_bits=KEY, epochs=3)
    with pytest.raises(PartyFailed, match="different training parameters"):
        run_local({"a": run_party_a, "b": run_party_b}, {"a": ("b", X[:, :2], pa), "b": ("a", X[:, 2:], y, pb)}, timeout=20)


def test_processes_match_in_process_run(tmp_path) -> None:
    from parties.apps import load_app, run_app_local
    from parties.launcher import run_processes

    options = {"key_bits": str(KEY), "rows": "60", "cols": "20", "density": "0.1", "epochs": "1", "batch_size": "30"}
    app = load_app("caesar")
    data = app.demo_data(tmp_path, 4, options)
    local = run_app_local("caesar", data, options, timeout=60)
    remote = run_processes("caesar", data, options, work_dir=tmp_path / "run", secure=True, timeout=60)
    for outputs in (local, remote.outputs):
        result = app.check(outputs, data, options)
        assert result.ok, result.summary
    # same messages and rounds; the runs differ only in fresh keys and masks (ciphertext widths, last-bit rounding)
    for pid in ("alice", "bob"):
        a, b = local.stats[pid].as_dict(), remote.outputs.stats[pid].as_dict()
        assert {k: a[k] for k in ("messages_sent", "messages_received", "rounds")} == \
            {k: b[k] for k in ("messages_sent", "messages_received", "rounds")}
        assert abs(a["bytes_sent"] - b["bytes_sent"]) <= 0.02 * a["bytes_sent"]
    np.testing.assert_allclose(remote.outputs["alice"], local["alice"], atol=2.0**-12, rtol=0)
    np.testing.assert_allclose(remote.outputs["bob"]["coef"], local["bob"]["coef"], atol=2.0**-12, rtol=0)
