"""Lagrange coded computing: exact decoding against plaintext, privacy of T shares, parameter checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import chisquare

from mpcml.csprng import Csprng
from mpcml.lagrange import (
    DEFAULT_PRIME,
    LagrangeCode,
    crt_combine,
    dequantize,
    field_matmul,
    lagrange_matrix,
    quantize,
    random_field,
    to_signed,
)

P = DEFAULT_PRIME
MIN_P_VALUE = 1e-6  # chi-square tests: false alarm once in a million runs


def reference_matmul(a: np.ndarray, b: np.ndarray, prime: int) -> np.ndarray:
    """Exact ``a @ b mod prime`` in Python integers."""
    a_obj, b_obj = a.astype(object), b.astype(object)
    return ((a_obj @ b_obj) % prime).astype(np.int64)


@pytest.mark.parametrize("shape", [((3, 5000), (5000, 4)), ((40, 7), (7, 2)), ((5, 9), (9,)), ((2, 3), (3, 300))])
def test_field_matmul_matches_python_integers(shape):
    data = np.random.default_rng(1)
    a = data.integers(0, P, shape[0])
    b = data.integers(0, P, shape[1])
    assert np.array_equal(field_matmul(a, b, P), reference_matmul(a, b, P))


def test_field_matmul_largest_elements_and_small_prime():
    a = np.full((4, 3000), P - 1)
    b = np.full((3000, 2), P - 1)
    assert np.array_equal(field_matmul(a, b, P), reference_matmul(a, b, P))
    a, b = np.full((2, 5), 100), np.arange(5)
    assert np.array_equal(field_matmul(a, b, 101), reference_matmul(a, b, 101))


def test_random_field_is_uniform():
    values = random_field(Csprng(), 110_000, 11)
    assert values.dtype == np.int64 and values.min() >= 0 and values.max() <= 10
    assert chisquare(np.bincount(values, minlength=11)).pvalue > MIN_P_VALUE
    big = random_field(Csprng(), 1000, P)
    assert big.min() >= 0 and big.max() < P


def test_quantize_roundtrip_negatives_zero_and_range_limits():
    frac = 8
    half = (P - 1) // 2
    largest = half / 2**frac
    x = np.array([0.0, -1.5, 2.25, -largest, largest, 1 / 2**frac, -1 / 2**frac])
    q = quantize(x, frac)
    assert q.min() >= 0 and q.max() < P
    assert np.array_equal(dequantize(q, frac), x)
    assert np.array_equal(to_signed(q), np.rint(x * 2**frac).astype(np.int64))
    with pytest.raises(ValueError, match=r"\(p-1\)/2 = 1073741823"):
        quantize([largest + 1 / 2**frac], frac)
    with pytest.raises(ValueError, match="x contains NaN"):
        quantize([np.nan], frac)
    with pytest.raises(TypeError, match="weights must be a numeric"):
        quantize(["a"], frac, name="weights")


def test_field_arithmetic_on_quantized_values_equals_plaintext():
    """Signed products and sums of quantised reals survive the field while below p/2."""
    data = np.random.default_rng(2)
    x, w = np.round(data.normal(size=(30, 4)), 3), np.round(data.normal(size=4), 3)
    qx, qw = quantize(x, 6), quantize(w, 6)
    exact = np.rint(x * 64).astype(np.int64) @ np.rint(w * 64).astype(np.int64)
    assert np.array_equal(to_signed(field_matmul(qx, qw, P)), exact)


def test_crt_combine_recovers_signed_values_beyond_one_prime():
    q = 2**31 - 19
    data = np.random.default_rng(5)
    values = np.concatenate([data.integers(-(2**60), 2**60, 200), [0, 1, -1, (P * q - 1) // 2, -((P * q - 1) // 2)]])
    residues = [values % P, values % q]
    combined = crt_combine(residues, [P, q])
    assert combined.min() >= 0 and combined.max() < P * q
    assert np.array_equal(to_signed(combined, P * q), values)
    assert np.array_equal(crt_combine([values % P], [P]), values % P)
    with pytest.raises(ValueError, match="distinct"):
        crt_combine(residues, [P, P])
    with pytest.raises(ValueError, match="one residue array per prime"):
        crt_combine(residues[:1], [P, q])


def gram(block: np.ndarray) -> np.ndarray:
    """A degree-2 polynomial map of a block: ``X^T X`` mod p."""
    return field_matmul(block.T, block, P)


@pytest.mark.parametrize("n_workers,k,t,degree", [(7, 2, 1, 2), (6, 3, 2, 1)])
def test_decode_from_every_minimal_subset(n_workers, k, t, degree):
    data = np.random.default_rng(3)
    reals = np.round(data.normal(size=(k, 6, 3)), 2)
    frac = 7
    blocks = quantize(reals, frac)
    reals = dequantize(blocks, frac)  # the plaintext reference works on the quantised values
    code = LagrangeCode(n_workers, k, t, degree)
    assert code.recovery_threshold == (k + t - 1) * degree + 1
    shares = code.encode(blocks, Csprng())
    assert shares.shape == (n_workers, 6, 3)
    if degree == 2:
        results = {i: gram(shares[i]) for i in range(n_workers)}
        expected = np.stack([r.T @ r for r in reals])
    else:
        weights = quantize(np.array([1.5, -2.0, 0.25]), frac)
        results = {i: field_matmul(shares[i], weights, P) for i in range(n_workers)}
        expected = np.stack([r @ np.array([1.5, -2.0, 0.25]) for r in reals])
    subsets = list(itertools.combinations(range(n_workers), code.recovery_threshold))
    assert len(subsets) > 1
    for subset in subsets:
        decoded = code.decode({i: results[i] for i in subset})
        np.testing.assert_allclose(dequantize(decoded, 2 * frac), expected, rtol=0, atol=1e-9)


def test_decode_refuses_too_few_results_with_arithmetic():
    code = LagrangeCode(7, 2, 1, 2)
    shares = code.encode(quantize(np.ones((2, 3)), 4), Csprng())
    with pytest.raises(ValueError, match=r"R = \(K \+ T - 1\) \* d \+ 1 = \(2 \+ 1 - 1\) \* 2 \+ 1 = 5 results, got 4"):
        code.decode({i: shares[i] ** 2 for i in range(4)})
    with pytest.raises(ValueError, match="worker index 9"):
        code.decode({i: shares[0] for i in (0, 1, 2, 3, 9)})


def test_no_worker_share_equals_a_raw_block():
    code = LagrangeCode(8, 3, 1, 1)
    assert not set(code.alphas) & set(code.betas)
    data = np.random.default_rng(4)
    rng = Csprng()
    for _ in range(20):
        blocks = data.integers(0, P, (3, 16))
        shares = code.encode(blocks, rng)
        for share in shares:
            assert not any(np.array_equal(share, block) for block in blocks)
            # and no share even agrees with a raw block on most coordinates
            assert max(np.mean(share == block) for block in blocks) < 0.5


def joint_counts(shares: np.ndarray, workers: tuple[int, ...], prime: int) -> np.ndarray:
    cells = np.zeros(shares.shape[1], dtype=np.int64)
    for w in workers:
        cells = cells * prime + shares[w]
    return np.bincount(cells, minlength=prime ** len(workers))


def test_t_colluding_workers_see_uniform_shares_independent_of_data():
    """Over a small field (p = 11) with T = 2, every pair of workers' joint shares is uniform on
    Z_11^2 for two different datasets; three workers' shares are far from uniform (the test has power)."""
    prime, k, t, n_workers, reps = 11, 2, 2, 6, 12_100
    code = LagrangeCode(n_workers, k, t, 1, prime=prime)
    rng = Csprng()
    for dataset in ([0, 0], [3, 10]):
        blocks = np.repeat(np.array(dataset)[:, None], reps, axis=1)
        shares = code.encode(blocks, rng)
        for workers in itertools.combinations(range(n_workers), t):
            assert chisquare(joint_counts(shares, workers, prime)).pvalue > MIN_P_VALUE, (dataset, workers)
        assert chisquare(joint_counts(shares, (0, 1, 2), prime)).pvalue < 1e-100


def test_mask_coefficients_of_any_t_workers_are_invertible():
    code = LagrangeCode(9, 3, 3, 1)
    masks = lagrange_matrix(code.betas, code.alphas, P)[:, code.n_blocks:]
    for workers in itertools.combinations(range(9), 3):
        sub = masks[list(workers)].astype(object)
        det = (sub[0, 0] * (sub[1, 1] * sub[2, 2] - sub[1, 2] * sub[2, 1])
               - sub[0, 1] * (sub[1, 0] * sub[2, 2] - sub[1, 2] * sub[2, 0])
               + sub[0, 2] * (sub[1, 0] * sub[2, 1] - sub[1, 1] * sub[2, 0])) % P
        assert det != 0


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(n_workers=8, n_blocks=3, n_masks=2, degree=2), ValueError,
         r"R = \(K \+ T - 1\) \* d \+ 1 = \(3 \+ 2 - 1\) \* 2 \+ 1 = 9 exceeds n_workers = 8"),
        (dict(n_workers=8, n_blocks=3, n_masks=0, degree=1), ValueError, "n_masks must be an integer >= 1"),
        (dict(n_workers=8, n_blocks=0, n_masks=1, degree=1), ValueError, "n_blocks must be an integer >= 1"),
        (dict(n_workers=8, n_blocks=2, n_masks=1, degree=1, prime=15), ValueError, "prime=15 is not prime"),
        (dict(n_workers=8, n_blocks=2, n_masks=1, degree=1, prime=2**31 + 11), ValueError, r"\[3, 2\^31\)"),
        (dict(n_workers=8, n_blocks=2, n_masks=1, degree=1, prime=11), ValueError,
         r"K \+ T \+ n_workers = 2 \+ 1 \+ 8 = 11 distinct evaluation points"),
        (dict(n_workers=8, n_blocks=2, n_masks=1, degree=1.5), ValueError, "degree must be an integer"),
    ],
)
def test_bad_parameters_are_refused_with_the_arithmetic(kwargs, error, match):
    with pytest.raises(error, match=match):
        LagrangeCode(**kwargs)


def test_encode_refuses_non_field_blocks():
    code = LagrangeCode(5, 2, 1, 1)
    with pytest.raises(ValueError, match=r"shape \(K=2, \.\.\.\)"):
        code.encode(np.zeros((3, 4), dtype=np.int64), Csprng())
    with pytest.raises(TypeError, match="use quantize"):
        code.encode(np.zeros((2, 4)), Csprng())
    with pytest.raises(ValueError, match="field elements in"):
        code.encode(np.full((2, 4), P), Csprng())
