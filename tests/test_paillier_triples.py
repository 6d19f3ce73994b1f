"""Dealer-free Paillier triples: every correlation reconstructs exactly, and a Session computes like numpy."""

from __future__ import annotations

import numpy as np
import pytest

from mpcml import Session, make_local_parties, run_local
from mpcml import he
from mpcml.paillier_triples import PaillierTriples
from mpcml.ring import ring_matmul
from mpcml.sharing import reconstruct

PLAYERS = ("alice", "bob")
F = 16
LOW63 = np.uint64((1 << 63) - 1)


@pytest.fixture(scope="module", params=he.SCHEMES)
def keypairs(request):
    return {pid: he.generate_keypair(request.param, 1024) for pid in PLAYERS}


def draw_everything(party, keypair):
    source = PaillierTriples(party, PLAYERS, keypair=keypair)
    handle, _ = source.mask((4, 3))
    return {
        "mul": source.mul((3, 4), F),
        "matmul": source.matmul((2, 3), (3, 4)),
        "matvec": source.matmul((3,), (3, 2), 12),
        "trunc": source.trunc((9,), F),
        "and": source.binary_and((5,)),
        "bit": source.random_bit((40,)),
        "edabit": source.edabit((4,)),
        "fixed": source.matmul_fixed(handle, (4, 2), rows=np.array([0, 2, 3, 1]), transpose=True),
        "mask": source._store[handle],
    }


@pytest.fixture(scope="module")
def drawn(keypairs):
    out = run_local({p: draw_everything for p in PLAYERS}, {p: (keypairs[p],) for p in PLAYERS})
    return lambda kind, i, binary=False: reconstruct([out[p][kind][i] for p in PLAYERS], binary=binary)


def assert_trunc_pair(r, msb, low, bits):
    np.testing.assert_array_equal(msb, r >> np.uint64(63))
    np.testing.assert_array_equal(low, (r & LOW63) >> np.uint64(bits))


def test_mul_and_matmul_triples(drawn):
    np.testing.assert_array_equal(drawn("mul", 2), drawn("mul", 0) * drawn("mul", 1))
    assert_trunc_pair(drawn("mul", 3), drawn("mul", 4), drawn("mul", 5), F)
    np.testing.assert_array_equal(drawn("matmul", 2), ring_matmul(drawn("matmul", 0), drawn("matmul", 1)))
    np.testing.assert_array_equal(drawn("matvec", 2), ring_matmul(drawn("matvec", 0), drawn("matvec", 1)))
    assert drawn("matvec", 2).shape == (2,)
    assert_trunc_pair(drawn("matvec", 3), drawn("matvec", 4), drawn("matvec", 5), 12)


def test_matmul_fixed_uses_the_stored_mask(drawn):
    a, b, c = (drawn("fixed", i) for i in range(3))
    np.testing.assert_array_equal(a, drawn("mask", slice(None))[[0, 2, 3, 1]].T)
    np.testing.assert_array_equal(c, ring_matmul(a, b))


def test_trunc_pairs_are_exact_and_random(drawn):
    r, msb, low = (drawn("trunc", i) for i in range(3))
    assert_trunc_pair(r, msb, low, F)
    assert len(set(r.tolist())) == r.size and 0 < int(msb.sum()) < r.size


def test_binary_bits_and_edabits(drawn):
    a, b, c = (drawn("and", i, binary=True) for i in range(3))
    np.testing.assert_array_equal(c, a & b)
    arith, xor = drawn("bit", 0), drawn("bit", 1, binary=True)
    np.testing.assert_array_equal(arith, xor)
    assert set(arith.tolist()) == {0, 1}
    np.testing.assert_array_equal(drawn("edabit", 0), drawn("edabit", 1, binary=True))


def session_role(party, keypair, x, y):
    session = Session(party, PLAYERS, PaillierTriples(party, PLAYERS, keypair=keypair), frac_bits=F)
    sx = session.input(x if party.id == "alice" else None, owner="alice")
    sy = session.input(y if party.id == "bob" else None, owner="bob")
    out = {
        "mul": (sx * sy).reveal(),
        "matmul": (sx @ sy.T).reveal(),
        "lt": (sx < sy).reveal(),
    }
    session.close()
    return out


def test_session_computes_like_numpy(keypairs):
    data = np.random.default_rng(3)
    x, y = data.normal(size=(2, 3)), data.normal(size=(2, 3))
    out = run_local({p: session_role for p in PLAYERS}, {"alice": (keypairs["alice"], x, None), "bob": (keypairs["bob"], None, y)})
    tol = 4 * 2.0**-F * 3
    for pid in PLAYERS:
        np.testing.assert_allclose(out[pid]["mul"], x * y, atol=tol)
        np.testing.assert_allclose(out[pid]["matmul"], x @ y.T, atol=tol)
        np.testing.assert_array_equal(out[pid]["lt"], (x < y).astype(float))


def test_bad_arguments():
    parties = make_local_parties(["alice", "bob", "carol"])
    with pytest.raises(ValueError, match="exactly two"):
        PaillierTriples(parties["alice"], ["alice", "bob", "carol"])
    with pytest.raises(ValueError, match="not among"):
        PaillierTriples(parties["carol"], PLAYERS)
    with pytest.raises(ValueError, match="timeout"):
        PaillierTriples(parties["alice"], PLAYERS, timeout=0)


def check_requests(party, keypair):
    source = PaillierTriples(party, PLAYERS, keypair=keypair)
    for bad, match in [
        (lambda: source.mul((2, -1)), "shape"),
        (lambda: source.matmul((2, 3), (4, 2)), "mismatch"),
        (lambda: source.matmul((2, 3), "x"), "shape_b"),
        (lambda: source.trunc((2,), 0), "trunc_bits"),
        (lambda: source.matmul_fixed(99, (2,)), "handle"),
    ]:
        with pytest.raises(ValueError, match=match):
            bad()
    return source.mul((2,), 0)


def test_bad_requests_fail_before_sending(keypairs):
    out = run_local({p: check_requests for p in PLAYERS}, {p: (keypairs[p],) for p in PLAYERS})
    a, b, c = (reconstruct([out[p][i] for p in PLAYERS]) for i in range(3))
    np.testing.assert_array_equal(c, a * b)
