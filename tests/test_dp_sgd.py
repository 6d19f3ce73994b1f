"""Secure DP-SGD building blocks (protocols.dp_sgd) against the plaintext reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from mpcml import SharedTensor, decode, encode
from mpcml import nonlinear as nl
from mpcml.accounting import RdpAccountant, dp_sgd_epsilon
from protocols.dp_sgd import (
    DPSGDConfig,
    add_party_noise,
    clamp,
    clip_bounds,
    clip_range,
    clip_rows,
    epsilon_known_batches,
    explicit_effective_clip,
    glm_clipped_sum,
    local_dp_models,
    party_noise_sources,
    per_example_gradients,
    plaintext_dp_sgd,
    plan,
    poisson_batches,
    random_projection,
    replay_tolerance,
    row_sq_norms,
    train_dp_sgd,
)
from mpcml.masked import MaskedMatrix

U = 2.0**-16  # the fixed-point unit
SEED = bytes(range(32))
NOISE_SEED = bytes(range(100, 132))
LINEAR = nl.SIGMOID_METHODS["linear"]  # clip(0.5 + 0.1771 z, 0, 1)


def q(x):
    return decode(encode(x))


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return q(StandardScaler().fit_transform(X)), y.astype(np.float64)


def owned(session, value, owner):
    return session.input(value if session.party.id == owner else None, owner=owner)


def with_ones(session, xs):
    return SharedTensor.concatenate([xs, session.public(np.ones((xs.shape[0], 1)))], axis=1)


# --- the whole run against the plaintext replay -------------------------------------------------


def _secure_run(spmd, X, y, dp, n_players, seed):
    """Features from p0, labels from the last player; the revealed weights."""

    def body(s):
        xs = with_ones(s, owned(s, X, "p0"))
        return train_dp_sgd(s, xs, owned(s, y, f"p{n_players - 1}"), dp, seed).reveal()

    return spmd(n_players, body)["p0"]


def _replay(X, y, dp, n_players, seed, activation=LINEAR.plain):
    players = tuple(f"p{i}" for i in range(n_players))
    sources = party_noise_sources(dp.config.noise_seed, players)
    sigma = dp.config.party_sigma(n_players)
    return plaintext_dp_sgd(X, y, dp, seed, noise=[(sources[p], sigma) for p in players], activation=activation)


@pytest.mark.parametrize("loss,n_players,colluders", [("logistic", 2, None), ("logistic", 3, 1), ("squared", 2, None)])
def test_secure_dp_sgd_follows_the_plaintext_replay(spmd, engine, cancer, loss, n_players, colluders):
    n_players = 3 if engine == "rss3" else n_players  # the replicated engine always runs three players
    X, y = cancer
    X, y = X[:120, :6], y[:120]
    if loss == "squared":
        y = q(X[:, :3] @ np.array([1.5, -1.0, 0.8]) + 0.1)
    # clip 0.5 is below most early gradient norms, so clipping is active (checked below)
    config = DPSGDConfig(loss, clip=0.5, feature_bound=13.0, noise_multiplier=3.0, expected_batch_size=16, epochs=0.8,
                         learning_rate=0.5 if loss == "logistic" else 0.15, colluders=colluders, noise_seed=NOISE_SEED)
    dp = plan(config, X.shape[0])
    secure = _secure_run(spmd, X, y, dp, n_players, SEED)
    plain = _replay(X, y, dp, n_players, SEED)
    tolerance = replay_tolerance(X, dp, n_players, SEED)  # derived in its docstring
    error = np.linalg.norm(secure - plain)
    assert error <= tolerance, (error / U, tolerance / U)
    # the noise is there and is the replayed one: the same run without it lands far away
    noiseless = plaintext_dp_sgd(X, y, dp, SEED, noise=[], activation=LINEAR.plain)
    assert np.linalg.norm(noiseless - plain) > 20 * tolerance
    # and clipping is active: first-step gradient norms exceed 2 C
    rows = next(poisson_batches(SEED, X.shape[0], dp.sampling_rate, 1))
    e = (LINEAR.plain(np.zeros(rows.size)) if loss == "logistic" else 0.0) - y[rows]
    assert np.max(np.abs(e) * np.linalg.norm(np.hstack([X[rows], np.ones((rows.size, 1))]), axis=1)) > 2 * config.clip


def test_colluders_calibrate_each_party_noise():
    config = DPSGDConfig("logistic", clip=2.0, feature_bound=1.0, noise_multiplier=1.5)
    assert config.party_sigma(2) == pytest.approx(3.0)  # t = n - 1 = 1: one honest party carries sigma C
    assert config.party_sigma(4) == pytest.approx(3.0)
    honest_majority = DPSGDConfig("logistic", clip=2.0, feature_bound=1.0, noise_multiplier=1.5, colluders=1)
    assert honest_majority.party_sigma(3) == pytest.approx(3.0 / math.sqrt(2))
    with pytest.raises(ValueError, match="n_players"):
        honest_majority.party_sigma(1)
    with pytest.raises(ValueError, match="colluders must be below"):
        DPSGDConfig("logistic", clip=1.0, feature_bound=1.0, noise_multiplier=1.0, colluders=3).party_sigma(3)


def test_shared_noise_law_and_what_survives_collusion(spmd):
    # 3 parties, at most t = 1 colluding: each adds N(0, (sigma C)^2 / 2); the sum is N(0, 1.5 (sigma C)^2)
    # and after a colluder subtracts its own draw N(0, (sigma C)^2) survives
    config = DPSGDConfig("logistic", clip=1.0, feature_bound=1.0, noise_multiplier=2.0, colluders=1)
    players = ("p0", "p1", "p2")
    sigma_p = config.party_sigma(3)
    size = 40_000

    def body(s):
        sources = party_noise_sources(NOISE_SEED, players)
        return add_party_noise(s.zeros(size), sigma_p, {s.party.id: sources[s.party.id]}).reveal()

    total = spmd(3, body)["p0"]
    replay = party_noise_sources(NOISE_SEED, players)
    draws = {p: replay[p].gaussian(size, sigma_p) for p in players}
    # the shared sum is the parties' draws, each rounded to the unit once: |error| <= 3 U / 2
    assert np.max(np.abs(total - sum(draws.values()))) <= 1.5 * U
    assert stats.kstest(total / math.sqrt(1.5 * 4.0), "norm").pvalue > 1e-3
    survived = total - draws["p1"]
    assert np.var(survived) == pytest.approx(4.0, rel=0.03)
    assert stats.kstest(survived / 2.0, "norm").pvalue > 1e-3
    # without a seed every party keys its stream from os.urandom
    fresh = party_noise_sources(None, players)
    assert not np.array_equal(fresh["p0"].gaussian(4, 1.0), party_noise_sources(None, players)["p0"].gaussian(4, 1.0))


def test_real_path_noise_is_fresh(spmd, cancer):
    X, y = cancer
    X, y = X[:48, :3], y[:48]
    dp = plan(DPSGDConfig("logistic", clip=1.0, feature_bound=13.0, noise_multiplier=2.0, expected_batch_size=16,
                          epochs=1.0, learning_rate=1.0), 48)
    first = _secure_run(spmd, X, y, dp, 2, SEED)
    second = _secure_run(spmd, X, y, dp, 2, SEED)
    # same data, batches and clipping; fresh CSPRNG noise: the difference of the two runs is Gaussian with
    # std >= sqrt(2 x 3 steps x 2 parties) x 2 / 16 ~ 0.4 per weight, so below 0.01 for all 4 with p < 1e-7
    assert np.linalg.norm(first - second) > 0.01


# --- the clipping blocks ------------------------------------------------------------------------


def _adversarial_rows(bound, d, rng):
    """Rows at the feature bound, tiny rows, and rows whose gradient norm sits at the clip threshold."""
    big = q(bound * rng.choice([-1.0, 1.0], size=(20, d)))
    small = q(rng.normal(scale=0.01, size=(20, d)))
    mid = q(rng.normal(size=(40, d)))
    return np.vstack([big, small, mid])


def test_every_contribution_stays_within_the_clip(spmd):
    # the released sum's sensitivity: |clamp(e_i, -b_i, b_i)| ||x_i|| <= C for every row, whatever the
    # fixed-point errors: rows at the feature bound, tiny rows, and residuals at the clipping threshold
    rng = np.random.default_rng(5)
    config = DPSGDConfig("squared", clip=0.7, feature_bound=4.0, noise_multiplier=1.0)
    X = _adversarial_rows(4.0, 5, rng)
    Xb = np.hstack([X, np.ones((X.shape[0], 1))])
    r = clip_range(config, 5)
    norms = np.linalg.norm(Xb, axis=1)
    e = q(np.concatenate([rng.choice([-3.0, 3.0], 40), r.effective_clip / norms[40:] * (1 + rng.choice([-1e-4, 1e-4], 40))]))

    def body(s):
        xs = with_ones(s, owned(s, X, "p0"))
        masked = MaskedMatrix(xs)
        bounds = clip_bounds(row_sq_norms(xs), r)
        rows = np.arange(X.shape[0])
        ev = owned(s, e, "p1")
        total = glm_clipped_sum(masked, rows, ev, bounds)
        masked.release()
        return clamp(ev, bounds).reveal(), bounds.reveal(), total.reveal()

    u, bounds, total = spmd(2, body)["p0"]
    assert np.max(np.abs(u) * norms) <= config.clip
    # b_i within inv_sqrt's documented error (2^(4-f) relative, 2^(1-f) absolute, times C') plus one unit
    exact_bounds = r.effective_clip / norms
    assert np.all(np.abs(bounds - exact_bounds) <= r.effective_clip * (16 * U / norms + 2 * U) + U)
    expected = np.minimum(1.0, r.effective_clip / (np.abs(e) * norms)) * e
    assert np.all(np.abs(u - expected) <= np.abs(bounds - exact_bounds) + 2 * U)
    # the sum: per coordinate sum_i |x_ij| |du_i| plus one unit
    per_row = np.abs(bounds - exact_bounds) + 2 * U
    assert np.all(np.abs(total - Xb.T @ expected) <= np.abs(Xb).T @ per_row + U)


def test_explicit_per_example_clipping(spmd):
    rng = np.random.default_rng(7)
    G = q(np.vstack([rng.normal(scale=2.0, size=(30, 8)), rng.normal(scale=0.01, size=(10, 8))]))
    G[0] *= 40.0 / np.linalg.norm(G[0])  # one row near the public bound
    clip, max_norm = 1.0, 48.0
    c_eff, _ = explicit_effective_clip(clip, max_norm, 8, 16)

    def body(s):
        return clip_rows(owned(s, G, "p1"), clip, max_norm).reveal()

    out = spmd(3, body)["p0"]
    assert np.max(np.linalg.norm(out, axis=1)) <= clip
    factors = np.minimum(1.0, c_eff / np.linalg.norm(G, axis=1))
    # per entry: the factor's relative error 2^(4-f) + (sqrt(d) + d / 2) U and absolute 2 U, times |G_ij|,
    # plus one unit for the product
    bound = ((16 + math.sqrt(8) + 4) * U * factors + 2 * U)[:, None] * np.abs(G) + U
    assert np.all(np.abs(out - factors[:, None] * G) <= bound)
    assert np.sum(np.abs(out.sum(axis=0) - G.sum(axis=0))) > 1.0  # clipping changed the sum


def test_explicit_and_glm_clipping_agree(spmd, cancer):
    # the two paths compute the same clipped sum: clip_rows(e_i x_i) summed, and X_B^T clamp(e, +-C'/||x_i||)
    X = cancer[0][:40, :6]
    e = q(np.random.default_rng(3).normal(scale=1.5, size=40))
    config = DPSGDConfig("squared", clip=1.0, feature_bound=13.0, noise_multiplier=1.0)
    r = clip_range(config, 6)
    max_norm = 4.0 * math.sqrt(r.max_row_sq)  # |e_i| < 4 here

    def body(s):
        xs = with_ones(s, owned(s, X, "p0"))
        ev = owned(s, e, "p1")
        masked = MaskedMatrix(xs)
        rows = np.arange(40)
        glm = glm_clipped_sum(masked, rows, ev, clip_bounds(row_sq_norms(xs), r))
        masked.release()
        explicit = clip_rows(per_example_gradients(xs, ev), config.clip, max_norm).sum(axis=0)
        return glm.reveal(), explicit.reveal()

    glm, explicit = spmd(2, body)["p0"]
    Xb = np.hstack([X, np.ones((40, 1))])
    c_explicit, _ = explicit_effective_clip(config.clip, max_norm, 7, 16)
    # each against its plaintext, per coordinate j: at most 40 U |x_ij| + U per row (GLM: u_i within
    # C'(16 U + 2 U) + 3 U = 21 U; explicit: f_i within (16 + sqrt(7) + 3.5) U f_i + 2 U, times |e_i| < 4,
    # so f_i e_i x_ij within 31 U |x_ij|, plus one unit for the product), summed over the 40 rows
    bound = np.abs(Xb).T @ np.full(40, 40 * U) + 40 * U
    exact = {}
    for name, got, c in (("glm", glm, r.effective_clip), ("explicit", explicit, c_explicit)):
        exact[name] = Xb.T @ (np.minimum(1.0, c / (np.abs(e) * np.linalg.norm(Xb, axis=1))) * e)
        assert np.all(np.abs(got - exact[name]) <= bound), name
    # the two effective clips differ by their error margins only
    assert abs(r.effective_clip - c_explicit) < 0.01
    assert np.max(np.abs(exact["glm"] - exact["explicit"])) < 0.01 * 40


def test_clamp_is_exact_up_to_one_unit(spmd):
    x = q(np.concatenate([np.linspace(-5, 5, 101), [-2.0, 2.0, -2.0 - U, 2.0 + U]]))
    b = q(np.abs(np.sin(np.arange(x.size))) * 3)

    def body(s):
        X = owned(s, x, "p0")
        return clamp(X, 2.0).reveal(), clamp(X, owned(s, b, "p1")).reveal()

    public, shared = spmd(2, body)["p0"]
    assert np.max(np.abs(public - np.clip(x, -2.0, 2.0))) <= U
    assert np.max(np.abs(shared - np.clip(x, -b, b))) <= U


# --- range analysis, plan and sampling ----------------------------------------------------------------


def test_range_analysis_refuses_what_does_not_fit():
    fits = clip_range(DPSGDConfig("logistic", clip=1.0, feature_bound=13.0, noise_multiplier=1.0), 30)
    assert fits.max_row_sq == 30 * 169 + 1 and (fits.lo, fits.hi) == (0, 13)
    assert 2.0 ** (fits.hi - 1) <= fits.max_row_sq < 2.0**fits.hi
    assert 0.99 < fits.effective_clip < 1.0
    no_intercept = clip_range(DPSGDConfig("logistic", clip=1.0, feature_bound=1.0, noise_multiplier=1.0,
                                          fit_intercept=False), 3)
    assert no_intercept.lo == -16
    with pytest.raises(ValueError, match="feature_bound=1000.0, 5000 features"):
        clip_range(DPSGDConfig("logistic", clip=1.0, feature_bound=1000.0, noise_multiplier=1.0), 5000)
    with pytest.raises(ValueError, match="clip=0.0001 is too small"):
        clip_range(DPSGDConfig("logistic", clip=1e-4, feature_bound=1.0, noise_multiplier=1.0), 3)
    with pytest.raises(ValueError, match="clip=1.0 and max_norm=100000000.0"):
        explicit_effective_clip(1.0, 1e8, 4, 16)
    with pytest.raises(ValueError, match="feature_bound=1.0"):
        plaintext_dp_sgd(np.full((20, 2), 1.5), np.zeros(20), plan(
            DPSGDConfig("logistic", clip=1.0, feature_bound=1.0, noise_multiplier=1.0, expected_batch_size=4), 20), SEED)


def test_config_and_plan_checks():
    with pytest.raises(ValueError, match="epsilon .* or noise_multiplier"):
        DPSGDConfig("logistic", clip=1.0, feature_bound=1.0)
    with pytest.raises(ValueError, match="sigmoid must be one of"):
        DPSGDConfig("logistic", clip=1.0, feature_bound=1.0, epsilon=1.0, sigmoid="poly")
    with pytest.raises(ValueError, match="loss"):
        DPSGDConfig("hinge", clip=1.0, feature_bound=1.0, epsilon=1.0)
    with pytest.raises(ValueError, match="noise_seed"):
        DPSGDConfig("logistic", clip=1.0, feature_bound=1.0, epsilon=1.0, noise_seed=b"short")
    with pytest.raises(ValueError, match=r"noise_multiplier=0.5, expected_batch_size=64 of 500 rows.*budget epsilon=1.0"):
        plan(DPSGDConfig("logistic", clip=1.0, feature_bound=1.0, epsilon=1.0, noise_multiplier=0.5), 500)
    with pytest.raises(ValueError, match="expected_batch_size=64 exceeds"):
        plan(DPSGDConfig("logistic", clip=1.0, feature_bound=1.0, epsilon=1.0), 50)
    dp = plan(DPSGDConfig("logistic", clip=1.0, feature_bound=1.0, epsilon=2.0, epochs=3, expected_batch_size=32), 400)
    assert dp.steps == math.ceil(3 * 400 / 32) and dp.sampling_rate == 32 / 400
    assert dp.epsilon <= 2.0
    assert dp.epsilon == pytest.approx(dp_sgd_epsilon(dp.sampling_rate, dp.config.noise_multiplier, dp.steps, 1e-5))


def test_poisson_batches_have_the_stated_law():
    n, rate, steps = 300, 0.1, 400
    batches = list(poisson_batches(SEED, n, rate, steps))
    counts = np.bincount(np.concatenate(batches), minlength=n)
    # each row's participation count is Binomial(steps, rate): mean 40, variance 36
    assert abs(np.mean(counts) - steps * rate) < 5 * math.sqrt(steps * rate * (1 - rate) / n)
    assert np.var(counts) == pytest.approx(steps * rate * (1 - rate), rel=0.2)
    sizes = np.array([b.size for b in batches])
    assert abs(sizes.mean() - n * rate) < 5 * math.sqrt(n * rate * (1 - rate) / steps)
    assert all(np.array_equal(a, b) for a, b in zip(batches, poisson_batches(SEED, n, rate, steps)))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, poisson_batches(NOISE_SEED, n, rate, steps)))
    # an observer who knows the batches gets no amplification
    known = epsilon_known_batches(batches, n, 4.0, 1e-5)
    assert known == pytest.approx(RdpAccountant().compose(1.0, 4.0, int(counts.max())).epsilon(1e-5))
    assert known > 3 * dp_sgd_epsilon(rate, 4.0, steps, 1e-5)


# --- PEA's accuracy aids --------------------------------------------------------------------------


def test_local_initialisation_is_planned_and_charged(cancer):
    X, y = cancer
    blocks = [(X[:200, :5], y[:200]), (X[200:400, :5], y[200:400])]
    config = DPSGDConfig("logistic", clip=1.0, feature_bound=13.0, epsilon=2.0, expected_batch_size=32, epochs=2)
    alone = plan(config, 400)
    with_local = plan(config, 400, local_rows=[200, 200], local_epochs=2)
    assert with_local.local == ((32 / 200, math.ceil(2 * 200 / 32)),) * 2
    # the same budget over more steps needs more noise; the charge is global + the worst local phase
    assert with_local.config.noise_multiplier > alone.config.noise_multiplier
    sigma = with_local.config.noise_multiplier
    charged = RdpAccountant().compose(32 / 400, sigma, with_local.steps).compose(32 / 200, sigma, math.ceil(2 * 200 / 32)).epsilon(1e-5)
    assert with_local.epsilon == pytest.approx(charged) and with_local.epsilon <= 2.0
    local = local_dp_models(blocks, with_local, [SEED, NOISE_SEED])
    assert len(local.models) == 2 and local.average.shape == (6,)
    np.testing.assert_allclose(local.average, (local.models[0] + local.models[1]) / 2)
    with pytest.raises(ValueError, match="one block and one sampling seed"):
        local_dp_models(blocks, with_local, [SEED])


def test_random_projection_is_data_independent_and_reproducible():
    P = random_projection(30, 10, SEED)
    assert P.shape == (30, 10)
    np.testing.assert_array_equal(P, random_projection(30, 10, SEED))
    assert not np.array_equal(P, random_projection(30, 10, NOISE_SEED))
    big = random_projection(200, 400, SEED)
    assert np.var(big) == pytest.approx(1 / 400, rel=0.02)
    assert stats.kstest(big.ravel() * 20, "norm").pvalue > 1e-3


def test_docs_options_table_is_current():
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "dp.md").read_text(encoding="utf-8")
    assert DPSGDConfig.options_table() in page, "docs/dp.md: paste DPSGDConfig.options_table() under 'Options'"


# --- DP-SGD inside SecureLogisticRegression / SecureLinearRegression ---------------------------------


def _estimator_replay_config(loss: str, colluders: int | None, **changes) -> DPSGDConfig:
    """The test's own DP-SGD parameters for the estimator options below (built independently of the
    integration, so a sampling rate or clip that differs from the accountant's plan is caught)."""
    options = dict(clip=0.5, feature_bound=13.0, noise_multiplier=3.0, expected_batch_size=16, epochs=1.0,
                   learning_rate=0.5 if loss == "logistic" else 0.15, colluders=colluders, noise_seed=NOISE_SEED)
    return DPSGDConfig(loss, **{**options, **changes})


@pytest.fixture
def noise_hook(monkeypatch):
    """The test-only noise seed reaches the estimators' config (the real path keys noise from os.urandom)."""
    from dataclasses import replace

    from protocols.regression.estimators import _SecureRegression

    original = _SecureRegression.make_config
    monkeypatch.setattr(_SecureRegression, "make_config",
                        lambda self, **topology: replace(original(self, **topology), dp_noise_seed=NOISE_SEED))


@pytest.mark.parametrize("loss,partition", [("logistic", "vertical"), ("logistic", "horizontal"), ("squared", "vertical")])
def test_estimator_dp_fit_replays_plaintext_dp_sgd(cancer, noise_hook, engine, transport, loss, partition):
    """The estimator's DP fit = plaintext DP-SGD with the same Poisson batches and the parties' noise draws,
    within :func:`protocols.dp_sgd.replay_tolerance` (derived from the fixed-point unit in its docstring);
    the accountant's epsilon of the test's own plan; noise and clipping both active."""
    from protocols.regression import SecureLinearRegression, SecureLogisticRegression

    X, y = cancer
    X, y = X[:120, :6], y[:120]
    if loss == "squared":
        y = q(X[:, :3] @ np.array([1.5, -1.0, 0.8]) + 0.1)
    holders = 3 if engine == "rss3" else 2
    blocks = (np.array_split(X, holders, axis=1), y) if partition == "vertical" else (
        list(zip(np.array_split(X, holders), np.array_split(y, holders))), None)
    cls = SecureLogisticRegression if loss == "logistic" else SecureLinearRegression
    est = cls(partition=partition, epochs=1, batch_size=16, learning_rate=0.5 if loss == "logistic" else 0.15,
              dp_noise_multiplier=3.0, dp_clip=0.5, dp_feature_bound=13.0, random_state=11, engine=engine)
    est.fit(*blocks)
    players = est.config_.players
    # rss3 tolerates one colluder by default (two hold every share anyway), beaver all but one
    expected = plan(_estimator_replay_config(loss, 1 if engine == "rss3" else None), 120)
    assert (est.dp_plan_.sampling_rate, est.dp_plan_.steps) == (16 / 120, 8)
    assert est.epsilon_ == pytest.approx(dp_sgd_epsilon(16 / 120, 3.0, 8, 1e-5), rel=0.01)
    sources = party_noise_sources(NOISE_SEED, players)
    sigma = expected.config.party_sigma(len(players))
    activation = LINEAR.plain if loss == "logistic" else None
    plain = plaintext_dp_sgd(X, y, expected, est.batch_seed_, noise=[(sources[p], sigma) for p in players],
                             activation=activation)
    secure = np.concatenate([np.ravel(est.coef_), np.ravel(est.intercept_)])
    tolerance = replay_tolerance(X, expected, len(players), est.batch_seed_)
    assert np.linalg.norm(secure - plain) <= tolerance, (np.linalg.norm(secure - plain) / U, tolerance / U)
    # the noise is there: the same run without it lands far away
    noiseless = plaintext_dp_sgd(X, y, expected, est.batch_seed_, noise=[], activation=activation)
    assert np.linalg.norm(noiseless - plain) > 20 * tolerance
    # clipping is active: first-step gradient norms exceed 2 C (so a doubled clip moves the model)
    rows = next(poisson_batches(est.batch_seed_, 120, expected.sampling_rate, 1))
    e = (0.5 if loss == "logistic" else 0.0) - y[rows]
    assert np.max(np.abs(e) * np.linalg.norm(np.hstack([X[rows], np.ones((rows.size, 1))]), axis=1)) > 2 * 0.5


def test_estimator_dp_epsilon_budget_fresh_noise_and_public_facts(cancer, wire_log, tmp_path):
    """dp_epsilon calibrates the noise multiplier with the accountant (epsilon_ within 1% of the budget and
    equal to an independent accounting of the same run); without the test hook two runs with the same
    batches differ by the CSPRNG noise; the set-up facts carry the public bound's magnitude, not the data's."""
    from mpcml.accounting import noise_multiplier_for
    from protocols.common import magnitude_bits
    from protocols.regression import SecureLogisticRegression

    X, y = cancer
    X, y = X[:160, :5], y[:160]
    kwargs = dict(epochs=2, batch_size=32, learning_rate=0.5, dp_epsilon=1.0, dp_feature_bound=13.0, random_state=3)
    first = SecureLogisticRegression(**kwargs).fit(np.array_split(X, 2, axis=1), y)
    sigma = first.dp_plan_.config.noise_multiplier
    assert sigma == pytest.approx(noise_multiplier_for(1.0, 1e-5, 32 / 160, 10), rel=1e-6)
    assert 0.99 <= first.epsilon_ <= 1.0
    assert first.epsilon_ == pytest.approx(dp_sgd_epsilon(32 / 160, sigma, 10, 1e-5), rel=0.01)
    facts = [m for _, _, m in wire_log if isinstance(m, dict) and "x_bits" in m]
    assert facts and {m["x_bits"] for m in facts} == {magnitude_bits(13.0)}
    second = SecureLogisticRegression(**kwargs).fit(np.array_split(X, 2, axis=1), y)
    assert np.array_equal(first.batch_seed_, second.batch_seed_)
    # the weights' noise: 10 steps of sqrt(2) sigma C (eta / B) = 0.1 per step and weight at least; the
    # two runs agree to < 0.01 in all 6 weights with probability below 1e-9
    difference = np.concatenate([np.ravel(first.coef_ - second.coef_), first.intercept_ - second.intercept_])
    assert np.linalg.norm(difference) > 0.01
    # the guarantee travels with the saved model
    first.save(tmp_path / "dp.npz")
    assert type(first).load(tmp_path / "dp.npz").epsilon_ == first.epsilon_


DP_ON = dict(dp_noise_multiplier=1.0, dp_feature_bound=13.0)


@pytest.mark.parametrize("options,match", [
    (dict(dp_epsilon=1.0, dp_noise_multiplier=0.3), r"dp_noise_multiplier=0.3, batch_size=32 of 120 rows.*above the "
                                                    r"budget dp_epsilon=1.0"),
    (dict(dp_epsilon=-1.0), "dp_epsilon"),
    (dict(DP_ON, dp_clip=0.0), "dp_clip"),
    (dict(DP_ON, dp_clip=1e-4), r"dp_clip=0.0001 is too small"),
    (dict(DP_ON, dp_delta=0.7), "dp_delta"),
    (dict(DP_ON, dp_feature_bound=1.0), r"above dp_feature_bound=1.0"),
    (dict(DP_ON, dp_feature_bound=1e9), r"dp_feature_bound=1000000000.0, 6 features\) does not fit"),
    (dict(DP_ON, batch_size=500), "batch_size=500 exceeds the 120 rows"),
    (dict(DP_ON, alpha=0.1), "alpha=0.1 is not supported with differential privacy"),
    (dict(DP_ON, decay=0.5), "decay=0.5 is not supported"),
    (dict(DP_ON, tol=1e-3), "tol=0.001 is not supported"),
    (dict(DP_ON, sigmoid="poly"), "sigmoid='poly' is not bounded"),
    (dict(DP_ON, dp_colluders=2), "dp_colluders must be below the number of compute parties 2"),
    (dict(DP_ON, learning_rate=1000.0, epochs=5000), r"differential privacy: the products X_B w could reach"),
])
def test_estimator_dp_refusals_come_before_any_message(cancer, runs, options, match):
    from protocols.regression import SecureLogisticRegression

    X, y = cancer
    X, y = X[:120, :6], y[:120]
    with pytest.raises(ValueError, match=match):
        SecureLogisticRegression(**options).fit(np.array_split(X, 2, axis=1), y)
    assert runs == []


def test_estimator_dp_refuses_one_vs_rest_before_any_message(cancer, runs):
    from protocols.regression import SecureLogisticRegression

    X, y = cancer
    with pytest.raises(ValueError, match="two classes.*got 3 outputs"):
        SecureLogisticRegression(**DP_ON).fit(np.array_split(X[:90, :6], 2, axis=1), np.arange(90) % 3)
    assert runs == []


def test_party_app_trains_with_dp(tmp_path):
    """The regression app takes the dp_* options (three holders + dealer, beaver; fresh CSPRNG noise): its check
    compares with the noiseless replay of the same batches within the noise's bound (a smoke test of the app
    path; the replay tests above are the exact ones)."""
    from parties.apps import load_app, run_app_local

    app = load_app("regression")
    options = {"dp_noise_multiplier": "2", "dp_feature_bound": "13", "epochs": "1", "batch_size": "64"}
    data = app.demo_data(tmp_path, 0, options)
    outputs = run_app_local("regression", data, options, timeout=120)
    result = app.check(outputs, data, options)
    assert result.ok and "noiseless" in result.summary, result.summary
    with pytest.raises(ValueError, match="dp_clip must be"):
        run_app_local("regression", data, {**options, "dp_clip": "-1"})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    feature_scale=st.sampled_from([1e-3, 1.0, 30.0, 1e4]),
    bound=st.sampled_from([1.0, 16.0, 100.0, 1e3]),
    holders=st.integers(2, 3),
    partition=st.sampled_from(["vertical", "horizontal"]),
    logistic=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_generated_dp_fits_replay_or_refuse_before_any_message(noise_hook, runs, feature_scale, bound, holders,
                                                               partition, logistic, seed):
    """Every generated case ends as the plaintext DP-SGD replay (same batches, same noise) within the derived
    tolerance, or as a ValueError before any party starts."""
    from protocols.regression import SecureLinearRegression, SecureLogisticRegression

    data = np.random.default_rng(seed)
    n, d = 20 * holders, 3
    X = q(data.normal(size=(n, d)) * feature_scale)
    y = (X @ data.normal(size=d) > 0).astype(float) if logistic else q(np.tanh(X @ data.normal(size=d)))
    blocks = (np.array_split(X, holders, axis=1), y) if partition == "vertical" else (
        list(zip(np.array_split(X, holders), np.array_split(y, holders))), None)
    est = (SecureLogisticRegression if logistic else SecureLinearRegression)(
        partition=partition, epochs=1, batch_size=8, learning_rate=0.3, dp_noise_multiplier=2.0, dp_feature_bound=bound,
        random_state=seed)
    runs.clear()
    try:
        est.fit(*blocks)
    except ValueError as exc:
        assert runs == [], f"refused after the run started: {exc}"
        event("refused before any message")
        return
    event("replayed")
    dp = est.dp_plan_
    players = est.config_.players
    sources = party_noise_sources(NOISE_SEED, players)
    plain = plaintext_dp_sgd(X, y, dp, est.batch_seed_, activation=LINEAR.plain if logistic else None,
                             noise=[(sources[p], dp.config.party_sigma(len(players))) for p in players])
    secure = np.concatenate([np.ravel(est.coef_), np.ravel(est.intercept_)])
    assert np.linalg.norm(secure - plain) <= replay_tolerance(X, dp, len(players), est.batch_seed_)


# --- PEA's aids as estimator options (dp_projection, dp_local_epochs) ----------------------------------


def _horizontal(X, y, holders=2):
    return list(zip(np.array_split(X, holders), np.array_split(y, holders)))


def _fit_with_aid(cancer, **aid):
    """The PEA-aid fits' common run: 120 rows x 6 features over two holders, one epoch, DP at sigma 3; ``aid`` adds the aid."""
    from protocols.regression import SecureLogisticRegression

    X, y = cancer
    X, y = X[:120, :6], y[:120]
    est = SecureLogisticRegression(partition="horizontal", epochs=1, batch_size=16, learning_rate=0.5,
                                   dp_noise_multiplier=3.0, dp_clip=0.5, dp_feature_bound=13.0, random_state=11, **aid)
    return est.fit(_horizontal(X, y)), X, y


def test_estimator_dp_projection_replays_plaintext_dp_sgd(cancer, noise_hook):
    """dp_projection=k: every holder projects its rows by the public Gaussian matrix of the seed derived from
    random_state; the fit = plaintext DP-SGD on the same (encoded) projected rows, with the bound
    b max_j ||P_:j||_1 and the parties' noise, within replay_tolerance in the projected space, which
    ||P||_2 bounds after coef_ = P w; prediction takes the raw features."""
    import hashlib

    est, X, y = _fit_with_aid(cancer, dp_projection=4)
    assert est.coef_.shape == (1, 6)
    seed = hashlib.sha256(
        b"mpcml.regression.batches" + (11).to_bytes(16, "big", signed=True)).digest()
    P = random_projection(6, 4, hashlib.sha256(b"mpcml.regression.projection" + seed).digest())
    bound = 13.0 * np.abs(P).sum(axis=0).max()
    assert est.dp_plan_.config.feature_bound == pytest.approx(bound, rel=1e-9)
    expected = plan(_estimator_replay_config("logistic", None, feature_bound=float(bound) * (1 + 1e-12)), 120)
    Z = q(X @ P)  # what the holders share: the projected rows on the fixed-point grid
    players = est.config_.players
    sources = party_noise_sources(NOISE_SEED, players)
    sigma = expected.config.party_sigma(len(players))
    w = plaintext_dp_sgd(Z, y, expected, est.batch_seed_, noise=[(sources[p], sigma) for p in players],
                         activation=LINEAR.plain)
    plain = np.concatenate([P @ w[:4], w[4:]])
    secure = np.concatenate([np.ravel(est.coef_), np.ravel(est.intercept_)])
    tolerance = max(1.0, np.linalg.norm(P, 2)) * replay_tolerance(Z, expected, len(players), est.batch_seed_)
    assert np.linalg.norm(secure - plain) <= tolerance, (np.linalg.norm(secure - plain) / U, tolerance / U)
    # the projection matters: the run on the raw rows lands far away
    raw = plaintext_dp_sgd(X, y, plan(_estimator_replay_config("logistic", None), 120), est.batch_seed_,
                           noise=[(s, sigma) for s in party_noise_sources(NOISE_SEED, players).values()],
                           activation=LINEAR.plain)
    assert np.linalg.norm(raw - plain) > 20 * tolerance
    np.testing.assert_array_equal(est.decision_function(X), X @ est.coef_[0] + est.intercept_[0])


def test_estimator_dp_local_init_replays_plaintext_and_charges_both_phases(cancer, noise_hook):
    """dp_local_epochs: each holder's local DP-SGD model (plaintext at the holder, its own batches and central
    noise, here from the test hook) enters as shares of (n_h / n) w_h; the fit = plaintext DP-SGD from the
    row-weighted average, within replay_tolerance with the initial error of the shares' encoding (each of
    2 holders rounds each weight once: sqrt(d) 2 U / 2); epsilon_ = the global RDP plus the worst local phase."""
    import hashlib

    est, X, y = _fit_with_aid(cancer, dp_local_epochs=2)
    expected = plan(_estimator_replay_config("logistic", None), 120, local_rows=[60, 60], local_epochs=2)
    assert expected.local == ((16 / 60, 8),) * 2
    charged = RdpAccountant().compose(16 / 120, 3.0, 8).compose(16 / 60, 3.0, 8).epsilon(1e-5)
    assert est.epsilon_ == pytest.approx(charged, rel=0.01) and est.epsilon_ == pytest.approx(expected.epsilon)
    assert est.epsilon_ > dp_sgd_epsilon(16 / 120, 3.0, 8, 1e-5) * 1.05
    holders = est.config_.holders
    seeds = [hashlib.sha256(b"mpcml.regression.local-batches" + NOISE_SEED + h.encode()).digest() for h in holders]
    local_noise = party_noise_sources(hashlib.sha256(b"mpcml.regression.local-noise" + NOISE_SEED).digest(), holders)
    blocks = [(X[:60], y[:60]), (X[60:], y[60:])]
    init = local_dp_models(blocks, expected, seeds, [local_noise[h] for h in holders]).average
    players = est.config_.players
    sources = party_noise_sources(NOISE_SEED, players)
    sigma = expected.config.party_sigma(len(players))
    noise = [(sources[p], sigma) for p in players]
    plain = plaintext_dp_sgd(X, y, expected, est.batch_seed_, noise=noise, activation=LINEAR.plain, init=init)
    secure = np.concatenate([np.ravel(est.coef_), np.ravel(est.intercept_)])
    tolerance = replay_tolerance(X, expected, len(players), est.batch_seed_, initial_error=math.sqrt(7) * 2 * U / 2)
    assert np.linalg.norm(secure - plain) <= tolerance, (np.linalg.norm(secure - plain) / U, tolerance / U)
    # the initialisation matters: one holder's model alone, or none, lands far away
    for other in (None, local_dp_models(blocks, expected, seeds, [local_noise[h] for h in holders]).models[0]):
        moved = plaintext_dp_sgd(X, y, expected, est.batch_seed_, noise=[(s, sigma) for s in
                                 party_noise_sources(NOISE_SEED, players).values()], activation=LINEAR.plain,
                                 init=other)
        assert np.linalg.norm(moved - plain) > 20 * tolerance


@pytest.mark.parametrize("options,partition,match", [
    (dict(DP_ON, dp_projection=3), "vertical", "dp_projection needs partition='horizontal'"),
    (dict(DP_ON, dp_local_epochs=1), "vertical", "dp_local_epochs needs partition='horizontal'"),
    (dict(dp_projection=3), "horizontal", "dp_projection is an aid of differentially private training"),
    (dict(dp_local_epochs=1), "horizontal", "dp_local_epochs is an aid of differentially private training"),
    (dict(DP_ON, dp_projection=3, output="shared"), "horizontal", "dp_projection needs output='reveal'"),
    (dict(DP_ON, dp_projection=0), "horizontal", "dp_projection must be"),
    (dict(DP_ON, dp_local_epochs=-1), "horizontal", "dp_local_epochs must be"),
    (dict(DP_ON, dp_local_epochs=1, batch_size=80), "horizontal", "batch_size=80 exceeds the 60 rows of a holder"),
    (dict(dp_epsilon=1.0, dp_noise_multiplier=1.2, dp_local_epochs=5, dp_feature_bound=13.0), "horizontal",
     r"and dp_local_epochs=5 at 2 holders spend .*above the budget dp_epsilon=1.0"),
])
def test_estimator_dp_aids_refusals_come_before_any_message(cancer, runs, options, partition, match):
    from protocols.regression import SecureLogisticRegression

    X, y = cancer
    X, y = X[:120, :6], y[:120]
    data = (np.array_split(X, 2, axis=1), y) if partition == "vertical" else (_horizontal(X, y),)
    with pytest.raises(ValueError, match=match):
        SecureLogisticRegression(partition=partition, **options).fit(*data)
    assert runs == []
