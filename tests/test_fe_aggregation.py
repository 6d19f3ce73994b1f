"""HybridAlpha and FedV (protocols.fe_aggregation) against plaintext, in-process.

FE runs on secp256k1 (the default group) and Paillier on 1024-bit keys, for speed.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.preprocessing import StandardScaler

from mpcml import run_local
from mpcml.ec import SECP256K1
from mpcml.dp import analytic_gaussian_sigma
from protocols.fe_aggregation import (
    DPConfig,
    FedVConfig,
    FedVEstimator,
    FedVPolicy,
    HybridAlphaConfig,
    HybridAlphaLogisticRegression,
    KeyPolicy,
    fedv_roles,
    hybridalpha_roles,
    logistic,
    plaintext_fedavg,
    plaintext_fedv,
    quantise,
)

G = SECP256K1.name
IDS = tuple(f"p{i}" for i in range(5))


def fixed_updates(updates):
    return {pid: (lambda model, rnd, u=u: u) for pid, u in updates.items()}


def run_rounds(scheme, updates, *, rounds=1, drop_after=None, min_parties=2, dp=None, n_params=None):
    # with dropouts the aggregator waits out the deadline once; without, nobody waits for it
    deadline = 3.0 if drop_after else 60.0
    n_params = n_params or len(next(iter(updates.values())))
    config = HybridAlphaConfig(IDS, n_params, rounds, scheme, min_parties=min_parties, deadline=deadline, group=G,
                               paillier_bits=1024, dp=dp)
    roles, inputs = hybridalpha_roles(config, fixed_updates(updates), np.zeros(n_params), drop_after)
    return run_local(roles, inputs, timeout=60)


@pytest.fixture(scope="module")
def updates():
    rng = np.random.default_rng(11)  # test data only
    ups = {pid: rng.normal(scale=2.0, size=30) for pid in IDS}
    ups["p0"][:3] = [0.0, 255.9, -255.9]  # zero and near the agreed bound (max_abs = 256)
    return ups


def quantised(u):
    return quantise(u, 16, 256 * 2**16, "u").astype(np.float64) / 2**16


@pytest.mark.parametrize("scheme", ["fe", "paillier-packed", "phe"])
def test_aggregate_is_exact_sum_of_quantised_updates(scheme, updates):
    out = run_rounds(scheme, updates)
    expected = sum(quantised(u) for u in updates.values()) / len(IDS)
    assert np.array_equal(out["aggregator"]["model"], expected)
    assert out["aggregator"]["history"][0]["responders"] == list(IDS)


def test_dropouts_give_exact_mean_of_survivors(updates):
    # t = 3 of 5: two parties drop out in round 1 and the round still completes, no extra round
    out = run_rounds("fe", updates, rounds=2, drop_after={"p1": 1, "p4": 1}, min_parties=3)
    survivors = ["p0", "p2", "p3"]
    first = sum(quantised(u) for u in updates.values()) / 5
    second = sum(quantised(updates[p]) for p in survivors) / 3
    assert np.array_equal(out["aggregator"]["model"], first + second)
    assert out["aggregator"]["history"][1]["responders"] == survivors
    assert out["p1"]["status"] == "dropped" and out["p0"]["status"] == "finished"
    assert out["tpa"]["refused"] == []


def test_precomputed_rounds_give_the_same_exact_results(updates):
    config = HybridAlphaConfig(IDS, 30, 2, "fe", min_parties=3, deadline=3.0, group=G, precompute=True)
    roles, inputs = hybridalpha_roles(config, fixed_updates(updates), np.zeros(30), {"p2": 1})
    out = run_local(roles, inputs, timeout=60)
    first = sum(quantised(u) for u in updates.values()) / 5
    second = sum(quantised(updates[p]) for p in ("p0", "p1", "p3", "p4")) / 4
    assert np.array_equal(out["aggregator"]["model"], first + second)
    with pytest.raises(ValueError, match="precompute"):
        HybridAlphaConfig(IDS, 30, scheme="phe", precompute=True, group=G)


def test_tpa_refuses_isolating_round(updates):
    out = run_rounds("fe", updates, rounds=2, drop_after={"p1": 1, "p2": 1, "p3": 1}, min_parties=3)
    history = out["aggregator"]["history"]
    assert "at least 3 parties" in history[1]["refused"]
    assert np.array_equal(out["aggregator"]["model"], sum(quantised(u) for u in updates.values()) / 5)
    assert len(out["tpa"]["refused"]) == 1


def test_key_policy_rules():
    policy = KeyPolicy(min_parties=2)
    assert policy.refusal([1, 0, 0], (0, "u")) is not None  # isolates one party
    assert "unequal" in policy.refusal([1, 2, 0], (0, "u"))
    assert "non-negative" in policy.refusal([1, -1, 1], (0, "u"))
    assert policy.refusal([1, 1, 0], (0, "u")) is None
    assert "already used" in policy.refusal([1, 1, 1], (0, "u"))
    assert KeyPolicy(2, allow_unequal=True).refusal([3, 1, 0], (1, "u")) is None


def test_dp_noise_has_the_stated_variance():
    rng = np.random.default_rng(5)  # test data only
    ups = {pid: rng.normal(scale=0.001, size=1500) for pid in IDS}
    dp = DPConfig(epsilon=1.0, delta=1e-5, clip=1.0)
    out = run_rounds("fe", ups, dp=dp, min_parties=5)
    noise = out["aggregator"]["model"] * 5 - sum(ups.values())
    sigma = analytic_gaussian_sigma(1.0, 1.0, 1e-5)  # five parties x N(0, sigma^2 / 5)
    assert np.std(noise) == pytest.approx(sigma, rel=0.08)
    assert abs(np.mean(noise)) < 4 * sigma / np.sqrt(noise.size)


def test_config_and_update_errors():
    with pytest.raises(ValueError, match="min_parties"):
        HybridAlphaConfig(IDS, 4, min_parties=6, group=G)
    with pytest.raises(ValueError, match="scheme"):
        HybridAlphaConfig(IDS, 4, scheme="rsa", group=G)
    with pytest.raises(ValueError, match="party_weights needs allow_unequal"):
        HybridAlphaConfig(IDS, 4, party_weights=(1, 2, 3, 4, 5), group=G)
    with pytest.raises(ValueError, match="unknown group"):
        HybridAlphaConfig(IDS, 4, group="tiny")
    with pytest.raises(ValueError, match="above the agreed bound"):
        quantise([300.0], 16, 256 * 2**16, "update")


def _parties(X, y, n):
    return [(X[i::n], y[i::n]) for i in range(n)]


def test_hybridalpha_training_matches_plaintext_fedavg():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    train, test = np.arange(len(y)) % 5 != 0, np.arange(len(y)) % 5 == 0
    parts = _parties(X[train], y[train], 6)
    est = HybridAlphaLogisticRegression(rounds=8, local_epochs=3, learning_rate=0.5, group=G).fit(parts)
    ref = plaintext_fedavg(parts, 8, 0.5, 3)
    plain_acc = np.mean(((X[test] @ ref[:-1] + ref[-1]) > 0) == y[test])
    assert np.mean(est.predict(X[test]) == y[test]) == pytest.approx(plain_acc, abs=1e-12)
    assert np.max(np.abs(est.coef_ - ref[:-1])) < 1e-3
    assert plain_acc > 0.95
    assert est.communication_.total_bytes > 0 and len(est.history_) == 8


def _vertical(model):
    if model == "linear":
        X, y = load_diabetes(return_X_y=True)
        y = (y - y.mean()) / y.std()
    else:
        X, y = load_breast_cancer(return_X_y=True)
        y = y.astype(np.float64)
    X = np.clip(StandardScaler().fit_transform(X), -15, 15)
    cuts = np.array_split(np.arange(X.shape[1]), 3)
    return [X[:, c] for c in cuts], y


def _quantised_gradient(parts, y, config, initial):
    """The first full-batch gradient in exact integer arithmetic on the quantised values."""
    f = config.frac_bits
    q = lambda a: np.rint(np.asarray(a) * 2**f).astype(np.int64)  # noqa: E731
    blocks = [np.asarray(p) for p in parts]
    blocks[0] = np.hstack([blocks[0], np.ones((len(y), 1))])
    xq = [q(b) for b in blocks]
    z = sum(x @ q(initial[pid]) for x, pid in zip(xq, config.parties)).astype(np.float64)
    if config.model == "linear":
        z = z - q(y) * 2**f
    e = q(fedv_errors_ref(config.model, z / 2 ** (2 * f), y))
    return np.concatenate([(x.T @ e) / 2 ** (2 * f) / len(y) for x in xq])


def fedv_errors_ref(model, z, y):
    if model == "linear":
        return z
    if model == "logistic":
        return logistic(z) - y
    s = 2 * y - 1
    return -s * (s * z < 1)


@pytest.mark.parametrize("model", ["linear", "logistic", "svm"])
def test_fedv_gradient_equals_plaintext_gradient(model):
    parts, y = _vertical(model)
    config = FedVConfig(("a", "b", "c"), tuple(p.shape[1] for p in parts), len(y), "a", model, epochs=1,
                        group=G, record_gradients=True)
    out = run_local(*fedv_roles(config, parts, y), timeout=120)
    initial = out["aggregator"]["initial"]
    got = out["aggregator"]["history"][0]["gradient"]
    assert np.array_equal(got, _quantised_gradient(parts, y, config, initial))
    # against float64 without quantisation: errors of 2^-11 in x, w and e, propagated
    full = np.hstack([parts[0], np.ones((len(y), 1)), parts[1], parts[2]])
    order = np.r_[np.arange(parts[0].shape[1] + 1), np.arange(parts[0].shape[1] + 1, full.shape[1])]
    w = np.concatenate([initial[p] for p in config.parties])
    z = full @ w - (y if model == "linear" else 0)
    exact = full.T @ fedv_errors_ref(model, z, y) / len(y)
    u = 2.0 ** -(config.frac_bits + 1)
    # |x~ w~ - x w| <= |x| u + (|w| + u) u per term; the logistic function is 1/4-Lipschitz
    dz = u * np.abs(full).sum(axis=1) + u * (np.abs(w) + u).sum() + (u if model == "linear" else 0)
    de = {"linear": dz, "logistic": dz / 4, "svm": 0 * dz}[model] + u
    bound = (np.abs(full).T @ de + (np.abs(fedv_errors_ref(model, z, y)).sum() + len(y) * de.max()) * u) / len(y)
    if model == "svm":  # the hinge is discontinuous: samples within dz of the margin may flip
        near = np.abs(np.abs(z) - 1) <= dz + u
        bound = bound + np.abs(full[near]).sum(axis=0) / len(y)
    assert np.all(np.abs(got - exact[order]) <= bound)


def test_fedv_logistic_reaches_plaintext_accuracy():
    parts, y = _vertical("logistic")
    parts, y = [p[::2] for p in parts], y[::2]
    est = FedVEstimator(model="logistic", epochs=6, learning_rate=0.5, group=G).fit(parts, y)
    config = FedVConfig(("party-0", "party-1", "party-2"), tuple(p.shape[1] for p in parts), len(y), "party-0",
                        "logistic", epochs=6, learning_rate=0.5, group=G)
    zero = {pid: np.zeros(config.width(pid)) for pid in config.parties}
    ref = plaintext_fedv(parts, y, config, zero)
    full = np.hstack(parts)
    ref_coef = np.concatenate([ref["party-0"][:-1], ref["party-1"], ref["party-2"]])
    plain_acc = np.mean(((full @ ref_coef + ref["party-0"][-1]) > 0) == y)
    assert abs(np.mean(est.predict(parts) == y) - plain_acc) <= 0.01
    assert plain_acc > 0.95
    assert est.communication_.total_bytes > 0


def test_fedv_policy_and_input_errors():
    config = FedVConfig(("a", "b"), (2, 2), 4, "a", "linear", group=G)
    policy = FedVPolicy(config)
    w = np.ones((3, 3), dtype=np.int64)
    w[-1] = [-(2**10), 0, 0]
    assert policy.refusal({"type": "fwd", "label": (0, 0, "fwd"), "weights": w}) is None
    assert "already used" in policy.refusal({"type": "fwd", "label": (0, 0, "fwd"), "weights": w})
    isolating = w.copy()
    isolating[1] = 0
    assert "every party" in policy.refusal({"type": "fwd", "label": (1, 0, "fwd"), "weights": isolating})
    leaky = w.copy()
    leaky[-1] = [-1, 0, 0]
    assert "label slot" in policy.refusal({"type": "fwd", "label": (2, 0, "fwd"), "weights": leaky})
    one = {"type": "bwd", "party": 0, "label": (0, 0, "bwd", 0), "vector": np.array([0, 5, 0, 0])}
    assert "at least 2" in policy.refusal(one)
    with pytest.raises(ValueError, match="active party"):
        FedVConfig(("a", "b"), (2, 2), 4, "z", group=G)
    with pytest.raises(ValueError, match="model"):
        FedVConfig(("a", "b"), (2, 2), 4, "a", "tree", group=G)
    parts = [np.full((4, 2), 100.0), np.zeros((4, 2))]
    with pytest.raises(Exception, match="X has an entry of magnitude 100"):
        FedVEstimator(model="linear", group=G, timeout=5).fit(parts, np.zeros(4))


# ---------------------------------------------------------------- as processes (gRPC, mutual TLS); slow: 7 processes

APP_OPTIONS = {"group": G, "rounds": "3", "deadline": "30"}


@pytest.mark.slow
def test_hybridalpha_processes_match_run_local(tmp_path):
    from parties.apps import load_app, run_app_local
    from parties.launcher import run_processes

    app = load_app("hybridalpha")
    data = app.demo_data(tmp_path, 1, APP_OPTIONS)
    local = run_app_local("hybridalpha", data, APP_OPTIONS, timeout=30)
    remote = run_processes("hybridalpha", data, APP_OPTIONS, work_dir=tmp_path / "run", secure=True, timeout=30)
    for outputs in (local, remote.outputs):
        result = app.check(outputs, data, APP_OPTIONS)
        assert result.ok, result.summary
    assert np.array_equal(remote.outputs["aggregator"]["model"], local["aggregator"]["model"])
    assert remote.outputs.stats["alice"].bytes_sent == local.stats["alice"].bytes_sent


@pytest.mark.slow
def test_fedv_processes_match_run_local(tmp_path):
    from parties.apps import load_app, run_app_local
    from parties.launcher import run_processes

    options = {"group": G, "epochs": "2", "samples": "120"}
    app = load_app("fedv")
    data = app.demo_data(tmp_path, 0, options)
    for path in data.values():  # keep the first 120 rows
        lines = path.read_text().splitlines()
        path.write_text("\n".join(lines[:120]) + "\n")
    local = run_app_local("fedv", data, options, timeout=60)
    remote = run_processes("fedv", data, options, work_dir=tmp_path / "run", secure=True, timeout=60)
    for outputs in (local, remote.outputs):
        result = app.check(outputs, data, options)
        assert result.ok, result.summary
    assert remote.outputs.stats["bob"].bytes_sent == local.stats["bob"].bytes_sent


@pytest.mark.slow
def test_killed_party_process_is_a_dropout(tmp_path):
    import time

    from parties.apps import load_app
    from parties.launcher import last_line, parties_running, wait_for_log, write_loopback_federation
    from parties.node import PartyResult

    options = {**APP_OPTIONS, "rounds": "40", "deadline": "5"}
    app = load_app("hybridalpha")
    data = app.demo_data(tmp_path, 2, options)
    federation = write_loopback_federation(app.DEMO_PARTIES, tmp_path, timeout=6.0)
    with parties_running("hybridalpha", data, options, work_dir=tmp_path, federation=federation, extra_args=["--verbose"]) as procs:
        wait_for_log(tmp_path / "erin.log", "running hybridalpha", procs["erin"], timeout=300)
        time.sleep(1.0)
        procs["erin"].kill()
        for pid, proc in procs.items():
            if pid != "erin":
                assert proc.wait(timeout=300) == 0, last_line(tmp_path / f"{pid}.log")
    outputs = {pid: PartyResult.from_bytes((tmp_path / f"{pid}.out").read_bytes()).output
               for pid in app.DEMO_PARTIES if pid != "erin"}
    history = outputs["aggregator"]["history"]
    assert len(history) == 40 and all("refused" not in h for h in history)
    assert "erin" not in history[-1]["responders"] and len(history[-1]["responders"]) == 4
    result = app.check(outputs, data, options)
    assert result.ok, result.summary
