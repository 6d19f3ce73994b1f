"""PPPCA (protocols/pca.py) against scikit-learn's PCA."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.preprocessing import StandardScaler

from protocols.pca import SecurePCA

KEY_BITS = 1024


@pytest.fixture(scope="module")
def cancer() -> np.ndarray:
    return StandardScaler().fit_transform(load_breast_cancer().data)


def _aligned(components: np.ndarray, reference: np.ndarray) -> np.ndarray:
    signs = np.sign(np.sum(components * reference, axis=1))
    return components * signs[:, None]


@pytest.mark.parametrize("variant", ["he", "ckks", "ss"])
@pytest.mark.parametrize("holders", [2, 3, 4, 5])
def test_matches_sklearn(cancer: np.ndarray, variant: str, holders: int) -> None:
    est = SecurePCA(6, variant=variant, key_bits=KEY_BITS).fit(np.array_split(cancer, holders))
    ref = PCA(6).fit(cancer)
    assert np.max(np.abs(est.explained_variance_ratio_ - ref.explained_variance_ratio_)) < 1e-6
    assert np.max(np.abs(est.explained_variance_ - ref.explained_variance_)) < 1e-6
    assert np.max(np.abs(_aligned(est.components_, ref.components_) - ref.components_)) < 1e-4
    assert np.max(np.abs(est.mean_ - ref.mean_)) < 1e-8
    projected = np.vstack(est.projections_)
    reference = ref.transform(cancer)
    assert np.max(np.abs(np.abs(projected) - np.abs(reference))) < 1e-6
    assert est.communication_.total_bytes > 0


def test_fraction_of_variance_and_transform(cancer: np.ndarray) -> None:
    est = SecurePCA(0.9, variant="ss").fit(np.array_split(cancer, 4))
    ref = PCA(0.9).fit(cancer)
    assert est.n_components_ == ref.n_components_
    signs = np.sign(np.sum(est.components_ * ref.components_, axis=1))
    assert np.max(np.abs(est.transform(cancer) * signs - ref.transform(cancer))) < 1e-6


def test_unequal_blocks_and_raw_data() -> None:
    wine = load_wine().data
    blocks = [wine[:20], wine[20:120], wine[120:]]
    est = SecurePCA(3, variant="he", key_bits=KEY_BITS).fit(blocks)
    ref = PCA(3).fit(wine)
    assert np.max(np.abs(est.explained_variance_ratio_ - ref.explained_variance_ratio_)) < 1e-6
    assert np.max(np.abs(_aligned(est.components_, ref.components_) - ref.components_)) < 1e-4


def test_standardize_matches_pca_on_scaled_data() -> None:
    wine = load_wine().data
    est = SecurePCA(4, variant="ss", standardize=True).fit(np.array_split(wine, 2))
    scaled = StandardScaler().fit(wine)
    ref = PCA(4).fit(scaled.transform(wine))
    assert np.max(np.abs(est.explained_variance_ratio_ - ref.explained_variance_ratio_)) < 1e-6
    assert np.max(np.abs(_aligned(est.components_, ref.components_) - ref.components_)) < 1e-4
    # sample std (n - 1) versus StandardScaler's population std: PCA's components are unaffected
    assert np.allclose(est.scale_, scaled.scale_ * np.sqrt(len(wine) / (len(wine) - 1)))


def test_bad_input(cancer: np.ndarray) -> None:
    halves = np.array_split(cancer, 2)
    with pytest.raises(ValueError, match="at least 2"):
        SecurePCA(2).fit([cancer])
    with pytest.raises(ValueError, match="same number of columns"):
        SecurePCA(2).fit([halves[0], halves[1][:, :5]])
    bad = halves[1].copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"X\[1\] contains NaN"):
        SecurePCA(2).fit([halves[0], bad])
    with pytest.raises(ValueError, match="n_components"):
        SecurePCA(100).fit(halves)
    with pytest.raises(ValueError, match="n_components"):
        SecurePCA(1.5).fit(halves)
    with pytest.raises(ValueError, match="variant"):
        SecurePCA(2, variant="magic").fit(halves)
    with pytest.raises(TypeError, match="list"):
        SecurePCA(2).fit(cancer)
    constant = [h.copy() for h in halves]
    for h in constant:
        h[:, 4] = 1.5
    with pytest.raises(ValueError, match=r"features \[4\] have zero variance"):
        SecurePCA(2, variant="ss", standardize=True).fit(constant)
    with pytest.raises(ValueError, match="fixed-point range"):
        SecurePCA(2, variant="ss").fit([h * 1e6 for h in halves])
    with pytest.raises(ValueError, match="CKKS limit"):
        SecurePCA(2, variant="ckks").fit([h * 1e3 for h in halves])


def test_sklearn_conventions(cancer: np.ndarray) -> None:
    est = SecurePCA(3, variant="ss")
    with pytest.raises(NotFittedError):
        est.transform(cancer)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    with pytest.raises(ValueError, match="features"):
        copy.fit(np.array_split(cancer, 2)).transform(cancer[:, :4])


@pytest.mark.parametrize("variant", ["ss", "he"])
@pytest.mark.slow  # spawns one process per party: 30-40 s of start-up on the shared 2-core machine
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
    for pid, model in local.items():
        for key, value in model.items():
            # exact secure sums: the same model whichever transport carried them (eigh up to sign)
            np.testing.assert_allclose(np.abs(remote.outputs[pid][key]), np.abs(value), rtol=0, atol=1e-12)
