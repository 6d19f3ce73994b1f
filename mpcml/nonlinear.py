"""Non-linear operations on :class:`~mpcml.tensor.SharedTensor`: comparison, selection, argmax,
reciprocal/division, square root and a menu of sigmoid approximations, on either engine.

Threat model: that of the session's engine (:mod:`mpcml.beaver`: semi-honest players with a
dealer that must not collude with any of them, or Paillier triples for two; :mod:`mpcml.rss3`:
semi-honest, honest majority of three). Everything here is built from the engine's products,
truncations and comparisons, whose every received message is masked by fresh uniform
randomness, so the players learn nothing beyond the outputs they choose to reveal.

**Comparison** (``ltz``, the core of everything here) is the engine's: the players open
``x + r`` and get ``msb(x)`` from tables of ``r`` dealt by a helper in one more round
(:mod:`mpcml.comparison`; ``"beaver"``: the dealer, 3 rounds with the bit made arithmetic;
``"rss3"``: one player deals for the other two, 4 rounds), or, for a triple source without
tables (Paillier), with a Kogge-Stone carry circuit (8 rounds). Exact on every ring value,
whatever the array size, with no failure probability. Results are fixed-point 0.0/1.0, so they
multiply directly with other shared values.

**Selection** multiplies by the comparison's integer bit exactly, in the comparison's last
round (:meth:`~mpcml.tensor.SharedTensor.ltz_select`), so ``relu``, ``maximum``, ``argmax``,
``argmax_bits`` and ``max`` are exact and cost the rounds of their comparisons. They run a
tournament: ``ceil(log2 k)`` levels of one comparison. On ties the lowest index wins, as
in ``numpy.argmax``. ``argmax`` carries each survivor's one-hot row (``O(k^2)`` products, fewest
rounds); ``argmax_bits`` carries its index (``O(k)``) and turns the winner's index into a one-hot
with one more comparison: for long axes (e.g. thousands of split candidates).

**Reciprocal, division, inverse square root, square root.** One batched comparison of ``x``
with the powers of two ``2^j`` (``lo < j < hi``) gives ``k`` with ``2^k <= x < 2^(k+1)`` in
unary; any public function of ``k`` is then a local weighted sum of those bits (telescoping
weights). So ``x' = x * 2^-(k+1)`` lies in ``[0.5, 1)``, where a linear initial guess and
Newton-Raphson converge quadratically (Goldschmidt/CrypTen style, with the exponent found by
comparison rather than an ``exp`` guess):
``1/x' : y0 = 48/17 - 32/17 x'`` (rel. error <= 1/17), ``y <- y (2 - x' y)``;
``1/sqrt(x') : y0 = 1.78773 - 0.80999 x'`` (rel. error <= 0.0223), ``y <- y (3 - x' y^2) / 2``;
then ``1/x = y 2^-(k+1)`` and ``1/sqrt(x) = y 2^-(k+1)/2``, with the scale factors carried at
higher precision. Valid for ``2^lo <= x < 2^hi`` (defaults ``lo=-8``, ``hi=24``); outside that
range the result is meaningless (``sqrt(0) = 0`` exactly, though).

**Sigmoid**: see :data:`SIGMOID_METHODS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from . import fixedpoint
from .beaver import AND_WORDS
from .tensor import SharedTensor
from .session import Session

DEFAULT_LO, DEFAULT_HI, DEFAULT_ITERATIONS = -8, 24, 3


# --- helpers ------------------------------------------------------------------------------


def _shared(x: Any, name: str) -> SharedTensor:
    if not isinstance(x, SharedTensor):
        raise TypeError(f"{name} must be a SharedTensor, got {type(x).__name__}")
    return x


def _session(*values: Any) -> Session:
    sessions = {id(v.session): v.session for v in values if isinstance(v, SharedTensor)}
    if not sessions:
        raise TypeError("at least one operand must be a SharedTensor")
    if len(sessions) > 1:
        raise ValueError("operands belong to different sessions")
    return next(iter(sessions.values()))


def _difference(x: Any, y: Any) -> SharedTensor:
    """``x - y`` as a SharedTensor, for shared or public operands (at least one shared)."""
    _session(x, y)
    if isinstance(x, SharedTensor):
        return x - y
    np.broadcast_shapes(np.shape(x), y.shape)
    return (-y) + np.asarray(x, dtype=np.float64)


def _fixed(bits: SharedTensor) -> SharedTensor:
    """Integer 0/1 (or small integer) shares as fixed-point: ``bits * 2^frac_bits`` (local)."""
    return bits * (1 << bits.session.frac_bits)


def _raw(session: Session, values: Any, name: str) -> SharedTensor:
    """Raw shares (a uint64 array of the engine's share shape) as a SharedTensor."""
    if not isinstance(values, np.ndarray) or values.dtype != np.uint64:
        raise TypeError(f"{name} must be a uint64 numpy array of shares, got {type(values).__name__}")
    return SharedTensor(session, values)


def not_bits(session: Session, bits: np.ndarray) -> np.ndarray:
    """Raw shares of ``1 - b`` from raw arithmetic shares of bits ``b`` (local; see :meth:`SharedTensor.not_bits`)."""
    return SharedTensor(session, bits).not_bits().share


def ltz_bits(session: Session, x: np.ndarray) -> np.ndarray:
    """Raw shares of the integer bit ``[x < 0]`` (x as a signed ring element) from raw shares
    (see :meth:`SharedTensor.ltz_bits`); 8 rounds (``"beaver"``) or 9 (``"rss3"``)."""
    return SharedTensor(session, x).ltz_bits().share


# --- comparison and selection -----------------------------------------------------------------


def ltz(x: SharedTensor) -> SharedTensor:
    """``[x < 0]`` as shared fixed-point 0.0/1.0; exact."""
    return _fixed(_shared(x, "x").ltz_bits())


def lt(x: Any, y: Any) -> SharedTensor:
    """``[x < y]`` (either operand may be public); exact while ``|x - y| < 2^(63 - frac_bits)``."""
    return ltz(_difference(x, y))


def gt(x: Any, y: Any) -> SharedTensor:
    """``[x > y]``."""
    return ltz(_difference(y, x))


def _gez(d: SharedTensor) -> SharedTensor:
    """``[d >= 0] = 1 - [d < 0]`` as shared fixed-point 0.0/1.0."""
    return _fixed(d.ltz_bits().not_bits())


def le(x: Any, y: Any) -> SharedTensor:
    """``[x <= y] = 1 - [y < x]``."""
    return _gez(_difference(y, x))


def ge(x: Any, y: Any) -> SharedTensor:
    """``[x >= y] = 1 - [x < y]``."""
    return _gez(_difference(x, y))


def sign(x: SharedTensor) -> SharedTensor:
    """+1 where ``x >= 0`` (so ``sign(0) = +1``), -1 where ``x < 0``."""
    return _fixed((_shared(x, "x").ltz_bits() * -2).add_ring(1))


def relu(x: SharedTensor) -> SharedTensor:
    """``max(x, 0)``, exact: ``x - [x < 0] * x``; one comparison and one exact product."""
    x = _shared(x, "x")
    _, (neg_part,), _ = x.ltz_select([x])
    return x - neg_part


def where(cond: SharedTensor, a: Any, b: Any) -> SharedTensor:
    """``cond ? a : b`` elementwise for a shared 0/1 ``cond`` (e.g. a comparison result).

    ``a`` and ``b`` may be shared or public; computed as ``b + cond * (a - b)``, one product with
    truncation (error at most one unit ``2^-frac_bits``).
    """
    cond = _shared(cond, "cond")
    _session(cond, a, b)
    if isinstance(a, SharedTensor) or isinstance(b, SharedTensor):
        diff = _difference(a, b)
    else:
        diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    np.broadcast_shapes(cond.shape, diff.shape)
    return cond * diff + b


def maximum(x: Any, y: Any) -> SharedTensor:
    """Elementwise ``max(x, y)`` (either operand may be public), exact: ``x + [x < y] (y - x)``."""
    d = _difference(x, y)
    _, (step,), _ = d.ltz_select([-d])
    return step + x


def _tournament(values: SharedTensor, carried: SharedTensor) -> tuple[SharedTensor, SharedTensor]:
    """Knock-out over the last axis of ``values`` (``k`` candidates), with ``carried[..., j, :]``
    riding along with candidate ``j``: shares of the winner's value and row.

    ``ceil(log2 k)`` levels of one comparison and one exact product; ties keep the lower index.
    """
    while values.shape[-1] > 1:
        m = values.shape[-1]
        half = m // 2
        lo_v, hi_v = values[..., 0 : 2 * half : 2], values[..., 1 : 2 * half : 2]
        lo_c, hi_c = carried[..., 0 : 2 * half : 2, :], carried[..., 1 : 2 * half : 2, :]
        _, (dv, dc), _ = (lo_v - hi_v).ltz_select([hi_v - lo_v, hi_c - lo_c])  # ties keep the lower index
        new_v, new_c = lo_v + dv, lo_c + dc
        if m % 2:
            new_v = SharedTensor.concatenate([new_v, values[..., -1:]], axis=-1)
            new_c = SharedTensor.concatenate([new_c, carried[..., -1:, :]], axis=-2)
        values, carried = new_v, new_c
    return values[..., 0], carried[..., 0, :]


def _candidates_last(x: SharedTensor, axis: int) -> SharedTensor:
    """``x`` with ``axis`` (checked, non-empty) moved last."""
    x = _shared(x, "x")
    if not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis!r} is out of range for a SharedTensor of shape {x.shape}")
    if x.shape[axis] == 0:
        raise ValueError("argmax/max of an empty axis")
    return x.moveaxis(axis, -1)


def argmax(x: SharedTensor, axis: int = -1) -> SharedTensor:
    """Shared one-hot (fixed-point 0.0/1.0) of the maximum along ``axis``; ties go to the lowest index.

    The tournament carries each survivor's one-hot row (``O(k^2)`` products per element for an
    axis of length ``k``): ``ceil(log2 k)`` levels of a comparison and an exact product; exact.
    For long axes :func:`argmax_bits` carries the index instead (``O(k)`` products, one comparison more).
    """
    values = _candidates_last(x, axis)
    k = values.shape[-1]
    eye = x.session.public_ring(np.eye(k, dtype=np.uint64)).broadcast_to((*values.shape, k))
    _, onehot = _tournament(values, eye)
    return _fixed(onehot.moveaxis(-1, axis))


def argmax_bits_of(values: SharedTensor) -> SharedTensor:
    """:func:`argmax_bits` on a SharedTensor (:meth:`SharedTensor.argmax_bits`)."""
    values = _shared(values, "values")
    if values.ndim == 0 or values.shape[-1] == 0:
        raise ValueError(f"values must have a non-empty last axis, got shape {values.shape}")
    k = values.shape[-1]
    index = values.session.public_ring(np.arange(k, dtype=np.uint64)).broadcast_to(values.shape)
    _, winner = _tournament(values, index[..., None])
    ones = values.session.public_ring(np.ones(winner.shape, np.uint64))
    if k == 1:
        return ones
    at_least = winner.add_ring(-np.arange(1, k, dtype=np.int64)).ltz_bits().not_bits()
    zeros = values.session.zeros(winner.shape)
    return SharedTensor.concatenate([ones, at_least], axis=-1) - SharedTensor.concatenate([at_least, zeros], axis=-1)


def argmax_bits(session: Session, values: np.ndarray) -> np.ndarray:
    """Raw integer 0/1 shares of the one-hot argmax along the last axis of the raw shares ``values``
    (ring elements at any common scale, ``k`` candidates); ties go to the lowest index, as ``numpy.argmax``.

    The tournament carries each survivor's shared *index* (``O(k)`` products per element, where
    :func:`argmax` carries a one-hot row, ``O(k^2)``); one batched comparison of the winner's index
    ``i`` with ``j = 1..k-1`` then gives the one-hot ``[i >= j] - [i >= j+1]``. Exact while the
    differences of ``values`` stay below ``2^63``; rounds ``(c + 1) ceil(log2 k) + c`` for a
    comparison of ``c`` rounds (0 for ``k = 1``).
    """
    return argmax_bits_of(_raw(session, values, "values")).share


def max(x: SharedTensor, axis: int = -1) -> SharedTensor:  # noqa: A001 - mirrors numpy's name
    """Shared maximum along ``axis`` (the axis is removed); exact: the tournament with nothing carried."""
    values = _candidates_last(x, axis)
    best, _ = _tournament(values, x.session.zeros((*values.shape, 0)))
    return best


# --- reciprocal, division, square root -------------------------------------------------------


def _check_range(session: Session, lo: int, hi: int, iterations: int) -> None:
    if not all(isinstance(v, (int, np.integer)) for v in (lo, hi, iterations)):
        raise TypeError("lo, hi and iterations must be integers")
    if lo >= hi:
        raise ValueError(f"need lo < hi for the input range [2^lo, 2^hi), got lo={lo}, hi={hi}")
    f = session.frac_bits
    if lo < -f:
        raise ValueError(f"lo={lo} is below the fixed-point resolution 2^-{f}")
    if f + hi - lo > 61 or 2 * f + hi > 62:
        raise ValueError(f"the range [2^{lo}, 2^{hi}) is too wide for {f} fractional bits (need frac_bits + hi - lo <= 61)")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")


def _piecewise(x: SharedTensor, thresholds: Sequence[int], values: np.ndarray) -> list[SharedTensor]:
    """Shares of the public row ``values[i]`` where ``thresholds[i-1] <= x < thresholds[i]``, elementwise.

    ``thresholds``: ``t`` increasing signed ring integers; ``values``: ``(t + 1, c)`` int64.
    Returns ``c`` tensors of ``x``'s shape. One batched comparison of ``x`` with the thresholds;
    the bits ``[x >= thresholds[j]]`` are monotone in ``j``, so the row is the local telescoping
    sum ``values[0] + sum_j [x >= thresholds[j]] (values[j+1] - values[j])``, exact in the ring.
    """
    if len(thresholds):
        t = np.array([v % 2**64 for v in thresholds], dtype=np.uint64).reshape((-1,) + (1,) * x.ndim)
        at_least = x[None].add_ring(np.uint64(0) - t).ltz_bits().not_bits()
    else:
        at_least = x.session.zeros((0, *x.shape))
    total = at_least.tensordot_public(np.diff(values, axis=0))
    total = total.add_ring(values[0].reshape((-1,) + (1,) * x.ndim))
    return [total[i] for i in range(values.shape[1])]


def _exponent_scales(
    x: SharedTensor, lo: int, hi: int, funcs: list[tuple[Callable[[int], float], int]]
) -> list[SharedTensor]:
    """For ``2^k <= x < 2^(k+1)`` (k clamped to ``[lo, hi-1]``), shares of ``round(func(k) * 2^bits)``:
    :func:`_piecewise` with the thresholds ``2^j``, ``lo < j < hi``."""
    f = x.session.frac_bits
    values = np.array([[round(func(k) * 2.0**bits) for func, bits in funcs] for k in range(lo, hi)], dtype=np.int64)
    return _piecewise(x, [2 ** (j + f) for j in range(lo + 1, hi)], values)


def _public_affine(x: SharedTensor, slope: float, intercept: float) -> SharedTensor:
    """``intercept + slope * x`` for public floats (one truncation)."""
    return x.mul_public(slope) + intercept


def _reciprocal_parts(y: SharedTensor, lo: int, hi: int, iterations: int) -> tuple[SharedTensor, SharedTensor, int]:
    """``(1/y', s, F)`` with ``y' = y s`` in ``[0.5, 1)``, ``1/y'`` at ``frac_bits``, ``s = 2^-(k+1)`` at ``F``."""
    y = _shared(y, "y")
    _check_range(y.session, lo, hi, iterations)
    (scale,) = _exponent_scales(y, lo, hi, [(lambda k: 2.0 ** -(k + 1), hi)])
    y_norm = y.mul(scale, trunc_bits=hi)
    est = _public_affine(y_norm, -32.0 / 17.0, 48.0 / 17.0)
    for _ in range(iterations):
        est = est * (2.0 - y_norm * est)
    return est, scale, hi


def reciprocal(x: SharedTensor, lo: int = DEFAULT_LO, hi: int = DEFAULT_HI, iterations: int = DEFAULT_ITERATIONS) -> SharedTensor:
    """``1/x`` for shared ``x`` in ``[2^lo, 2^hi)`` by exponent normalisation and Newton-Raphson.

    Error ``<= 2^(4-f) |1/x| + 2^(1-f)`` at ``f = frac_bits`` (measured: half of that; the
    relative part comes from normalising ``x`` to ``f`` bits). Rounds: a comparison + 2
    (normalise) + the initial guess's truncation + 4 * iterations + 2 (rescale).
    """
    est, scale, bits = _reciprocal_parts(x, lo, hi, iterations)
    return est.mul(scale, trunc_bits=bits)


def divide(x: Any, y: SharedTensor, lo: int = DEFAULT_LO, hi: int = DEFAULT_HI, iterations: int = DEFAULT_ITERATIONS) -> SharedTensor:
    """``x / y`` for shared ``y`` in ``[2^lo, 2^hi)``; ``x`` shared or public, ``|x / y| < 2^(61 - frac_bits - hi)``.

    Error ``<= 2^(4-f) |x / y| + 2^(1-f)`` for exact fixed-point ``x``.
    Computed as ``(x * (1/y')) * s`` so the quotient keeps the precision of ``x`` (no tiny
    intermediate ``1/y``).
    """
    y = _shared(y, "y")
    _session(x, y)
    est, scale, bits = _reciprocal_parts(y, lo, hi, iterations)
    if isinstance(x, SharedTensor):
        partial = x.mul(est)
    else:
        np.broadcast_shapes(np.shape(x), y.shape)
        partial = est.mul_public(x, name="x")
    return partial.mul(scale, trunc_bits=bits)


def _inv_sqrt_parts(
    x: SharedTensor, lo: int, hi: int, iterations: int, root_sign: int
) -> tuple[SharedTensor, SharedTensor, SharedTensor, int]:
    """``(x', 1/sqrt(x'), 2^(root_sign (k+1)/2), F)``: ``x' = x 2^-(k+1)`` and ``1/sqrt(x')`` at
    ``frac_bits``, the root of the scale at ``F`` fractional bits (``root_sign`` -1: for
    ``1/sqrt(x)``, +1: for ``sqrt(x)``), ``F`` as large as the ring allows for that product."""
    x = _shared(x, "x")
    _check_range(x.session, lo, hi, iterations)
    f = x.session.frac_bits
    root_bits = 60 - f + lo // 2 if root_sign < 0 else 60 - f - (hi + 1) // 2
    scale, root_scale = _exponent_scales(
        x, lo, hi, [(lambda k: 2.0 ** -(k + 1), hi), (lambda k: 2.0 ** (root_sign * (k + 1) / 2), root_bits)]
    )
    x_norm = x.mul(scale, trunc_bits=hi)
    est = _public_affine(x_norm, -0.80998685, 1.78772748)
    for _ in range(iterations):
        t = x_norm * (est * est)
        est = est * _public_affine(t, -0.5, 1.5)
    return x_norm, est, root_scale, root_bits


def inv_sqrt(x: SharedTensor, lo: int = DEFAULT_LO, hi: int = DEFAULT_HI, iterations: int = DEFAULT_ITERATIONS) -> SharedTensor:
    """``1/sqrt(x)`` for shared ``x`` in ``[2^lo, 2^hi)``: ``1/sqrt(x') * 2^-(k+1)/2``.

    Error ``<= 2^(4-f) |1/sqrt(x)| + 2^(1-f)``; rounds: a comparison + 2 + 1 + 7 * iterations + 2
    (``"rss3"``: each public-factor truncation takes 2).
    """
    _, est, root_scale, bits = _inv_sqrt_parts(x, lo, hi, iterations, -1)
    return est.mul(root_scale, trunc_bits=bits)


def sqrt(x: SharedTensor, lo: int = DEFAULT_LO, hi: int = DEFAULT_HI, iterations: int = DEFAULT_ITERATIONS) -> SharedTensor:
    """``sqrt(x) = x' / sqrt(x') * 2^(k+1)/2`` for shared ``x`` in ``[2^lo, 2^hi)``; exactly 0 at ``x = 0``.

    Error ``<= 2^(4-f) sqrt(x) + 2^(1-f)``; rounds: those of :func:`inv_sqrt` + 2.
    """
    x_norm, est, root_scale, bits = _inv_sqrt_parts(x, lo, hi, iterations, +1)
    return (x_norm * est).mul(root_scale, trunc_bits=bits)


# --- sigmoid ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigmoidMethod:
    """One sigmoid approximation: ``max_error`` bounds ``|approx - sigmoid|`` (before fixed-point
    rounding) for ``|x| <= valid_up_to``; ``rounds`` counts compute-party rounds per engine. ``plain`` is
    the same approximation in float64 numpy (for plaintext replays of secure training): the secure
    result is within ``units`` fixed-point units ``2^-frac_bits`` of ``plain`` on the encoded input
    for ``|x| <= valid_up_to`` (the internal truncations and coefficient roundings; asserted by
    tests/test_nonlinear.py). ``bounded`` says whether its values stay in ``[0, 1]`` for every input
    up to ``ring_safe(frac_bits)``, the largest ``|x|`` for which every internal product stays inside
    the ring (beyond it the result is garbage). ``wide_input``: an input with extra fractional bits
    (:func:`sigmoid`'s ``extra_bits``, e.g. an untruncated product) is used as it is, so the result
    is within ``units`` of ``plain`` of that exact input (otherwise the input is truncated to
    ``frac_bits`` first, one unit more on the input)."""

    func: Callable[[SharedTensor, int], SharedTensor]
    plain: Callable[[np.ndarray], np.ndarray]
    ring_safe: Callable[[int], float]
    units: float
    max_error: float
    valid_up_to: float
    rounds: dict[str, int]
    bounded: bool
    description: str
    wide_input: bool = False


def _clipped_linear(x: SharedTensor, slope: float, extra_bits: int = 0) -> SharedTensor:
    """``clip(0.5 + slope * x, 0, 1)`` for ``x`` with ``frac_bits + extra_bits`` fractional bits, in the
    rounds of one comparison: ``below = [x < -edge]`` and ``above = [x > edge]`` (``edge = 1/(2 slope)``)
    in one batch, the line ``l = 0.5 + slope x`` truncated to ``frac_bits`` alongside (the slope
    carries ``frac_bits`` bits), and ``l - below l - above l + above`` from the exact products
    ``below l``, ``above l`` made in the comparison's last round. Where a bit is set the line cancels
    exactly, so its truncation only has to be right inside the edges: ``|slope x| <= 1/2`` fits the
    ring while ``2 frac_bits + extra_bits <= 62`` (else ``x`` is truncated first, one truncation more)."""
    f = x.session.frac_bits
    if 2 * f + extra_bits > 62:
        x, extra_bits = x.truncate(extra_bits), 0
    scale = f + extra_bits
    edge = int(round(0.5 / slope * 2.0**scale))
    compared = SharedTensor.stack([x.add_ring(edge), (-x).add_ring(edge)])
    product = x * int(fixedpoint.encode(slope, f))  # slope x at scale + f bits

    def lines(truncated: list[SharedTensor]) -> list[SharedTensor]:
        line = truncated[0].add_ring(1 << (f - 1))  # 0.5 + slope x at f bits
        return [SharedTensor.stack([line, line])]

    (_, above), (selected,), (scaled,) = compared.ltz_select(lines, [(product, scale)])
    line = scaled.add_ring(1 << (f - 1))
    return line - selected[0] - selected[1] + _fixed(above)


_POLY_HALF_WIDTH = 6.0
_POLY_COEFFS = (1.31068854, -1.69187014, 0.89905414)  # odd minimax fit in u = x/6 on [-1, 1]


def _plain_polynomial(x: np.ndarray) -> np.ndarray:
    c1, c3, c5 = _POLY_COEFFS
    u = np.asarray(x, dtype=np.float64) / _POLY_HALF_WIDTH
    return 0.5 + u * (c1 + u * u * (c3 + c5 * u * u))


def _odd_polynomial(x: SharedTensor) -> SharedTensor:
    """``0.5 + u (c1 + u^2 (c3 + c5 u^2))`` with ``u = x / 6``: multiplications only."""
    c1, c3, c5 = _POLY_COEFFS
    u = x.mul_public(1.0 / _POLY_HALF_WIDTH)
    u2 = u * u
    inner = _public_affine(u2, c5, c3) * u2 + c1
    return u * inner + 0.5


_SQRT_SLOPE = 0.5854323
_SQRT_HI = 24


def _algebraic(x: SharedTensor) -> SharedTensor:
    """``0.5 + 0.5 z / sqrt(1 + z^2)`` with ``z = 0.58543 x`` (``inv_sqrt`` on ``[1, 2^24)``)."""
    z = x.mul_public(_SQRT_SLOPE)
    _, est, root_scale, bits = _inv_sqrt_parts(z * z + 1.0, 0, _SQRT_HI, DEFAULT_ITERATIONS, -1)
    ratio = (z * est).mul(root_scale, trunc_bits=bits)
    return _public_affine(ratio, 0.5, 0.5)


_SPLINE_KNOTS = range(-8, 9)


def _spline_segments() -> np.ndarray:
    """Rows ``(centre, a0, a1, a2, a3)``: 0 below -8; on each unit segment of ``[-8, 8)`` the
    least-squares cubic fit of the sigmoid in ``u = x - centre``; 1 from 8 on."""
    rows = [np.zeros(5)]
    u = np.linspace(-0.5, 0.5, 201)
    for knot in _SPLINE_KNOTS[:-1]:
        centre = knot + 0.5
        rows.append(np.concatenate([[centre], np.polyfit(u, 1.0 / (1.0 + np.exp(-(centre + u))), 3)[::-1]]))
    rows.append(np.array([0.0, 1.0, 0.0, 0.0, 0.0]))
    return np.array(rows)


_SPLINE_SEGMENTS = _spline_segments()


def _plain_spline(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    segment = np.clip(np.floor(x) - _SPLINE_KNOTS[0] + 1, 0, len(_SPLINE_SEGMENTS) - 1).astype(np.int64)
    table = _SPLINE_SEGMENTS[segment]
    u = x - table[..., 0]
    return table[..., 1] + u * (table[..., 2] + u * (table[..., 3] + u * table[..., 4]))


def _spline(x: SharedTensor) -> SharedTensor:
    """Piecewise cubic: :func:`_piecewise` picks the segment's centre and coefficients, then
    ``a0 + u (a1 + u (a2 + u a3))`` with ``u = x - centre`` in ``[-1/2, 1/2)`` (three products)."""
    f = x.session.frac_bits
    values = np.rint(_SPLINE_SEGMENTS * 2.0**f).astype(np.int64)
    centre, *coef = _piecewise(x, [knot * 2**f for knot in _SPLINE_KNOTS], values)
    u = x - centre
    acc = coef[3]
    for a in coef[2::-1]:
        acc = acc * u + a
    return acc


def _truncated_first(func: Callable[[SharedTensor], SharedTensor]) -> Callable[[SharedTensor, int], SharedTensor]:
    """A method on ``frac_bits`` inputs, for inputs with ``extra_bits`` more (one truncation first)."""
    return lambda x, extra_bits: func(x.truncate(extra_bits) if extra_bits else x)


SIGMOID_METHODS: dict[str, SigmoidMethod] = {
    "linear": SigmoidMethod(
        lambda x, e: _clipped_linear(x, 0.1771, e), lambda x: np.clip(0.5 + 0.1771 * x, 0.0, 1.0),
        lambda f: 2.0 ** (62 - 2 * f) / 0.1771, 3, 0.0561, float("inf"), {"beaver": 3, "rss3": 4},
        True, "clip(0.5 + 0.1771 x, 0, 1): the minimax clipped line; two comparisons in one batch", wide_input=True,
    ),
    "secureml": SigmoidMethod(
        lambda x, e: _clipped_linear(x, 1.0, e), lambda x: np.clip(0.5 + x, 0.0, 1.0),
        lambda f: 2.0 ** (62 - 2 * f), 1, 0.3776, float("inf"), {"beaver": 3, "rss3": 4},
        True, "clip(x + 0.5, 0, 1): SecureML's piecewise-linear activation (Mohassel & Zhang 2017)", wide_input=True,
    ),
    "poly": SigmoidMethod(
        _truncated_first(_odd_polynomial), _plain_polynomial,
        lambda f: _POLY_HALF_WIDTH * (2.0 ** (62 - 2 * f) / abs(_POLY_COEFFS[2])) ** 0.2, 5, 0.0204, _POLY_HALF_WIDTH,
        {"beaver": 8, "rss3": 10},
        False, "degree-5 odd minimax polynomial on [-6, 6]; multiplications only; diverges outside [-6, 6]",
    ),
    "sqrt": SigmoidMethod(
        _truncated_first(_algebraic), lambda x: 0.5 + 0.5 * (_SQRT_SLOPE * x) / np.sqrt(1.0 + (_SQRT_SLOPE * x) ** 2),
        lambda f: min(2.0 ** (_SQRT_HI / 2), 2.0 ** (31 - f)) / _SQRT_SLOPE, 3, 0.0222,
        4096 / _SQRT_SLOPE, {"beaver": 35, "rss3": 42}, True,
        "0.5 + 0.5 z / sqrt(1 + z^2), z = 0.58543 x (scale fitted for minimax error); saturates correctly",
    ),
    "spline": SigmoidMethod(
        _truncated_first(_spline), _plain_spline, lambda f: 2.0 ** (62 - f), 3, 3.36e-4, float("inf"), {"beaver": 9, "rss3": 10}, True,
        "cubic least-squares fit on each unit segment of [-8, 8) (error 6.2e-5 there), 0 below, 1 above "
        "(error sigmoid(-8) = 3.35e-4); one batched comparison with the 17 knots, three products",
    ),
}
"""The sigmoid menu: ``name -> SigmoidMethod``. Max errors of the real functions against the exact
logistic function, measured on dense grids (for ``"spline"``: 400001 points on [-20, 20]); rounds
are compute-party rounds at any number of parties, per engine:

==============  ==========  ===============  ==============  ============
name            max error   valid for |x| <  rounds (beaver)  rounds (rss3)
==============  ==========  ===============  ==============  ============
``"linear"``    0.0561      any              3               4
``"secureml"``  0.3776      any              3               4
``"poly"``      0.0204      6                8               10
``"sqrt"``      0.0222      6996             35              42
``"spline"``    3.36e-4     any              9               10
==============  ==========  ===============  ==============  ============

(``"rss3"``: comparisons take 4 rounds instead of 3 and a truncation after a public factor 2
instead of 1; products with truncation take 2 on both. With a triple source without tables,
``"beaver"`` comparisons take 8.) The clipped lines take an untruncated product as it is
(``extra_bits``, :attr:`SigmoidMethod.wide_input`) at no extra round. Fixed-point arithmetic adds
a few units ``2^-frac_bits`` (measured for ``"spline"``: 1.8 units).
"""


def sigmoid(x: SharedTensor, method: str = "sqrt", extra_bits: int = 0) -> SharedTensor:
    """Approximate logistic sigmoid of a shared tensor by a method from :data:`SIGMOID_METHODS`.

    ``extra_bits``: ``x`` carries ``frac_bits + extra_bits`` fractional bits (e.g. an untruncated
    product, ``extra_bits = frac_bits``); the clipped lines use them directly (their truncation
    runs alongside the comparison), the other methods truncate ``x`` first. The result has
    ``frac_bits``.
    """
    x = _shared(x, "x")
    if method not in SIGMOID_METHODS:
        raise ValueError(f"unknown sigmoid method {method!r}; choose one of {sorted(SIGMOID_METHODS)}")
    if isinstance(extra_bits, (bool, np.bool_)) or not isinstance(extra_bits, (int, np.integer)) or not (
            0 <= extra_bits <= 62 - x.session.frac_bits):
        raise ValueError(f"extra_bits must be an integer in [0, {62 - x.session.frac_bits}], got {extra_bits!r}")
    return SIGMOID_METHODS[method].func(x, int(extra_bits))



__all__ = [
    "AND_WORDS", "SIGMOID_METHODS", "SigmoidMethod", "argmax", "argmax_bits", "divide", "ge", "gt", "inv_sqrt", "le",
    "lt", "ltz", "ltz_bits", "max", "maximum", "not_bits", "reciprocal", "relu", "sigmoid", "sign", "sqrt", "where",
]
