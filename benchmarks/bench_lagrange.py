"""Lagrange coded computing: encode and decode throughput, as ratios to the plaintext linear map.

Run: ``python -m benchmarks.bench_lagrange`` (``--quick`` for a smoke run).

Encoding K blocks for N workers is the linear map ``shares = U @ [X; Z]`` with ``U`` the
``N x (K + T)`` Lagrange matrix; decoding is ``C @ results`` with ``C`` the ``K x R``
interpolation matrix. Each is timed against the same-shape float64 product (what the map
costs without a field), so the ratio is the price of exact modular arithmetic plus mask
generation. Medians of several runs; throughput in field elements of data per second.
"""

from __future__ import annotations

import numpy as np

from benchmarks.timing import median_time, quick_main
from mpcml.csprng import Csprng
from mpcml.lagrange import DEFAULT_PRIME, LagrangeCode, field_matmul, lagrange_matrix


def bench_case(n_workers: int, k: int, t: int, degree: int, block_elems: int, repeats: int) -> dict[str, float]:
    code = LagrangeCode(n_workers, k, t, degree)
    data = np.random.default_rng(0)
    blocks = data.integers(0, DEFAULT_PRIME, (k, block_elems))
    rng = Csprng()
    plain_encoder = lagrange_matrix(code.betas, code.alphas, DEFAULT_PRIME).astype(np.float64)
    plain_blocks = np.concatenate([blocks, blocks[:t]]).astype(np.float64)
    encode = median_time(lambda: code.encode(blocks, rng), repeats)
    encode_plain = median_time(lambda: plain_encoder @ plain_blocks, repeats)

    results = {i: data.integers(0, DEFAULT_PRIME, block_elems) for i in range(code.recovery_threshold)}
    code.decode(results)  # the interpolation matrix for this responder set is cached from here on
    decode = median_time(lambda: code.decode(results), repeats)
    responders = [code.alphas[i] for i in range(code.recovery_threshold)]
    fresh = median_time(lambda: lagrange_matrix(responders, code.betas[:k], DEFAULT_PRIME), repeats)
    stacked = np.stack(list(results.values())).astype(np.float64)
    decoder = np.ones((k, code.recovery_threshold))
    decode_plain = median_time(lambda: decoder @ stacked, repeats)
    return {
        "encode_s": encode, "encode_ratio": encode / encode_plain, "encode_rate": k * block_elems / encode,
        "decode_s": decode, "decode_ratio": decode / decode_plain, "decode_rate": k * block_elems / decode,
        "matrix_s": fresh, "R": code.recovery_threshold,
    }


def bench_matmul(rows: int, inner: int, cols: int, repeats: int) -> tuple[float, float]:
    data = np.random.default_rng(1)
    a, b = data.integers(0, DEFAULT_PRIME, (rows, inner)), data.integers(0, DEFAULT_PRIME, (inner, cols))
    af, bf = a.astype(np.float64), b.astype(np.float64)
    field = median_time(lambda: field_matmul(a, b, DEFAULT_PRIME), repeats)
    plain = median_time(lambda: af @ bf, repeats)
    return field, field / plain


def main(argv: list[str] | None = None) -> None:
    quick_main(__doc__, "small sizes, few repeats", run, argv)


def run(quick: bool) -> None:
    repeats = 3 if quick else 7
    block_elems = 20_000 if quick else 1_000_000
    print(f"Lagrange coded computing over p = 2^31 - 1; block = {block_elems} field elements; medians of {repeats} runs")
    print(f"{'N':>4} {'K':>3} {'T':>3} {'d':>2} {'R':>4} | {'encode s':>9} {'Melem/s':>8} {'x float':>8} |"
          f" {'decode s':>9} {'Melem/s':>8} {'x float':>8} | {'interp s':>8}")
    for n_workers, k, t, degree in ((10, 2, 2, 2), (20, 4, 2, 2), (40, 8, 4, 2)):
        r = bench_case(n_workers, k, t, degree, block_elems, repeats)
        print(f"{n_workers:>4} {k:>3} {t:>3} {degree:>2} {r['R']:>4} | {r['encode_s']:>9.4f} {r['encode_rate'] / 1e6:>8.2f}"
              f" {r['encode_ratio']:>8.1f} | {r['decode_s']:>9.4f} {r['decode_rate'] / 1e6:>8.2f}"
              f" {r['decode_ratio']:>8.1f} | {r['matrix_s']:>8.4f}")
    size = 200 if quick else 1000
    field, ratio = bench_matmul(size, size, size, repeats)
    print(f"field_matmul {size}x{size} @ {size}x{size}: {field:.4f} s, {ratio:.1f}x the float64 product")


if __name__ == "__main__":
    main()
