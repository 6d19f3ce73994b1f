"""The additively homomorphic interface, one test body per property, run under every scheme (OU and Paillier).

Plaintext references: integers are exact, so results are compared with ``==``; reals go through
fixed point at ``F`` fractional bits, so the reference applies the same rounding (``fixed``) and
products of two encoded reals are exact in the integers (``2F`` bits), hence ``==`` again.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from mpcml import codec, fixedpoint, he, ou
from mpcml.csprng import Csprng
from mpcml.he import MASK_SIGMA, EncryptedArray, MaskedPacking, PackedEncryptedArray

F = 16
KEY_BITS = 1024  # arithmetic only; the 2048-bit floor is lifted by tests/conftest.py


@pytest.fixture(scope="module", params=he.SCHEMES)
def keys(request):
    return he.generate_keypair(request.param, KEY_BITS)


def fixed(x, f=F):
    return np.rint(np.ldexp(np.asarray(x, dtype=np.float64), f)) / 2.0**f


def data(shape, seed=0, scale=10.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape)


def test_integers_exact_with_negatives_zero_and_the_largest_values(keys):
    pk, sk = keys
    top = pk.max_int
    ints = np.array([0, 1, -1, 2**60, -(2**60), top, -top, top - 1, -(top - 1)], dtype=object)
    enc = pk.encrypt_int(ints)
    assert enc.shape == ints.shape and enc.public_key.scheme == pk.scheme
    assert list(sk.decrypt_int(enc)) == list(ints)
    for bad in (top + 1, -top - 1):
        with pytest.raises(ValueError, match="max_int"):
            pk.encrypt_int(np.array([0, bad], dtype=object))
    with pytest.raises(ValueError, match="max_int"):
        pk.encrypt(np.array([2.0 ** (pk.plaintext_bits + 2 - F)]))
    with pytest.raises(ValueError, match="max_int"):
        enc + np.array([top + 1] * ints.size, dtype=object)


def test_overflow_of_a_homomorphic_result_is_detected(keys):
    pk, sk = keys
    top = pk.encrypt_int(np.array([pk.max_int, -pk.max_int], dtype=object))
    for overflowed in (top + top, top * 2, top + 1):  # twice max_int stays below the modulus minus max_int: detected
        with pytest.raises(OverflowError, match="overflow"):
            sk.decrypt_int(overflowed)


def test_arithmetic_matches_plaintext(keys):
    pk, sk = keys
    x, y, w = data((3, 4), 1), data((3, 4), 2), data((4,), 3)
    ex, ey = pk.encrypt(x), pk.encrypt(y)
    np.testing.assert_array_equal(sk.decrypt(ex + ey), fixed(x) + fixed(y))
    np.testing.assert_array_equal(sk.decrypt(ex - ey), fixed(x) - fixed(y))
    np.testing.assert_array_equal(sk.decrypt(-ex), -fixed(x))
    np.testing.assert_array_equal(sk.decrypt(w - ex), fixed(w) - fixed(x))
    np.testing.assert_array_equal(sk.decrypt(ex + 2.5), fixed(x) + 2.5)
    ints = np.arange(-6, 6).reshape(3, 4)
    np.testing.assert_array_equal(sk.decrypt(ex * ints), fixed(x) * ints)
    np.testing.assert_array_equal(sk.decrypt(ex * -7), fixed(x) * -7)
    np.testing.assert_array_equal(sk.decrypt(ex * w), fixed(x) * fixed(w))  # scales add: exact at 2F bits
    np.testing.assert_array_equal(sk.decrypt(ex.sum(0)), fixed(x).sum(0))
    np.testing.assert_array_equal(sk.decrypt(ex.sum()), fixed(x).sum())
    mixed = ex + pk.encrypt(y, frac_bits=4)
    np.testing.assert_array_equal(sk.decrypt(mixed), fixed(x) + fixed(y, 4))


def test_dense_and_sparse_products_match_plaintext(keys):
    pk, sk = keys
    rng = np.random.default_rng(6)
    v = data((40,), 7)
    ev = pk.encrypt(v)
    dense = rng.normal(size=(30, 40)) * (rng.random((30, 40)) < 0.3)
    sparse = sp.csr_matrix(dense)
    np.testing.assert_array_equal(sk.decrypt(sparse @ ev), sk.decrypt(dense @ ev))
    np.testing.assert_allclose(sk.decrypt(sparse @ ev), fixed(dense) @ fixed(v), rtol=0, atol=1e-9)
    binary = sp.random(20, 40, density=0.2, format="csr", random_state=1, data_rvs=lambda k: np.ones(k, dtype=np.int64))
    np.testing.assert_array_equal(sk.decrypt_int(binary.astype(np.int64) @ pk.encrypt_int(np.arange(40) - 20)),
                                  binary.toarray().astype(np.int64) @ (np.arange(40) - 20))
    m = data((3, 40), 8)
    w = rng.integers(-3, 4, size=(40, 2))
    np.testing.assert_array_equal(sk.decrypt(pk.encrypt(m) @ w), fixed(m) @ w)
    with pytest.raises(ValueError, match="mismatch"):
        ev @ np.ones((5, 2))


def test_products_cost_scales_with_non_zeros(keys):
    """A sparse product touches only the non-zeros: an all-zero matrix gives trivial ciphertexts (no work)."""
    pk, sk = keys
    ev = pk.encrypt(data((50,), 9))
    zero = sp.csr_matrix((10, 50))
    out = zero @ ev
    assert all(c == 1 for c in out.ciphertexts)
    np.testing.assert_array_equal(sk.decrypt(out), np.zeros(10))


def test_rerandomize_keeps_plaintexts_and_changes_ciphertexts(keys):
    pk, sk = keys
    ex = pk.encrypt(data((6,), 10))
    for randomness in he.RANDOMNESS:
        fresh = ex.rerandomize(randomness)
        assert all(a != b for a, b in zip(ex.ciphertexts, fresh.ciphertexts))
        np.testing.assert_array_equal(sk.decrypt(fresh), sk.decrypt(ex))
    with pytest.raises(ValueError, match="randomness"):
        ex.rerandomize("short")


def test_wire_round_trip(keys):
    pk, sk = keys
    received = he.public_key_from_wire(codec.decode(codec.encode(pk.to_wire())), pk.scheme)
    assert received == pk and type(received) is type(pk)
    x = data((2, 3), 11)
    back = EncryptedArray.from_wire(received, codec.decode(codec.encode(received.encrypt(x, frac_bits=20).to_wire())))
    np.testing.assert_array_equal(sk.decrypt(back), fixed(x, 20))


def test_malformed_ciphertexts_are_refused(keys):
    pk, _ = keys
    wire = pk.encrypt(np.ones((2, 2))).to_wire()
    for bad in (
        {**wire, "shape": [5]},
        {**wire, "shape": [2, -2]},
        {**wire, "c": [0] + wire["c"][1:]},
        {**wire, "c": [int(pk.modulus)] + wire["c"][1:]},
        {**wire, "c": [-5] + wire["c"][1:]},
        {**wire, "c": [True] + wire["c"][1:]},
        {**wire, "c": ["1"] + wire["c"][1:]},
        {**wire, "frac_bits": -1},
        {"shape": [1]},
        [1, 2],
    ):
        with pytest.raises(ValueError):
            EncryptedArray.from_wire(pk, bad)


def test_malformed_keys_are_refused(keys):
    pk, _ = keys
    wire = pk.to_wire()
    other = "paillier" if pk.scheme == "ou" else "ou"
    base = "g" if pk.scheme == "ou" else "h"
    for bad, match in (
        ({**wire, "scheme": "rsa"}, "scheme"),
        ({k: v for k, v in wire.items() if k != base}, pk.scheme if pk.scheme == "ou" else "Paillier"),
        ({**wire, "n": wire["n"] + 1}, "odd"),
        ({**wire, "n": 15}, "bits"),
        ({**wire, base: 1}, "order"),
        ({**wire, base: -1 % wire["n"]}, "order"),
        ({**wire, base: wire["n"] + 5}, "order"),
        ({**wire, base: "7"}, "int"),
    ) + ((({**wire, "n": 3**1000}, "square"),) if pk.scheme == "ou" else ()):
        with pytest.raises(ValueError, match=match):
            he.public_key_from_wire(bad)
    with pytest.raises(ValueError, match="expected"):
        he.public_key_from_wire(wire, other)


@pytest.mark.parametrize("pack", [False, True])
def test_he_to_shares_reconstructs(keys, pack):
    pk, sk = keys
    x = np.concatenate([data((20,), 13, scale=1e3), [0.0, -1.0, 2.0 ** (61 - F) - 1, -(2.0 ** (61 - F))]]).reshape(2, 12)
    masked, mine = he.mask_to_share(pk.encrypt(x), frac_bits_out=F, rng=Csprng(), pack=pack)
    per_ct = MaskedPacking.for_values(62, signed=True).slots(pk)
    assert masked.size == (math.ceil(24 / per_ct) if pack else 24)
    received = EncryptedArray.from_wire(pk, codec.decode(codec.encode(masked.to_wire())))
    theirs = he.unmask_share(sk, received, frac_bits_out=F, shape=x.shape if pack else None)
    np.testing.assert_array_equal(fixedpoint.decode(mine + theirs, F), fixed(x))


def test_masked_values_are_uniform_whatever_the_plaintext(keys):
    """What the key owner decrypts, ``y = v + 2^l + U``, has the same distribution for the smallest and
    largest ``v``: its top 4 bits (16 bins) pass a chi-square test for uniformity (99.99% level, 15
    degrees of freedom: 42.6) for both extremes. Dropping the mask, or masking with ``sigma`` bits too
    few, makes the bins collapse and the test fail."""
    pk, sk = keys
    value_bits, count = 8, 1600
    layout = MaskedPacking.for_values(value_bits, signed=True)
    top_shift = value_bits + MASK_SIGMA - 4  # U < 2^(l+sigma): its top 4 bits, shifted by at most 2^(l+1)
    for v in (-(2**value_bits) + 1, 2**value_bits - 1):
        enc = pk.encrypt_int(np.full(count, v, dtype=object))
        masks = he.statistical_masks(Csprng(), count, value_bits, signed=True)
        ys = layout.open(sk, layout.seal(pk, list(enc.ciphertexts), masks), count)
        assert [y - m for y, m in zip(ys, masks)] == [v] * count
        bins = np.bincount([y >> top_shift for y in ys], minlength=16)
        assert len(bins) == 16, "a masked value spilled past its slot"
        expected = count / 16
        assert ((bins - expected) ** 2 / expected).sum() < 42.6, bins


def test_masked_values_out_of_bound_are_refused(keys):
    pk, sk = keys
    layout = MaskedPacking.for_values(8, signed=True)
    enc = pk.encrypt_int(np.array([2**60], dtype=object))  # beyond |v| < 2^8 and beyond the 49-bit slot
    sealed = layout.seal(pk, list(enc.ciphertexts), he.statistical_masks(Csprng(), 1, 8, signed=True))
    with pytest.raises(ValueError, match="out of range|outside"):
        layout.open(sk, sealed, 1)


def test_packing_headroom(keys):
    pk, sk = keys
    value_bits = 48 - 3  # max_summands = 8 -> 3 bits of headroom
    top = (2 ** (value_bits - 1) - 1) / 2.0**F
    rows = np.array([[top, -top, 0.0] + list(data((30,), 14))])
    packed = he.encrypt_packed(pk, rows, slot_bits=48, max_summands=8)
    assert packed.ciphertexts.shape == (1, math.ceil(33 / (pk.plaintext_bits // 48)))
    eight = packed
    for _ in range(7):
        eight = eight + packed
    np.testing.assert_array_equal(he.decrypt_packed(sk, eight)[0], 8 * fixed(rows[0]))
    wire = codec.decode(codec.encode(eight.rerandomize().to_wire()))
    np.testing.assert_array_equal(he.decrypt_packed(sk, PackedEncryptedArray.from_wire(pk, wire)), he.decrypt_packed(sk, eight))
    with pytest.raises(ValueError, match="headroom"):
        eight + packed
    with pytest.raises(ValueError, match="packing range"):
        he.encrypt_packed(pk, np.array([top + 2.0**-F]), slot_bits=48, max_summands=8)
    with pytest.raises(ValueError, match="slot_bits"):
        he.encrypt_packed(pk, np.ones(2), slot_bits=pk.plaintext_bits + 1)


def test_schemes_do_not_mix():
    (opk, osk), (ppk, psk) = (he.generate_keypair(s, KEY_BITS) for s in ("ou", "paillier"))
    with pytest.raises(ValueError, match="different public key"):
        opk.encrypt(np.ones(2)) + ppk.encrypt(np.ones(2))
    with pytest.raises(ValueError, match="different public key"):
        psk.decrypt(opk.encrypt(np.ones(2)))
    with pytest.raises(ValueError, match="he must be one of"):
        he.check_scheme("elgamal")
    with pytest.raises(ValueError, match="scheme must be one of"):
        he.generate_keypair("elgamal", 2048)


def test_ou_structure_and_fast_decryption():
    """n = p^2 q with |p| = |q| = |n|/3, p - 1 divisible by the 2λ-bit prime t, h = g^n; decryption by t."""
    pk, sk = ou.generate_keypair(KEY_BITS)
    p, q, t = int(sk._p), int(sk._q), int(sk._t)
    assert p * p * q == int(pk.n) and pk.n.bit_length() == KEY_BITS
    assert p.bit_length() == ou.prime_bits(KEY_BITS) and p.bit_length() - 2 <= q.bit_length() <= p.bit_length()
    assert (p - 1) % t == 0 and t.bit_length() == 2 * ou.security_bits(KEY_BITS)
    assert p > 3 * pk.max_int and int(pk.g) % p != 1 and int(pk.h) == pow(int(pk.g), int(pk.n), int(pk.n))
    assert ou.security_bits(2048) == 112 and ou.security_bits(3072) == 128 and ou.prime_bits(2048) == 683
    assert pk.plaintext_bits == ou.prime_bits(KEY_BITS) - 2


def test_key_owner_encryption_matches_public_encryption(keys):
    """The key owner's CRT encryption (both schemes) gives ciphertexts of the same plaintexts, fresh each time."""
    pk, sk = keys
    v = np.array([[0, 1, -1], [2**200, -(2**200), pk.max_int]], dtype=object)
    sk.prepare()
    owner = sk.encrypt_int(v, frac_bits=3)
    assert owner.shape == (2, 3) and owner.frac_bits == 3
    np.testing.assert_array_equal(sk.decrypt_int(owner), v)
    np.testing.assert_array_equal(sk.decrypt_int(owner - pk.encrypt_int(v, frac_bits=3)), np.zeros((2, 3), dtype=int))
    assert len({int(c) for c in sk.encrypt_int(np.zeros(50, dtype=np.int64)).ciphertexts}) == 50


def test_ou_key_owner_ciphertexts_are_exactly_g_to_the_v_times_h_to_the_r(monkeypatch):
    """The key owner's OU encryption (mod ``p^2`` as ``(1 + v L p) g2^((v + n r) mod t)``, mod ``q`` by combs of
    ``g``, ``g^-1`` and ``h``) gives exactly ``g^v h^r`` for the exponent ``r`` it draws, as the public encryption
    does: the same distribution, not merely a ciphertext that decrypts right (a wrong sign or ``L`` would decrypt
    right mod ``p^2`` but leave the two CRT halves with different randomness)."""
    from mpcml.he import _modexp

    pk, sk = ou.generate_keypair(KEY_BITS)
    v = [0, 1, -1, 5, -(2**300), pk.max_int, -pk.max_int]
    drawn = [int(r) for r in _modexp.random_exponents(len(v), pk.short_exponent_bits)]
    monkeypatch.setattr(_modexp, "random_exponents", lambda count, bits: drawn[:count])
    n, g, h = int(pk.n), int(pk.g), int(pk.h)
    expected = [pow(g, x, n) * pow(h, r, n) % n for x, r in zip(v, drawn)]
    assert [int(c) for c in sk.encrypt_int(np.array(v, dtype=object)).ciphertexts] == expected
    assert [int(c) for c in pk.encrypt_int(np.array(v, dtype=object)).ciphertexts] == expected


@pytest.mark.parametrize("bits", [KEY_BITS, 2048])
def test_ou_subgroup_rerandomiser_is_64_bits_beyond_the_order_of_h(bits):
    """``"subgroup"`` draws ``h^r`` with ``r`` at least 64 bits longer than ``ord(h)``, which divides
    ``lcm(t, q - 1)`` for our keys (so ``h^r`` is within ``2^-64`` of uniform on ``<h>``), and far shorter than
    ``"uniform"``'s ``|n| + 64`` bits; the exponents drawn have that length."""
    from math import lcm

    from mpcml.he import _modexp

    pk, sk = ou.generate_keypair(bits)
    t, q = int(sk._t), int(sk._q)
    assert pow(int(pk.h), lcm(t, q - 1), int(pk.n)) == 1
    subgroup, uniform = pk._hiding_bits("subgroup"), pk._hiding_bits("uniform")
    assert lcm(t, q - 1).bit_length() + 64 <= subgroup <= lcm(t, q - 1).bit_length() + 66
    assert uniform == bits + 64 and subgroup < uniform
    if bits == 2048:
        assert subgroup == 972
    drawn = []
    original = _modexp.random_exponents
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_modexp, "random_exponents", lambda count, width: drawn.append(width) or original(count, width))
        pk.obfuscators(2, randomness="subgroup")
        pk.obfuscators(2, randomness="uniform")
    assert drawn == [subgroup, uniform]


def test_worker_processes_compute_what_one_process_computes(keys, monkeypatch):
    """Batches split over a worker process (thresholds lowered so small test batches split) decrypt to
    the same plaintexts: encryption (comb tables), per-element products and sparse products."""
    from mpcml.he import _modexp

    pk, sk = keys
    monkeypatch.setattr(_modexp, "PROCESS_MIN_WORK", 0)
    monkeypatch.setattr(_modexp, "PROCESS_MIN", 2)
    monkeypatch.setattr(_modexp, "THREAD_MIN_WORK", 0)
    x = data((40,), 19)
    ints = np.arange(-20, 20)
    matrix = sp.random(6, 40, density=0.5, format="csr", random_state=4, data_rvs=lambda k: np.arange(1, k + 1) % 7 - 3)
    results = {}
    for count in (1, 2):
        _modexp.set_processes(count)
        try:
            enc = pk.encrypt(x)
            results[count] = [sk.decrypt(enc), sk.decrypt(enc * ints), sk.decrypt(matrix @ enc), sk.decrypt_int(sk.encrypt_int(ints)).astype(np.int64)]
        finally:
            _modexp.set_processes(None)
    expected = [fixed(x), fixed(x) * ints, matrix.toarray() @ fixed(x), ints]
    for count in (1, 2):
        for got, want in zip(results[count], expected):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_products_by_repeated_integers_go_to_grouped_threads_and_match_powmod(keys, monkeypatch):
    """Per-element products whose exponents repeat (negative, zero and one among them) run as one GIL-free call per
    exponent on two threads, not in a worker process, and give exactly ``powmod`` of each pair; distinct exponents
    still go to the worker processes."""
    from gmpy2 import powmod

    from mpcml.he import _modexp

    pk, _ = keys
    monkeypatch.setattr(_modexp, "PROCESS_MIN_WORK", 0)
    monkeypatch.setattr(_modexp, "PROCESS_MIN", 2)
    bases = list(pk.encrypt(data((48,), 7)).ciphertexts)
    split = []
    monkeypatch.setattr(_modexp, "split_map", lambda task, items, *rest, **kw: split.append(task) or _modexp.TASKS[task](items, *rest))
    repeated = [(-3, 0, 1, 5, 1000, -1)[k % 6] for k in range(48)]
    distinct = list(range(-24, 24))
    m = pk.modulus
    _modexp.set_processes(2)
    try:
        assert _modexp.powmod_pairs(bases, repeated, m) == [powmod(b, e, m) for b, e in zip(bases, repeated)]
        assert split == []
        assert _modexp.powmod_pairs(bases, distinct, m) == [powmod(b, e, m) for b, e in zip(bases, distinct)]
        assert split == ["powmod_pairs"]
    finally:
        _modexp.set_processes(None)


def test_sparse_products_of_0_1_data_count_one_multiplication_per_non_zero(keys, monkeypatch):
    """A 0/1 sparse product costs one multiplication per non-zero, so one of 5,000 non-zeros stays in this process
    (shipping it to a worker cost more than computing it: CAESAR's epoch on two cores took 21 s against 15 s on one),
    while the same pattern with integer data (a short exponentiation per non-zero) goes to the workers."""
    from mpcml.he import _modexp

    pk, _ = keys
    enc = pk.encrypt_int(np.arange(1, 101))
    binary = sp.random(200, 100, density=0.25, format="csr", random_state=5, dtype=np.int64, data_rvs=np.ones)
    integers = binary.copy()
    integers.data = np.arange(integers.nnz) % 5 + 2
    split = []
    monkeypatch.setattr(_modexp, "split_map", lambda task, items, *rest, **kw: split.append(task) or _modexp.TASKS[task](items, *rest))
    _modexp.set_processes(2)
    try:
        binary @ enc
        assert split == []
        integers @ enc
        assert split == ["combine"]
    finally:
        _modexp.set_processes(None)


def test_worker_packing_round_trips_and_leaves_other_values_alone():
    """Items and results cross to the worker processes as fixed-width byte columns when they are plain integers
    (signs apart); anything else (nested jobs, a column mixing integers and None) keeps the codec's own form."""
    from gmpy2 import mpz

    from mpcml.he._worker import pack, unpack

    big = [mpz(3) ** 1290 + k for k in range(5)]
    assert unpack(pack(big)) == big
    rows = [(None, 1, 2**60 + k, int(big[k])) for k in range(5)]
    assert unpack(pack(rows)) == rows and isinstance(pack(rows), dict)
    signed = [(big[0], -1), (big[1], 2), (big[2], -(2**70))]
    assert unpack(pack(signed)) == signed
    for untouched in ([[(1, 2)]], [], [1, None], [(1, 2), (3,)]):
        assert pack(untouched) is untouched
