"""Non-linear operations on :class:`~mpcml.tensor.SharedTensor`: comparison, selection, argmax,
reciprocal/division, square root and a menu of sigmoid approximations.

Threat model: semi-honest compute parties, with the correlated randomness from the session's
:class:`~mpcml.triples.TripleSource` (by default a dealer that must not collude with any compute
party). Every value a party sees is either its own share or an opening of a value masked by
fresh uniform randomness (``x + r`` in Z_2^64, ``w XOR a`` for AND gates, ``bit XOR b``), so the
compute parties learn nothing beyond the outputs they choose to reveal; the dealer learns only
shapes and the sequence of operations.

**Comparison** (``ltz``, the core of everything here). With an edaBit ``r`` (shared
arithmetically and bitwise; Escudero et al., CRYPTO 2020) the parties open ``c = x + r`` and get
``msb(x) = msb(c - r) = msb(c + ~r + 1)``. The carry into bit 63 comes from a Kogge-Stone
parallel-prefix adder (generate ``g = c & ~r``, propagate ``p = c ^ ~r``; ``c`` is public so this
level is local) over whole uint64 words, one AND layer per doubling: 6 rounds of XOR-shared
Beaver ANDs (11 word-triples per element). The XOR-shared bit becomes arithmetic with a random
bit shared both ways (open ``e = msb ^ b``; ``[msb] = e + [b] - 2e[b]``). Cost: 8 rounds
whatever the array size, no failure probability, exact for every ring value. Results are
fixed-point 0.0/1.0, so they multiply directly with other shared values.

**Selection** multiplies by the comparison's integer bit (a Beaver product with no truncation),
so ``relu``, ``maximum``, ``argmax``, ``argmax_bits`` and ``max`` are exact. They run a tournament:
``ceil(log2 k)`` levels of one comparison plus one product. On ties the lowest index wins, as
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
from .tensor import Session, SharedTensor, leader_adds

_ONES = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
_ONE = np.uint64(1)
_KS_SHIFTS = (1, 2, 4, 8, 16, 32)
AND_WORDS = 2 * (len(_KS_SHIFTS) - 1) + 1
"""Binary AND word-triples per element of one comparison (two per Kogge-Stone level, one at the last)."""

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


def _fixed(session: Session, bits: np.ndarray) -> SharedTensor:
    """Integer 0/1 (or small integer) shares as a fixed-point SharedTensor."""
    return SharedTensor(session, bits << np.uint64(session.frac_bits))


def not_bits(session: Session, bits: np.ndarray) -> np.ndarray:
    """Shares of ``1 - b`` from arithmetic shares of bits ``b`` (local)."""
    return leader_adds(session, np.uint64(0) - bits, _ONE)


def _and(session: Session, x: np.ndarray, y: np.ndarray, triple: tuple[np.ndarray, ...]) -> np.ndarray:
    """XOR shares of ``x & y`` from XOR shares, with a word-triple ``(a, b, a & b)``; one round."""
    a, b, c = triple
    d, e = session.open([x ^ a, y ^ b], binary=True)
    z = c ^ (d & b) ^ (e & a)
    if session.is_leader:
        z ^= d & e
    return z


def ltz_bits(session: Session, x: np.ndarray) -> np.ndarray:
    """Arithmetic shares of the integer bit ``[x < 0]`` (x as a signed ring element); 8 rounds."""
    x = np.asarray(x, dtype=np.uint64)
    r, r_bits, ta, tb, tc, bit_arith, bit_xor = session.triples.comparison(x.shape, AND_WORDS)
    (c,) = session.open([x + r])
    not_r = r_bits ^ _ONES if session.is_leader else r_bits
    generate = c & not_r
    propagate = not_r ^ c if session.is_leader else not_r
    # the "+1" of c - r = c + ~r + 1 is a carry into bit 0: fold it into bit 0's generate
    g = generate ^ (propagate & _ONE)
    p = propagate & ~_ONE
    used = 0
    for shift in _KS_SHIFTS:
        s = np.uint64(shift)
        if shift != _KS_SHIFTS[-1]:
            k = slice(used, used + 2)
            z = _and(session, np.stack([p, p]), np.stack([g << s, p << s]), (ta[k], tb[k], tc[k]))
            g, p = g ^ z[0], z[1]
            used += 2
        else:
            k = slice(used, used + 1)
            g = g ^ _and(session, p[None], (g << s)[None], (ta[k], tb[k], tc[k]))[0]
    msb = ((propagate >> np.uint64(63)) ^ (g >> np.uint64(62))) & _ONE
    (e,) = session.open([msb ^ (bit_xor & _ONE)], binary=True)
    arith = bit_arith - (e << _ONE) * bit_arith
    return leader_adds(session, arith, e)


def _select(session: Session, bits: list[np.ndarray], values: list[np.ndarray]) -> list[np.ndarray]:
    """``bits[i] * values[i]`` for integer 0/1 bits, exact, all in one Beaver round."""
    shapes = [np.broadcast_shapes(b.shape, v.shape) for b, v in zip(bits, values)]
    flat_b = [np.broadcast_to(b, shape).reshape(-1) for b, shape in zip(bits, shapes)]
    flat_v = [np.broadcast_to(v, shape).reshape(-1) for v, shape in zip(values, shapes)]
    product = session.mul_shares(np.concatenate(flat_b), np.concatenate(flat_v), trunc_bits=0)
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape, dtype=np.int64))
        out.append(product[start : start + size].reshape(shape))
        start += size
    return out


# --- comparison and selection -----------------------------------------------------------------


def ltz(x: SharedTensor) -> SharedTensor:
    """``[x < 0]`` as shared fixed-point 0.0/1.0; exact."""
    x = _shared(x, "x")
    return _fixed(x.session, ltz_bits(x.session, x.share))


def lt(x: Any, y: Any) -> SharedTensor:
    """``[x < y]`` (either operand may be public); exact while ``|x - y| < 2^(63 - frac_bits)``."""
    return ltz(_difference(x, y))


def gt(x: Any, y: Any) -> SharedTensor:
    """``[x > y]``."""
    return ltz(_difference(y, x))


def _gez(d: SharedTensor) -> SharedTensor:
    """``[d >= 0] = 1 - [d < 0]`` as shared fixed-point 0.0/1.0."""
    return _fixed(d.session, not_bits(d.session, ltz_bits(d.session, d.share)))


def le(x: Any, y: Any) -> SharedTensor:
    """``[x <= y] = 1 - [y < x]``."""
    return _gez(_difference(y, x))


def ge(x: Any, y: Any) -> SharedTensor:
    """``[x >= y] = 1 - [x < y]``."""
    return _gez(_difference(x, y))


def sign(x: SharedTensor) -> SharedTensor:
    """+1 where ``x >= 0`` (so ``sign(0) = +1``), -1 where ``x < 0``."""
    x = _shared(x, "x")
    bits = ltz_bits(x.session, x.share)
    return _fixed(x.session, leader_adds(x.session, np.uint64(0) - (bits << _ONE), _ONE))


def relu(x: SharedTensor) -> SharedTensor:
    """``max(x, 0)``, exact: ``x - [x < 0] * x``; 9 rounds."""
    x = _shared(x, "x")
    bits = ltz_bits(x.session, x.share)
    (neg_part,) = _select(x.session, [bits], [x.share])
    return x._new(x.share - neg_part)


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
    session = d.session
    bits = ltz_bits(session, d.share)
    (step,) = _select(session, [bits], [np.uint64(0) - d.share])
    return SharedTensor(session, step) + x


def _tournament(session: Session, values: np.ndarray, carried: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knock-out over the last axis of the shares ``values`` (``k`` candidates), with
    ``carried[..., j, :]`` riding along with candidate ``j``: shares of the winner's value and row.

    ``ceil(log2 k)`` levels of one comparison and one exact product; ties keep the lower index.
    """
    while values.shape[-1] > 1:
        m = values.shape[-1]
        half = m // 2
        lo_v, hi_v = values[..., 0 : 2 * half : 2], values[..., 1 : 2 * half : 2]
        lo_c, hi_c = carried[..., 0 : 2 * half : 2, :], carried[..., 1 : 2 * half : 2, :]
        take_hi = ltz_bits(session, lo_v - hi_v)  # ties keep the lower index
        dv, dc = _select(session, [take_hi, take_hi[..., None]], [hi_v - lo_v, hi_c - lo_c])
        new_v, new_c = lo_v + dv, lo_c + dc
        if m % 2:
            new_v = np.concatenate([new_v, values[..., -1:]], axis=-1)
            new_c = np.concatenate([new_c, carried[..., -1:, :]], axis=-2)
        values, carried = new_v, new_c
    return values[..., 0], carried[..., 0, :]


def _candidates_last(x: SharedTensor, axis: int) -> np.ndarray:
    """The shares of ``x`` with ``axis`` (checked, non-empty) moved last."""
    x = _shared(x, "x")
    if not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis!r} is out of range for a SharedTensor of shape {x.shape}")
    if x.shape[axis] == 0:
        raise ValueError("argmax/max of an empty axis")
    return np.moveaxis(x.share, axis, -1)


def argmax(x: SharedTensor, axis: int = -1) -> SharedTensor:
    """Shared one-hot (fixed-point 0.0/1.0) of the maximum along ``axis``; ties go to the lowest index.

    The tournament carries each survivor's one-hot row (``O(k^2)`` products per element for an
    axis of length ``k``): ``ceil(log2 k)`` levels of 9 rounds; exact. For long axes
    :func:`argmax_bits` carries the index instead (``O(k)`` products, 8 rounds more).
    """
    values = _candidates_last(x, axis)
    k = values.shape[-1]
    eye = np.eye(k, dtype=np.uint64) if x.session.is_leader else np.zeros((k, k), np.uint64)
    _, onehot = _tournament(x.session, values, np.broadcast_to(eye, (*values.shape, k)))
    return _fixed(x.session, np.moveaxis(onehot, -1, axis))


def argmax_bits(session: Session, values: np.ndarray) -> np.ndarray:
    """Integer 0/1 shares of the one-hot argmax along the last axis of the shares ``values`` (ring
    elements at any common scale, ``k`` candidates); ties go to the lowest index, as ``numpy.argmax``.

    The tournament carries each survivor's shared *index* (``O(k)`` products per element, where
    :func:`argmax` carries a one-hot row, ``O(k^2)``); one batched comparison of the winner's index
    ``i`` with ``j = 1..k-1`` then gives the one-hot ``[i >= j] - [i >= j+1]``. Exact while the
    differences of ``values`` stay below ``2^63``; rounds ``9 ceil(log2 k) + 8`` (0 for ``k = 1``).
    """
    if not isinstance(values, np.ndarray) or values.dtype != np.uint64:
        raise TypeError(f"values must be a uint64 numpy array of shares, got {type(values).__name__}")
    if values.ndim == 0 or values.shape[-1] == 0:
        raise ValueError(f"values must have a non-empty last axis, got shape {values.shape}")
    k = values.shape[-1]
    index = np.broadcast_to(np.arange(k, dtype=np.uint64) if session.is_leader else np.zeros(k, np.uint64), values.shape)
    _, winner = _tournament(session, values, index[..., None])
    ones = leader_adds(session, np.zeros_like(winner), _ONE)
    if k == 1:
        return ones
    at_least = not_bits(session, ltz_bits(session, leader_adds(session, winner, np.uint64(0) - np.arange(1, k, dtype=np.uint64))))
    return np.concatenate([ones, at_least], axis=-1) - np.concatenate([at_least, np.zeros_like(winner)], axis=-1)


def max(x: SharedTensor, axis: int = -1) -> SharedTensor:  # noqa: A001 - mirrors numpy's name
    """Shared maximum along ``axis`` (the axis is removed); exact: the tournament with nothing carried."""
    values = _candidates_last(x, axis)
    best, _ = _tournament(x.session, values, np.zeros((*values.shape, 0), np.uint64))
    return x._new(best)


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


def _piecewise(session: Session, x: np.ndarray, thresholds: Sequence[int], values: np.ndarray) -> np.ndarray:
    """Shares of the public row ``values[i]`` where ``thresholds[i-1] <= x < thresholds[i]``, elementwise.

    ``x``: shares; ``thresholds``: ``t`` increasing signed ring integers; ``values``: ``(t + 1, c)``
    int64. Returns ``(c, *x.shape)``. One batched comparison of ``x`` with the thresholds; the bits
    ``[x >= thresholds[j]]`` are monotone in ``j``, so the row is the local telescoping sum
    ``values[0] + sum_j [x >= thresholds[j]] (values[j+1] - values[j])``, exact in the ring.
    """
    if len(thresholds):
        t = np.array([v % 2**64 for v in thresholds], dtype=np.uint64).reshape((-1,) + (1,) * x.ndim)
        at_least = not_bits(session, ltz_bits(session, leader_adds(session, x[None], np.uint64(0) - t)))
    else:
        at_least = np.zeros((0, *x.shape), np.uint64)
    steps = np.diff(values, axis=0).view(np.uint64)
    total = np.tensordot(steps, at_least, axes=(0, 0)).astype(np.uint64, copy=False)
    return leader_adds(session, total, values[0].view(np.uint64).reshape((-1,) + (1,) * x.ndim))


def _exponent_scales(
    x: SharedTensor, lo: int, hi: int, funcs: list[tuple[Callable[[int], float], int]]
) -> list[np.ndarray]:
    """For ``2^k <= x < 2^(k+1)`` (k clamped to ``[lo, hi-1]``), shares of ``round(func(k) * 2^bits)``:
    :func:`_piecewise` with the thresholds ``2^j``, ``lo < j < hi``."""
    f = x.session.frac_bits
    values = np.array([[round(func(k) * 2.0**bits) for func, bits in funcs] for k in range(lo, hi)], dtype=np.int64)
    return list(_piecewise(x.session, x.share, [2 ** (j + f) for j in range(lo + 1, hi)], values))


def _public_affine(session: Session, x: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Shares of ``intercept + slope * x`` for public floats (one truncation round)."""
    f = session.frac_bits
    scaled = session.truncate(x * fixedpoint.encode(slope, f))
    return leader_adds(session, scaled, fixedpoint.encode(intercept, f))


def _reciprocal_parts(y: SharedTensor, lo: int, hi: int, iterations: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(1/y', s, F)`` with ``y' = y s`` in ``[0.5, 1)``, ``1/y'`` at ``frac_bits``, ``s = 2^-(k+1)`` at ``F``."""
    y = _shared(y, "y")
    session = y.session
    _check_range(session, lo, hi, iterations)
    (scale,) = _exponent_scales(y, lo, hi, [(lambda k: 2.0 ** -(k + 1), hi)])
    y_norm = session.mul_shares(y.share, scale, trunc_bits=hi)
    est = _public_affine(session, y_norm, -32.0 / 17.0, 48.0 / 17.0)
    two = fixedpoint.encode(2.0, session.frac_bits)
    for _ in range(iterations):
        err = leader_adds(session, np.uint64(0) - session.mul_shares(y_norm, est), two)
        est = session.mul_shares(est, err)
    return est, scale, hi


def reciprocal(x: SharedTensor, lo: int = DEFAULT_LO, hi: int = DEFAULT_HI, iterations: int = DEFAULT_ITERATIONS) -> SharedTensor:
    """``1/x`` for shared ``x`` in ``[2^lo, 2^hi)`` by exponent normalisation and Newton-Raphson.

    Error ``<= 2^(4-f) |1/x| + 2^(1-f)`` at ``f = frac_bits`` (measured: half of that; the
    relative part comes from normalising ``x`` to ``f`` bits). Rounds: 8 (comparison) + 2
    (normalise) + 1 (initial guess) + 4 * iterations + 2 (rescale).
    """
    est, scale, bits = _reciprocal_parts(x, lo, hi, iterations)
    return x._new(x.session.mul_shares(est, scale, trunc_bits=bits))


def divide(x: Any, y: SharedTensor, lo: int = DEFAULT_LO, hi: int = DEFAULT_HI, iterations: int = DEFAULT_ITERATIONS) -> SharedTensor:
    """``x / y`` for shared ``y`` in ``[2^lo, 2^hi)``; ``x`` shared or public, ``|x / y| < 2^(61 - frac_bits - hi)``.

    Error ``<= 2^(4-f) |x / y| + 2^(1-f)`` for exact fixed-point ``x``.
    Computed as ``(x * (1/y')) * s`` so the quotient keeps the precision of ``x`` (no tiny
    intermediate ``1/y``).
    """
    y = _shared(y, "y")
    session = _session(x, y)
    est, scale, bits = _reciprocal_parts(y, lo, hi, iterations)
    if isinstance(x, SharedTensor):
        partial = session.mul_shares(x.share, est)
    else:
        np.broadcast_shapes(np.shape(x), y.shape)
        partial = session.truncate(est * fixedpoint.encode(x, session.frac_bits, name="x"))
    return SharedTensor(session, session.mul_shares(partial, scale, trunc_bits=bits))


def _inv_sqrt_parts(
    x: SharedTensor, lo: int, hi: int, iterations: int, root_sign: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(x', 1/sqrt(x'), 2^(root_sign (k+1)/2), F)``: ``x' = x 2^-(k+1)`` and ``1/sqrt(x')`` at
    ``frac_bits``, the root of the scale at ``F`` fractional bits (``root_sign`` -1: for
    ``1/sqrt(x)``, +1: for ``sqrt(x)``), ``F`` as large as the ring allows for that product."""
    x = _shared(x, "x")
    session = x.session
    _check_range(session, lo, hi, iterations)
    f = session.frac_bits
    root_bits = 60 - f + lo // 2 if root_sign < 0 else 60 - f - (hi + 1) // 2
    scale, root_scale = _exponent_scales(
        x, lo, hi, [(lambda k: 2.0 ** -(k + 1), hi), (lambda k: 2.0 ** (root_sign * (k + 1) / 2), root_bits)]
    )
    x_norm = session.mul_shares(x.share, scale, trunc_bits=hi)
    est = _public_affine(session, x_norm, -0.80998685, 1.78772748)
    for _ in range(iterations):
        est_sq = session.mul_shares(est, est)
        t = session.mul_shares(x_norm, est_sq)
        est = session.mul_shares(est, _public_affine(session, t, -0.5, 1.5))
    return x_norm, est, root_scale, root_bits


def inv_sqrt(x: SharedTensor, lo: int = DEFAULT_LO, hi: int = DEFAULT_HI, iterations: int = DEFAULT_ITERATIONS) -> SharedTensor:
    """``1/sqrt(x)`` for shared ``x`` in ``[2^lo, 2^hi)``: ``1/sqrt(x') * 2^-(k+1)/2``.

    Error ``<= 2^(4-f) |1/sqrt(x)| + 2^(1-f)``; rounds: 8 + 2 + 1 + 7 * iterations + 2.
    """
    _, est, root_scale, bits = _inv_sqrt_parts(x, lo, hi, iterations, -1)
    return x._new(x.session.mul_shares(est, root_scale, trunc_bits=bits))


def sqrt(x: SharedTensor, lo: int = DEFAULT_LO, hi: int = DEFAULT_HI, iterations: int = DEFAULT_ITERATIONS) -> SharedTensor:
    """``sqrt(x) = x' / sqrt(x') * 2^(k+1)/2`` for shared ``x`` in ``[2^lo, 2^hi)``; exactly 0 at ``x = 0``.

    Error ``<= 2^(4-f) sqrt(x) + 2^(1-f)``; rounds: 8 + 2 + 1 + 7 * iterations + 4.
    """
    x_norm, est, root_scale, bits = _inv_sqrt_parts(x, lo, hi, iterations, +1)
    session = x.session
    return x._new(session.mul_shares(session.mul_shares(x_norm, est), root_scale, trunc_bits=bits))


# --- sigmoid ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigmoidMethod:
    """One sigmoid approximation: ``max_error`` bounds ``|approx - sigmoid|`` (before fixed-point
    rounding) for ``|x| <= valid_up_to``; ``rounds`` counts compute-party rounds. ``plain`` is the
    same approximation in float64 numpy (for plaintext replays of secure training): the secure
    result is within ``units`` fixed-point units ``2^-frac_bits`` of ``plain`` on the encoded input
    for ``|x| <= valid_up_to`` (the internal truncations and coefficient roundings; asserted by
    tests/test_nonlinear.py). ``bounded`` says whether its values stay in ``[0, 1]`` for every input
    up to ``ring_safe(frac_bits)``, the largest ``|x|`` for which every internal product stays inside
    the ring (beyond it the result is garbage)."""

    func: Callable[[SharedTensor], SharedTensor]
    plain: Callable[[np.ndarray], np.ndarray]
    ring_safe: Callable[[int], float]
    units: float
    max_error: float
    valid_up_to: float
    rounds: int
    bounded: bool
    description: str


def _clipped_linear(x: SharedTensor, slope: float) -> SharedTensor:
    """``clip(0.5 + slope * x, 0, 1)``: one batched pair of comparisons and one exact selection."""
    session = x.session
    edge = fixedpoint.encode(0.5 / slope, session.frac_bits)
    low_high = ltz_bits(session, np.stack([leader_adds(session, x.share, edge), leader_adds(session, -x.share, edge)]))
    t = _public_affine(session, x.share, slope, 0.5)
    one = fixedpoint.encode(1.0, session.frac_bits)
    to_zero, to_one = _select(session, [low_high[0], low_high[1]], [np.uint64(0) - t, leader_adds(session, -t, one)])
    return x._new(t + to_zero + to_one)


_POLY_HALF_WIDTH = 6.0
_POLY_COEFFS = (1.31068854, -1.69187014, 0.89905414)  # odd minimax fit in u = x/6 on [-1, 1]


def _plain_polynomial(x: np.ndarray) -> np.ndarray:
    c1, c3, c5 = _POLY_COEFFS
    u = np.asarray(x, dtype=np.float64) / _POLY_HALF_WIDTH
    return 0.5 + u * (c1 + u * u * (c3 + c5 * u * u))


def _odd_polynomial(x: SharedTensor) -> SharedTensor:
    """``0.5 + u (c1 + u^2 (c3 + c5 u^2))`` with ``u = x / 6``: multiplications only."""
    session = x.session
    c1, c3, c5 = _POLY_COEFFS
    u = _public_affine(session, x.share, 1.0 / _POLY_HALF_WIDTH, 0.0)
    u2 = session.mul_shares(u, u)
    inner = session.mul_shares(_public_affine(session, u2, c5, c3), u2)
    inner = leader_adds(session, inner, fixedpoint.encode(c1, session.frac_bits))
    return x._new(leader_adds(session, session.mul_shares(u, inner), fixedpoint.encode(0.5, session.frac_bits)))


_SQRT_SLOPE = 0.5854323
_SQRT_HI = 24


def _algebraic(x: SharedTensor) -> SharedTensor:
    """``0.5 + 0.5 z / sqrt(1 + z^2)`` with ``z = 0.58543 x`` (``inv_sqrt`` on ``[1, 2^24)``)."""
    session = x.session
    z = _public_affine(session, x.share, _SQRT_SLOPE, 0.0)
    one = fixedpoint.encode(1.0, session.frac_bits)
    denom = x._new(leader_adds(session, session.mul_shares(z, z), one))
    _, est, root_scale, bits = _inv_sqrt_parts(denom, 0, _SQRT_HI, DEFAULT_ITERATIONS, -1)
    ratio = session.mul_shares(session.mul_shares(z, est), root_scale, trunc_bits=bits)
    return x._new(_public_affine(session, ratio, 0.5, 0.5))


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
    session, f = x.session, x.session.frac_bits
    values = np.rint(_SPLINE_SEGMENTS * 2.0**f).astype(np.int64)
    centre, *coef = _piecewise(session, x.share, [knot * 2**f for knot in _SPLINE_KNOTS], values)
    u = x.share - centre
    acc = coef[3]
    for a in coef[2::-1]:
        acc = session.mul_shares(acc, u) + a
    return x._new(acc)


SIGMOID_METHODS: dict[str, SigmoidMethod] = {
    "linear": SigmoidMethod(
        lambda x: _clipped_linear(x, 0.1771), lambda x: np.clip(0.5 + 0.1771 * x, 0.0, 1.0),
        lambda f: 2.0 ** (62 - 2 * f) / 0.1771, 3, 0.0561, float("inf"), 10,
        True, "clip(0.5 + 0.1771 x, 0, 1): the minimax clipped line; two comparisons in one batch",
    ),
    "secureml": SigmoidMethod(
        lambda x: _clipped_linear(x, 1.0), lambda x: np.clip(0.5 + x, 0.0, 1.0),
        lambda f: 2.0 ** (62 - 2 * f), 1, 0.3776, float("inf"), 10,
        True, "clip(x + 0.5, 0, 1): SecureML's piecewise-linear activation (Mohassel & Zhang 2017)",
    ),
    "poly": SigmoidMethod(
        _odd_polynomial, _plain_polynomial,
        lambda f: _POLY_HALF_WIDTH * (2.0 ** (62 - 2 * f) / abs(_POLY_COEFFS[2])) ** 0.2, 5, 0.0204, _POLY_HALF_WIDTH, 8,
        False, "degree-5 odd minimax polynomial on [-6, 6]; multiplications only; diverges outside [-6, 6]",
    ),
    "sqrt": SigmoidMethod(
        _algebraic, lambda x: 0.5 + 0.5 * (_SQRT_SLOPE * x) / np.sqrt(1.0 + (_SQRT_SLOPE * x) ** 2),
        lambda f: min(2.0 ** (_SQRT_HI / 2), 2.0 ** (31 - f)) / _SQRT_SLOPE, 3, 0.0222,
        4096 / _SQRT_SLOPE, 40, True,
        "0.5 + 0.5 z / sqrt(1 + z^2), z = 0.58543 x (scale fitted for minimax error); saturates correctly",
    ),
    "spline": SigmoidMethod(
        _spline, _plain_spline, lambda f: 2.0 ** (62 - f), 3, 3.36e-4, float("inf"), 14, True,
        "cubic least-squares fit on each unit segment of [-8, 8) (error 6.2e-5 there), 0 below, 1 above "
        "(error sigmoid(-8) = 3.35e-4); one batched comparison with the 17 knots, three products",
    ),
}
"""The sigmoid menu: ``name -> SigmoidMethod``. Max errors of the real functions against the exact
logistic function, measured on dense grids (for ``"spline"``: 400001 points on [-20, 20]); rounds
are compute-party rounds at any number of parties:

==============  ==========  ===============  ======
name            max error   valid for |x| <  rounds
==============  ==========  ===============  ======
``"linear"``    0.0561      any              10
``"secureml"``  0.3776      any              10
``"poly"``      0.0204      6                8
``"sqrt"``      0.0222      6996             40
``"spline"``    3.36e-4     any              14
==============  ==========  ===============  ======

Fixed-point arithmetic adds a few units ``2^-frac_bits`` (measured for ``"spline"``: 1.8 units).
"""


def sigmoid(x: SharedTensor, method: str = "sqrt") -> SharedTensor:
    """Approximate logistic sigmoid of a shared tensor by a method from :data:`SIGMOID_METHODS`."""
    x = _shared(x, "x")
    if method not in SIGMOID_METHODS:
        raise ValueError(f"unknown sigmoid method {method!r}; choose one of {sorted(SIGMOID_METHODS)}")
    return SIGMOID_METHODS[method].func(x)


__all__ = [
    "AND_WORDS", "SIGMOID_METHODS", "SigmoidMethod", "argmax", "argmax_bits", "divide", "ge", "gt", "inv_sqrt", "le",
    "lt", "ltz", "ltz_bits", "max", "maximum", "reciprocal", "relu", "sigmoid", "sign", "sqrt", "where",
]
