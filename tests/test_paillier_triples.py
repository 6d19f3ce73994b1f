"""Dealer-free Paillier triples: every correlation reconstructs exactly, and a Session computes like numpy."""

from __future__ import annotations

import numpy as np
import pytest

from mpcml import PartyFailed, Session, make_local_parties, run_local
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
    homomorphic = PaillierTriples(party, PLAYERS, keypair=keypair, ot_matmul_bytes=0)  # every matrix triple by HE
    he_handle, _ = homomorphic.mask((4, 3))
    return {
        "matmul_he": homomorphic.matmul((2, 3), (3, 4)),
        "matvec_he": homomorphic.matmul((3,), (3, 2), 12),
        "fixed_he": homomorphic.matmul_fixed(he_handle, (4, 2), rows=np.array([0, 2, 3, 1]), transpose=True),
        "mask_he": homomorphic._store[he_handle],
        "wide": source.matmul((70, 3), (3,)),  # 70 rows: pads of 35 OT words
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


def test_mul_triples(drawn):
    np.testing.assert_array_equal(drawn("mul", 2), drawn("mul", 0) * drawn("mul", 1))
    assert_trunc_pair(drawn("mul", 3), drawn("mul", 4), drawn("mul", 5), F)


@pytest.mark.parametrize("path", ["", "_he"], ids=["ot", "he"])
def test_matmul_triples(drawn, path):
    for kind in ("matmul", "matvec", "wide")[: 3 if not path else 2]:
        a, b, c = (drawn(kind + path, i) for i in range(3))
        np.testing.assert_array_equal(c, ring_matmul(a, b))
        assert len(set(b.ravel().tolist())) == b.size  # uniformly random words: no repeats among a few
    assert drawn("matvec" + path, 2).shape == (2,) and drawn("wide", 2).shape == (70,)
    assert_trunc_pair(drawn("matvec" + path, 3), drawn("matvec" + path, 4), drawn("matvec" + path, 5), 12)


@pytest.mark.parametrize("path", ["", "_he"], ids=["ot", "he"])
def test_matmul_fixed_uses_the_stored_mask(drawn, path):
    a, b, c = (drawn("fixed" + path, i) for i in range(3))
    np.testing.assert_array_equal(a, drawn("mask" + path, slice(None))[[0, 2, 3, 1]].T)
    np.testing.assert_array_equal(c, ring_matmul(a, b))


def product_traffic(party, keypair, limit):
    source = PaillierTriples(party, PLAYERS, keypair=keypair, ot_matmul_bytes=limit)
    source.mul((1,))  # the OT extension's base OTs, outside the measurement
    before = party.stats.snapshot()
    a, b, c = source.matmul((128, 31), (31,))
    return (party.stats.snapshot() - before).bytes_sent, a, b, c


def test_a_matrix_triple_goes_by_ot_within_the_byte_limit_and_homomorphically_beyond(keypairs):
    """The regression's 128 x 31 times 31 product: by OT 128 x 31 x 64 corrections of 8 bytes each way (2 MB, with the
    16 bytes per OT of the extension); with a limit below that, homomorphically (a few kB of ciphertexts)."""
    expected = 8 * 31 * 64 * 128 + 16 * 31 * 64
    for limit, low, high in [(expected, expected, 1.01 * expected), (expected - 1, 0, 0.1 * expected)]:
        out = run_local({p: product_traffic for p in PLAYERS}, {p: (keypairs[p], limit) for p in PLAYERS})
        a, b, c = (reconstruct([out[p][i] for p in PLAYERS]) for i in (1, 2, 3))
        np.testing.assert_array_equal(c, ring_matmul(a, b))
        for p in PLAYERS:
            assert low <= out[p][0] <= high, (limit, out[p][0])


def test_players_must_agree_on_the_byte_limit(keypairs):
    roles = {p: (lambda party, kp, limit: PaillierTriples(party, PLAYERS, keypair=kp, ot_matmul_bytes=limit))
             for p in PLAYERS}
    with pytest.raises(PartyFailed, match="ot_matmul_bytes differs"):
        run_local(roles, {"alice": (keypairs["alice"], 1 << 20), "bob": (keypairs["bob"], 1 << 21)})


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
