"""Differential-privacy noise for vectors: Gaussian and Laplace mechanisms, calibration, clipping.

Calibration (``sensitivity`` is the L2 sensitivity for Gaussian noise, L1 for Laplace):

- Laplace (Dwork, McSherry, Nissim, Smith 2006): scale ``b = sensitivity / epsilon`` gives
  ``epsilon``-DP.
- Classic Gaussian (Dwork & Roth 2014, Thm A.1): ``sigma = sensitivity * sqrt(2 ln(1.25 / delta)) / epsilon``
  gives ``(epsilon, delta)``-DP for ``0 < epsilon < 1``.
- Analytic Gaussian (Balle & Wang, ICML 2018, Thm 8): the smallest ``sigma`` with
  ``Phi(D / (2 sigma) - epsilon sigma / D) - e^epsilon Phi(-D / (2 sigma) - epsilon sigma / D) <= delta``
  (``D`` = sensitivity), found by bisection; valid for every ``epsilon > 0`` and never larger
  than the classic value.
- Distributed noise (Truex et al., AISec 2019, as used by HybridAlpha): if each of at least
  ``t`` honest contributors adds ``N(0, sigma^2 / t)``, the sum carries at least ``N(0, sigma^2)``;
  :func:`share_sigma` returns ``sigma / sqrt(t)``.

Randomness. Noise is drawn from :class:`mpcml.csprng.Csprng` (AES-CTR), never numpy's
generators: 53-bit uniforms ``u = (k + 1/2) / 2^53`` in (0, 1), Gaussians by Box-Muller
(``sqrt(-2 ln u1) cos(2 pi u2)``), Laplace by the inverse CDF (``-b sign(v) ln(1 - 2|v|)``, ``v = u - 1/2``).
Known limitation: like every float implementation, these samplers are not the exact discrete
distributions of the proofs (cf. Mironov, CCS 2012, on floating-point Laplace); add noise
before fixed-point quantisation and treat the guarantee as holding up to that approximation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import ndtr

from .csprng import Csprng

_TWO53 = float(2**53)


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return value


def _delta(delta: Any) -> float:
    delta = _positive(delta, "delta")
    if delta >= 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    return delta


def laplace_scale(sensitivity: float, epsilon: float) -> float:
    """``b = sensitivity / epsilon`` (L1 sensitivity)."""
    return _positive(sensitivity, "sensitivity") / _positive(epsilon, "epsilon")


def classic_gaussian_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    """``sensitivity * sqrt(2 ln(1.25 / delta)) / epsilon``; requires ``epsilon < 1``."""
    sensitivity, epsilon, delta = _positive(sensitivity, "sensitivity"), _positive(epsilon, "epsilon"), _delta(delta)
    if epsilon >= 1:
        raise ValueError(f"the classic Gaussian mechanism needs epsilon < 1, got {epsilon}; use analytic_gaussian_sigma")
    return sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon


def analytic_delta(sigma: float, sensitivity: float, epsilon: float) -> float:
    """The exact ``delta`` of the Gaussian mechanism with noise ``sigma`` (Balle & Wang 2018, Thm 8)."""
    a = sensitivity / (2 * sigma)
    b = epsilon * sigma / sensitivity
    return float(ndtr(a - b) - math.exp(epsilon) * ndtr(-a - b))


def analytic_gaussian_sigma(sensitivity: float, epsilon: float, delta: float, *, rel_tol: float = 1e-12) -> float:
    """Smallest ``sigma`` whose exact delta is at most ``delta`` (bisection on :func:`analytic_delta`)."""
    sensitivity, epsilon, delta = _positive(sensitivity, "sensitivity"), _positive(epsilon, "epsilon"), _delta(delta)
    lo, hi = 0.0, sensitivity
    while analytic_delta(hi, sensitivity, epsilon) > delta:
        lo, hi = hi, 2 * hi
    while hi - lo > rel_tol * hi:
        mid = (lo + hi) / 2
        if analytic_delta(mid, sensitivity, epsilon) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def share_sigma(sigma: float, honest: int) -> float:
    """Per-contributor noise ``sigma / sqrt(honest)`` so that ``honest`` contributions sum to ``N(0, sigma^2)``."""
    if isinstance(honest, bool) or not isinstance(honest, (int, np.integer)) or honest < 1:
        raise ValueError(f"honest must be a positive int, got {honest!r}")
    return _positive(sigma, "sigma") / math.sqrt(int(honest))


def clip_l2(x: Any, max_norm: float) -> np.ndarray:
    """``x * min(1, max_norm / ||x||_2)``: bounds the L2 sensitivity of a sum of clipped vectors."""
    arr = _finite(x)
    norm = float(np.linalg.norm(arr.ravel()))
    max_norm = _positive(max_norm, "max_norm")
    return arr * (max_norm / norm) if norm > max_norm else arr.copy()


def clip_l1(x: Any, max_norm: float) -> np.ndarray:
    """``x * min(1, max_norm / ||x||_1)``: bounds the L1 sensitivity."""
    arr = _finite(x)
    norm = float(np.sum(np.abs(arr)))
    max_norm = _positive(max_norm, "max_norm")
    return arr * (max_norm / norm) if norm > max_norm else arr.copy()


def _finite(x: Any) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"x must be numeric: {exc}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError("x contains NaN or inf")
    return arr


class NoiseSource:
    """Continuous noise from a CSPRNG (AES-CTR); pass a seeded ``Csprng`` only for reproducible tests."""

    def __init__(self, rng: Csprng | None = None) -> None:
        self.rng = rng or Csprng()

    def uniform(self, shape: int | tuple[int, ...]) -> np.ndarray:
        """Uniform floats in the open interval (0, 1), 53 random bits each."""
        bits = self.rng.random_uint64(shape) >> np.uint64(11)
        return (bits.astype(np.float64) + 0.5) / _TWO53

    def gaussian(self, shape: int | tuple[int, ...], sigma: float) -> np.ndarray:
        """``N(0, sigma^2)`` by Box-Muller."""
        sigma = _positive(sigma, "sigma")
        u1, u2 = self.uniform(shape), self.uniform(shape)
        return sigma * np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)

    def laplace(self, shape: int | tuple[int, ...], scale: float) -> np.ndarray:
        """``Laplace(0, scale)`` by the inverse CDF."""
        scale = _positive(scale, "scale")
        v = self.uniform(shape) - 0.5
        return -scale * np.sign(v) * np.log1p(-2.0 * np.abs(v))


def gaussian_mechanism(
    x: Any, sensitivity: float, epsilon: float, delta: float, *, analytic: bool = True, source: NoiseSource | None = None
) -> np.ndarray:
    """``x + N(0, sigma^2 I)`` with ``sigma`` from the analytic (default) or classic calibration."""
    arr = _finite(x)
    sigma = (analytic_gaussian_sigma if analytic else classic_gaussian_sigma)(sensitivity, epsilon, delta)
    return arr + (source or NoiseSource()).gaussian(arr.shape, sigma)


def laplace_mechanism(x: Any, sensitivity: float, epsilon: float, *, source: NoiseSource | None = None) -> np.ndarray:
    """``x + Laplace(0, sensitivity / epsilon)`` elementwise (L1 sensitivity)."""
    arr = _finite(x)
    return arr + (source or NoiseSource()).laplace(arr.shape, laplace_scale(sensitivity, epsilon))
