"""Paillier throughput, mpcml against ``phe`` in the same run, and sparse against dense products.

Run: ``python -m benchmarks.bench_paillier`` (2048-bit keys; ``--quick`` for a smoke run).
Every figure is the median of ``--repeats`` runs; ratios compare rates measured back to back on
the same key, so they survive a noisy shared machine better than the absolute times.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

from benchmarks.bench_foundation import median_time
from mpcml.paillier import PrivateKey, decrypt_packed, encrypt_packed, generate_keypair


def rate_row(name: str, ours: float, ours_count: int, theirs: float, theirs_count: int) -> str:
    mine, phe_rate = ours_count / ours, theirs_count / theirs
    return f"  {name:<28} {mine:>12,.0f}/s {phe_rate:>12,.0f}/s {mine / phe_rate:>9.1f}x"


def throughput(bits: int, count: int, phe_count: int, repeats: int) -> None:
    pk, sk = generate_keypair(bits)
    start = time.perf_counter()
    pk.obfuscators(1)
    print(f"fixed-base table for h^n (one-off per key): {time.perf_counter() - start:.3f}s")
    data = np.random.default_rng(0)
    x, w = data.normal(scale=100, size=count), data.normal(size=count)
    few = [float(v) for v in x[:phe_count]]
    enc, enc2 = pk.encrypt(x), pk.encrypt(w)
    phe_enc = [pk.phe.encrypt(v) for v in few]
    phe_enc2 = [pk.phe.encrypt(float(v)) for v in w[:phe_count]]
    serial = PrivateKey(sk.phe, pk, parallel=False)
    print(f"\n{bits}-bit keys, {count} values (phe: {phe_count}), median of {repeats}")
    print(f"  {'operation':<28} {'mpcml':>14} {'phe':>14} {'ratio':>10}")
    t_phe_enc = median_time(lambda: [pk.phe.encrypt(v) for v in few], repeats)
    print(rate_row("encrypt", median_time(lambda: pk.encrypt(x), repeats), count, t_phe_enc, phe_count))
    t_phe_dec = median_time(lambda: [sk.phe.decrypt(e) for e in phe_enc], repeats)
    print(rate_row("decrypt (2 threads)", median_time(lambda: sk.decrypt(enc), repeats), count, t_phe_dec, phe_count))
    print(rate_row("decrypt (1 thread)", median_time(lambda: serial.decrypt(enc), repeats), count, t_phe_dec, phe_count))
    t_phe_add = median_time(lambda: [a + b for a, b in zip(phe_enc, phe_enc2)], repeats)
    print(rate_row("add enc + enc", median_time(lambda: enc + enc2, repeats), count, t_phe_add, phe_count))
    scalars = [float(v) for v in w[:phe_count]]
    t_phe_mul = median_time(lambda: [a * s for a, s in zip(phe_enc, scalars)], repeats)
    print(rate_row("multiply by float scalar", median_time(lambda: enc * w, repeats), count, t_phe_mul, phe_count))
    ints = data.integers(-1000, 1000, size=count)
    int_list = [int(v) for v in ints[:phe_count]]
    t_phe_imul = median_time(lambda: [a * s for a, s in zip(phe_enc, int_list)], repeats)
    print(rate_row("multiply by int scalar", median_time(lambda: enc * ints, repeats), count, t_phe_imul, phe_count))
    packing(pk, sk, data, count, repeats)
    sparse_products(pk, data, count, repeats)


def packing(pk, sk, data, count: int, repeats: int) -> None:
    rows = data.normal(size=(max(count // 20, 4), 20))
    plain_time = median_time(lambda: pk.encrypt(rows).sum(0), repeats)
    packed_time = median_time(lambda: encrypt_packed(pk, rows, max_summands=rows.shape[0]).sum(), repeats)
    packed = encrypt_packed(pk, rows, max_summands=rows.shape[0])
    error = np.max(np.abs(decrypt_packed(sk, packed.sum())[0] - rows.sum(0)))
    print(
        f"\npacking: sum of {rows.shape[0]} rows of 20 values: {rows.size} -> {packed.ciphertexts.size} ciphertexts "
        f"({packed.slots} slots of 64 bits); encrypt+sum {plain_time / packed_time:.1f}x faster; max |error| {error:.1e}"
    )


def sparse_products(pk, data, count: int, repeats: int) -> None:
    cols = count
    rows = max(count // 4, 10)
    enc = pk.encrypt(data.normal(size=cols))
    dense = data.normal(size=(rows, cols))
    print(f"\nmatrix ({rows}x{cols}) @ encrypted vector, median of {repeats}")
    print(f"  {'matrix':<22} {'non-zeros':>10} {'seconds':>10} {'us/non-zero':>12} {'vs dense':>9}")
    t_dense = median_time(lambda: dense @ enc, repeats)
    print(f"  {'dense ndarray':<22} {dense.size:>10} {t_dense:>10.3f} {t_dense / dense.size * 1e6:>12.1f} {1.0:>8.1f}x")
    for density in (0.01, 0.05):
        mat = sp.random(rows, cols, density=density, format="csr", random_state=int(density * 100), data_rvs=lambda k: data.normal(size=k))
        t = median_time(lambda: mat @ enc, repeats)
        label = f"sparse {density:.0%}"
        print(f"  {label:<22} {mat.nnz:>10} {t:>10.3f} {t / mat.nnz * 1e6:>12.1f} {t_dense / t:>8.1f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, 1024-bit keys: a smoke run")
    parser.add_argument("--bits", type=int, default=None, help="key size (default 2048; 1024 with --quick)")
    parser.add_argument("--count", type=int, default=None, help="values per mpcml operation (default 400)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per figure (default 5)")
    args = parser.parse_args(argv)
    bits = args.bits or (1024 if args.quick else 2048)
    count = args.count or (60 if args.quick else 400)
    repeats = args.repeats or (1 if args.quick else 5)
    throughput(bits, count, max(count // 10, 6), repeats)


if __name__ == "__main__":
    main()
