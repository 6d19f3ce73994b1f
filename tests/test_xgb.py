"""Secure XGBoost (SS-XGB and SecureBoost) against its plaintext replay, xgboost, and the estimator contract.

Every protocol test compares the secure model with :func:`protocols.xgb.plaintext_xgb`, the same
algorithm in float64 (same cuts, sampling, gain and tie rules, quantisation; SS-XGB's sigmoid's
plaintext twin), tree by tree: every split is checked against the replay's scores and every leaf
weight against the replay's, within the bound derived in :mod:`protocols.xgb.reference` (SS-XGB:
a few units ``2^-18`` per row summed over a node, carried through the squares and the secure
division's ``16 u |q| + 2 u``; SecureBoost: exact). The securely predicted margins must then lie
within the sum of the leaf bounds along each row's path (:meth:`Replay.margin_tolerance`), plus
``1e-9`` relative for the float arithmetic of ``base + 2^s m``. The comparison with real xgboost
is a separate quality test.
"""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest
import xgboost
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.exceptions import NotFittedError
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import protocols.estimator
import protocols.xgb.config
from mpcml import fixedpoint
from protocols.estimator import Vertical
from protocols.xgb import Forest, ReplayMismatch, SecureXGBClassifier, SecureXGBRegressor, XGBConfig, plaintext_xgb
from protocols.xgb.trees import QuantileBinner, feature_values

KEY = 1024  # arithmetic only: the test suite's small Paillier keys


@pytest.fixture(scope="module")
def cancer():
    x, y = load_breast_cancer(return_X_y=True)
    return train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def diabetes():
    x, y = load_diabetes(return_X_y=True)
    return train_test_split(x, y, test_size=0.3, random_state=0)


@pytest.fixture
def runs(monkeypatch) -> list:
    """Records every in-process run an estimator starts (a refusal must come before the first)."""
    started: list = []
    original = protocols.estimator.run_parties

    def recording(*args, **kwargs):
        started.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(protocols.estimator, "run_parties", recording)
    return started


def labels_of(est, y):
    return (np.asarray(y) == est.classes_[1]).astype(float) if hasattr(est, "classes_") else np.asarray(y, float)


def assert_replays(est, X, y, X_test=None):
    """The secure model is the replay's tree by tree, and its secure predictions are the replay's margins
    within the derived bound; returns the replay."""
    forest = Forest.from_parts(est.models_)
    replay = plaintext_xgb(est.feature_blocks(X), labels_of(est, y), est.config_, follow=forest)
    test = est.feature_blocks(X if X_test is None else X_test)
    secure = est.margins(X if X_test is None else X_test)
    expected = replay.forest.margins(test)
    # the prediction protocol is exact on the distributed model (ring arithmetic on 0/1 and shares)
    np.testing.assert_allclose(secure, forest.margins(test), rtol=1e-12, atol=1e-9)
    bound = replay.margin_tolerance(test) + 1e-9 * (1 + np.abs(expected))
    assert np.all(np.abs(secure - expected) <= bound), np.max(np.abs(secure - expected) - bound)
    return replay


def xgb_margin(xtr, ytr, xte, trees, depth, max_bin=32, regression=False):
    kind = xgboost.XGBRegressor if regression else xgboost.XGBClassifier
    model = kind(n_estimators=trees, max_depth=depth, learning_rate=0.3, reg_lambda=1.0, min_child_weight=1.0,
                 tree_method="hist", max_bin=max_bin)
    return model.fit(xtr, ytr).predict(xte, output_margin=True)


# --- the secure fits replay the plaintext algorithm -------------------------------------------------


@pytest.mark.parametrize("method", ["ss", "he"])
def test_classifier_replays_tree_by_tree(cancer, method, transport):
    xtr, xte, ytr, _ = cancer
    est = SecureXGBClassifier(method=method, n_estimators=2, max_depth=3, key_bits=KEY, partition=Vertical(12, 18))
    est.fit(xtr[:240], ytr[:240])
    assert_replays(est, xtr[:240], ytr[:240], xte)
    if method == "he":  # exact split finding: the independent replay grows the very same trees
        own = plaintext_xgb(est.feature_blocks(xtr[:240]), ytr[:240], est.config_)
        for secure, replayed in zip(Forest.from_parts(est.models_).parts, own.forest.parts):
            np.testing.assert_array_equal(secure.features, replayed.features)
            np.testing.assert_array_equal(secure.thresholds, replayed.thresholds)


@pytest.mark.parametrize("method", ["ss", "he"])
def test_regressor_replays_tree_by_tree(diabetes, method):
    xtr, xte, ytr, _ = diabetes
    est = SecureXGBRegressor(method=method, n_estimators=3, max_depth=2, key_bits=KEY, partition=Vertical(5, 5))
    est.fit(xtr, ytr)
    assert est.models_["holder-0"].target_shift == 8  # max |y - mean| = 193 < 2^8: trained as (y - mean) / 256
    assert_replays(est, xtr, ytr, xte)


@pytest.mark.parametrize("method", ["ss", "he"])
def test_three_parties_with_row_and_column_sampling(cancer, method):
    xtr, xte, ytr, _ = cancer
    est = SecureXGBClassifier(method=method, n_estimators=2, max_depth=2, subsample=0.7, colsample_bytree=0.2,
                              max_bin=16, key_bits=KEY, random_state=5, partition=Vertical(10, 10, 10))
    est.fit(xtr[:200], ytr[:200])
    for part in est.models_.values():
        for t in range(2):
            assert len(set(part.trees.features[t][part.trees.features[t] >= 0].tolist())) <= 2  # round(0.2 * 10)
    assert_replays(est, xtr[:200], ytr[:200], xte)


def test_ss_margins_go_to_the_named_party_only(cancer):
    from mpcml import run_local
    from protocols.xgb import prediction_roles

    xtr, xte, ytr, _ = cancer
    est = SecureXGBClassifier(n_estimators=1, max_depth=2, max_bin=8, partition=Vertical(10, 10, 10)).fit(xtr[:150], ytr[:150])
    blocks = dict(zip(est.config_.players, est.feature_blocks(xte[:40])))
    out = run_local(*prediction_roles(est.config_, blocks, est.models_, to="holder-2"))
    assert out["holder-0"] is None and out["holder-1"] is None
    np.testing.assert_allclose(out["holder-2"], est.decision_function(xte[:40]), rtol=1e-12)


# --- quality: the same model as xgboost (separately from the replays) ------------------------------


def test_he_equals_xgboost_and_ss_is_close(cancer):
    """Same cut points (xgboost's own sketch): SecureBoost's margins are xgboost's up to the 2^-24 rounding of
    g and h; SS-XGB's agree to fixed-point accuracy except where tied thresholds resolve differently."""
    xtr, xte, ytr, yte = cancer
    expected = xgb_margin(xtr, ytr, xte, 2, 3)
    he = SecureXGBClassifier(method="he", n_estimators=2, key_bits=KEY).fit([xtr[:, :15], xtr[:, 15:]], ytr)
    np.testing.assert_allclose(he.decision_function(xte), expected, atol=1e-4)
    ss = SecureXGBClassifier(method="ss", n_estimators=2).fit([xtr[:, :15], xtr[:, 15:]], ytr)
    margin = ss.decision_function(xte)
    assert np.mean(np.abs(margin - expected) < 2e-3) > 0.95
    assert abs(roc_auc_score(yte, margin) - roc_auc_score(yte, expected)) < 0.01


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ss", "he"])
@pytest.mark.parametrize("bounds", [[15, 15], [10, 10, 10]])
def test_full_size_auc_equals_xgboost(method, bounds, cancer):
    """10 trees of depth 3: test AUC within 0.01 of xgboost (hist, same max_bin)."""
    xtr, xte, ytr, yte = cancer
    clf = SecureXGBClassifier(method=method, key_bits=2048, partition=Vertical(*bounds)).fit(xtr, ytr)
    auc = roc_auc_score(yte, clf.predict_proba(xte)[:, 1])
    assert abs(auc - roc_auc_score(yte, xgb_margin(xtr, ytr, xte, 10, 3))) < 0.01


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ss", "he"])
def test_full_size_regression_equals_xgboost(method, diabetes):
    xtr, xte, ytr, yte = diabetes
    expected = xgb_margin(xtr, ytr, xte, 10, 3, regression=True)
    pred = SecureXGBRegressor(method=method, key_bits=2048, partition=Vertical(5, 5)).fit(xtr, ytr).predict(xte)
    assert abs(r2_score(yte, pred) - r2_score(yte, expected)) < 0.01
