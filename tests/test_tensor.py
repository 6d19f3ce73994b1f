"""SharedTensor arithmetic vs numpy on both engines, share uniformity, exact communication, and input errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as scistats

from mpcml import SharedTensor, codec, decode, encode
from mpcml.masked import MaskedMatrix
from mpcml.fixedpoint import max_abs
from mpcml.recording import recorded_run
from tests.conftest import critical_rounds, players_of, run_players

ULP = 2.0**-16


def q(x):
    """The fixed-point value numpy should compare with: encode then decode."""
    return decode(encode(x))


def owned(session, value, owner="p0"):
    return session.input(value if session.party.id == owner else None, owner=owner)


def ring(values):
    """Signed integers as the ring elements (uint64) a reveal_ring returns."""
    return np.asarray(values, dtype=np.int64).view(np.uint64)


def test_linear_and_product_ops_match_numpy(mpc):
    n = mpc.n
    data = np.random.default_rng(n)
    x, y = data.normal(scale=4, size=(6, 5)), data.normal(scale=4, size=(6, 5))
    w, v = data.normal(size=(5, 3)), data.normal(size=(5,))
    pub = data.normal(size=(6, 5))
    rows = np.array([4, 0, 0, 2])

    def body(s):
        X, Y = owned(s, x, "p0"), owned(s, y, f"p{n - 1}")
        W, V = owned(s, w, "p1"), owned(s, v, "p0")
        cube = SharedTensor.stack([X, Y], axis=1)  # (6, 2, 5)
        out = {
            "add": X + Y, "sub": X - Y, "neg": -X, "add_pub": X + pub, "radd_pub": pub + X, "rsub_pub": pub - X,
            "sub_pub": X - 2.5, "mul": X * Y, "mul_int": X * 3, "mul_float": X * 0.3, "rmul_arr": pub * X,
            "square": X.square(), "matmul": X @ W, "matvec": X @ V, "pub_matmul": pub.T @ X, "matmul_pub": X @ w,
            "vec_matmul": V @ W, "pubvec_matmul": v @ W, "pub_matvec": w.T @ V, "matmul_pubvec": X @ v,
            "sum": X.sum(), "sum0": X.sum(axis=0), "sum_keep": X.sum(axis=-1, keepdims=True), "sum_axes": cube.sum(axis=(0, 2)),
            "T": X.T, "index": X[1:4, ::2], "reshape": X.reshape(5, 6), "flatten": X.flatten(),
            "concat": SharedTensor.concatenate([X, Y], axis=1), "concat_neg": SharedTensor.concatenate([X, Y], axis=-2),
            "stack": SharedTensor.stack([X, Y]), "stack1": cube, "div_pub": X / 4.0, "transpose": X.transpose(1, 0),
            "transpose3": cube.transpose(2, 0, 1), "moveaxis": cube.moveaxis(0, -1), "rows": X[rows], "rows_col": X[rows, 1],
            "rows_gap": cube[rows, :, 3], "rows_cols": X[rows, rows], "newaxis": X[None, :, 2], "ellipsis": cube[..., 1],
            "bool": X[x[:, 0] > 0], "repeat": X[:, :2].repeat(3, axis=1), "tile": V.tile((2, 2)),
            "broadcast": V.broadcast_to((4, 5)), "bcast_add": X + V, "bcast_mul": X * V, "bcast_rsub": V - X,
            "mul_public": X.mul_public(pub), "mul_public_wide": V.mul_public(pub[:, :5]), "matmul_method": X.matmul(W),
        }
        return {k: t.reveal() for k, t in out.items()}

    outputs = mpc(body)
    qx, qy, qw, qv, qp = q(x), q(y), q(w), q(v), q(pub)
    qcube = np.stack([qx, qy], axis=1)
    expected = {
        "add": qx + qy, "sub": qx - qy, "neg": -qx, "add_pub": qx + qp, "radd_pub": qp + qx, "rsub_pub": qp - qx,
        "sub_pub": qx - 2.5, "mul": qx * qy, "mul_int": qx * 3, "mul_float": qx * q(0.3), "rmul_arr": qp * qx,
        "square": qx * qx, "matmul": qx @ qw, "matvec": qx @ qv, "pub_matmul": qp.T @ qx, "matmul_pub": qx @ qw,
        "vec_matmul": qv @ qw, "pubvec_matmul": qv @ qw, "pub_matvec": qw.T @ qv, "matmul_pubvec": qx @ qv,
        "sum": qx.sum(), "sum0": qx.sum(axis=0), "sum_keep": qx.sum(axis=-1, keepdims=True), "sum_axes": qcube.sum(axis=(0, 2)),
        "T": qx.T, "index": qx[1:4, ::2], "reshape": qx.reshape(5, 6), "flatten": qx.ravel(),
        "concat": np.concatenate([qx, qy], axis=1), "concat_neg": np.concatenate([qx, qy], axis=-2),
        "stack": np.stack([qx, qy]), "stack1": qcube, "div_pub": qx * q(0.25), "transpose": qx.T,
        "transpose3": qcube.transpose(2, 0, 1), "moveaxis": np.moveaxis(qcube, 0, -1), "rows": qx[rows], "rows_col": qx[rows, 1],
        "rows_gap": qcube[rows, :, 3], "rows_cols": qx[rows, rows], "newaxis": qx[None, :, 2], "ellipsis": qcube[..., 1],
        "bool": qx[x[:, 0] > 0], "repeat": qx[:, :2].repeat(3, axis=1), "tile": np.tile(qv, (2, 2)),
        "broadcast": np.broadcast_to(qv, (4, 5)), "bcast_add": qx + qv, "bcast_mul": qx * qv, "bcast_rsub": qv - qx,
        "mul_public": qx * qp, "mul_public_wide": qv * qp[:, :5], "matmul_method": qx @ qw,
    }
    for pid in outputs:
        for key, want in expected.items():
            got = outputs[pid][key]
            assert got.shape == np.shape(want), key
            # linear ops are exact on fixed-point values; one truncation adds < 2 units
            np.testing.assert_allclose(got, want, rtol=0, atol=2 * ULP, err_msg=f"{key} at {pid}")


def test_share_level_methods_match_numpy(mpc):
    """The engine-agnostic ring-level methods protocols use instead of touching raw shares."""
    n = mpc.n
    data = np.random.default_rng(7)
    x = data.normal(scale=3, size=(5, 4))
    g = data.normal(size=4)
    bits = data.integers(0, 2, size=(5, 4))
    keep = np.array([0.99, 0.5, 1.0, 0.25])
    step = 0.0123
    k_keep, k_step = np.rint(keep * 2.0**30).astype(np.int64), int(round(step * 2.0**30))
    private = {f"p{i}": data.integers(-50, 50, size=(3, 2)) for i in range(n)}
    weights = data.integers(-7, 8, size=(5, 3))

    def body(s):
        X, G = owned(s, x, "p0"), owned(s, g, f"p{n - 1}")
        B = s.input_ring(bits.astype(np.uint64) if s.party.id == "p1" else None, "p1")
        B = SharedTensor(s, B)
        ones = s.public_ring(np.ones((5, 1), np.int64))
        sums = s.from_additive(ring(private[s.party.id]))
        mine = s.open_to_each({pid: sums.add_ring(int(pid[1:])) for pid in s.players})
        update = (G * k_keep - X[0] * k_step).truncate(30)
        out = {
            "bits_times_x": B.mul(X, trunc_bits=0), "bits_and": B.mul(B.not_bits(), trunc_bits=0),
            "not": B.not_bits(), "ones": ones, "add_ring": B.add_ring(np.arange(4) - 2), "sums": sums,
            "ltz": (X - 1.0).ltz_bits(), "update": update, "int_prod": sums.mul(sums, trunc_bits=0),
            "tensordot": B.tensordot_public(weights), "argmax_bits": X.argmax_bits(),
            "select_rows": SharedTensor.concatenate([ones, B[:, :1]], axis=1).mul(X[:, :2], trunc_bits=0),
        }
        return {k: t.reveal_ring() for k, t in out.items()}, mine

    total = sum(private.values())
    qx, qg = q(x), q(g)
    enc = lambda v: encode(v)  # noqa: E731 - fixed-point values as ring elements
    expected = {
        "bits_times_x": enc(bits * qx), "bits_and": ring(np.zeros((5, 4))), "not": ring(1 - bits),
        "ones": ring(np.ones((5, 1))), "add_ring": ring(bits + np.arange(4) - 2), "sums": ring(total),
        "ltz": ring(qx - 1.0 < 0), "int_prod": ring(total * total), "tensordot": ring(np.tensordot(weights, bits, axes=(0, 0))),
        "argmax_bits": ring(np.eye(4, dtype=np.int64)[np.argmax(qx, axis=-1)]),
        "select_rows": enc(np.concatenate([np.ones((5, 1)), bits[:, :1]], axis=1) * qx[:, :2]),
    }
    # (g * k_keep - x * k_step) >> 30: one truncation of exact integer products, error < 1 unit
    update_want = (qg * k_keep - qx[0] * k_step) / 2.0**30
    for pid, (out, mine) in mpc(body).items():
        for key, want in expected.items():
            np.testing.assert_array_equal(out[key], want, err_msg=f"{key} at {pid}")
        np.testing.assert_allclose(decode(out["update"]), update_want, rtol=0, atol=ULP)
        np.testing.assert_array_equal(mine, ring(total + int(pid[1:])))


FUSED_ROUNDS = {"beaver": (3, 1), "rss3": (4, 2)}  # (ltz_select, truncate_update): one comparison's, one truncation's


def test_fused_comparison_and_truncations_match_numpy(mpc):
    """``ltz_select``: the bits ``[x < 0]``, exact products ``bits * v`` (the bit broadcast over a
    trailing axis, and a value computed from a truncation made alongside) in the rounds of one
    comparison; ``truncate_update``: ``(w - (g >> f) k) >> 30`` in the rounds of one truncation."""
    n = mpc.n
    data = np.random.default_rng(11)
    x = data.normal(scale=2, size=(6, 4))
    x[0] = [0.0, ULP, -ULP, -1e-9]
    v, t = data.normal(size=(6, 4, 3)), data.normal(scale=3, size=(6, 4))
    g, w = data.normal(scale=5, size=(5, 2)), data.normal(size=(5, 2))
    k_keep, k_step = np.rint(np.linspace(0.5, 1, 5) * 2.0**30).astype(np.int64), int(round(0.0123 * 2.0**30))

    def body(s):
        X, V, T = owned(s, x, "p0"), owned(s, v, f"p{n - 1}"), owned(s, t, "p1")
        G, W = owned(s, g, "p1"), owned(s, w, "p0")
        T2, G2 = T * (1 << 16), G * (1 << 16)  # at 2 frac_bits, as an untruncated product
        X[:1].reveal()
        before = s.party.depth
        bits, (times_v, times_t), (truncated,) = X.ltz_select(lambda tr: [V, tr[0] + 0.5], [(T2, 16)])
        middle = s.party.depth
        update = G2.truncate_update(W * k_keep[:, None], k_step, 30)
        after = s.party.depth
        out = {"bits": bits, "times_v": times_v, "times_t": times_t, "truncated": truncated, "update": update}
        return {"depth": (before, middle), "depth2": (middle, after), **{k: o.reveal_ring() for k, o in out.items()}}

    outputs = mpc(body)
    assert (critical_rounds(outputs), critical_rounds(outputs, "depth2")) == FUSED_ROUNDS[mpc.engine]
    qx, qv, qt, qg, qw = q(x), q(v), q(t), q(g), q(w)
    below = qx < 0
    for out in outputs.values():
        np.testing.assert_array_equal(out["bits"], ring(below))
        np.testing.assert_array_equal(out["times_v"], encode(below[..., None] * qv))
        truncated = decode(out["truncated"])
        np.testing.assert_allclose(truncated, qt, rtol=0, atol=ULP)  # an exact multiple of 2^16: at most one unit
        np.testing.assert_array_equal(decode(out["times_t"]), below * (truncated + 0.5))
        # g >> 16 is off by less than a unit, scaled by k_step / 2^30 < 1, then one more truncation
        want = (qw * k_keep[:, None] - qg * k_step) / 2.0**30
        np.testing.assert_allclose(decode(out["update"]), want, rtol=0, atol=2 * ULP)


def _steps_run(prefetch: bool, stop_after: int | None = None, change_step: int | None = None):
    """Two players and the dealer run six steps (four masked-matrix steps on different rows, two of
    another kind); returns the results and the last player's messages to the dealer."""
    data = np.random.default_rng(3)
    x, w0 = data.normal(size=(20, 4)), data.normal(size=4)
    rows = [data.choice(20, 8, replace=False) for _ in range(4)]
    plan = [("step", r) for r in rows[:2]] + [("other", None)] + [("step", r) for r in rows[2:]] + [("other", None)]

    def body(s):
        X, w = owned(s, x, "p0"), owned(s, w0, "p1")
        masked = MaskedMatrix(X)
        steps = s.prefetched(plan) if prefetch else plan
        results, before = [], s.party.stats.rounds
        for i, (key, rows_i) in enumerate(steps):
            if key == "step":
                z = masked.matmul(w, rows_i)
                results.append((masked.t_matmul(z.relu(), rows_i) * 0.5).reveal())
            else:
                results.append((w * w if i == change_step else w.sigmoid("linear")).reveal())
            if i == stop_after:
                break
        if prefetch:
            steps.close()
        rounds = s.party.stats.rounds - before
        results.append((w * 3.0).reveal())  # the streams are still in step with the dealer's
        masked.release()
        return results, rounds

    out = run_players(2, body)
    # the last player's rounds beyond the first's: its round trips to the dealer
    return out["p1"][0], out["p1"][1] - out["p0"][1], x, w0, rows


def test_prefetched_steps_cost_no_dealer_round_trips_and_check_their_order():
    """``Session.prefetched``: the first step of each kind runs as is (one request per operation);
    every later step's requests go to the dealer in one message a step ahead; results are those of
    the plain run; a step that draws out of the recorded order raises; ``close`` after stopping early
    discards what was prefetched and the streams stay in step."""
    plain, plain_trips, x, w0, rows = _steps_run(False)
    fetched, fetched_trips, _, _, _ = _steps_run(True)
    qx, qw = q(x), q(w0)
    for i, r in enumerate(rows):
        z = qx[r] @ qw
        j = i if i < 2 else i + 1
        for got in (plain, fetched):
            np.testing.assert_allclose(got[j], qx[r].T @ np.maximum(z, 0) * 0.5, rtol=0, atol=20 * ULP)
    for got in (plain, fetched):
        np.testing.assert_allclose(got[-1], 3 * qw, rtol=0, atol=ULP)
    # plain: every operation is a round trip to the dealer (matmul, relu, t_matmul, the public
    # product: 4 per step; the sigmoid: 2, its products drawn after its truncation); prefetched: the
    # first "step" and "other" steps as plain (recorded), a step right after a recorded one waits
    # once for its own prefetch (and announces the next), the last two steps wait for nothing
    assert plain_trips == 4 + 4 + 2 + 4 + 4 + 2
    assert fetched_trips == 4 + 1 + 2 + 1 + 0 + 0
    with pytest.raises(Exception, match="out of the prefetched order"):
        _steps_run(True, change_step=5)
    early, _, _, _, _ = _steps_run(True, stop_after=3)
    np.testing.assert_allclose(early[-1], 3 * qw, rtol=0, atol=ULP)


def test_outside_holder_inputs_and_receives(engine):
    """A party that is not a player inputs with send_input and learns a result by receive_revealed."""
    from mpcml import make_session, run_dealer
    from mpcml.session import receive_revealed, send_input

    players = players_of(3)
    value = np.random.default_rng(3).normal(size=(4, 3))

    def player(party):
        s = make_session(party, players, engine)
        x = s.input_external("holder", name="holder's x")
        y = x * x + 1.5
        y.reveal_outside("holder")
        result = x.sum().reveal()
        s.close()
        return result

    def holder(party):
        send_input(party, players, encode(value))
        return receive_revealed(party, players, 16)

    roles = {pid: player for pid in players}
    roles["holder"] = holder
    if engine == "beaver":
        roles["dealer"] = lambda party: run_dealer(party, players)
    out = recorded_run(roles)
    np.testing.assert_allclose(out["holder"], q(value) ** 2 + 1.5, rtol=0, atol=2 * ULP)  # one truncated product
    for pid in players:
        np.testing.assert_allclose(out[pid], q(value).sum(), rtol=0, atol=0)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    m=st.integers(1, 7), k=st.integers(1, 9), p=st.integers(1, 6), n=st.sampled_from([2, 3]),
    scale=st.floats(0.01, 300.0), seed=st.integers(0, 2**32 - 1),
)
def test_matmul_and_mul_random_shapes(spmd, m, k, p, n, scale, seed):
    data = np.random.default_rng(seed)
    x, y = data.uniform(-scale, scale, (m, k)), data.uniform(-scale, scale, (k, p))
    z = data.uniform(-scale, scale, (m, k))

    def body(s):
        X, Y, Z = owned(s, x, "p0"), owned(s, y, "p1"), owned(s, z, f"p{n - 1}")
        return (X @ Y).reveal(), (X * Z).reveal()

    prod, had = spmd(n, body)["p0"]
    np.testing.assert_allclose(prod, q(x) @ q(y), rtol=0, atol=2 * ULP)
    np.testing.assert_allclose(had, q(x) * q(z), rtol=0, atol=2 * ULP)


def test_reveal_to_one_party_only(spmd):
    x = np.arange(6.0).reshape(2, 3) - 2.5

    def body(s):
        return owned(s, x, "p1").reveal(to="p2")

    outputs = spmd(3, body)
    assert outputs["p0"] is None and outputs["p1"] is None
    np.testing.assert_array_equal(outputs["p2"], x)


def test_long_product_chain_error_grows_one_unit_per_truncation(spmd):
    x = np.linspace(-1.5, 1.5, 40)

    def body(s):
        t = owned(s, x)
        acc = t
        for _ in range(6):
            acc = acc * t
        return acc.reveal()

    got = spmd(2, body)["p0"]
    want = q(x) ** 7
    # x is exact; each of the 6 products adds <= 1 unit of truncation to the propagated error,
    # which |x| <= 1.5 scales by at most 1.5: error <= sum(1.5^i, i < 6) units (measured: ~8)
    assert np.max(np.abs(got - want)) <= ULP * sum(1.5**i for i in range(6))


def test_truncation_is_exact_up_to_one_unit_near_the_range_limit(spmd):
    """No failure probability: values up to 2^61 in the ring truncate to within one unit."""
    big = np.array([2.0**61 - 1, -(2.0**61), 2.0**60 + 12345, -(2.0**59) - 7, 3.0, -3.0, 0.0] * 300)

    def body(s):
        x = SharedTensor(s, s.input_ring(big.astype(np.int64).view(np.uint64) if s.party.id == "p0" else None, "p0"))
        return x.truncate(16).reveal_ring(), x.truncate(40).reveal_ring()

    for by16, by40 in spmd(3, body).values():
        for got, bits in ((by16, 16), (by40, 40)):
            want = np.floor(big / 2.0**bits)
            error = got.view(np.int64).astype(np.float64) - want
            assert np.all((error >= 0) & (error <= 1)), bits


# --- one party's shares are uniform and independent of the secret ------------------------------


def _bit_balance_ok(shares: np.ndarray) -> None:
    n = shares.size
    ones = np.array([np.count_nonzero((shares >> np.uint64(b)) & np.uint64(1)) for b in range(64)])
    z = (ones - n / 2) / np.sqrt(n / 4)
    assert np.max(np.abs(z)) < 5.5, f"bit imbalance, z-scores up to {np.max(np.abs(z)):.1f}"


def _top_byte_chi2_p(shares: np.ndarray) -> float:
    counts = np.bincount((shares >> np.uint64(56)).astype(np.int64), minlength=256)
    return scistats.chisquare(counts).pvalue


def _components(share: np.ndarray, lead: int) -> list[np.ndarray]:
    return [share] if lead == 0 else list(share)


def test_single_party_shares_uniform_and_secret_independent(mpc):
    """Every share component is uniform and independent of the secret; the one exception is the
    rss3 input's structural zero component (x_{j-1} = 0, held by the owner's two neighbours),
    which is zero whatever the secret."""
    size = 1 << 14
    secrets = {"zero": np.zeros(size), "const": np.full(size, 12345.678)}

    def body(s):
        out = {}
        for name, value in secrets.items():
            x = owned(s, value, "p0")
            out[name] = [_components(t.share.copy(), s.engine.lead) for t in (x, x * x, x * 0.75)]
        return out

    outputs = mpc(body)
    for pid in outputs:
        for kind in range(3):
            for a, b in zip(outputs[pid]["zero"][kind], outputs[pid]["const"][kind]):
                if mpc.engine == "rss3" and kind == 0 and not a.any():
                    assert pid != "p0" and not b.any(), "only the input's x_{j-1} may be zero"
                    continue
                for shares in (a, b):
                    _bit_balance_ok(shares)
                    assert _top_byte_chi2_p(shares) > 1e-6
                # same distribution for two different secrets: chi-square homogeneity on the top byte
                ca = np.bincount((a >> np.uint64(56)).astype(np.int64), minlength=256)
                cb = np.bincount((b >> np.uint64(56)).astype(np.int64), minlength=256)
                assert scistats.chi2_contingency(np.stack([ca, cb]))[1] > 1e-6


# --- communication accounting ---------------------------------------------------------------


def _array_bytes(shape: tuple[int, ...]) -> int:
    """Codec size of a uint64 array: tag, dtype code, ndim, 8 bytes per dim, 8 per element."""
    return 3 + 8 * len(shape) + 8 * int(np.prod(shape))


def _list_bytes(*item_bytes: int) -> int:
    return 1 + 8 + sum(item_bytes)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("shapes", [((7, 5), (5, 3)), ((4, 9), (9,))])
def test_beaver_matmul_communication_is_exact(n, shapes):
    shape_a, shape_b = shapes
    shape_c = shape_a[:-1] + shape_b[1:]
    data = np.random.default_rng(1)
    x, y = data.normal(size=shape_a), data.normal(size=shape_b)

    def body(s):
        X, Y = owned(s, x, "p0"), owned(s, y, "p1")
        X[0].reveal()  # every party's last action is now a receive: the next send opens a round
        before = s.party.stats.snapshot()
        Z = X @ Y
        delta = s.party.stats.snapshot()
        return {
            "players_sent": {p: delta.sent_to.get(p, 0) - before.sent_to.get(p, 0) for p in s.others},
            "dealer_sent": delta.sent_to.get("dealer", 0) - before.sent_to.get("dealer", 0),
            "dealer_recv": delta.received_from.get("dealer", 0) - before.received_from.get("dealer", 0),
            "messages": delta.messages_sent - before.messages_sent,
            "rounds": delta.rounds - before.rounds,
            "value": Z.reveal(),
        }

    outputs = run_players(n, body, engine="beaver")
    # round 1 opens [x - a, y - b]; round 2 opens the masked product for truncation
    per_peer = _list_bytes(_array_bytes(shape_a), _array_bytes(shape_b)) + _list_bytes(_array_bytes(shape_c))
    last = f"p{n - 1}"
    for pid, out in outputs.items():
        np.testing.assert_allclose(out["value"], q(x) @ q(y), atol=2 * ULP)
        assert out["players_sent"] == {p: per_peer for p in out["players_sent"]}
        assert len(out["players_sent"]) == n - 1
        if pid == last:
            # dealer traffic (only the last player talks to the dealer): one request, then the
            # shares of the three derived arrays c = a @ b, msb(r), (r mod 2^63) >> f
            assert out["dealer_recv"] == _list_bytes(*[_array_bytes(shape_c)] * 3)
            assert out["dealer_sent"] > 0
            assert out["messages"] == 2 * (n - 1) + 1 and out["rounds"] == 3
        else:
            assert out["dealer_sent"] == out["dealer_recv"] == 0
            assert out["messages"] == 2 * (n - 1) and out["rounds"] == 2




def _sent(s, before):
    after = s.party.stats.snapshot()
    return {p: after.sent_to.get(p, 0) - before.sent_to.get(p, 0) for p in s.others}


@pytest.mark.parametrize("shapes", [((7, 5), (5, 3)), ((4, 9), (9,))])
def test_rss3_communication_is_exact(shapes):
    """Bytes between each ordered pair of players, for an input, an exact product, a truncated
    matrix product (helper p0, the first helper of a session) and a reveal; critical-path rounds."""
    shape_a, shape_b = shapes
    shape_c = shape_a[:-1] + shape_b[1:]
    data = np.random.default_rng(1)
    x, y = data.normal(size=shape_a), data.normal(size=shape_b)

    def body(s):
        steps, depths = {}, {}
        before, depth = s.party.stats.snapshot(), s.party.depth
        X = owned(s, x, "p0")
        steps["input"], depths["input"] = _sent(s, before), (depth, s.party.depth)
        Y = owned(s, y, "p1")
        before, depth = s.party.stats.snapshot(), s.party.depth
        XX = X.mul(X, trunc_bits=0)
        steps["mul"], depths["mul"] = _sent(s, before), (depth, s.party.depth)
        before, depth = s.party.stats.snapshot(), s.party.depth
        Z = X @ Y
        steps["matmul"], depths["matmul"] = _sent(s, before), (depth, s.party.depth)
        before, depth = s.party.stats.snapshot(), s.party.depth
        value = Z.reveal()
        steps["reveal"], depths["reveal"] = _sent(s, before), (depth, s.party.depth)
        return steps, depths, value, XX.reveal_ring()

    outputs = run_players(3, body, engine="rss3")
    a, c = _array_bytes(shape_a), _array_bytes(shape_c)
    shape_list = len(codec.encode(list(shape_a)))
    expected = {
        # the owner p0 sends x - x_0 to p1 and the shape to p2
        "input": {"p0": {"p1": a, "p2": shape_list}, "p1": {"p0": 0, "p2": 0}, "p2": {"p0": 0, "p1": 0}},
        # every player sends its re-randomised term to the previous player
        "mul": {"p0": {"p1": 0, "p2": a}, "p1": {"p0": a, "p2": 0}, "p2": {"p0": 0, "p1": a}},
        # helper p0: [z_0 + 2^62 + r] to p1 and, with p2's shares of msb(r) and r_low, to p2;
        # p1 and p2 swap [their terms], then their 2-out-of-2 results
        "matmul": {"p0": {"p1": _list_bytes(c), "p2": _list_bytes(_list_bytes(c), _list_bytes(c, c))},
                   "p1": {"p0": 0, "p2": _list_bytes(c) + c}, "p2": {"p0": 0, "p1": _list_bytes(c) + c}},
        # every player sends (a list of) its first component to the next
        "reveal": {"p0": {"p1": _list_bytes(c), "p2": 0}, "p1": {"p0": 0, "p2": _list_bytes(c)},
                   "p2": {"p0": _list_bytes(c), "p1": 0}},
    }
    rounds = {"input": 1, "mul": 1, "matmul": 2, "reveal": 1}
    for pid, (steps, _, value, squared) in outputs.items():
        np.testing.assert_allclose(value, q(x) @ q(y), atol=2 * ULP)
        np.testing.assert_array_equal(squared, encode(x) * encode(x))
        for step, sent in steps.items():
            assert sent == expected[step][pid], (step, pid)
    for step, want in rounds.items():
        assert max(d[1][step][1] for d in outputs.values()) - max(d[1][step][0] for d in outputs.values()) == want, step


# --- bad input is rejected before any message ------------------------------------------------


def test_bad_input_raises_before_any_message(spmd):
    x = np.ones((3, 4))

    def body(s):
        X = owned(s, x, "p0")
        Y = owned(s, np.ones((3, 4)), "p1")
        failures = []
        attempts = {
            "nan public": lambda: X + np.array([np.nan, 0, 0, 0]),
            "inf public": lambda: X * np.inf,
            "out of range": lambda: X + 1e40,
            "mismatched add": lambda: X + s.zeros((2, 2)),
            "mismatched mul": lambda: X * s.zeros((5,)),
            "mismatched exact mul": lambda: X.mul(s.zeros((5,)), trunc_bits=0),
            "mismatched matmul": lambda: X @ Y,
            "mismatched public matmul": lambda: X @ np.ones((3, 2)),
            "mismatched public rmatmul": lambda: np.ones((2, 4)) @ X,
            "unknown owner": lambda: s.input(x, owner="mallory"),
            "unknown ring owner": lambda: s.input_ring(np.ones(2, np.uint64), owner="mallory"),
            "unknown reveal target": lambda: X.reveal(to="mallory"),
            "unknown peer": lambda: s.party.send("mallory", 1),
            "non-numeric": lambda: X + np.array(["a"]),
            "float ring values": lambda: X.add_ring(np.array([0.5])),
            "truncate too far": lambda: X.truncate(63),
            "negative truncation": lambda: X.mul(Y, trunc_bits=-1),
            "bad axis": lambda: X.sum(axis=2),
            "bad transpose": lambda: X.transpose(0, 0),
            "bad moveaxis": lambda: X.moveaxis(0, 5),
            "bad tensordot": lambda: X.tensordot_public(np.ones((4, 2), np.int64)),
            "reveal outside to a player": lambda: X.reveal_outside("p1"),
            "external input from a player": lambda: s.input_external("p1"),
            "open to a subset": lambda: s.open_to_each({"p0": X}),
            "open a non-tensor": lambda: s.open_to_each({p: x for p in s.players}),
            "pair for the wrong engine": lambda: s.truncate(X.share, 16, pair=[X.share] * 3) if s.engine.name == "rss3" else s.truncate(X.share, 70),
            "mul by a raw array": lambda: X.mul(np.ones((3, 4))),
        }
        if s.party.id == "p0":
            attempts["owner nan"] = lambda: s.input(np.array([1.0, np.nan]), owner="p0")
            attempts["owner inf"] = lambda: s.input(np.array([np.inf]), owner="p0")
            attempts["owner overflow"] = lambda: s.input(np.array([max_abs(16)]), owner="p0")
        before = s.party.stats.snapshot()
        for name, attempt in attempts.items():
            try:
                attempt()
                failures.append(f"{name}: no error")
            except (ValueError, TypeError) as exc:
                if not str(exc):
                    failures.append(f"{name}: empty message")
        after = s.party.stats.snapshot()
        return failures, after.messages_sent - before.messages_sent, after.bytes_sent - before.bytes_sent

    for pid, (failures, messages, nbytes) in spmd(2, body).items():
        assert failures == [], pid
        assert messages == 0 and nbytes == 0, pid


def test_error_messages_name_the_argument(spmd):
    def body(s):
        if s.party.id == "p0":
            with pytest.raises(ValueError, match="alice's data"):
                s.input(np.array([np.nan]), owner="p0", name="alice's data")
        with pytest.raises(ValueError, match="mallory"):
            s.input(None, owner="mallory")
        return True

    assert all(spmd(2, body).values())


def test_session_rejects_bad_players_and_engines():
    from mpcml import NoTriples as Stub  # no dealer: only the players matter for Session's checks
    from mpcml import Session, make_local_parties, make_session

    parties = make_local_parties(["p0", "p1", "p2", "p3"])

    with pytest.raises(ValueError, match="at least two"):
        Session(parties["p0"], ["p0"], Stub(["p0"]))
    with pytest.raises(ValueError, match="not among the players"):
        Session(parties["p0"], ["p1", "px"], Stub(["p1", "px"]))
    with pytest.raises(ValueError, match="mallory"):
        Session(parties["p0"], ["p0", "mallory"], Stub(["p0", "mallory"]))
    with pytest.raises(ValueError, match="serves"):
        Session(parties["p0"], ["p0", "p1"], Stub(["p1", "p0"]))
    with pytest.raises(TypeError, match="TripleSource"):
        Session(parties["p0"], ["p0", "p1"])
    with pytest.raises(ValueError, match="exactly three"):
        Session(parties["p0"], ["p0", "p1"], engine="rss3")
    with pytest.raises(ValueError, match="exactly three"):
        Session(parties["p0"], ["p0", "p1", "p2", "p3"], engine="rss3")
    with pytest.raises(ValueError, match="no triple source"):
        Session(parties["p0"], ["p0", "p1", "p2"], Stub(["p0", "p1", "p2"]), engine="rss3")
    with pytest.raises(ValueError, match="engine must be one of"):
        Session(parties["p0"], ["p0", "p1", "p2"], engine="spdz")
    with pytest.raises(ValueError, match="engine must be one of"):
        make_session(parties["p0"], ["p0", "p1", "p2"], "aby3")
    with pytest.raises(ValueError, match="frac_bits"):
        make_session(parties["p0"], ["p0", "p1", "p2"], "rss3", frac_bits=99)
    assert all(p.stats.messages_sent == 0 for p in parties.values())


@pytest.mark.parametrize("sent", [np.zeros(3, np.uint64), np.zeros(2, np.float64), 7])
def test_open_and_open_to_reject_malformed_peer_shares(sent):
    from mpcml import NoTriples, PartyFailed, Session, run_local

    def honest(party, reveal_to):
        s = Session(party, ["p0", "p1"], NoTriples(["p0", "p1"]))  # opening needs no correlated randomness
        share = np.zeros(2, np.uint64)
        return s.open_to(share, "p0") if reveal_to else s.open([share])

    def cheat(party, reveal_to):
        party.send("p0", sent if reveal_to else [sent])
        if not reveal_to:
            party.recv("p0")  # the honest player's share, sent before it checks ours

    for reveal_to in (False, True):
        with pytest.raises(PartyFailed, match="'p0'") as info:
            run_local({"p0": honest, "p1": cheat}, {"p0": (reveal_to,), "p1": (reveal_to,)}, timeout=5)
        assert isinstance(info.value.__cause__, ValueError) and "'p1' sent a share" in str(info.value.__cause__)


@pytest.mark.parametrize("sent", [np.zeros(3, np.uint64), np.zeros(2, np.float64), 7])
def test_rss3_rejects_malformed_peer_messages(sent):
    """A player sends garbage where p0 expects its message, in an opening (from p2, p0's previous
    player) and in a product's re-sharing (from p1, the next): p0 fails with a ProtocolError
    naming the sender, never a hang."""
    from mpcml import PartyFailed, Session, run_local
    from mpcml.schema import ProtocolError

    players = ("p0", "p1", "p2")

    def honest(party, step):
        s = Session(party, players, engine="rss3")
        x = s.zeros(2)
        return x.reveal() if step == "open" else x.mul(x, trunc_bits=0).share

    def cheat(party, step):
        Session(party, players, engine="rss3")  # the key exchange
        party.send("p0", [sent] if step == "open" else sent)

    for step, cheater in (("open", "p2"), ("product", "p1")):
        roles = {pid: cheat if pid == cheater else honest for pid in players}
        with pytest.raises(PartyFailed, match="'p0'") as info:
            run_local(roles, {p: (step,) for p in players}, timeout=5)
        assert isinstance(info.value.__cause__, ProtocolError)
        assert f"{cheater!r} sent a malformed" in str(info.value.__cause__)


@pytest.mark.parametrize("request_", [["matmul", [[2, 2]]], ["teleport", []], ["mul", 5], "not a list", ["mul", [[-1], 0]]])
def test_dealer_rejects_malformed_requests(request_):
    from mpcml import PartyFailed, run_dealer, run_local

    def bad_player(party):
        party.recv("dealer")
        party.send("dealer", request_)

    def other(party):
        party.recv("dealer")

    with pytest.raises(PartyFailed, match="'dealer'") as info:
        run_local({"p0": other, "p1": bad_player, "dealer": lambda p: run_dealer(p, ["p0", "p1"])}, timeout=5)
    assert isinstance(info.value.__cause__, ValueError) and "request" in str(info.value.__cause__)


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("binary", [False, True])
def test_share_and_reconstruct(n, binary):
    from mpcml import Csprng, reconstruct, share

    rng = Csprng()
    secret = np.array([0, 1, 2**63, 2**64 - 1, 12345], dtype=np.uint64)
    shares = share(secret, n, rng, binary=binary)
    assert len(shares) == n and all(s.dtype == np.uint64 for s in shares)
    np.testing.assert_array_equal(reconstruct(shares, binary=binary), secret)
    # any n - 1 shares of a constant secret look uniform
    many = share(np.zeros(1 << 14, np.uint64), n, rng, binary=binary)
    for s in many[1:]:
        _bit_balance_ok(s)
    with pytest.raises(ValueError, match="n must be"):
        share(secret, 1, rng)
    with pytest.raises(ValueError, match="at least one share"):
        reconstruct([])


def test_a_session_without_triples_adds_and_reveals_and_refuses_products():
    """NoTriples (PCA's secure sum on beaver): inputs, sums and reveals work with no dealer and no
    message beyond theirs; a product or a comparison raises before any message, naming what it lacked."""
    from mpcml import NoTriples, Session, run_local

    players = ("p0", "p1", "p2")
    x = np.arange(6.0).reshape(2, 3)

    def body(party):
        s = Session(party, players, NoTriples(players))
        parts = [s.input(x * (i + 1) if party.id == p else None, p) for i, p in enumerate(players)]
        total = (parts[0] + parts[1] + parts[2]).reveal()
        sent = party.stats.messages_sent
        errors = []
        for step in (lambda: parts[0] * parts[1], lambda: parts[0] @ parts[1].T, lambda: parts[0] < 0,
                     lambda: parts[0] * 0.5):
            with pytest.raises(RuntimeError, match="no source of correlated randomness") as info:
                step()
            errors.append(str(info.value))
        assert party.stats.messages_sent == sent
        return total, errors

    out = run_local({p: body for p in players})
    total, errors = out["p0"]
    assert np.array_equal(total, 6 * x)  # integers: exact
    assert ["multiplication triple" in errors[0], "matrix triple" in errors[1], "truncation pair" in errors[3]] == [True] * 3
