"""HybridAlpha (protocols.hybridalpha) against its plaintext replay, its range analysis, its wire view and
the scikit-learn contract.

Tolerance of the replays: the aggregation is exact on the quantised updates (FE and Paillier return
the exact integer sum) and :func:`plaintext_fedavg` quantises the same float64 updates, so the two
agree to the last bit; :func:`replay_tolerance` allows one unit ``2^-frac_bits`` per round (a
rounding boundary crossed through a different order of float operations; stable local steps do
not amplify it). FE runs on secp256k1 and Paillier on 1024-bit keys, for speed.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mpcml import run_local
from mpcml.dlog import dlog_table
from mpcml.dp import analytic_gaussian_sigma
from mpcml.fe import group_by_name
from mpcml.he import SCHEMES
from protocols.estimator import Horizontal
from protocols.common import magnitude_bits
from protocols.hybridalpha import (
    HybridAlphaConfig,
    HybridAlphaLogisticRegression,
    KeyPolicy,
    LocalLogistic,
    plaintext_fedavg,
    plan,
    replay_tolerance,
    roles,
)
from tests.conftest import message_leaves
from tests.contract import assert_persists, run_both_ways

G = "secp256k1"
FIVE = tuple(f"p{i}" for i in range(5))


class Fixed:
    """A custom local update: the same vector every round (no data; the bound comes from max_abs)."""

    def __init__(self, update: np.ndarray) -> None:
        self.update = update

    def facts(self) -> dict:
        return {"n_params": self.update.size, "x_bits": None}

    def __call__(self, model: np.ndarray, rnd: int) -> np.ndarray:
        return self.update


def run_fixed(updates: dict, *, drop_after: dict | None = None, **options):
    # with dropouts the aggregator waits out the deadline once; without, nobody waits for it
    options = {"group": G, "paillier_bits": 1024, "max_abs": 256.0, "deadline": 3.0 if drop_after else 60.0,
               "rounds": 1, **options}
    config = HybridAlphaConfig(parties=tuple(updates), **options)
    out = run_local(*roles(config, {p: Fixed(u) for p, u in updates.items()}, drop_after=drop_after), timeout=60)
    return config, out


def quantised(u: np.ndarray) -> np.ndarray:
    return np.rint(u * 2.0**16) / 2.0**16


@pytest.fixture(scope="module")
def updates() -> dict:
    data = np.random.default_rng(11)  # test data only
    ups = {pid: data.normal(scale=2.0, size=30) for pid in FIVE}
    ups["p0"][:3] = [0.0, 255.9, -255.9]  # zero and near the agreed bound (max_abs = 256)
    return ups


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, ...]:
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=1, stratify=y)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def assert_replays(est: HybridAlphaLogisticRegression, parts: list) -> float:
    """The secure model equals the plaintext replay within :func:`replay_tolerance`; returns the error."""
    ids = tuple(f"party-{i}" for i in range(len(parts)))
    config = est.make_config(parties=ids)
    data = {pid: (Xi, est.one_vs_rest(np.searchsorted(est.classes_, yi))) for pid, (Xi, yi) in zip(ids, parts)}
    reference = plaintext_fedavg(data, config, [h["responders"] for h in est.history_])
    model = np.vstack([est.coef_.T, est.intercept_[None, :]]).ravel()
    error = float(np.max(np.abs(model - reference)))
    assert error <= replay_tolerance(config), f"{error:.3g} > {replay_tolerance(config):.3g}"
    return error


# --- the aggregation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme, he", [("fe", "ou"), *(("paillier-packed", he) for he in SCHEMES), ("phe", "ou"),
                                        ("plain", "ou")])
def test_every_scheme_gives_the_exact_mean_of_the_quantised_updates(scheme, he, updates) -> None:
    """``he`` picks the keys of the packed baseline (`phe` is Paillier whatever it says)."""
    _, out = run_fixed(updates, scheme=scheme, he=he)
    assert np.array_equal(out["aggregator"]["model"], sum(quantised(u) for u in updates.values()) / 5)
    assert out["aggregator"]["history"][0]["responders"] == list(FIVE)
    assert all(np.array_equal(out[p]["model"], out["aggregator"]["model"]) for p in FIVE)  # the final model


def test_dropouts_give_the_exact_mean_of_the_survivors(updates) -> None:
    # t = 3 of 5: two parties drop out in round 1 and the round still completes, no extra round
    _, out = run_fixed(updates, rounds=2, drop_after={"p1": 1, "p4": 1}, min_parties=3)
    survivors = ["p0", "p2", "p3"]
    first = sum(quantised(u) for u in updates.values()) / 5
    second = sum(quantised(updates[p]) for p in survivors) / 3
    assert np.array_equal(out["aggregator"]["model"], first + second)
    assert out["aggregator"]["history"][1]["responders"] == survivors
    assert out["p1"]["status"] == "dropped" and out["p0"]["status"] == "finished" and out["p1"]["model"] is None
    assert out["tpa"]["refused"] == []


def test_precomputed_rounds_give_the_same_exact_results(updates) -> None:
    _, out = run_fixed(updates, rounds=2, drop_after={"p2": 1}, min_parties=3, precompute=True)
    first = sum(quantised(u) for u in updates.values()) / 5
    second = sum(quantised(updates[p]) for p in ("p0", "p1", "p3", "p4")) / 4
    assert np.array_equal(out["aggregator"]["model"], first + second)
    with pytest.raises(ValueError, match="precompute"):
        HybridAlphaConfig(scheme="phe", precompute=True, parties=FIVE)


def test_the_tpa_refuses_a_round_with_too_few_responders(updates) -> None:
    _, out = run_fixed(updates, rounds=2, drop_after={"p1": 1, "p2": 1, "p3": 1}, min_parties=3)
    history = out["aggregator"]["history"]
    assert "at least 3 parties" in history[1]["refused"]
    assert np.array_equal(out["aggregator"]["model"], sum(quantised(u) for u in updates.values()) / 5)
    assert len(out["tpa"]["refused"]) == 1


def test_key_policy_rules() -> None:
    policy = KeyPolicy(min_parties=2)
    assert "at least 2" in policy.refusal([1, 0, 0], (0, "update"))  # isolates one party
    assert policy.refusal([1, 1, 0], (0, "update")) is None
    assert "already had 1 key" in policy.refusal([1, 1, 1], (0, "update"))  # one key per round


def test_min_parties_below_two_is_refused_unless_explicitly_insecure(updates) -> None:
    with pytest.raises(ValueError, match="min_parties=1 lets the TPA issue a key for one party's update alone.*"
                                         "insecure_allow_single_party=True"):
        HybridAlphaConfig(min_parties=1, parties=FIVE)
    with pytest.raises(ValueError, match="min_parties=1"):
        HybridAlphaLogisticRegression(min_parties=1, partition=Horizontal(2)).fit(np.eye(4), [0, 1, 0, 1])
    # what the flag switches off: with one responder the aggregator decrypts that party's update alone
    two = {p: updates[p] for p in ("p0", "p1")}
    _, out = run_fixed(two, rounds=2, drop_after={"p1": 1}, min_parties=1, insecure_allow_single_party=True)
    assert np.array_equal(out["aggregator"]["model"] - (quantised(two["p0"]) + quantised(two["p1"])) / 2,
                          quantised(two["p0"]))


def test_dp_noise_has_the_stated_variance() -> None:
    data = np.random.default_rng(5)  # test data only
    ups = {pid: data.normal(scale=0.001, size=1500) for pid in FIVE}
    _, out = run_fixed(ups, dp_epsilon=1.0, dp_delta=1e-5, dp_clip=1.0, min_parties=5, max_abs=None)
    noise = out["aggregator"]["model"] * 5 - sum(ups.values())
    sigma = analytic_gaussian_sigma(1.0, 1.0, 1e-5)  # five parties x N(0, sigma^2 / 5)
    assert np.std(noise) == pytest.approx(sigma, rel=0.08)
    assert abs(np.mean(noise)) < 4 * sigma / np.sqrt(noise.size)
    assert all(out[p]["clipped"] == 0 for p in FIVE)


def test_dp_clipping_warns_and_is_counted(cancer) -> None:
    X, _, y, _ = cancer
    with pytest.warns(UserWarning, match="DP clipping to L2 norm dp_clip=0.1 changed"):
        est = HybridAlphaLogisticRegression(partition=Horizontal(2), rounds=2, dp_epsilon=1.0, dp_clip=0.1,
                                            group=G).fit(X, y)
    assert est.dp_clipped_ == 4  # every update of the first steps is far longer than 0.1


# --- the secure fit replays the plaintext algorithm -----------------------------------------------------


def test_fit_replays_plaintext_federated_averaging(cancer, transport) -> None:
    X_train, X_test, y_train, y_test = cancer
    est = HybridAlphaLogisticRegression(partition=Horizontal(3), rounds=6, local_epochs=3, alpha=0.05, group=G)
    est.fit(X_train, y_train)
    parts = list(zip(np.array_split(X_train, 3), np.array_split(y_train, 3)))
    assert assert_replays(est, parts) == 0.0  # measured: bit for bit
    assert est.score(X_test, y_test) > 0.95 and est.communication_.total_bytes > 0
    assert [h["responders"] for h in est.history_] == [["party-0", "party-1", "party-2"]] * 6


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(scale=st.sampled_from([1e-3, 1e-1, 1.0, 30.0, 1e3]), holders=st.integers(2, 5), seed=st.integers(0, 2**16),
       frac_bits=st.sampled_from([8, 16, 30]))
def test_generated_data_gives_the_replay_or_an_early_error(runs, scale, holders, seed, frac_bits) -> None:
    data = np.random.default_rng(seed)
    n, d = 8 * holders, 3
    X = data.normal(size=(n, d)) * scale * data.uniform(0.1, 1, size=d)
    y = (X @ data.normal(size=d) > 0).astype(int)
    y[:2] = [0, 1]
    est = HybridAlphaLogisticRegression(partition=Horizontal(holders), rounds=2, local_epochs=2, frac_bits=frac_bits,
                                        group=G)
    runs.clear()
    try:
        est.fit(X, y)
    except ValueError as exc:
        assert runs == [], f"refused after the run started: {exc}"
        assert "frac_bits" in str(exc)
        return
    assert_replays(est, list(zip(np.array_split(X, holders), np.array_split(y, holders))))


# --- the range analysis ------------------------------------------------------------------------------


def test_range_analysis_refuses_before_any_party_starts(cancer, runs) -> None:
    X, _, y, _ = cancer
    with pytest.raises(ValueError, match=r"frac_bits=40: the sum of 2 updates .* use frac_bits=18"):
        HybridAlphaLogisticRegression(partition=Horizontal(2), frac_bits=40, group=G).fit(X * 1e3, y)
    config = HybridAlphaConfig(scheme="paillier-packed", frac_bits=40, max_abs=2.0**21, parties=("a", "b"))
    with pytest.raises(ValueError, match="frac_bits=40: .* above the 62 bits of int64 headroom; use frac_bits=39"):
        plan(config, {"a": {"n_params": 3, "x_bits": None}, "b": {"n_params": 3, "x_bits": None}})
    widest = plan(replace(config, frac_bits=39), {"a": {"n_params": 3, "x_bits": None}, "b": {"n_params": 3, "x_bits": None}})
    assert widest.slot_bits() == 65 < 1024 - 2  # the widest packing slot the analysis admits fits any key
    with pytest.raises(ValueError, match="different numbers of parameters"):
        plan(config, {"a": {"n_params": 3, "x_bits": None}, "b": {"n_params": 4, "x_bits": None}})
    with pytest.raises(ValueError, match="max_abs is required"):
        plan(HybridAlphaConfig(parties=("a", "b")), {"a": {"n_params": 3, "x_bits": None},
                                                     "b": {"n_params": 3, "x_bits": None}})
    assert runs == []


def test_an_update_beyond_an_explicit_bound_stops_the_run_as_the_replay_does(cancer) -> None:
    X, _, y, _ = cancer
    est = HybridAlphaLogisticRegression(partition=Horizontal(2), group=G)
    data = {f"party-{i}": (Xi, yi) for i, (Xi, yi) in enumerate(zip(np.array_split(X, 2), np.array_split(y, 2)))}
    config = est.make_config(parties=tuple(data))
    largest = [np.max(np.abs(LocalLogistic(config, *value)(np.zeros(31)))) for value in data.values()]
    est.set_params(max_abs=float(np.mean(largest)))  # between the two parties' first updates: one of them exceeds it
    culprit = f"party-{int(np.argmax(largest))}"
    with pytest.raises(OverflowError, match=rf"round 0: party '{culprit}'.s update has an entry of magnitude .* above "
                                            r"the agreed bound .*set max_abs to at least") as secure:
        est.fit(X, y)
    with pytest.raises(OverflowError) as plain:
        plaintext_fedavg(data, est.make_config(parties=tuple(data)))
    assert str(secure.value) == str(plain.value)


def test_the_analysed_bound_holds_for_every_update(cancer) -> None:
    """The proved bound U is never reached: the largest update of a long, steep run stays below it."""
    X, _, y, _ = cancer
    config = HybridAlphaConfig(rounds=10, local_epochs=5, learning_rate=1.0, alpha=0.1, parties=("a", "b"))
    bits = magnitude_bits(X)
    agreed = plan(config, {"a": {"n_params": 31, "x_bits": bits}, "b": {"n_params": 31, "x_bits": bits}})
    seen = []
    data = {"a": (X[::2], y[::2]), "b": (X[1::2], y[1::2])}
    model = np.zeros(31)
    trainers = {p: LocalLogistic(config, *v) for p, v in data.items()}
    for rnd in range(config.rounds):
        steps = [trainers[p](model, rnd) for p in data]
        seen.append(max(np.max(np.abs(s)) for s in steps))
        model = model + sum(steps) / 2
    assert max(seen) * 2**16 < agreed.bound


# --- what each role receives -------------------------------------------------------------------------



def test_wire_view_matches_the_leakage_statement(cancer, wire_log) -> None:
    """The TPA gets the plan, 0/1 weights per round and stop; the aggregator gets facts and ciphertexts
    whose entries are uniform group elements (no small discrete log, balanced bits)."""
    X, _, y, _ = cancer
    HybridAlphaLogisticRegression(partition=Horizontal(3), rounds=3, group=G).fit(X, y)
    to_tpa = [(sender, m) for receiver, sender, m in wire_log if receiver == "tpa"]
    assert {sender for sender, _ in to_tpa} == {"aggregator"}
    kinds = [tuple(sorted(m)) for _, m in to_tpa]
    assert kinds == [("bound", "n_params", "parties")] + [("round", "weights")] * 3 + [("type",)]
    assert [m["weights"] for _, m in to_tpa[1:4]] == [[1, 1, 1]] * 3
    assert to_tpa[0][1]["parties"] == ["party-0", "party-1", "party-2"] and to_tpa[0][1]["n_params"] == 31
    from_parties = [m for receiver, sender, m in wire_log if receiver == "aggregator" and sender.startswith("party")]
    assert {tuple(sorted(m)) for m in from_parties} == {("n_params", "x_bits"), ("ready",), ("payload", "round")}
    group = group_by_name(G)
    points = [p for m in from_parties if "payload" in m
              for p in group.elements_from_wire(m["payload"]["c"], "entry")]
    assert len(points) == 3 * 3 * 31
    small = dlog_table(group, 2**16)
    assert all(small.lookup(p) is None for p in points)  # masked: no entry is g^v for |v| <= 2^16
    raw = np.frombuffer(b"".join(group.element_to_wire(p)[1:] for p in points), dtype=np.uint8)
    balance = np.unpackbits(raw).mean()
    assert abs(balance - 0.5) < 5 * 0.5 / np.sqrt(raw.size * 8)
    assert not any(isinstance(v, np.ndarray) and v.dtype.kind == "f" for v in message_leaves(from_parties))


# --- the scikit-learn contract -----------------------------------------------------------------------


def test_wine_one_vs_rest_in_one_run_matches_scikit_learn() -> None:
    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    plain = OneVsRestClassifier(LogisticRegression()).fit(X_train, y_train).score(X_test, y_test)
    est = HybridAlphaLogisticRegression(partition=Horizontal(3), group=G).fit(X_train, y_train)
    assert est.coef_.shape == (3, 13) and est.intercept_.shape == (3,)
    assert est.score(X_test, y_test) >= plain - 0.02
    np.testing.assert_allclose(est.predict_proba(X_test).sum(axis=1), 1.0)
    assert_replays(est, list(zip(np.array_split(X_train, 3), np.array_split(y_train, 3))))


def test_string_labels_pipeline_and_cross_validation(cancer) -> None:
    X, X_test, y, y_test = cancer
    names = np.array(["benign", "malignant"])[1 - y]
    model = Pipeline([("scale", StandardScaler()),
                      ("fl", HybridAlphaLogisticRegression(partition=Horizontal(2), rounds=3, group=G))])
    assert cross_val_score(model, X, names, cv=2).min() > 0.9
    est = model.fit(X, names)[-1]
    assert list(est.classes_) == ["benign", "malignant"] and est.coef_.shape == (1, 30)
    assert np.mean(model.predict(X_test) == np.array(["benign", "malignant"])[1 - y_test]) > 0.9
    with pytest.raises(ValueError, match="single class"):
        HybridAlphaLogisticRegression(partition=Horizontal(2)).fit(X, np.zeros(len(y)))


def test_save_load_blocks_feature_names_and_tampering(cancer, tmp_path) -> None:
    import pandas as pd

    X, X_test, y, _ = cancer
    columns = [f"f{i}" for i in range(30)]
    frame = pd.DataFrame(X, columns=columns)
    parts = [(frame.iloc[:200], y[:200]), (frame.iloc[200:], y[200:])]
    est = HybridAlphaLogisticRegression(rounds=2, group=G).fit(parts)
    assert list(est.feature_names_in_) == columns
    np.testing.assert_array_equal(est.predict(pd.DataFrame(X_test, columns=columns)),
                                  est.predict([X_test[:50], X_test[50:]]))
    with pytest.raises(ValueError, match="feature names"):
        est.predict(pd.DataFrame(X_test, columns=columns)[columns[::-1]])
    assert_persists(est, X_test, tmp_path)


def test_verbose_logs_a_line_per_round(cancer, caplog) -> None:
    X, _, y, _ = cancer
    with caplog.at_level(logging.INFO, logger="protocols.progress"):
        HybridAlphaLogisticRegression(partition=Horizontal(2), rounds=3, verbose=2, group=G).fit(X, y)
    lines = [r.getMessage() for r in caplog.records if r.name == "protocols.progress"]
    assert [line.split(":")[1].split()[:2] for line in lines] == [["round", "1/3"], ["round", "2/3"], ["round", "3/3"]]
    assert all("responders 2" in line and "update_norm" in line for line in lines)


def test_sklearn_conventions_and_bad_input(cancer) -> None:
    X, X_test, y, _ = cancer
    est = HybridAlphaLogisticRegression(rounds=2, group=G)
    with pytest.raises(NotFittedError):
        est.predict(X_test)
    assert clone(est).get_params() == est.get_params()
    assert HybridAlphaLogisticRegression().rounds == HybridAlphaConfig.defaults()["rounds"]
    with pytest.raises(TypeError, match="unexpected parameters"):
        HybridAlphaLogisticRegression(round=3)
    with pytest.raises(ValueError, match="same number of columns"):
        est.fit([(X[:100], y[:100]), (X[100:, :5], y[100:])])
    with pytest.raises(ValueError, match="scheme"):
        HybridAlphaLogisticRegression(scheme="rsa", partition=Horizontal(2)).fit(X, y)
    with pytest.raises(ValueError, match="group"):
        HybridAlphaLogisticRegression(group="tiny", partition=Horizontal(2)).fit(X, y)
    with pytest.raises(ValueError, match="learning_rate \\* alpha"):
        HybridAlphaLogisticRegression(learning_rate=1.0, alpha=3.0, partition=Horizontal(2)).fit(X, y)


@pytest.mark.slow  # about 20 s: every scikit-learn check is a real secure fit
def test_scikit_learn_estimator_checks() -> None:
    from sklearn.utils.estimator_checks import check_estimator

    check_estimator(HybridAlphaLogisticRegression(partition=Horizontal(2), rounds=2, local_epochs=2, group=G))


# --- as processes ------------------------------------------------------------------------------------

APP_OPTIONS = {"group": G, "rounds": "3", "deadline": "30"}


def test_app_options_and_model_hook(tmp_path) -> None:
    from parties.apps import load_app, party_model, run_app_local

    app = load_app("hybridalpha")
    data = app.demo_data(tmp_path, 0, APP_OPTIONS)
    outputs = run_app_local("hybridalpha", data, {**APP_OPTIONS, "scheme": "plain"}, timeout=60)
    result = app.check(outputs, data, APP_OPTIONS)
    assert result.ok, result.summary
    model = party_model(app, outputs["alice"], "alice", app.DEMO_PARTIES, APP_OPTIONS)
    X = np.vstack([np.loadtxt(p, delimiter=",")[:, :-1] for p in data.values()])
    np.testing.assert_allclose(model.decision_function(X), X @ outputs["aggregator"]["model"][:-1]
                               + outputs["aggregator"]["model"][-1])
    assert party_model(app, outputs["tpa"], "tpa", app.DEMO_PARTIES, APP_OPTIONS) is None
    with pytest.raises(ValueError, match=r"unknown option 'rouns'; valid options: alpha, deadline"):
        run_app_local("hybridalpha", data, {"rouns": "1"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="min_parties=1"):
            run_app_local("hybridalpha", data, {"min_parties": "1"})


@pytest.mark.slow
def test_processes_match_run_local(tmp_path) -> None:
    local, remote = run_both_ways("hybridalpha", APP_OPTIONS, tmp_path, seed=1, timeout=30)
    assert np.array_equal(remote.outputs["aggregator"]["model"], local["aggregator"]["model"])
    assert remote.outputs.stats["alice"].bytes_sent == local.stats["alice"].bytes_sent


@pytest.mark.slow
def test_killed_party_process_is_a_dropout(tmp_path) -> None:
    from parties.apps import load_app
    from parties.launcher import last_line, parties_running, write_loopback_federation
    from tests.conftest import wait_for_log
    from parties.node import PartyResult

    options = {**APP_OPTIONS, "rounds": "100", "deadline": "5"}
    app = load_app("hybridalpha")
    data = app.demo_data(tmp_path, 2, options)
    federation = write_loopback_federation(app.DEMO_PARTIES, tmp_path, timeout=6.0)
    with parties_running("hybridalpha", data, options, work_dir=tmp_path, federation=federation,
                         extra_args=["--verbose"]) as procs:
        wait_for_log(tmp_path / "aggregator.log", "round 2/100", procs["aggregator"], timeout=300)
        procs["erin"].kill()  # rounds take tens of milliseconds: 98 are still to come
        for pid, proc in procs.items():
            if pid != "erin":
                assert proc.wait(timeout=300) == 0, last_line(tmp_path / f"{pid}.log")
    outputs = {pid: PartyResult.from_bytes((tmp_path / f"{pid}.out").read_bytes()).output
               for pid in app.DEMO_PARTIES if pid != "erin"}
    history = outputs["aggregator"]["history"]
    assert len(history) == 100 and all("refused" not in h for h in history)
    assert "erin" not in history[-1]["responders"] and len(history[-1]["responders"]) == 4
    result = app.check(outputs, data, options)
    assert result.ok, result.summary
