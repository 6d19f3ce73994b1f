"""Paillier throughput, mpcml against ``phe`` in the same run, and sparse against dense products.

Run: ``python -m benchmarks.bench_paillier`` (2048-bit keys; ``--quick`` for a smoke run).
Every figure is the median of ``--repeats`` runs; mpcml and phe are timed alternately on the same
key and the ratio is the median of the per-run ratios, so it survives a noisy shared machine
better than the absolute rates (the load average is printed alongside).
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Callable

import numpy as np
import scipy.sparse as sp

from benchmarks.timing import median_time, timed
from mpcml import Party, fixedpoint, run_local
from mpcml.paillier import (
    PrivateKey,
    PublicKey,
    decrypt_packed,
    encrypt_packed,
    generate_keypair,
    mask_to_share,
    unmask_share,
)
from mpcml.paillier_triples import PaillierTriples

PLAYERS = ("alice", "bob")


def paired_row(name: str, ours: Callable[[], object], ours_count: int, theirs: Callable[[], object], theirs_count: int, repeats: int) -> str:
    """Time mpcml and phe alternately (so both see the same machine load); report median rates and ratio."""
    mine, other, ratios = [], [], []
    for _ in range(repeats):
        mine.append(ours_count / timed(ours))
        other.append(theirs_count / timed(theirs))
        ratios.append(mine[-1] / other[-1])
    return (
        f"  {name:<28} {statistics.median(mine):>12,.0f}/s {statistics.median(other):>12,.0f}/s "
        f"{statistics.median(ratios):>9.1f}x"
    )


def throughput(bits: int, count: int, phe_count: int, repeats: int) -> None:
    pk, sk = generate_keypair(bits)
    print(f"fixed-base table for h^n (one-off per key): {timed(lambda: pk.obfuscators(1)):.3f}s")
    data = np.random.default_rng(0)
    x, w = data.normal(scale=100, size=count), data.normal(size=count)
    ints = data.integers(-1000, 1000, size=count)
    few, scalars, int_list = [float(v) for v in x[:phe_count]], [float(v) for v in w[:phe_count]], [int(v) for v in ints[:phe_count]]
    enc, enc2 = pk.encrypt(x), pk.encrypt(w)
    phe_enc = [pk.phe.encrypt(v) for v in few]
    phe_enc2 = [pk.phe.encrypt(v) for v in scalars]
    serial = PrivateKey(sk.phe, pk, parallel=False)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\n{bits}-bit keys, {count} values (phe: {phe_count}), {repeats} alternating runs; load average {load} on {os.cpu_count()} cores")
    print(f"  {'operation':<28} {'mpcml':>14} {'phe':>14} {'ratio':>10}")
    rows = [
        ("encrypt", lambda: pk.encrypt(x), lambda: [pk.phe.encrypt(v) for v in few]),
        ("decrypt (2 threads)", lambda: sk.decrypt(enc), lambda: [sk.phe.decrypt(e) for e in phe_enc]),
        ("decrypt (1 thread)", lambda: serial.decrypt(enc), lambda: [sk.phe.decrypt(e) for e in phe_enc]),
        ("decrypt |v|<2^62 (2 threads)", lambda: sk.decrypt(enc, max_bits=62), lambda: [sk.phe.decrypt(e) for e in phe_enc]),
        ("decrypt |v|<2^62 (1 thread)", lambda: serial.decrypt(enc, max_bits=62), lambda: [sk.phe.decrypt(e) for e in phe_enc]),
        ("add enc + enc", lambda: enc + enc2, lambda: [a + b for a, b in zip(phe_enc, phe_enc2)]),
        ("multiply by float scalar", lambda: enc * w, lambda: [a * s for a, s in zip(phe_enc, scalars)]),
        ("multiply by int scalar", lambda: enc * ints, lambda: [a * s for a, s in zip(phe_enc, int_list)]),
    ]
    for name, ours, theirs in rows:
        print(paired_row(name, ours, count, theirs, phe_count, repeats))
    packing(pk, sk, data, count, repeats)
    he_to_ss(pk, sk, data, count, repeats)
    sparse_products(pk, data, count, repeats)
    dealer_free_triples(bits, count)


def packing(pk: PublicKey, sk: PrivateKey, data: np.random.Generator, count: int, repeats: int) -> None:
    rows = data.normal(size=(max(count // 20, 4), 20))
    plain_time = median_time(lambda: pk.encrypt(rows).sum(0), repeats)
    packed_time = median_time(lambda: encrypt_packed(pk, rows, max_summands=rows.shape[0]).sum(), repeats)
    packed = encrypt_packed(pk, rows, max_summands=rows.shape[0])
    error = np.max(np.abs(decrypt_packed(sk, packed.sum())[0] - rows.sum(0)))
    print(
        f"\npacking: sum of {rows.shape[0]} rows of 20 values: {rows.size} -> {packed.ciphertexts.size} ciphertexts "
        f"({packed.slots} slots of 64 bits); encrypt+sum {plain_time / packed_time:.1f}x faster; max |error| {error:.1e}"
    )


def he_to_ss(pk: PublicKey, sk: PrivateKey, data: np.random.Generator, count: int, repeats: int) -> None:
    x = data.normal(scale=100, size=count)
    enc = pk.encrypt(x)

    def convert(pack: bool) -> np.ndarray:
        masked, mine = mask_to_share(enc, pack=pack)
        return mine + unmask_share(sk, masked, shape=enc.shape if pack else None)

    error = np.max(np.abs(fixedpoint.decode(convert(True)) - x))
    plain, packed = median_time(lambda: convert(False), repeats), median_time(lambda: convert(True), repeats)
    print(
        f"HE->SS of {count} values (mask, decrypt): {count / plain:,.0f}/s unpacked, {count / packed:,.0f}/s packed "
        f"({plain / packed:.1f}x); max |error| {error:.1e}"
    )


def dealer_free_triples(bits: int, count: int) -> None:
    keys = {pid: generate_keypair(bits) for pid in PLAYERS}

    def role(party: Party, keypair: tuple[PublicKey, PrivateKey]) -> list[float]:
        source = PaillierTriples(party, PLAYERS, keypair=keypair)
        return [timed(draw) for draw in (lambda: source.mul((count,)), lambda: source.trunc((count // 4,), 16),
                                         lambda: source.binary_and((count // 4,)))]

    out = run_local({p: role for p in PLAYERS}, {p: (keys[p],) for p in PLAYERS})
    mul, trunc, anded = out[PLAYERS[0]]
    sent = out.stats[PLAYERS[0]].bytes_sent
    print(
        f"dealer-free Paillier triples, two parties in one process (2 cores shared): {count / mul:,.0f} mul triples/s, "
        f"{count // 4 / trunc:,.0f} truncation pairs/s, {count // 4 / anded:,.0f} 64-bit AND triples/s; "
        f"{sent / 1e6:.1f} MB sent by each party"
    )


def sparse_products(pk: PublicKey, data: np.random.Generator, count: int, repeats: int) -> None:
    cols = count
    rows = max(count // 4, 10)
    enc = pk.encrypt(data.normal(size=cols))
    dense = data.normal(size=(rows, cols))
    print(f"\nmatrix ({rows}x{cols}) @ encrypted vector, median of {repeats}")
    print(f"  {'matrix':<22} {'non-zeros':>10} {'seconds':>10} {'us/non-zero':>12} {'vs dense':>9}")
    t_dense = median_time(lambda: dense @ enc, repeats)
    print(f"  {'dense ndarray':<22} {dense.size:>10} {t_dense:>10.3f} {t_dense / dense.size * 1e6:>12.1f} {1.0:>8.1f}x")
    for density in (0.01, 0.03, 0.1):
        mat = sp.random(rows, cols, density=density, format="csr", random_state=int(density * 100), data_rvs=lambda k: data.normal(size=k))
        t = median_time(lambda: mat @ enc, repeats)
        label = f"sparse {density:.0%}"
        print(f"  {label:<22} {mat.nnz:>10} {t:>10.3f} {t / mat.nnz * 1e6:>12.1f} {t_dense / t:>8.1f}x")
    print("  (rows with 16+ non-zeros use bucket multi-exponentiation: fewer multiplications per non-zero)")


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
