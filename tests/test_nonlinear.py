"""Non-linear operations over shares vs numpy: comparison, selection, argmax, division, roots, sigmoid."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import expit

from mpcml import SharedTensor, decode, encode
from mpcml import nonlinear as nl
from mpcml.csprng import Csprng

ULP = 2.0**-16


def q(x):
    return decode(encode(x))


def owned(session, value, owner="p0"):
    return session.input(value if session.party.id == owner else None, owner=owner)


def sigmoid(x):
    return expit(x)


def _grid_values(data, size, scale):
    """Random fixed-point values with many exact ties and neighbours one unit apart."""
    base = q(data.normal(scale=scale, size=size))
    base[: size // 4] = base[size // 4 : size // 2]  # exact ties
    base[size // 2 : size // 2 + 8] += ULP  # neighbours at the precision
    return base


@pytest.mark.parametrize("n", [2, 3])
def test_comparisons_are_exact(spmd, n):
    data = np.random.default_rng(10 + n)
    x = _grid_values(data, 400, 50.0)
    y = np.roll(x, 1) if n == 2 else x[::-1].copy()
    y[: 100] = x[: 100]  # ties between x and y too
    pub = q(data.normal(scale=50.0, size=400))

    def body(s):
        X, Y = owned(s, x, "p0"), owned(s, y, f"p{n - 1}")
        out = {
            "ltz": nl.ltz(X), "lt": nl.lt(X, Y), "gt": nl.gt(X, Y), "le": nl.le(X, Y), "ge": nl.ge(X, Y),
            "op_lt": X < Y, "op_gt": X > pub, "op_le": X <= 1.5, "op_ge": X >= Y, "lt_pub_left": nl.lt(pub, Y),
            "sign": nl.sign(X), "method_sign": X.sign(), "relu": nl.relu(X), "method_relu": X.relu(),
            "maximum": nl.maximum(X, Y), "maximum_pub": nl.maximum(X, 3.0), "maximum_pub_left": nl.maximum(pub, Y),
        }
        return {k: v.reveal() for k, v in out.items()}

    expected = {
        "ltz": x < 0, "lt": x < y, "gt": x > y, "le": x <= y, "ge": x >= y,
        "op_lt": x < y, "op_gt": x > pub, "op_le": x <= 1.5, "op_ge": x >= y, "lt_pub_left": pub < y,
        "sign": np.where(x >= 0, 1.0, -1.0), "method_sign": np.where(x >= 0, 1.0, -1.0),
        "relu": np.maximum(x, 0), "method_relu": np.maximum(x, 0),
        "maximum": np.maximum(x, y), "maximum_pub": np.maximum(x, 3.0), "maximum_pub_left": np.maximum(pub, y),
    }
    for pid, out in spmd(n, body).items():
        for key, want in expected.items():
            np.testing.assert_array_equal(out[key], np.asarray(want, dtype=np.float64), err_msg=f"{key} at {pid}")


def test_ltz_is_exact_on_the_whole_ring(spmd):
    ring = Csprng(bytes(32)).random_uint64(3000)
    ring[:6] = [0, 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, (1 << 62)]

    def body(s):
        share = s.input_ring(ring if s.party.id == "p1" else None, owner="p1")
        (bits,) = s.open([nl.ltz_bits(s, share)])
        return bits

    for bits in spmd(2, body).values():
        np.testing.assert_array_equal(bits, ring >> np.uint64(63))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(1e-3, 1e6), n=st.sampled_from([2, 3]))
def test_lt_random_scales(spmd, seed, scale, n):
    data = np.random.default_rng(seed)
    x, y = q(data.uniform(-scale, scale, 64)), q(data.uniform(-scale, scale, 64))

    def body(s):
        return (owned(s, x, "p0") < owned(s, y, "p1")).reveal()

    np.testing.assert_array_equal(spmd(n, body)["p0"], (x < y).astype(float))


def test_comparison_costs_eight_rounds(spmd):
    x = np.linspace(-3, 3, 50)

    def body(s):
        X = owned(s, x, "p0")
        X[:1].reveal()
        before = s.party.stats.snapshot()
        nl.ltz(X)
        after = s.party.stats.snapshot()
        return {p: after.sent_to.get(p, 0) - before.sent_to.get(p, 0) for p in s.others}, after.messages_sent - before.messages_sent

    out = spmd(3, body)
    for pid, (_, messages) in out.items():
        # 8 openings, each one message to each of the 2 other players; the last player adds 1 dealer request
        assert messages == 8 * 2 + (1 if pid == "p2" else 0)


@pytest.mark.parametrize("n", [2, 3])
def test_where_shared_and_public_branches(spmd, n):
    data = np.random.default_rng(3)
    x, a, b = q(data.normal(size=30)), q(data.normal(size=30)), q(data.normal(size=30))

    def body(s):
        X, A, B = owned(s, x), owned(s, a, "p1"), owned(s, b, "p1")
        cond = X > 0
        return (
            nl.where(cond, A, B).reveal(), nl.where(cond, a, b).reveal(),
            nl.where(cond, A, 2.0).reveal(), nl.where(cond, -1.0, B).reveal(),
        )

    shared, public, mixed_a, mixed_b = spmd(n, body)["p1"]
    tol = 2 * ULP  # one truncated product
    np.testing.assert_allclose(shared, np.where(x > 0, a, b), atol=tol, rtol=0)
    np.testing.assert_allclose(public, np.where(x > 0, a, b), atol=tol, rtol=0)
    np.testing.assert_allclose(mixed_a, np.where(x > 0, a, 2.0), atol=tol, rtol=0)
    np.testing.assert_allclose(mixed_b, np.where(x > 0, -1.0, b), atol=tol, rtol=0)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("k", [1, 2, 5, 8])
def test_argmax_and_max_exact_with_ties_to_lowest_index(spmd, n, k):
    data = np.random.default_rng(k)
    x = q(data.normal(scale=10, size=(12, k)))
    x[0] = 1.0  # all tied
    if k > 2:
        x[1, 1] = x[1, 2] = np.max(x[1]) + 1.0  # tie for the maximum
        x[2, -1] = np.max(x[2]) + ULP  # wins by one unit
    cube = q(data.normal(size=(3, k, 4)))

    def body(s):
        X, C = owned(s, x), owned(s, cube, "p1")
        return (
            nl.argmax(X).reveal(), X.argmax(axis=0).reveal(), nl.max(X, axis=-1).reveal(), X.max(axis=0).reveal(),
            C.argmax(axis=1).reveal(), C.max(axis=1).reveal(),
        )

    for am_last, am_first, mx_last, mx_first, am_cube, mx_cube in spmd(n, body).values():
        np.testing.assert_array_equal(am_last, np.eye(k)[np.argmax(x, axis=-1)])
        np.testing.assert_array_equal(am_first, np.eye(12)[np.argmax(x, axis=0)].T)
        np.testing.assert_array_equal(mx_last, np.max(x, axis=-1))
        np.testing.assert_array_equal(mx_first, np.max(x, axis=0))
        np.testing.assert_array_equal(am_cube, np.moveaxis(np.eye(k)[np.argmax(cube, axis=1)], -1, 1))
        np.testing.assert_array_equal(mx_cube, np.max(cube, axis=1))


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("k", [1, 2, 5, 33])
def test_argmax_bits_is_numpy_argmax_with_ties_to_lowest_index(spmd, n, k):
    data = np.random.default_rng(40 + k)
    x = q(data.normal(scale=10, size=(3, 10, k)))
    x[0, 0] = 2.5  # all tied
    if k > 2:
        x[0, 1, 1] = x[0, 1, k - 1] = np.max(x[0, 1]) + 1.0  # tie for the maximum, far apart
        x[0, 2, -1] = np.max(x[0, 2]) + ULP  # wins by one unit
        x[0, 3, 0] = np.max(x[0, 3]) + ULP  # the first candidate wins by one unit
        x[1, :, k // 2 :] = x[1, :, : k - k // 2]  # the second half repeats the first: ties everywhere
    rounds = 9 * int(np.ceil(np.log2(k))) + (8 if k > 1 else 0)

    def body(s):
        X = owned(s, x, f"p{n - 1}")
        X[:1].reveal()
        before = s.party.stats.messages_sent
        bits = nl.argmax_bits(s, X.share)
        used = (s.party.stats.messages_sent - before) / (n - 1)  # p0 sends one message per round to each player
        (opened,) = s.open([bits])
        return used, opened

    out = spmd(n, body)
    assert out["p0"][0] == rounds
    for _, onehot in out.values():
        np.testing.assert_array_equal(onehot, np.eye(k, dtype=np.uint64)[np.argmax(x, axis=-1)])


# --- reciprocal, division, roots: |err| <= 2^-12 |result| + 2^-15 on [2^lo, 2^hi) --------------


def _within(got, want):
    bound = 2.0**-12 * np.abs(want) + 2.0**-15
    excess = np.abs(got - want) / bound
    assert np.max(excess) <= 1.0, f"error {np.max(excess):.2f}x the documented bound"


@pytest.mark.parametrize("n", [2, 3])
def test_reciprocal_divide_sqrt_over_the_documented_range(spmd, n):
    data = np.random.default_rng(20 + n)
    x = q(np.exp(data.uniform(np.log(2.0**-8), np.log(2.0**24), 600)))
    x[:4] = [2.0**-8, 1.0, 0.5, 2.0**24 - 1]
    num = q(data.uniform(-100, 100, 600))

    def body(s):
        X, N = owned(s, x, "p0"), owned(s, num, f"p{n - 1}")
        return (
            nl.reciprocal(X).reveal(), X.reciprocal().reveal(), nl.divide(N, X).reveal(), (N / X).reveal(),
            nl.divide(3.0, X).reveal(), nl.sqrt(X).reveal(), X.sqrt().reveal(), nl.inv_sqrt(X).reveal(),
        )

    recip, recip_m, quot, quot_op, quot_pub, root, root_m, inv_root = spmd(n, body)["p0"]
    for got in (recip, recip_m):
        _within(got, 1 / x)
    for got in (quot, quot_op):
        _within(got, num / x)
    _within(quot_pub, 3.0 / x)
    for got in (root, root_m):
        _within(got, np.sqrt(x))
    _within(inv_root, 1 / np.sqrt(x))


def test_reciprocal_custom_range_and_sqrt_of_zero(spmd):
    x = q(np.array([0.01, 0.1, 0.7, 3.0, 63.0]))

    def body(s):
        X = owned(s, x)
        return nl.reciprocal(X, lo=-7, hi=6, iterations=4).reveal(), nl.sqrt(owned(s, np.zeros(3))).reveal()

    recip, root0 = spmd(2, body)["p0"]
    _within(recip, 1 / x)
    np.testing.assert_array_equal(root0, 0.0)


# --- sigmoid menu ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(nl.SIGMOID_METHODS))
def test_sigmoid_methods_meet_their_bounds(spmd, method):
    spec = nl.SIGMOID_METHODS[method]
    limit = min(spec.valid_up_to, 60.0)
    x = q(np.concatenate([np.linspace(-limit, limit, 1201), [0.0, 1e-3, -1e-3]]))
    if spec.valid_up_to > 1000:
        x = np.concatenate([x, [-1000.0, 999.5, 4000.0]])

    def body(s):
        X = owned(s, x)
        X[:1].reveal()
        before = s.party.stats.messages_sent
        approx = nl.sigmoid(X, method)
        rounds = s.party.stats.messages_sent - before  # p0 sends one message per round to p1
        return rounds, approx.reveal(), X.sigmoid(method).reveal()

    rounds, *results = spmd(2, body)["p0"]
    assert rounds == spec.rounds
    for got in results:
        error = np.abs(got - sigmoid(x))
        assert np.max(error) <= spec.max_error + 16 * ULP
        # the bound is tight: the method is not secretly better (or a different function)
        assert np.max(error) >= 0.9 * spec.max_error


@pytest.mark.parametrize("n", [2, 3])
def test_sigmoid_methods_follow_their_plaintext_replicas(spmd, n):
    """``SigmoidMethod.plain`` is the same approximation: within ``units`` fixed-point units on encoded inputs."""
    data = np.random.default_rng(n)
    x = {m: q(np.concatenate([data.uniform(-1, 1, 500) * min(spec.valid_up_to, 12.0), np.linspace(-3, 3, 601)]))
         for m, spec in nl.SIGMOID_METHODS.items()}

    def body(s):
        return {m: nl.sigmoid(owned(s, v, f"p{n - 1}"), m).reveal() for m, v in x.items()}

    for method, got in spmd(n, body)["p0"].items():
        spec = nl.SIGMOID_METHODS[method]
        error = np.max(np.abs(got - spec.plain(x[method]))) / ULP
        assert error <= spec.units, (method, error)


def test_sigmoid_three_parties(spmd):
    x = q(np.linspace(-5, 5, 101))

    def body(s):
        X = owned(s, x, "p2")
        return {m: nl.sigmoid(X, m).reveal() for m in ("linear", "poly", "sqrt", "spline")}

    out = spmd(3, body)["p1"]
    for method, got in out.items():
        assert np.max(np.abs(got - sigmoid(x))) <= nl.SIGMOID_METHODS[method].max_error + 16 * ULP


@pytest.mark.parametrize("n", [2, 3])
def test_spline_sigmoid_on_a_dense_grid(spmd, n):
    """``"spline"``: 6.2e-5 inside the knots, sigmoid(-8) = 3.35e-4 beyond; fixed point adds <= 4 units
    (coefficients rounded to half a unit, three truncated products with |u| <= 1/2)."""
    x = q(np.concatenate([np.linspace(-20, 20, 8001), np.arange(-8, 9) - ULP, [-1e4, 3e4]]))

    def body(s):
        return nl.sigmoid(owned(s, x, f"p{n - 1}"), "spline").reveal()

    error = np.abs(spmd(n, body)["p0"] - sigmoid(x))
    inside = np.abs(x) < 8
    assert np.max(error[inside]) <= 6.2e-5 + 4 * ULP
    assert np.max(error) <= nl.SIGMOID_METHODS["spline"].max_error + 4 * ULP
    assert np.max(error[~inside]) >= 3.3e-4  # saturates to 0 and 1 beyond the knots


# --- bad input ------------------------------------------------------------------------------


def test_nonlinear_bad_input_raises_before_any_message(spmd):
    def body(s):
        X = owned(s, np.ones((2, 3)))
        cond = X > 0
        before = s.party.stats.snapshot()
        attempts = {
            "unknown sigmoid": lambda: nl.sigmoid(X, "tanh"),
            "empty range": lambda: nl.reciprocal(X, lo=3, hi=3),
            "too wide": lambda: nl.reciprocal(X, lo=-16, hi=40),
            "below resolution": lambda: nl.sqrt(X, lo=-20, hi=4),
            "bad axis": lambda: nl.argmax(X, axis=2),
            "argmax_bits of a tensor": lambda: nl.argmax_bits(s, X),
            "argmax_bits of floats": lambda: nl.argmax_bits(s, np.ones((2, 3))),
            "argmax_bits empty axis": lambda: nl.argmax_bits(s, np.zeros((2, 0), np.uint64)),
            "argmax_bits scalar": lambda: nl.argmax_bits(s, np.uint64(3)),
            "bad axis max": lambda: X.max(axis=-3),
            "not shared": lambda: nl.ltz(np.ones(3)),
            "shape mismatch": lambda: nl.lt(X, np.ones(4)),
            "shape mismatch shared": lambda: nl.maximum(X, SharedTensor(s, np.zeros((4,), np.uint64))),
            "where cond public": lambda: nl.where(np.ones((2, 3)), X, X),
            "where shapes": lambda: nl.where(cond, np.ones(5), 0.0),
            "nan operand": lambda: nl.lt(X, np.nan),
            "float iterations": lambda: nl.reciprocal(X, iterations=2.5),
        }
        failures = []
        for name, attempt in attempts.items():
            try:
                attempt()
                failures.append(name)
            except (ValueError, TypeError):
                pass
        after = s.party.stats.snapshot()
        return failures, after.messages_sent - before.messages_sent

    for failures, messages in spmd(2, body).values():
        assert failures == [] and messages == 0
