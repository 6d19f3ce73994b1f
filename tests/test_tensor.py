"""SharedTensor arithmetic vs numpy, share uniformity, exact communication, and input errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as scistats

from mpcml import SharedTensor, decode, encode
from mpcml.fixedpoint import max_abs

ULP = 2.0**-16


def q(x):
    """The fixed-point value numpy should compare with: encode then decode."""
    return decode(encode(x))


def owned(session, value, owner="p0"):
    return session.input(value if session.party.id == owner else None, owner=owner)


@pytest.mark.parametrize("n", [2, 3])
def test_linear_and_product_ops_match_numpy(spmd, n):
    data = np.random.default_rng(n)
    x, y = data.normal(scale=4, size=(6, 5)), data.normal(scale=4, size=(6, 5))
    w, v = data.normal(size=(5, 3)), data.normal(size=(5,))
    pub = data.normal(size=(6, 5))

    def body(s):
        X, Y = owned(s, x, "p0"), owned(s, y, f"p{n - 1}")
        W, V = owned(s, w, "p1"), owned(s, v, "p0")
        out = {
            "add": X + Y, "sub": X - Y, "neg": -X, "add_pub": X + pub, "radd_pub": pub + X, "rsub_pub": pub - X,
            "sub_pub": X - 2.5, "mul": X * Y, "mul_int": X * 3, "mul_float": X * 0.3, "rmul_arr": pub * X,
            "square": X.square(), "matmul": X @ W, "matvec": X @ V, "pub_matmul": pub.T @ X, "matmul_pub": X @ w,
            "sum": X.sum(), "sum0": X.sum(axis=0), "T": X.T, "index": X[1:4, ::2], "reshape": X.reshape(5, 6),
            "flatten": X.flatten(), "concat": SharedTensor.concatenate([X, Y], axis=1), "stack": SharedTensor.stack([X, Y]),
            "div_pub": X / 4.0, "transpose": X.transpose(1, 0),
        }
        return {k: t.reveal() for k, t in out.items()}

    outputs = spmd(n, body)
    qx, qy, qw, qv, qp = q(x), q(y), q(w), q(v), q(pub)
    expected = {
        "add": qx + qy, "sub": qx - qy, "neg": -qx, "add_pub": qx + qp, "radd_pub": qp + qx, "rsub_pub": qp - qx,
        "sub_pub": qx - 2.5, "mul": qx * qy, "mul_int": qx * 3, "mul_float": qx * q(0.3), "rmul_arr": qp * qx,
        "square": qx * qx, "matmul": qx @ qw, "matvec": qx @ qv, "pub_matmul": qp.T @ qx, "matmul_pub": qx @ qw,
        "sum": qx.sum(), "sum0": qx.sum(axis=0), "T": qx.T, "index": qx[1:4, ::2], "reshape": qx.reshape(5, 6),
        "flatten": qx.ravel(), "concat": np.concatenate([qx, qy], axis=1), "stack": np.stack([qx, qy]),
        "div_pub": qx * q(0.25), "transpose": qx.T,
    }
    for pid in outputs:
        for key, want in expected.items():
            got = outputs[pid][key]
            assert got.shape == np.shape(want), key
            # linear ops are exact on fixed-point values; one truncation adds < 2 units
            np.testing.assert_allclose(got, want, rtol=0, atol=2 * ULP, err_msg=f"{key} at {pid}")


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


# --- one party's shares are uniform and independent of the secret ------------------------------


def _bit_balance_ok(shares: np.ndarray) -> None:
    n = shares.size
    ones = np.array([np.count_nonzero((shares >> np.uint64(b)) & np.uint64(1)) for b in range(64)])
    z = (ones - n / 2) / np.sqrt(n / 4)
    assert np.max(np.abs(z)) < 5.5, f"bit imbalance, z-scores up to {np.max(np.abs(z)):.1f}"


def _top_byte_chi2_p(shares: np.ndarray) -> float:
    counts = np.bincount((shares >> np.uint64(56)).astype(np.int64), minlength=256)
    return scistats.chisquare(counts).pvalue


@pytest.mark.parametrize("n", [2, 3])
def test_single_party_shares_uniform_and_secret_independent(spmd, n):
    size = 1 << 14
    secrets = {"zero": np.zeros(size), "const": np.full(size, 12345.678)}

    def body(s):
        out = {}
        for name, value in secrets.items():
            x = owned(s, value, "p0")
            out[name] = (x.share.copy(), (x * x).share.copy(), (x * 0.75).share.copy())
        return out

    outputs = spmd(n, body)
    for pid in outputs:
        for kind in range(3):
            a, b = outputs[pid]["zero"][kind], outputs[pid]["const"][kind]
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
def test_beaver_matmul_communication_is_exact(spmd, n, shapes):
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

    outputs = spmd(n, body)
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
            "mismatched add": lambda: X + SharedTensor(s, np.zeros((2, 2), np.uint64)),
            "mismatched mul": lambda: X * SharedTensor(s, np.zeros((5,), np.uint64)),
            "mismatched matmul": lambda: X @ Y,
            "mismatched public matmul": lambda: X @ np.ones((3, 2)),
            "unknown owner": lambda: s.input(x, owner="mallory"),
            "unknown reveal target": lambda: X.reveal(to="mallory"),
            "unknown peer": lambda: s.party.send("mallory", 1),
            "non-numeric": lambda: X + np.array(["a"]),
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


def test_session_rejects_bad_players():
    from mpcml import DealerTriples, Session, make_local_parties

    parties = make_local_parties(["p0", "p1"])

    class Stub(DealerTriples):
        def __init__(self, players):  # no dealer: only the players matter for Session's checks
            self.players = tuple(players)

    with pytest.raises(ValueError, match="at least two"):
        Session(parties["p0"], ["p0"], Stub(["p0"]))
    with pytest.raises(ValueError, match="not among the players"):
        Session(parties["p0"], ["p1", "px"], Stub(["p1", "px"]))
    with pytest.raises(ValueError, match="mallory"):
        Session(parties["p0"], ["p0", "mallory"], Stub(["p0", "mallory"]))
    with pytest.raises(ValueError, match="serves"):
        Session(parties["p0"], ["p0", "p1"], Stub(["p1", "p0"]))
    assert parties["p0"].stats.messages_sent == 0


@pytest.mark.parametrize("sent", [np.zeros(3, np.uint64), np.zeros(2, np.float64), 7])
def test_open_and_open_to_reject_malformed_peer_shares(sent):
    from mpcml import DealerTriples, PartyFailed, Session, run_local

    class Stub(DealerTriples):
        def __init__(self, players):  # opening needs no correlated randomness
            self.players = tuple(players)

    def honest(party, reveal_to):
        s = Session(party, ["p0", "p1"], Stub(["p0", "p1"]))
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
