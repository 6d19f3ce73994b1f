"""PPPCA (protocols/pca.py) against its plaintext replay and scikit-learn's PCA, at derived tolerances."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import protocols.estimator
from mpcml import fixedpoint
from protocols.estimator import Horizontal
from protocols.pca import PCAConfig, SecurePCA, model_tolerance, reference_model
from tests.conftest import bits_balanced
from tests.contract import assert_persists, run_both_ways

KEY_BITS = 1024


@pytest.fixture(scope="module")
def cancer() -> np.ndarray:
    return StandardScaler().fit_transform(load_breast_cancer().data)


def _aligned(components: np.ndarray, reference: np.ndarray) -> np.ndarray:
    signs = np.sign(np.sum(components * reference, axis=1))
    return components * signs[:, None]


def assert_replays(est: SecurePCA, blocks: list[np.ndarray]) -> None:
    """The secure model equals the plaintext replay within the derived bound, and scikit-learn's within its own."""
    config = est.make_config(holders=tuple(f"holder-{i}" for i in range(len(blocks))),
                             compute_parties=tuple(f"server-{i}" for i in range(est.n_servers)) or None)
    ref, bound = reference_model(blocks, config), model_tolerance(blocks, config)
    for key in ("mean", "scale", "components", "explained_variance", "explained_variance_ratio"):
        assert np.max(np.abs(getattr(est, f"{key}_") - ref[key])) <= bound, key
    projected = np.vstack(est.projections_)
    assert np.max(np.abs(projected - ((np.vstack(blocks) - ref["mean"]) / ref["scale"]) @ ref["components"].T)) <= bound
    X = np.vstack(blocks)
    if config.standardize:
        X = (X - X.mean(axis=0)) / X.std(axis=0, ddof=1)
    plain = PCA(est.n_components_).fit(X)
    exact = model_tolerance(blocks, config, exact=True)
    assert np.max(np.abs(est.explained_variance_ - plain.explained_variance_)) <= exact
    assert np.max(np.abs(_aligned(est.components_, plain.components_) - plain.components_)) <= exact


@pytest.mark.parametrize("variant, he", [("he", "ou"), ("he", "paillier"), ("ckks", "ou"), ("ss", "ou")],
                         ids=["he-ou", "he-paillier", "ckks", "ss"])
@pytest.mark.parametrize("holders", [2, 5])
def test_matches_the_replay_and_sklearn(cancer: np.ndarray, variant: str, he: str, holders: int, transport: str) -> None:
    """``he``: the scheme of the `he` variant's key (the other variants ignore it)."""
    blocks = np.array_split(cancer, holders)
    est = SecurePCA(n_components=6, variant=variant, he=he, key_bits=KEY_BITS).fit(blocks)
    assert_replays(est, blocks)
    assert est.communication_.total_bytes > 0


@pytest.mark.parametrize("compute", ["holders", "servers"])
def test_ss_matches_the_replay_and_sklearn_on_either_engine(cancer: np.ndarray, engine: str, compute: str,
                                                             transport: str) -> None:
    """The ``ss`` sum on each engine, computed by three holders or by servers four holders input to
    (rss3: three; beaver: two). The sums are exact in the ring, so the bound is :func:`model_tolerance`
    (float rounding and Davis-Kahan against the replay; plus ``m 2^-(f+1)`` per entry against scikit-learn)."""
    holders, servers = (3, 0) if compute == "holders" else (4, 3 if engine == "rss3" else 2)
    blocks = np.array_split(cancer, holders)
    est = SecurePCA(n_components=6, variant="ss", engine=engine, n_servers=servers).fit(blocks)
    assert_replays(est, blocks)
    parties = set(est.communication_.per_party)
    assert parties == {f"holder-{i}" for i in range(holders)} | {f"server-{i}" for i in range(servers)} | {"consumer"}
    assert "dealer" not in parties


def test_fraction_of_variance_transform_and_inverse(cancer: np.ndarray) -> None:
    est = SecurePCA(n_components=0.9, variant="ss").fit(np.array_split(cancer, 4))
    ref = PCA(0.9).fit(cancer)
    assert est.n_components_ == ref.n_components_
    signs = np.sign(np.sum(est.components_ * ref.components_, axis=1))
    bound = model_tolerance(np.array_split(cancer, 4), est.make_config(holders=tuple(f"h{i}" for i in range(4))), exact=True)
    assert np.max(np.abs(est.transform(cancer) * signs - ref.transform(cancer))) <= bound
    assert np.max(np.abs(est.inverse_transform(est.transform(cancer)) - ref.inverse_transform(ref.transform(cancer)))) <= bound


def test_raw_data_lowers_the_fractional_bits_instead_of_failing() -> None:
    wine = load_wine().data  # proline up to 1680: X^T X reaches 1.3e8
    blocks = [wine[:20], wine[20:120], wine[120:]]
    for variant in ("ss", "he"):
        est = SecurePCA(n_components=3, variant=variant, key_bits=KEY_BITS).fit(blocks)
        assert_replays(est, blocks)
    big = [b * 1e6 for b in blocks]
    with pytest.raises(ValueError, match=r"holder 'holder-1' has statistics .* up to 2\^66: .*scale X down by 2\^8"):
        SecurePCA(variant="ss").fit(big)
    assert_replays(SecurePCA(n_components=2, variant="he", key_bits=KEY_BITS).fit(big), big)


def test_standardize_matches_pca_on_scaled_data() -> None:
    wine = load_wine().data
    blocks = np.array_split(wine, 2)
    est = SecurePCA(n_components=4, variant="ss", standardize=True).fit(blocks)
    assert_replays(est, blocks)
    # sample std (n - 1) versus StandardScaler's population std: PCA's components are unaffected
    assert np.allclose(est.scale_, StandardScaler().fit(wine).scale_ * np.sqrt(len(wine) / (len(wine) - 1)))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(scale=st.sampled_from([1e-3, 1.0, 1e3]), holders=st.integers(2, 5),
       variant=st.sampled_from(["ss", "ss-rss3", "he"]), standardize=st.booleans(), seed=st.integers(0, 2**16))
def test_generated_data_gives_the_replay_or_an_early_error(monkeypatch, scale, holders, variant, standardize, seed):
    started = []
    monkeypatch.setattr(protocols.estimator, "run_parties",
                        lambda *a, original=protocols.estimator.run_parties: started.append(1) or original(*a))
    data = np.random.default_rng(seed)
    X = data.normal(size=(10 * holders, 5)) @ data.normal(size=(5, 5)) * scale * data.uniform(0.1, 1, 5)
    blocks = np.array_split(X, holders)
    variant, _, engine = variant.partition("-")
    servers = 3 if engine and holders != 3 else 0  # rss3: the three holders, or three servers
    est = SecurePCA(n_components=3, variant=variant, engine=engine or "beaver", n_servers=servers,
                    standardize=standardize, key_bits=KEY_BITS)
    try:
        est.fit(blocks)
    except ValueError:
        assert not started
        return
    assert_replays(est, blocks)


def _assert_uniform_words(arrays: list[np.ndarray], what: str) -> None:
    """Bit balance of uint64 words at 5 sigma, each array alone and each adjacent pair's sum (the
    partial sums add up to the statistics, so a sum of all of them would not be uniform)."""
    for i, words in enumerate(arrays):
        for name, w in [(f"{what} {i}", words)] + ([(f"{what} {i} + {i + 1}", words + arrays[i + 1])]
                                                     if i + 1 < len(arrays) else []):
            assert bits_balanced(w), name


@pytest.mark.parametrize("servers", [0, 3])
def test_holders_receive_only_what_holder_output_allows(cancer: np.ndarray, wire_log, engine: str, servers: int) -> None:
    holders = 3 if servers == 0 else 2
    blocks = np.array_split(cancer, holders)
    SecurePCA(n_components=3, variant="ss", engine=engine, n_servers=servers).fit(blocks)
    models = [m for receiver, sender, m in wire_log if sender == "consumer" and isinstance(m, dict) and "mean" in m]
    assert len(models) == holders and all(set(m) == {"mean", "scale", "components"} and
                                          m["components"].shape == (3, 30) for m in models)
    # what the consumer receives in the ss variant: one term of the sum per compute party, uniform ring words
    sums = [m for receiver, _, m in wire_log if receiver == "consumer" and isinstance(m, np.ndarray)]
    assert len(sums) == (servers or holders)
    _assert_uniform_words(sums, "term of the sum")
    (frac_bits,) = {m["frac_bits"] for _, sender, m in wire_log if sender == "consumer" and isinstance(m, dict)
                    and "frac_bits" in m}
    with np.errstate(over="ignore"):
        total = fixedpoint.decode(sum(sums[1:], sums[0].copy()), frac_bits)
    assert total[0] == len(cancer)  # the terms add up to the statistics (first: the row count)
    # what a compute party receives from holders and peers: uniform words (seeds expand to uniform words too)
    computing = {f"server-{i}" for i in range(servers)} or {f"holder-{i}" for i in range(holders)}
    received = [m for receiver, sender, m in wire_log if receiver in computing and sender != "consumer"]
    arrays = [m for m in received if isinstance(m, np.ndarray)]
    seeds = [m[0] for m in received if isinstance(m, list) and isinstance(m[0], bytes)]
    assert arrays or seeds
    _assert_uniform_words(arrays, "array received by a compute party")
    assert all(len(seed) == 32 for seed in seeds) and len(set(seeds)) == len(seeds)
    facts = [m for receiver, _, m in wire_log if receiver == "consumer" and isinstance(m, dict)]
    assert all(set(m) == {"features", "stat_bits"} for m in facts) and len(facts) == holders
    wire_log.clear()
    SecurePCA(n_components=3, variant="ss", holder_output="full").fit(blocks)
    models = [m for _, sender, m in wire_log if sender == "consumer" and isinstance(m, dict) and "mean" in m]
    assert all(m["explained_variance"].shape == (3,) for m in models)


def test_pipeline_set_output_and_feature_names(cancer: np.ndarray) -> None:
    y = load_breast_cancer().target
    pipe = Pipeline([("scale", StandardScaler()), ("pca", SecurePCA(n_components=5, variant="ss", partition=Horizontal(3))),
                     ("lr", LogisticRegression())])
    assert cross_val_score(pipe, load_breast_cancer().data, y, cv=3).min() > 0.9
    est = SecurePCA(n_components=2, variant="ss").fit(np.array_split(cancer, 2))
    assert list(est.get_feature_names_out()) == ["securepca0", "securepca1"]
    frame = est.set_output(transform="pandas").transform(cancer)
    assert list(frame.columns) == ["securepca0", "securepca1"]
    np.testing.assert_allclose(SecurePCA(n_components=2, variant="ss").fit_transform(np.array_split(cancer, 2)),
                               est.set_output(transform="default").transform(cancer), atol=1e-9)


def test_save_and_load(cancer: np.ndarray, tmp_path) -> None:
    est = SecurePCA(n_components=3, variant="ss").fit(np.array_split(cancer, 2))
    assert_persists(est, cancer, tmp_path)


def test_bad_input(cancer: np.ndarray) -> None:
    halves = np.array_split(cancer, 2)
    with pytest.raises(ValueError, match="at least 2"):
        SecurePCA(n_components=2).fit([cancer])
    with pytest.raises(ValueError, match="same number of columns"):
        SecurePCA(n_components=2).fit([halves[0], halves[1][:, :5]])
    bad = halves[1].copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"X\[1\] contains NaN"):
        SecurePCA(n_components=2).fit([halves[0], bad])
    with pytest.raises(ValueError, match="n_components"):
        SecurePCA(n_components=100).fit(halves)
    with pytest.raises(ValueError, match="n_components"):
        SecurePCA(n_components=1.5).fit(halves)
    with pytest.raises(ValueError, match="variant"):
        SecurePCA(n_components=2, variant="magic").fit(halves)
    with pytest.raises(TypeError, match="list"):
        SecurePCA(n_components=2).fit(cancer)
    constant = [h.copy() for h in halves]
    for h in constant:
        h[:, 4] = 1.5
    with pytest.raises(ValueError, match=r"features \[4\] have zero variance"):
        SecurePCA(n_components=2, variant="ss", standardize=True).fit(constant)
    with pytest.raises(ValueError, match="CKKS limit"):
        SecurePCA(n_components=2, variant="ckks").fit([h * 1e3 for h in halves])
    with pytest.raises(ValueError, match="holders"):
        PCAConfig(holders=("a",))


def test_invalid_engine_and_compute_party_combinations_are_refused_before_any_party_starts(cancer, runs) -> None:
    thirds, halves = np.array_split(cancer, 3), np.array_split(cancer, 2)
    with pytest.raises(ValueError, match=r"engine='rss3' needs exactly three compute parties .*n_servers=3"):
        SecurePCA(variant="ss", engine="rss3").fit(halves)
    with pytest.raises(ValueError, match=r"engine='rss3' needs exactly three compute parties"):
        SecurePCA(variant="ss", engine="rss3", n_servers=2).fit(thirds)
    with pytest.raises(ValueError, match=r"engine='rss3' applies to variant='ss' only"):
        SecurePCA(variant="he", engine="rss3").fit(thirds)
    with pytest.raises(ValueError, match=r"n_servers must be 0 .* or at least 2, got 1"):
        SecurePCA(variant="ss", n_servers=1).fit(thirds)
    with pytest.raises(ValueError, match="engine"):
        SecurePCA(variant="ss", engine="aby3").fit(thirds)
    with pytest.raises(ValueError, match=r"compute_parties apply to variant='ss' only"):
        PCAConfig(variant="ckks", holders=("a", "b"), compute_parties=("s", "t"))
    with pytest.raises(ValueError, match=r"compute_parties .* must be neither holders nor the consumer"):
        PCAConfig(variant="ss", holders=("a", "b"), compute_parties=("a", "s"))
    assert not runs


def test_sklearn_conventions(cancer: np.ndarray) -> None:
    est = SecurePCA(n_components=3, variant="ss")
    with pytest.raises(NotFittedError):
        est.transform(cancer)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    with pytest.raises(ValueError, match="features"):
        copy.fit(np.array_split(cancer, 2)).transform(cancer[:, :4])


@pytest.mark.parametrize("variant,engine", [("ss", "beaver"), ("ss", "rss3"), ("he", "beaver")])
@pytest.mark.slow  # spawns one process per party
def test_party_processes_match_in_process(tmp_path, variant: str, engine: str) -> None:
    options = {"variant": variant, "engine": engine, "n_components": "4", "key_bits": "1024"}
    run_both_ways("pca", options, tmp_path)


@pytest.mark.parametrize("engine", ["beaver", "rss3"])
def test_app_with_server_parties(tmp_path, engine: str) -> None:
    """The app's `server` role: three holders input to three (rss3) or two (beaver) servers, in-process."""
    from parties.apps import load_app, party_model, run_app_local

    app = load_app("pca")
    options = {"variant": "ss", "engine": engine, "n_components": "4"}
    data = app.demo_data(tmp_path, 0, options)
    servers = ("s0", "s1", "s2") if engine == "rss3" else ("s0", "s1")
    federation = {**app.DEMO_PARTIES, **{s: "server" for s in servers}}
    outputs = run_app_local("pca", data, options, federation=federation, timeout=60)
    result = app.check(outputs, data, options)
    assert result.ok, result.summary
    assert all(outputs[s] is None and party_model(app, None, s, federation, options) is None for s in servers)
    assert set(outputs.stats["consumer"].received_from) == {"alice", "bob", "carol", *servers}
    with pytest.raises(ValueError, match="engine='rss3' needs exactly three compute parties"):
        run_app_local("pca", data, {**options, "engine": "rss3"}, federation={**app.DEMO_PARTIES, "s0": "server",
                                                                             "s1": "server"}, timeout=60)


def test_scikit_learn_estimator_checks() -> None:
    from sklearn.utils.estimator_checks import check_estimator

    check_estimator(SecurePCA(partition=Horizontal(2), variant="ss"))
