"""DP calibration formulas and the CSPRNG noise samplers (mpcml.dp)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mpcml.csprng import Csprng
from mpcml.dp import (
    NoiseSource,
    analytic_delta,
    analytic_gaussian_sigma,
    classic_gaussian_sigma,
    clip_l1,
    clip_l2,
    gaussian_mechanism,
    laplace_mechanism,
    laplace_scale,
    share_sigma,
)

N = 200_000


def seeded() -> NoiseSource:
    return NoiseSource(Csprng(bytes(range(32))))


def test_classic_and_laplace_calibration():
    assert classic_gaussian_sigma(2.0, 0.5, 1e-5) == pytest.approx(2.0 * math.sqrt(2 * math.log(1.25e5)) / 0.5)
    assert laplace_scale(3.0, 0.5) == 6.0
    with pytest.raises(ValueError, match="epsilon < 1"):
        classic_gaussian_sigma(1.0, 1.5, 1e-5)
    with pytest.raises(ValueError, match="delta must be in"):
        classic_gaussian_sigma(1.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="epsilon must be positive"):
        laplace_scale(1.0, 0.0)
    with pytest.raises(TypeError, match="sensitivity must be a number"):
        laplace_scale("1", 1.0)


@pytest.mark.parametrize("epsilon,delta", [(0.1, 1e-5), (0.9, 1e-6), (3.0, 1e-5)])
def test_analytic_gaussian_is_tight_and_below_classic(epsilon, delta):
    sigma = analytic_gaussian_sigma(1.5, epsilon, delta)
    assert analytic_delta(sigma, 1.5, epsilon) <= delta
    assert analytic_delta(sigma * (1 - 1e-6), 1.5, epsilon) > delta
    if epsilon < 1:
        assert sigma <= classic_gaussian_sigma(1.5, epsilon, delta)


def test_analytic_delta_matches_privacy_loss_definition():
    # delta(eps) = P[L > eps] - e^eps P[L' < -eps] with L ~ N(D^2 / (2 s^2), D^2 / s^2)
    s, d, eps = 2.0, 1.0, 0.7
    mu, sd = d * d / (2 * s * s), d / s
    expected = stats.norm.sf(eps, mu, sd) - math.exp(eps) * stats.norm.cdf(-eps, mu, sd)
    assert analytic_delta(s, d, eps) == pytest.approx(expected, rel=1e-9)


def test_share_sigma_sums_to_target():
    assert share_sigma(3.0, 9) == pytest.approx(1.0)
    source = seeded()
    total = sum(source.gaussian(N, share_sigma(2.0, 4)) for _ in range(4))
    assert np.var(total) == pytest.approx(4.0, rel=0.02)
    with pytest.raises(ValueError, match="honest"):
        share_sigma(1.0, 0)


def test_gaussian_and_laplace_samples_have_the_stated_law():
    source = seeded()
    g = source.gaussian(N, 3.0)
    assert abs(np.mean(g)) < 5 * 3.0 / math.sqrt(N)
    assert np.var(g) == pytest.approx(9.0, rel=0.02)
    assert stats.kstest(g / 3.0, "norm").pvalue > 1e-3
    lap = source.laplace(N, 2.0)
    assert np.var(lap) == pytest.approx(8.0, rel=0.03)
    assert stats.kstest(lap, "laplace", args=(0, 2.0)).pvalue > 1e-3
    u = source.uniform(N)
    assert 0 < u.min() and u.max() < 1 and np.mean(u) == pytest.approx(0.5, abs=0.005)


def test_mechanisms_add_calibrated_noise():
    x = np.linspace(-1, 1, N)
    noisy = gaussian_mechanism(x, 1.0, 0.5, 1e-5, source=seeded())
    assert np.std(noisy - x) == pytest.approx(analytic_gaussian_sigma(1.0, 0.5, 1e-5), rel=0.02)
    classic = gaussian_mechanism(x, 1.0, 0.5, 1e-5, analytic=False, source=seeded())
    assert np.std(classic - x) == pytest.approx(classic_gaussian_sigma(1.0, 0.5, 1e-5), rel=0.02)
    lap = laplace_mechanism(x, 1.0, 0.5, source=seeded())
    assert np.var(lap - x) == pytest.approx(2 * 2.0**2, rel=0.03)
    with pytest.raises(ValueError, match="NaN"):
        gaussian_mechanism([np.nan], 1.0, 0.5, 1e-5)


def test_unseeded_sources_differ():
    assert not np.array_equal(NoiseSource().gaussian(8, 1.0), NoiseSource().gaussian(8, 1.0))


def test_clipping():
    v = np.array([3.0, 4.0])
    assert np.allclose(clip_l2(v, 1.0), [0.6, 0.8])
    assert np.allclose(clip_l2(v, 10.0), v)
    assert np.allclose(clip_l1(v, 3.5), v * 0.5)
    assert np.linalg.norm(clip_l2(np.random.default_rng(0).normal(size=(5, 7)), 2.0)) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="max_norm"):
        clip_l2(v, -1.0)
