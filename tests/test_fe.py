"""Inner-product FE (mpcml.fe, mpcml.dlog) against plaintext inner products.

Unit tests use the INSECURE 1024-bit test group for speed; one test runs the 3072-bit group;
the secp256k1 tests (the default group) check the group itself, identity handling, the wire
form, the discrete log and the schemes on the curve.
"""

from __future__ import annotations

import dataclasses

import gmpy2
import numpy as np
import pytest

from mpcml import codec
from mpcml.dlog import GROUP_3072, INSECURE_TEST_GROUP, DlogTable, FixedBase, GroupParams, dlog_table, multi_exp
from mpcml.ec import SECP256K1
from mpcml.fe import (
    DEFAULT_GROUP,
    IPFECiphertext,
    IPFEMasterKey,
    MIFECiphertext,
    MIFEFunctionKey,
    MIFEMasterKey,
    ipfe_decrypt,
    mife_decrypt,
    mife_key_for_weights,
)

G = INSECURE_TEST_GROUP
BX, BY = 1000, 100


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(42)  # test data only


def test_group_constants_valid():
    assert GROUP_3072.p.bit_length() == 3072 and GROUP_3072.q.bit_length() == 256 and GROUP_3072.secure
    assert not G.secure
    with pytest.raises(ValueError, match="g must generate"):
        GroupParams("bad", G.p, G.q, G.p - 1, False)


def test_fixed_base_and_multi_exp_match_powmod(data):
    p = gmpy2.mpz(G.p)
    table = FixedBase(G.g, G.p, G.q.bit_length(), window=5)
    for e in [0, 1, 2, G.q - 1, int(data.integers(0, 2**62))]:
        assert table.pow(e) == gmpy2.powmod(G.g, e, p)
    bases = [gmpy2.powmod(G.g, int(k) + 3, p) for k in range(40)]
    exps = data.integers(-(2**20), 2**20, 40).tolist()
    expected = gmpy2.mpz(1)
    for b, e in zip(bases, exps):
        expected = expected * gmpy2.powmod(b, e, p) % p
    assert multi_exp(bases, exps, G.p) == expected


def test_dlog_table_signed_range_and_refusal():
    solver = DlogTable(G, 64)
    bound = 5000
    for v in [0, 1, -1, 63, 64, -64, 4999, -5000, 5000, 1234, -4321]:
        assert solver.solve(gmpy2.powmod(G.g, v % G.q, G.p), bound) == v
    with pytest.raises(ValueError, match="not in"):
        solver.solve(gmpy2.powmod(G.g, 5001, G.p), bound)
    with pytest.raises(ValueError, match="not below q / 2"):
        dlog_table(G, G.q // 2)


def test_ipfe_decrypts_inner_product_with_extremes(data):
    dim = 12
    master = IPFEMasterKey.setup(dim, BX, BY, G)
    for x, y in [
        (data.integers(-BX, BX + 1, dim), data.integers(-BY, BY + 1, dim)),
        (np.full(dim, BX), np.full(dim, BY)),
        (np.full(dim, -BX), np.full(dim, BY)),
        (np.zeros(dim, dtype=np.int64), data.integers(-BY, BY + 1, dim)),
    ]:
        ct = master.public.encrypt(x)
        assert ipfe_decrypt(master.public, master.keygen(y), ct) == int(np.dot(x.astype(object), y.astype(object)))


def test_ipfe_bounds_refused(data):
    master = IPFEMasterKey.setup(4, BX, BY, G)
    with pytest.raises(ValueError, match="x has an entry of magnitude 1001"):
        master.public.encrypt([0, 0, BX + 1, 0])
    with pytest.raises(ValueError, match="y has an entry of magnitude 101"):
        master.keygen([0, -BY - 1, 0, 0])
    with pytest.raises(TypeError, match="integer array"):
        master.public.encrypt([0.5, 0, 0, 0])
    with pytest.raises(ValueError, match="not below q / 2"):
        IPFEMasterKey.setup(4, 2**80, 2**80, G)


def test_ipfe_wire_roundtrip(data):
    master = IPFEMasterKey.setup(5, BX, BY, G)
    x, y = data.integers(-BX, BX + 1, 5), data.integers(-BY, BY + 1, 5)
    wire = codec.decode(codec.encode(master.public.encrypt(x).to_wire()))
    ct = IPFECiphertext.from_wire(wire, G)
    assert ipfe_decrypt(master.public, master.keygen(y), ct) == int(x @ y)
    wire["c"][0] = G.p
    with pytest.raises(ValueError, match="not an element"):
        IPFECiphertext.from_wire(wire, G)


def _mife_case(data, n_slots=4, dim=3, rows=5):
    master = MIFEMasterKey.setup(n_slots, dim, BX, BY, G)
    xs = [data.integers(-BX, BX + 1, (rows, dim)) for _ in range(n_slots)]
    return master, xs


def test_mife_decrypts_sum_of_inner_products(data):
    master, xs = _mife_case(data)
    label = (7, "weights")
    y = data.integers(-BY, BY + 1, (4, 3))
    y[2] = 0  # slot 2 dropped out: its ciphertext is not needed
    cts = {i: master.slot_key(i).encrypt(xs[i], label) for i in (0, 1, 3)}
    key = master.keygen(y, label, rows=5)
    expected = sum(xs[i] @ y[i] for i in range(4))
    assert mife_decrypt(G, key, cts, master.result_bound) == expected.tolist()


def test_mife_extremes_and_bound_refusal(data):
    master = MIFEMasterKey.setup(2, 2, BX, BY, G)
    label = "r1"
    cts = {i: master.slot_key(i).encrypt(np.full((1, 2), -BX), label) for i in range(2)}
    key = master.keygen(np.full((2, 2), BY), label, rows=1)
    assert mife_decrypt(G, key, cts, master.result_bound) == [-4 * BX * BY]
    with pytest.raises(ValueError, match="above its bound"):
        master.slot_key(0).encrypt(np.full((1, 2), BX + 1), label)
    with pytest.raises(ValueError, match="above its bound"):
        master.keygen(np.full((2, 2), BY + 1), label)
    with pytest.raises(ValueError, match="not below q / 2"):
        MIFEMasterKey.setup(4, 1, 2**80, 2**80, G)


def test_mife_key_for_one_label_does_not_decrypt_another(data):
    master, xs = _mife_case(data, n_slots=3, dim=1, rows=4)
    cts_r2 = {i: master.slot_key(i).encrypt(xs[i], (2, "w")) for i in range(3)}
    key_r1 = mife_key_for_weights(master, [1, 1, 1], (1, "w"), rows=4)
    with pytest.raises(ValueError, match="label"):
        mife_decrypt(G, key_r1, cts_r2, master.result_bound)
    # an aggregator that relabels the ciphertexts gets nothing: the pads do not cancel
    forged = {i: dataclasses.replace(ct, label=(1, "w")) for i, ct in cts_r2.items()}
    with pytest.raises(ValueError, match="discrete log not in"):
        mife_decrypt(G, key_r1, forged, master.result_bound)


def test_mife_mixing_rounds_fails(data):
    master, xs = _mife_case(data, n_slots=2, dim=1, rows=3)
    round1 = {i: master.slot_key(i).encrypt(xs[i], "round-1") for i in range(2)}
    round2 = master.slot_key(1).encrypt(xs[1] + 1, "round-2")
    key = mife_key_for_weights(master, [1, 1], "round-1", rows=3)
    assert mife_decrypt(G, key, round1, master.result_bound) == (xs[0] + xs[1]).ravel().tolist()
    mixed = {0: round1[0], 1: dataclasses.replace(round2, label="round-1")}
    with pytest.raises(ValueError, match="discrete log not in"):
        mife_decrypt(G, key, mixed, master.result_bound)


def test_mife_missing_slot_and_wire(data):
    master, xs = _mife_case(data, n_slots=2, dim=2, rows=2)
    ct0 = master.slot_key(0).encrypt(xs[0], ("r", 1))
    key = master.keygen(np.ones((2, 2), dtype=np.int64), ("r", 1), rows=2)
    with pytest.raises(ValueError, match=r"no ciphertext for slots \[1\]"):
        mife_decrypt(G, key, {0: ct0}, master.result_bound)
    ct1 = master.slot_key(1).encrypt(xs[1], ("r", 1))
    wire = codec.decode(codec.encode({"c0": ct0.to_wire(), "c1": ct1.to_wire(), "k": key.to_wire()}))
    cts = {0: MIFECiphertext.from_wire(wire["c0"], G), 1: MIFECiphertext.from_wire(wire["c1"], G)}
    got = mife_decrypt(G, MIFEFunctionKey.from_wire(wire["k"], G), cts, master.result_bound)
    assert got == (xs[0].sum(axis=1) + xs[1].sum(axis=1)).tolist()


def test_mife_3072_bit_group(data):
    master = MIFEMasterKey.setup(3, 1, 2**10, 1, GROUP_3072)
    xs = [data.integers(-(2**10), 2**10 + 1, (6, 1)) for _ in range(3)]
    cts = {i: master.slot_key(i).encrypt(xs[i], (0, "w")) for i in range(3)}
    key = mife_key_for_weights(master, [1, 1, 1], (0, "w"), rows=6)
    assert mife_decrypt(GROUP_3072, key, cts, master.result_bound) == sum(xs).ravel().tolist()


def test_mife_offline_preparation_gives_the_same_results(data):
    master, xs = _mife_case(data, n_slots=3, dim=2, rows=4)
    label = (9, "w")
    y = data.integers(-BY, BY + 1, (3, 2))
    prepared = [master.slot_key(i).prepare(label, 4) for i in range(3)]
    cts = {i: master.slot_key(i).encrypt(xs[i], label, prepared=prepared[i]) for i in range(3)}
    expected = sum(xs[i] @ y[i] for i in range(3)).tolist()
    pads = master.prepare_pads(label, 4)
    group_key = master.keygen(y, label, rows=4, prepared=pads)
    assert group_key.z == () and len(group_key.zg) == 4
    assert mife_decrypt(G, group_key, cts, master.result_bound) == expected
    assert mife_decrypt(G, master.keygen(y, label, rows=4), cts, master.result_bound) == expected
    wire = codec.decode(codec.encode(group_key.to_wire()))
    assert mife_decrypt(G, MIFEFunctionKey.from_wire(wire, G), cts, master.result_bound) == expected
    with pytest.raises(ValueError, match="already used"):
        master.slot_key(0).encrypt(xs[0], label, prepared=prepared[0])
    with pytest.raises(ValueError, match="preparation is for"):
        master.slot_key(1).encrypt(xs[1], (10, "w"), prepared=master.slot_key(1).prepare(label, 4))
    with pytest.raises(ValueError, match="prepared pads are for"):
        master.keygen(y, (10, "w"), rows=4, prepared=pads)


# ---------------------------------------------------------------- secp256k1

E = SECP256K1


def wire(a):
    return E.element_to_wire(a)


def test_ec_group_laws_and_identity(data):
    a, b = (int(v) for v in data.integers(1, 2**62, 2))
    assert DEFAULT_GROUP is E and E.q.bit_length() == 256 and E.element_bytes == 33
    assert E.gpow(0) is None and E.gpow(E.q) is None and E.identity is None
    assert wire(E.gpow(1)) == bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
    assert wire(E.gpow(a + b)) == wire(E.op(E.gpow(a), E.gpow(b)))
    assert wire(E.pow(E.gpow(a), b)) == wire(E.gpow(a * b))
    assert wire(E.gpow(-a)) == wire(E.inv(E.gpow(a))) == wire(E.gpow(E.q - a))
    point = E.gpow(a)
    assert E.op(point, E.inv(point)) is None  # a point plus its negation: the point at infinity
    assert E.prod([point, None, E.gpow(-a)]) is None and E.prod([]) is None
    assert wire(E.op(None, point)) == wire(E.op(point, None)) == wire(E.prod([None, point])) == wire(point)
    assert E.pow(point, 0) is None and E.pow(point, E.q) is None and E.pow(None, 5) is None and E.inv(None) is None
    bases = [E.gpow(k + 2) for k in range(6)] + [None]
    exps = [3, -1, 0, 3, -7, 1, 4]
    expected = sum((k + 2) * e for k, e in enumerate(exps[:6]))
    assert wire(E.multi_exp(bases, exps)) == wire(E.gpow(expected))
    assert E.multi_exp([point, point], [1, -1]) is None
    for v in [0, 1, -1, 255, -256, 2**24 + 7, -(2**24) - 7, 2**32 - 1, -(2**32) + 1, 2**32, -(2**40), a, -b]:
        assert wire(E.gpow_small(v)) == wire(E.gpow(v)), v


def test_ec_wire_round_trip_and_refusals(data):
    elems = [E.gpow(int(v)) for v in data.integers(1, 2**62, 4)] + [None, E.gpow(-1)]
    blob = codec.decode(codec.encode(E.elements_to_wire(elems)))
    assert len(blob) == 33 * len(elems)
    back = E.elements_from_wire(blob, "entry")
    assert back[4] is None and [wire(v) for v in back] == [wire(v) for v in elems]
    assert wire(None) == bytes(33) and E.element_from_wire(bytes(33), "c0") is None
    for bad in (b"\x04" + blob[1:33], b"\x02" + bytes(31) + b"\x07", blob[:32], 12345):
        with pytest.raises(ValueError, match="c0 is not an element of group 'secp256k1'"):
            E.element_from_wire(bad, "c0")
    with pytest.raises(ValueError, match="entry"):
        E.elements_from_wire(blob[:-1], "entry")


def test_ec_dlog_zero_negatives_and_giant_steps():
    solver = DlogTable(E, 64)
    bound = 5000
    for v in [0, 1, -1, 64, -64, 65, -65, 129, -130, 4999, -5000, 5000, 1234, -4321]:
        assert solver.solve(E.gpow(v), bound) == v
    for v in (5001, -5001, E.q // 3):
        with pytest.raises(ValueError, match="not in"):
            solver.solve(E.gpow(v), bound)
    assert len(dlog_table(E, 1000).table) == 1024 + 1  # a point and its negation share an entry
    capped = dataclasses.replace(E, dlog_max_table=256)
    big = dlog_table(capped, 10**6)
    assert big.m == 256
    for v in [0, -256, 257, -(10**6), 10**6, 123_456, -654_321]:
        assert big.solve(capped.gpow(v), 10**6) == v
    with pytest.raises(ValueError, match="not below q / 2"):
        dlog_table(E, E.q // 2)


def test_ec_ipfe_zero_and_negative_inner_products(data):
    dim = 6
    master = IPFEMasterKey.setup(dim, BX, BY, E)
    y = data.integers(-BY, BY + 1, dim)
    for x in [np.zeros(dim, dtype=np.int64), np.full(dim, -BX), data.integers(-BX, BX + 1, dim)]:
        ct = IPFECiphertext.from_wire(codec.decode(codec.encode(master.public.encrypt(x).to_wire())), E)
        assert ipfe_decrypt(master.public, master.keygen(y), ct) == int(x @ y)
    x = np.array([3, 2, 0, 0, 0, 0])  # <x, y> = 0 with x != 0: decryption meets the identity
    assert ipfe_decrypt(master.public, master.keygen([2, -3, 5, 0, 0, 0]), master.public.encrypt(x)) == 0


def test_ec_mife_sums_wire_and_labels(data):
    master = MIFEMasterKey.setup(3, 2, BX, BY, E)
    xs = [data.integers(-BX // 2, BX // 2 + 1, (5, 2)) for _ in range(3)]
    xs[2] = -(xs[0] + xs[1])  # every row but the first sums to zero
    xs[2][0] = [BX, -BX]
    label = (3, "update")
    y = np.ones((3, 2), dtype=np.int64)
    cts = {i: master.slot_key(i).encrypt(xs[i], label) for i in range(3)}
    received = {i: MIFECiphertext.from_wire(codec.decode(codec.encode(ct.to_wire())), E) for i, ct in cts.items()}
    assert len(cts[0].to_wire()["c"]) == 33 * 10
    expected = sum(xs[i] @ y[i] for i in range(3)).tolist()
    assert expected[1:] == [0, 0, 0, 0]
    key = MIFEFunctionKey.from_wire(codec.decode(codec.encode(master.keygen(y, label, rows=5).to_wire())), E)
    bound = 6 * BX  # the largest |sum| here: smaller than result_bound, a smaller table
    assert mife_decrypt(E, key, received, bound) == expected
    pads = master.prepare_pads(label, 5)
    prepared = {i: master.slot_key(i).encrypt(xs[i], label, prepared=master.slot_key(i).prepare(label, 5)) for i in range(3)}
    assert mife_decrypt(E, master.keygen(y, label, rows=5, prepared=pads), prepared, bound) == expected
    # a key for one label does not decrypt another label's ciphertexts, relabelled or not
    one_dim = MIFEMasterKey.setup(3, 1, BX, BY, E)
    cts4 = {i: one_dim.slot_key(i).encrypt(xs[i][:, :1], (4, "update")) for i in range(3)}
    key3 = mife_key_for_weights(one_dim, [1, 1, 1], (3, "update"), rows=5)
    with pytest.raises(ValueError, match="label"):
        mife_decrypt(E, key3, cts4, bound)
    forged = {i: dataclasses.replace(ct, label=(3, "update")) for i, ct in cts4.items()}
    with pytest.raises(ValueError, match="discrete log not in"):
        mife_decrypt(E, key3, forged, bound)
