"""Privacy accounting for DP-SGD: Rényi DP of the Poisson-subsampled Gaussian mechanism.

The mechanism (Abadi et al., CCS 2016): each step includes every record independently with
probability ``q`` (Poisson sampling), sums the included records' contributions, each of L2 norm
at most ``C``, and adds ``N(0, (sigma C)^2 I)``; ``sigma`` is the *noise multiplier*. Neighbouring
data sets differ by adding or removing one record.

RDP (Mironov, IEEE CSF 2017; Mironov, Talwar, Zhang, "Rényi Differential Privacy of the Sampled
Gaussian Mechanism", 2019, sections 3.3 and 3.4): one step is ``(alpha, eps(alpha))``-RDP with

    eps(alpha) = log A_alpha / (alpha - 1),  A_alpha = E_{z ~ N(0, sigma^2)} [(1 - q + q exp((2z - 1) / (2 sigma^2)))^alpha]

which for integer ``alpha`` is the finite binomial sum
``A_alpha = sum_k C(alpha, k) (1 - q)^(alpha - k) q^k exp((k^2 - k) / (2 sigma^2))`` and for fractional
``alpha`` is computed here as that one-dimensional integral by adaptive quadrature (scaled by its
largest log-integrand so large orders do not overflow). RDP composes by adding over steps (and
over the phases of a run); a record that only one data holder has is charged the worst holder's
local phase plus the global phase (parallel composition over disjoint data).

Conversion to ``(epsilon, delta)`` (Canonne, Kamath, Steinke 2020, Prop. 12; Asoodeh et al. 2020):
``epsilon = min_alpha eps(alpha) + log(1 - 1/alpha) - log(delta alpha) / (alpha - 1)``, over the
orders :data:`DEFAULT_ORDERS` (those of Google's ``dp-accounting``, so figures agree with it).

Assumptions the caller must meet: Poisson sampling with a rate ``q`` fixed in advance and a
sampling decision hidden from whoever sees the output (amplification by subsampling needs it);
the noisy *sum* is released (dividing by a public constant such as the expected batch size
``q n`` is post-processing; dividing by the realised batch size is not covered). Shuffled
fixed-size batches are *not* Poisson sampling and are not covered by this bound.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy import integrate, optimize, special

from .dp import _delta, _positive

DEFAULT_ORDERS: tuple[float, ...] = tuple(
    [1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024]
)
"""Rényi orders tried by :func:`rdp_to_epsilon`: 1.1 to 10.9 by 0.1, 11 to 63, and 128 to 1024."""


def _rate(q: float) -> float:
    q = _positive(q, "sampling_rate")
    if q > 1:
        raise ValueError(f"sampling_rate must be in (0, 1], got {q!r}")
    return q


def _log_a_integer(q: float, sigma: float, alpha: int) -> float:
    """``log A_alpha`` by the binomial sum (all terms positive: a log-sum-exp)."""
    k = np.arange(alpha + 1, dtype=np.float64)
    log_binom = special.gammaln(alpha + 1) - special.gammaln(k + 1) - special.gammaln(alpha - k + 1)
    log_terms = log_binom + (alpha - k) * math.log1p(-q) + k * math.log(q) + (k * k - k) / (2 * sigma * sigma)
    return float(special.logsumexp(log_terms))


def _log_a_integral(q: float, sigma: float, alpha: float) -> float:
    """``log A_alpha`` for any real ``alpha > 1`` by quadrature of ``E_{N(0, sigma^2)}[r(z)^alpha]``, with
    ``r = 1 - q + q exp((2z - 1) / (2 sigma^2))`` the likelihood ratio.

    Since ``E[r] = 1``, ``A - 1 = E[r^alpha - 1 - alpha (r - 1)]``, whose integrand is non-negative
    (convexity): integrating it keeps full relative precision when ``log A`` is tiny. When the
    integrand is huge (large orders) ``A`` itself is integrated, scaled by its largest log value.
    """
    two_var = 2 * sigma * sigma
    log_q, log_1mq = math.log(q), math.log1p(-q)
    log_norm = math.log(sigma * math.sqrt(2 * math.pi))

    def log_ratio(z: float) -> float:
        return float(np.logaddexp(log_1mq, log_q + (2 * z - 1) / two_var))

    # the integrand is at most two bumps: the N(0, sigma^2) one near 0 and the tilted one near alpha
    peaks = [0.0, float(alpha)]
    scale = max(-z * z / two_var + alpha * log_ratio(z) for z in peaks)
    bounds = dict(a=-40.0 * sigma, b=alpha + 40.0 * sigma, points=sorted({*peaks, 0.5}), limit=200, epsabs=0.0, epsrel=1e-11)
    if scale < 30.0:
        def excess(z: float) -> float:
            convex = math.expm1(alpha * log_ratio(z)) - alpha * q * math.expm1((2 * z - 1) / two_var)
            return math.exp(-z * z / two_var - log_norm) * max(convex, 0.0)

        value, _ = integrate.quad(excess, **bounds)
        return math.log1p(value)
    value, _ = integrate.quad(lambda z: math.exp(-z * z / two_var + alpha * log_ratio(z) - scale), **bounds)
    return scale + math.log(value) - log_norm


def rdp_subsampled_gaussian(
    sampling_rate: float, noise_multiplier: float, orders: Sequence[float] = DEFAULT_ORDERS
) -> np.ndarray:
    """RDP ``eps(alpha)`` of one step of the Poisson-subsampled Gaussian mechanism, at each order."""
    q, sigma = _rate(sampling_rate), _positive(noise_multiplier, "noise_multiplier")
    out = []
    for alpha in _orders(orders):
        if q == 1.0:
            out.append(alpha / (2 * sigma * sigma))
        elif float(alpha).is_integer():
            out.append(_log_a_integer(q, sigma, int(alpha)) / (alpha - 1))
        else:
            out.append(_log_a_integral(q, sigma, alpha) / (alpha - 1))
    return np.array(out)


def _orders(orders: Sequence[float]) -> np.ndarray:
    arr = np.asarray(orders, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 1):
        raise ValueError("orders must be a non-empty sequence of finite Rényi orders > 1")
    return arr


def rdp_to_epsilon(orders: Sequence[float], rdp: Sequence[float], delta: float) -> tuple[float, float]:
    """``(epsilon, best order)`` from RDP values by the conversion of Canonne, Kamath and Steinke (2020)."""
    alphas, rdp = _orders(orders), np.asarray(rdp, dtype=np.float64)
    delta = _delta(delta)
    if rdp.shape != alphas.shape:
        raise ValueError(f"rdp has shape {rdp.shape}, orders {alphas.shape}")
    eps = rdp + np.log1p(-1.0 / alphas) - (math.log(delta) + np.log(alphas)) / (alphas - 1)
    best = int(np.argmin(eps))
    return max(0.0, float(eps[best])), float(alphas[best])


class RdpAccountant:
    """Running RDP total over the steps of a run; ``epsilon(delta)`` converts it."""

    def __init__(self, orders: Sequence[float] = DEFAULT_ORDERS) -> None:
        self.orders = _orders(orders)
        self.rdp = np.zeros_like(self.orders)

    def compose(self, sampling_rate: float, noise_multiplier: float, steps: int = 1) -> "RdpAccountant":
        """Add ``steps`` steps of the subsampled Gaussian mechanism."""
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
        if steps:
            self.rdp = self.rdp + int(steps) * rdp_subsampled_gaussian(sampling_rate, noise_multiplier, self.orders)
        return self

    def compose_worst(self, others: Sequence["RdpAccountant"]) -> "RdpAccountant":
        """Add the elementwise maximum of other accountants' totals (phases run on disjoint data:
        each record is charged the worst one it can be in)."""
        for other in others:
            if not np.array_equal(other.orders, self.orders):
                raise ValueError("accountants must use the same orders")
        if others:
            self.rdp = self.rdp + np.max([o.rdp for o in others], axis=0)
        return self

    def epsilon(self, delta: float) -> float:
        return rdp_to_epsilon(self.orders, self.rdp, delta)[0]


def dp_sgd_epsilon(sampling_rate: float, noise_multiplier: float, steps: int, delta: float) -> float:
    """``epsilon`` of ``steps`` DP-SGD steps with Poisson rate ``sampling_rate`` at ``delta``."""
    return RdpAccountant().compose(sampling_rate, noise_multiplier, steps).epsilon(delta)


def noise_multiplier_for(epsilon: float, delta: float, sampling_rate: float, steps: int, *, rel_tol: float = 1e-6) -> float:
    """Smallest noise multiplier (up to ``rel_tol``, rounded up) whose DP-SGD run meets ``(epsilon, delta)``."""
    q = _rate(sampling_rate)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return noise_multiplier_for_run(epsilon, delta, lambda sigma: RdpAccountant().compose(q, sigma, int(steps)),
                                    rel_tol=rel_tol)


def noise_multiplier_for_run(
    epsilon: float, delta: float, run: Callable[[float], RdpAccountant], *, rel_tol: float = 1e-6
) -> float:
    """Smallest noise multiplier ``sigma`` (up to ``rel_tol``, rounded up) with ``run(sigma).epsilon(delta)
    <= epsilon``, for any run whose privacy loss falls as ``sigma`` grows (``run`` builds its accountant)."""
    epsilon, delta = _positive(epsilon, "epsilon"), _delta(delta)

    def excess(log_sigma: float) -> float:
        return run(math.exp(log_sigma)).epsilon(delta) - epsilon

    lo, hi = math.log(0.1), math.log(2.0)
    while excess(lo) < 0:
        lo, hi = lo - 2.0, lo
    while excess(hi) > 0:
        lo, hi = hi, hi + 2.0
    root = optimize.brentq(excess, lo, hi, xtol=rel_tol / 4)
    sigma = math.exp(root) * (1 + rel_tol / 2)
    while excess(math.log(sigma)) > 0:
        sigma *= 1 + rel_tol / 2
    return sigma


def check_budget(epsilon: float, delta: float, sampling_rate: float, noise_multiplier: float, steps: int) -> float:
    """The run's ``epsilon``; a ``ValueError`` naming every parameter if it exceeds the budget ``epsilon``."""
    budget = _positive(epsilon, "epsilon")
    spent = dp_sgd_epsilon(sampling_rate, noise_multiplier, steps, delta)
    if spent > budget:
        raise ValueError(
            f"noise_multiplier={noise_multiplier}, sampling_rate={sampling_rate}, steps={steps} give "
            f"epsilon={spent:.4g} at delta={delta}, above the budget epsilon={budget}: raise noise_multiplier "
            f"or lower steps (epochs) or sampling_rate (batch size)"
        )
    return spent
