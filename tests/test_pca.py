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
from protocols.estimator import Horizontal
from protocols.pca import PCAConfig, SecurePCA, model_tolerance, reference_model
from tests.contract import assert_persists

KEY_BITS = 1024


@pytest.fixture(scope="module")
def cancer() -> np.ndarray:
    return StandardScaler().fit_transform(load_breast_cancer().data)


def _aligned(components: np.ndarray, reference: np.ndarray) -> np.ndarray:
    signs = np.sign(np.sum(components * reference, axis=1))
    return components * signs[:, None]


def assert_replays(est: SecurePCA, blocks: list[np.ndarray]) -> None:
    """The secure model equals the plaintext replay within the derived bound, and scikit-learn's within its own."""
    config = est.make_config(holders=tuple(f"holder-{i}" for i in range(len(blocks))))
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
@given(scale=st.sampled_from([1e-3, 1.0, 1e3]), holders=st.integers(2, 5), variant=st.sampled_from(["ss", "he"]),
       standardize=st.booleans(), seed=st.integers(0, 2**16))
def test_generated_data_gives_the_replay_or_an_early_error(monkeypatch, scale, holders, variant, standardize, seed):
    started = []
    monkeypatch.setattr(protocols.estimator, "run_parties",
                        lambda *a, original=protocols.estimator.run_parties: started.append(1) or original(*a))
    data = np.random.default_rng(seed)
    X = data.normal(size=(10 * holders, 5)) @ data.normal(size=(5, 5)) * scale * data.uniform(0.1, 1, 5)
    blocks = np.array_split(X, holders)
    est = SecurePCA(n_components=3, variant=variant, standardize=standardize, key_bits=KEY_BITS)
    try:
        est.fit(blocks)
    except ValueError:
        assert not started
        return
    assert_replays(est, blocks)


def test_holders_receive_only_what_holder_output_allows(cancer: np.ndarray, wire_log) -> None:
    blocks = np.array_split(cancer, 2)
    SecurePCA(n_components=3, variant="ss").fit(blocks)
    models = [m for receiver, sender, m in wire_log if sender == "consumer" and isinstance(m, dict) and "mean" in m]
    assert len(models) == 2 and all(set(m) == {"mean", "scale", "components"} and m["components"].shape == (3, 30)
                                    for m in models)
    # what the consumer receives in the ss variant: partial sums, uniform ring words (bit balance, 5 sigma)
    sums = np.concatenate([m for receiver, _, m in wire_log if receiver == "consumer" and isinstance(m, np.ndarray)])
    balance = np.unpackbits(sums.view(np.uint8)).reshape(-1, 64).mean(axis=0)
    assert np.all(np.abs(balance - 0.5) < 5 * 0.5 / np.sqrt(sums.size))
    facts = [m for receiver, _, m in wire_log if receiver == "consumer" and isinstance(m, dict)]
    assert all(set(m) == {"features", "stat_bits"} for m in facts) and len(facts) == 2
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


def test_sklearn_conventions(cancer: np.ndarray) -> None:
    est = SecurePCA(n_components=3, variant="ss")
    with pytest.raises(NotFittedError):
        est.transform(cancer)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    with pytest.raises(ValueError, match="features"):
        copy.fit(np.array_split(cancer, 2)).transform(cancer[:, :4])


@pytest.mark.parametrize("variant", ["ss", "he"])
@pytest.mark.slow  # spawns one process per party
def test_party_processes_match_in_process(tmp_path, variant: str) -> None:
    from parties.apps import load_app, run_app_local
    from parties.launcher import run_processes

    options = {"variant": variant, "n_components": "4", "key_bits": "1024"}
    app = load_app("pca")
    data = app.demo_data(tmp_path, 0, options)
    local = run_app_local("pca", data, options, timeout=60)
    remote = run_processes("pca", data, options, work_dir=tmp_path / "run", secure=True, timeout=60)
    for outputs in (local, remote.outputs):
        result = app.check(outputs, data, options)
        assert result.ok, result.summary


def test_scikit_learn_estimator_checks() -> None:
    from sklearn.utils.estimator_checks import check_estimator

    check_estimator(SecurePCA(partition=Horizontal(2), variant="ss"))
