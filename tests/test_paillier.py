"""Paillier on arrays: exact against plaintext (up to fixed point), phe interop, HE->SS, packing."""

from __future__ import annotations

import gmpy2
import numpy as np
import phe
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcml import codec, fixedpoint
from mpcml.csprng import Csprng
from mpcml.paillier import (
    MASK_SIGMA,
    RANDOMNESS,
    EncryptedArray,
    PackedEncryptedArray,
    PrivateKey,
    PublicKey,
    decrypt_packed,
    encrypt_packed,
    generate_keypair,
    mask_to_share,
    unmask_share,
)

F = 16
ULP = 2.0**-F


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024)


@pytest.fixture(scope="module")
def other_keys():
    return generate_keypair(1024)


def fixed(x, f=F):
    """What fixed-point encoding at f bits keeps of x."""
    return np.rint(np.ldexp(np.asarray(x, dtype=np.float64), f)) / 2.0**f


def data(shape, seed=0, scale=10.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape)


def test_encrypt_decrypt_exact_with_negatives_and_zero(keys):
    pk, sk = keys
    x = np.array([[0.0, -0.0, 1.5, -2.25], [123.456, -987.654321, 1e-6, -3e-5]])
    enc = pk.encrypt(x)
    assert enc.shape == x.shape and enc.frac_bits == F
    np.testing.assert_array_equal(sk.decrypt(enc), fixed(x))
    ints = np.array([0, -1, 1, 2**200, -(2**300)], dtype=object)
    assert list(sk.decrypt_int(pk.encrypt_int(ints))) == list(ints)
    np.testing.assert_array_equal(sk.decrypt(pk.encrypt(np.array([3, -4]), frac_bits=8)), [3.0, -4.0])


def test_largest_values_and_one_past(keys):
    pk, sk = keys
    top = np.array([pk.max_int, -pk.max_int], dtype=object)
    assert list(sk.decrypt_int(pk.encrypt_int(top))) == [pk.max_int, -pk.max_int]
    for bad in (pk.max_int + 1, -pk.max_int - 1):
        with pytest.raises(ValueError, match="max_int"):
            pk.encrypt_int(np.array([0, bad], dtype=object))
    with pytest.raises(ValueError, match="max_int"):
        pk.encrypt(np.array([2.0 ** (pk.bits - F - 1)]))
    with pytest.raises(ValueError, match="max_int"):
        pk.encrypt(np.array([1e308]))
    with pytest.raises(ValueError, match="NaN"):
        pk.encrypt(np.array([1.0, np.nan]))
    with pytest.raises(TypeError, match="values"):
        pk.encrypt(np.array(["a"]))
    with pytest.raises(TypeError, match="integer array"):
        pk.encrypt_int(np.array([1.5]))


def test_known_bound_decryption(keys):
    pk, sk = keys
    x = np.concatenate([data((30,), 18, scale=1e6), [0.0, -(2.0**40), 2.0**40]])
    enc = pk.encrypt(x)
    np.testing.assert_array_equal(sk.decrypt(enc, max_bits=57), fixed(x))
    np.testing.assert_array_equal(sk.decrypt(enc, max_bits=57), sk.decrypt(enc))
    with pytest.raises(OverflowError, match="bound"):
        sk.decrypt(enc, max_bits=40)
    with pytest.raises(ValueError, match="max_bits"):
        sk.decrypt(enc, max_bits=sk.max_bound_bits + 1)
    big = pk.encrypt_int(np.array([pk.max_int // 2], dtype=object))
    with pytest.raises(OverflowError):
        sk.decrypt_int(big, max_bits=100)


BIG = st.integers(min_value=-(2**300), max_value=2**300)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(BIG, BIG, st.integers(-(2**40), 2**40)), min_size=1, max_size=6))
def test_integer_arithmetic_is_exact(keys, rows):
    pk, sk = keys
    a, b, k = (np.array(col, dtype=object) for col in zip(*rows))
    ea, eb = pk.encrypt_int(a), pk.encrypt_int(b)
    assert list(sk.decrypt_int(ea + eb * k - a)) == list(b * k)
    assert sk.decrypt_int((ea - eb).sum(0))[()] == sum(a) - sum(b)


def test_homomorphic_overflow_is_detected(keys):
    pk, sk = keys
    enc = pk.encrypt_int(np.array([pk.max_int], dtype=object))
    with pytest.raises(OverflowError, match="overflow"):
        sk.decrypt_int(enc + enc)


def test_add_sub_neg_with_encrypted_and_plain(keys):
    pk, sk = keys
    x, y, w = data((3, 4), 1), data((3, 4), 2), data((4,), 3)
    ex, ey = pk.encrypt(x), pk.encrypt(y)
    np.testing.assert_array_equal(sk.decrypt(ex + ey), fixed(x) + fixed(y))
    np.testing.assert_array_equal(sk.decrypt(ex - ey), fixed(x) - fixed(y))
    np.testing.assert_array_equal(sk.decrypt(-ex), -fixed(x))
    np.testing.assert_array_equal(sk.decrypt(ex + w), fixed(x) + fixed(w))
    np.testing.assert_array_equal(sk.decrypt(w - ex), fixed(w) - fixed(x))
    np.testing.assert_array_equal(sk.decrypt(2.5 + ex), fixed(x) + 2.5)
    np.testing.assert_array_equal(sk.decrypt(ex - 3), fixed(x) - 3)
    coarse = pk.encrypt(y, frac_bits=4)
    mixed = ex + coarse
    assert mixed.frac_bits == F
    np.testing.assert_array_equal(sk.decrypt(mixed), fixed(x) + fixed(y, 4))


def test_scalar_and_elementwise_products(keys):
    pk, sk = keys
    x = data((2, 5), 4)
    ex = pk.encrypt(x)
    ints = np.arange(-5, 5).reshape(2, 5)
    np.testing.assert_array_equal(sk.decrypt(ex * ints), fixed(x) * ints)
    np.testing.assert_array_equal(sk.decrypt(ints * ex), fixed(x) * ints)
    assert (ex * ints).frac_bits == F and (ex * -7).frac_bits == F
    np.testing.assert_array_equal(sk.decrypt(ex * -7), fixed(x) * -7)
    w = data((5,), 5, scale=1.0)
    prod = ex * w
    assert prod.frac_bits == 2 * F
    np.testing.assert_array_equal(sk.decrypt(prod), fixed(x) * fixed(w))
    np.testing.assert_array_equal(sk.decrypt(ex.mul(-0.75, frac_bits=2)), fixed(x) * -0.75)
    with pytest.raises(TypeError, match="plaintext"):
        ex.mul(ex)


def test_dense_and_sparse_matmul_match_plaintext(keys):
    pk, sk = keys
    rng = np.random.default_rng(6)
    v = data((6,), 7)
    ev = pk.encrypt(v)
    dense = rng.normal(size=(4, 6)) * (rng.random((4, 6)) < 0.4)
    sparse = sp.csr_matrix(dense)
    expected = fixed(dense) @ fixed(v)
    np.testing.assert_allclose(sk.decrypt(sparse @ ev), expected, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(sk.decrypt(sparse @ ev), sk.decrypt(dense @ ev))
    np.testing.assert_array_equal(sk.decrypt(ev @ dense.T), sk.decrypt(sparse @ ev))
    binary = sp.random(5, 6, density=0.5, format="csc", random_state=1, dtype=np.int64, data_rvs=lambda k: np.ones(k, dtype=np.int64))
    exact = binary @ ev
    assert exact.frac_bits == F
    np.testing.assert_array_equal(sk.decrypt(exact), binary.toarray() @ fixed(v))
    m = data((3, 6), 8)
    em = pk.encrypt(m)
    w = rng.integers(-3, 4, size=(6, 2))
    np.testing.assert_array_equal(sk.decrypt(em @ w), fixed(m) @ w)
    np.testing.assert_array_equal(sk.decrypt(sp.csr_matrix(w.T) @ em.T), (fixed(m) @ w).T)
    with pytest.raises(ValueError, match="mismatch"):
        ev @ np.ones((5, 2))


def test_tall_sparse_matrix_uses_column_tables(keys):
    pk, sk = keys
    v = data((6,), 17)
    tall = sp.random(40, 6, density=0.5, format="csr", random_state=2, data_rvs=lambda k: np.random.default_rng(3).normal(scale=30, size=k))
    ev = pk.encrypt(v)
    np.testing.assert_allclose(sk.decrypt(tall @ ev), fixed(tall.toarray()) @ fixed(v), rtol=0, atol=1e-6)


def test_long_rows_use_bucket_multi_exponentiation(keys):
    pk, sk = keys
    rng = np.random.default_rng(15)
    v = data((60,), 16)
    w = rng.normal(size=(60, 3)) * 50
    w[::7] = 0
    w[1, 0], w[2, 1] = 1.0 / 2**F, -1.0 / 2**F
    ev = pk.encrypt(v)
    np.testing.assert_allclose(sk.decrypt(ev @ w), fixed(v) @ fixed(w), rtol=0, atol=1e-6)
    rows = rng.integers(-(2**40), 2**40, size=(2, 60))
    np.testing.assert_array_equal(sk.decrypt_int(sp.csr_matrix(rows) @ pk.encrypt_int(np.arange(60))), rows @ np.arange(60))


def test_sum_indexing_reshape(keys):
    pk, sk = keys
    x = data((3, 4), 9)
    ex = pk.encrypt(x)
    np.testing.assert_allclose(sk.decrypt(ex.sum()), fixed(x).sum(), atol=1e-9)
    np.testing.assert_allclose(sk.decrypt(ex.sum(0)), fixed(x).sum(0), atol=1e-9)
    np.testing.assert_allclose(sk.decrypt(ex.sum(axis=1)), fixed(x).sum(1), atol=1e-9)
    np.testing.assert_array_equal(sk.decrypt(ex[1:, ::2]), fixed(x)[1:, ::2])
    np.testing.assert_array_equal(sk.decrypt(ex.T.reshape(2, 6)), fixed(x).T.reshape(2, 6))
    both = EncryptedArray.concatenate([ex, pk.encrypt(x, frac_bits=8)])
    np.testing.assert_array_equal(sk.decrypt(both), np.concatenate([fixed(x), fixed(x, 8)]))
    assert sk.decrypt(pk.encrypt(np.zeros((0, 2))).sum(0)).tolist() == [0.0, 0.0]


def test_key_owner_encryption_matches_public_encryption(keys):
    pk, sk = keys
    v = np.array([[0, 1, -1], [2**200, -(2**300), 12345]], dtype=object)
    sk.prepare()
    pk.prepare("subgroup")
    owner = sk.encrypt_int(v, frac_bits=3)
    assert owner.shape == (2, 3) and owner.frac_bits == 3
    np.testing.assert_array_equal(sk.decrypt_int(owner), v)
    np.testing.assert_array_equal(sk.decrypt_int(owner + pk.encrypt_int(v, frac_bits=3)), 2 * v)
    assert len({int(c) for c in sk.encrypt_int(np.zeros(50, dtype=np.int64)).ciphertexts}) == 50
    with pytest.raises(TypeError, match="ints"):
        sk.encrypt_int(np.array([0.5]))
    with pytest.raises(ValueError, match="randomness"):
        pk.prepare("short")


def test_rerandomize_and_full_randomness(keys):
    pk, sk = keys
    x = data((5,), 10)
    ex = pk.encrypt(x)
    for randomness in RANDOMNESS:
        fresh = ex.rerandomize(randomness)
        assert all(a != b for a, b in zip(ex.ciphertexts, fresh.ciphertexts))
        np.testing.assert_array_equal(sk.decrypt(fresh), sk.decrypt(ex))
    textbook = PublicKey(pk.phe, short_exponent_bits=None)
    np.testing.assert_array_equal(sk.decrypt(textbook.encrypt(x)), fixed(x))
    again = pk.encrypt(x)
    assert len(set(map(int, again.ciphertexts)) | set(map(int, ex.ciphertexts))) == 10


def test_rerandomize_hides_the_computation_from_the_key_owner(keys):
    pk, sk = keys
    p, q = int(sk.phe.p), int(sk.phe.q)
    trivial_zero = EncryptedArray(pk, np.array([1] * 64, dtype=object), 0)

    def cosets(enc):
        return {(gmpy2.legendre(int(c) % p, p), gmpy2.legendre(int(c) % q, q)) for c in enc.ciphertexts}

    assert cosets(trivial_zero.rerandomize()) == {(1, 1), (1, -1), (-1, 1), (-1, -1)}
    assert len(cosets(trivial_zero.rerandomize("djn"))) <= 2  # why DJN randomness is not used here


def test_subgroup_randomness_hides_computations_on_djn_ciphertexts_only(keys):
    """Re-randomising within <hs>: the coset seen by the key owner no longer depends on the multiplier
    for DJN inputs under the owner's base (what CAESAR and SecureBoost send), but it does for inputs
    with uniform randomness: hence "uniform" stays the default."""
    pk, sk = keys
    p, q = int(sk.phe.p), int(sk.phe.q)
    peer_key = PublicKey.from_wire(codec.decode(codec.encode(pk.to_wire())))
    assert peer_key.djn_base == pk.djn_base

    def coset(c):
        return gmpy2.legendre(int(c) % p, p), gmpy2.legendre(int(c) % q, q)

    def seen(inputs, multiplier):
        computed = inputs.mul(np.full(inputs.shape, multiplier, dtype=object))
        fresh = computed.rerandomize("subgroup")
        np.testing.assert_array_equal(sk.decrypt_int(fresh), sk.decrypt_int(computed))
        return [coset(c) for c in fresh.ciphertexts]

    djn = peer_key.encrypt_int(np.zeros(64, dtype=np.int64))
    subgroup = set(seen(djn, 1))  # the cosets of <hs>: {(1, 1), (-1|p, -1|q)}
    assert set(seen(djn, 2)) == subgroup
    owner = sk.encrypt_int(np.zeros(64, dtype=np.int64))  # the key owner's CRT encryption: same subgroup
    assert set(seen(owner, 1)) == set(seen(owner, 2)) == subgroup
    uniform = peer_key.encrypt_int(np.zeros(200, dtype=np.int64), randomness="uniform")
    outside = next(c for c in [(1, -1), (-1, 1), (-1, -1)] if c not in subgroup)
    odd = EncryptedArray(pk, np.array([c for c in uniform.ciphertexts if coset(c) == outside][:32], dtype=object), 0)
    assert set(seen(odd, 1)).isdisjoint(seen(odd, 2))  # the coset reveals the multiplier's parity
    with pytest.raises(ValueError, match="randomness"):
        pk.obfuscators(1, randomness="short")


def test_wire_round_trip_and_malformed(keys):
    pk, sk = keys
    x = data((2, 3), 11)
    ex = pk.encrypt(x, frac_bits=20)
    pk2 = PublicKey.from_wire(codec.decode(codec.encode(pk.to_wire())))
    back = EncryptedArray.from_wire(pk2, codec.decode(codec.encode(ex.to_wire())))
    assert back.shape == (2, 3) and back.frac_bits == 20
    np.testing.assert_array_equal(sk.decrypt(back), fixed(x, 20))
    wire = ex.to_wire()
    for bad in (
        {**wire, "shape": [7]},
        {**wire, "c": [0] + wire["c"][1:]},
        {**wire, "c": [int(pk.nsquare)] + wire["c"][1:]},
        {"shape": [1]},
        [1, 2],
    ):
        with pytest.raises(ValueError):
            EncryptedArray.from_wire(pk, bad)
    with pytest.raises(ValueError):
        PublicKey.from_wire({"n": 15})
    with pytest.raises(ValueError):
        PublicKey.from_wire({**pk.to_wire(), "h": 1})
    with pytest.raises(ValueError, match="n"):
        PublicKey.from_wire({"m": 3})


def test_phe_interop_both_ways(keys):
    pk, sk = keys
    values = [1.25, -3, 0, 7.0625, -1e3]
    from_phe = EncryptedArray.from_phe([pk.phe.encrypt(v) for v in values])
    np.testing.assert_array_equal(sk.decrypt(from_phe), values)
    assert isinstance(pk.phe.encrypt(0.1), phe.EncryptedNumber)
    np.testing.assert_allclose(sk.decrypt(EncryptedArray.from_phe([pk.phe.encrypt(0.1)])), [0.1], atol=1e-12)
    x = data((4,), 12)
    ours = pk.encrypt(x, frac_bits=18)
    assert [sk.phe.decrypt(e) for e in ours.to_phe()] == list(fixed(x, 18))
    raw_pub, raw_priv = phe.generate_paillier_keypair(n_length=1024)
    wrapped = PublicKey(raw_pub).encrypt(x)
    assert [raw_priv.decrypt(e) for e in wrapped.to_phe()] == list(fixed(x))
    np.testing.assert_array_equal(PrivateKey(raw_priv).decrypt(EncryptedArray.from_phe([raw_pub.encrypt(1.5)])), [1.5])
    mixed = ours.to_phe()[0] + pk.phe.encrypt(2.5)
    assert sk.phe.decrypt(mixed) == fixed(x, 18)[0] + 2.5
    assert sk.decrypt(EncryptedArray.from_phe([mixed], pk))[0] == fixed(x, 18)[0] + 2.5


def test_key_mismatch_is_refused(keys, other_keys):
    (pk, _), (pk2, sk2) = keys, other_keys
    ex = pk.encrypt(np.ones(2))
    with pytest.raises(ValueError, match="different public key"):
        ex + pk2.encrypt(np.ones(2))
    with pytest.raises(ValueError, match="different public key"):
        sk2.decrypt(ex)


@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("frac_in, frac_out", [(16, 16), (32, 16), (8, 16)])
def test_mask_to_share_reconstructs(keys, frac_in, frac_out, pack):
    pk, sk = keys
    x = np.concatenate([data((20,), 13, scale=1e3), [0.0, -1.0, 2.0 ** (61 - frac_out) - 1, -(2.0 ** (61 - frac_out))]])
    x = x.reshape(2, 12)
    enc = pk.encrypt(x, frac_bits=frac_in)
    masked, mine = mask_to_share(enc, frac_bits_out=frac_out, rng=Csprng(), pack=pack)
    width = 62 + max(frac_in - frac_out, 0) + MASK_SIGMA + 1  # |x| < 2^(62 + shift), masks 40 bits wider, one carry bit
    assert masked.size == (-(-24 // (pk.plaintext_bits // width)) if pack else 24)
    wire = codec.decode(codec.encode(masked.to_wire()))
    received = EncryptedArray.from_wire(pk, wire)
    theirs = unmask_share(sk, received, frac_bits_out=frac_out, shape=x.shape if pack else None)
    got = fixedpoint.decode(mine + theirs, frac_out)
    slack = 2.0**-frac_out if frac_in > frac_out else 0.0
    assert np.all(np.abs(got - fixed(fixed(x, frac_in), frac_out)) <= slack + 1e-9 * np.abs(x))
    assert len(set(mine.ravel().tolist())) == mine.size


def test_mask_to_share_bounds(keys):
    pk, sk = keys
    enc = pk.encrypt(np.array([2.0**50]))
    masked, _ = mask_to_share(enc, bound_bits=60)
    with pytest.raises(ValueError, match="out of range"):
        unmask_share(sk, masked, bound_bits=40)
    packed, _ = mask_to_share(pk.encrypt(np.ones(30)), pack=True)
    with pytest.raises(ValueError, match="packed values"):
        unmask_share(sk, packed, shape=(40,))
    with pytest.raises(ValueError, match="do not fit"):
        mask_to_share(enc, bound_bits=pk.bits - MASK_SIGMA)
    with pytest.raises(TypeError, match="enc"):
        mask_to_share(np.ones(2))


def test_packing_round_trip_sums_and_headroom(keys):
    pk, sk = keys
    rows = data((5, 40), 14)
    packed = encrypt_packed(pk, rows, slot_bits=48, max_summands=8)
    slots = pk.plaintext_bits // 48
    assert packed.shape == (5, 40) and packed.ciphertexts.shape == (5, -(-40 // slots))
    np.testing.assert_array_equal(decrypt_packed(sk, packed), fixed(rows))
    np.testing.assert_allclose(decrypt_packed(sk, packed.sum())[0], fixed(rows).sum(0), atol=1e-9)
    pair = packed[[0, 1]] + packed[[2, 3]]
    np.testing.assert_allclose(decrypt_packed(sk, pair), fixed(rows[:2]) + fixed(rows[2:4]), atol=1e-9)
    wire = codec.decode(codec.encode(pair.rerandomize().to_wire()))
    np.testing.assert_allclose(decrypt_packed(sk, PackedEncryptedArray.from_wire(pk, wire)), decrypt_packed(sk, pair))
    eight = packed.sum() + packed[:3].sum()
    np.testing.assert_allclose(decrypt_packed(sk, eight)[0], fixed(rows).sum(0) + fixed(rows[:3]).sum(0), atol=1e-9)
    with pytest.raises(ValueError, match="headroom"):
        eight + packed[:1]


def test_packing_range_is_exact(keys):
    pk, sk = keys
    value_bits = 48 - 3  # max_summands = 8 -> ceil(log2 8) = 3 bits of headroom
    top = (2 ** (value_bits - 1) - 1) / 2.0**F
    packed = encrypt_packed(pk, np.array([top, -top, 0.0]), slot_bits=48, max_summands=8)
    eight = packed
    for _ in range(7):
        eight = eight + packed
    np.testing.assert_array_equal(decrypt_packed(sk, eight)[0], [8 * top, -8 * top, 0.0])
    with pytest.raises(ValueError, match="packing range"):
        encrypt_packed(pk, np.array([top + ULP]), slot_bits=48, max_summands=8)
    with pytest.raises(ValueError, match="slot_bits"):
        encrypt_packed(pk, np.ones(2), slot_bits=4)
    with pytest.raises(ValueError, match="max_summands"):
        encrypt_packed(pk, np.ones(2), slot_bits=16, max_summands=1 << 15)
