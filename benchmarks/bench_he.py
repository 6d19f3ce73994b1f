"""Additively homomorphic encryption: ``phe``, mpcml's Paillier and mpcml's Okamoto–Uchiyama side by side.

Run: ``python -m benchmarks.bench_he`` (2048-bit keys; a few minutes on an idle 2-core machine) or
``--quick`` (1024-bit keys, small sizes: a smoke run). ``--before DIR`` also times the dealer-free
triples of another checkout of mpcml (e.g. ``git worktree add /tmp/before <commit>``), alternately
with this one, for a before/after ratio measured in the same run; ``--regression`` times the
dealer-free breast-cancer logistic regression against the dealer-aided one.

Every figure is the median of ``--repeats`` runs; the schemes are timed alternately on the same data
(so they see the same machine load) and each ratio to ``phe`` is the median of the per-run ratios.
"1 core" sets :func:`mpcml.he._modexp.set_processes` to 1 (no worker process, no second thread);
"2 cores" uses both (worker process for encryptions and products, two threads for decryption).
The load average is printed: on a shared machine absolute rates move, same-run ratios much less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp

from benchmarks.timing import median_time, timed
from mpcml import fixedpoint, he
from mpcml.floors import insecure_test_keys
from mpcml.he import _modexp

PLAYERS = ("alice", "bob")
SCHEMES = ("paillier", "ou")


def load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg()) + f" on {os.cpu_count()} cores"


def primitive_rates(bits: int, count: int, phe_count: int, repeats: int) -> None:
    """Encryption, decryption, addition and scalar products per second, as ratios to ``phe``, on 1 and 2 cores."""
    data = np.random.default_rng(0)
    x, w = data.normal(scale=100, size=count), data.integers(-1000, 1000, size=count)
    keys = {scheme: he.generate_keypair(scheme, bits) for scheme in SCHEMES}
    for pk, sk in keys.values():
        pk.prepare()
        sk.prepare()
        sk.decrypt(pk.encrypt(x[:8]))
    phe_pk, phe_sk = keys["paillier"][0].phe, keys["paillier"][1].phe
    few = [float(v) for v in x[:phe_count]]
    phe_enc = [phe_pk.encrypt(v) for v in few]
    phe_all = phe_enc * (count // phe_count)  # cheap operations run on as many values as ours (comparable durations)
    phe_w = [int(v) for v in w[: len(phe_all)]]
    encs = {scheme: keys[scheme][0].encrypt(x) for scheme in SCHEMES}
    operations: dict[str, tuple[Callable[[str], Callable[[], object]], Callable[[], object], int]] = {
        "encrypt": (lambda s: lambda: keys[s][0].encrypt(x), lambda: [phe_pk.encrypt(v) for v in few], phe_count),
        "decrypt": (lambda s: lambda: keys[s][1].decrypt(encs[s]), lambda: [phe_sk.decrypt(e) for e in phe_enc], phe_count),
        "add": (lambda s: lambda: encs[s] + encs[s], lambda: [a + b for a, b in zip(phe_all, phe_all)], len(phe_all)),
        "multiply by int": (lambda s: lambda: encs[s] * w, lambda: [a * k for a, k in zip(phe_all, phe_w)], len(phe_all)),
    }
    print(f"\n{bits}-bit keys, {count} values per mpcml operation (phe: {phe_count} to encrypt or decrypt, {len(phe_all)} "
          f"otherwise), median of {repeats} alternating runs; load average {load()}")
    print(f"  {'operation':<16} {'cores':>5} {'phe':>10}" + "".join(f" {s:>12} {'x phe':>7}" for s in SCHEMES))
    for name, (ours, theirs, theirs_count) in operations.items():
        for cores in (1, 2):
            _modexp.set_processes(cores)
            rates: dict[str, list[float]] = {s: [] for s in ("phe", *SCHEMES)}
            for _ in range(repeats):
                rates["phe"].append(theirs_count / timed(theirs))
                for scheme in SCHEMES:
                    rates[scheme].append(count / timed(ours(scheme)))
            ratio = {s: statistics.median(a / b for a, b in zip(rates[s], rates["phe"])) for s in SCHEMES}
            print(f"  {name:<16} {cores:>5} {statistics.median(rates['phe']):>9,.0f}/s" + "".join(
                f" {statistics.median(rates[s]):>10,.0f}/s {ratio[s]:>6.1f}x" for s in SCHEMES))
    _modexp.set_processes(None)
    for scheme in SCHEMES:
        he_details(scheme, *keys[scheme], data, min(count, 400), repeats)


def he_details(scheme: str, pk: he.PublicKey, sk: he.PrivateKey, data: np.random.Generator, count: int, repeats: int) -> None:
    """Packing, HE -> shares and sparse products for one scheme (all cores)."""
    rows = data.normal(size=(max(count // 20, 4), 20))
    plain = median_time(lambda: pk.encrypt(rows).sum(0), repeats)
    packed_time = median_time(lambda: he.encrypt_packed(pk, rows, max_summands=rows.shape[0]).sum(), repeats)
    packed = he.encrypt_packed(pk, rows, max_summands=rows.shape[0])
    x = data.normal(scale=100, size=count)
    enc = pk.encrypt(x)

    def convert(pack: bool) -> np.ndarray:
        masked, mine = he.mask_to_share(enc, pack=pack)
        return mine + he.unmask_share(sk, masked, shape=enc.shape if pack else None)

    error = np.max(np.abs(fixedpoint.decode(convert(True)) - x))
    unpacked_t, packed_t = median_time(lambda: convert(False), repeats), median_time(lambda: convert(True), repeats)
    cols = count
    vec = pk.encrypt(data.normal(size=cols))
    dense = data.normal(size=(max(count // 4, 10), cols))
    t_dense = median_time(lambda: dense @ vec, repeats)
    mat = sp.random(dense.shape[0], cols, density=0.01, format="csr", random_state=1, data_rvs=lambda k: data.normal(size=k))
    t_sparse = median_time(lambda: mat @ vec, repeats)
    print(
        f"\n{scheme}: packing {rows.size} values -> {packed.ciphertexts.size} ciphertexts ({packed.slots} slots of 64 bits), "
        f"encrypt+sum {plain / packed_time:.1f}x faster; HE->SS {count / unpacked_t:,.0f}/s unpacked, "
        f"{count / packed_t:,.0f}/s packed (max |error| {error:.1e}); {dense.shape[0]}x{cols} @ Enc(vector): dense "
        f"{t_dense:.3f}s ({t_dense / dense.size * 1e6:.1f} us/non-zero), 1% sparse {t_sparse:.3f}s "
        f"({t_sparse / max(mat.nnz, 1) * 1e6:.1f} us/non-zero)"
    )


TRIPLES_SNIPPET = textwrap.dedent("""
    import json, os, sys, time
    from mpcml import run_local
    from mpcml.paillier_triples import PaillierTriples
    bits, count, scheme = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    try:
        from mpcml import he
        keys = {p: he.generate_keypair(scheme, bits) for p in ("alice", "bob")}
    except ImportError:  # a checkout from before mpcml.he: Paillier only
        from mpcml.paillier import generate_keypair
        keys = {p: generate_keypair(bits) for p in ("alice", "bob")}
    def role(party, keypair):
        source = PaillierTriples(party, ("alice", "bob"), keypair=keypair)
        source.mul((8,)); source.trunc((8,), 16)  # tables built before timing
        draws = {"mul": lambda: source.mul((count,)), "trunc": lambda: source.trunc((count // 4,), 16),
                 "and": lambda: source.binary_and((count // 16,)), "matvec": lambda: source.matmul((128, 31), (31,))}
        out = {}
        for name, draw in draws.items():
            start = time.perf_counter(); draw(); out[name] = time.perf_counter() - start
        return out
    times = run_local({p: role for p in ("alice", "bob")}, {p: (keys[p],) for p in keys}, timeout=3600)["alice"]
    print(json.dumps({"mul": count / times["mul"], "trunc": count // 4 / times["trunc"],
                      "and": count // 16 / times["and"], "matvec": 1 / times["matvec"]}))
""")


def triples(bits: int, count: int, repeats: int, before: str | None) -> None:
    """Dealer-free triples per second (both parties in one process), this tree's schemes and optionally another tree's."""
    trees = [("this tree, " + scheme, None, scheme) for scheme in SCHEMES]
    if before:
        trees.insert(0, (f"before ({before}), paillier", before, "paillier"))
    results: dict[str, list[dict]] = {label: [] for label, _, _ in trees}
    for _ in range(repeats):
        for label, path, scheme in trees:
            tree = os.path.abspath(path) if path else str(Path(__file__).resolve().parent.parent)
            env = {**os.environ, "PYTHONPATH": tree}  # ``python -c`` also puts the working directory first: run in the tree
            done = subprocess.run([sys.executable, "-c", TRIPLES_SNIPPET, str(bits), str(count), scheme], env=env,
                                  cwd=tree, capture_output=True, text=True, check=True)
            results[label].append(__import__("json").loads(done.stdout.strip().splitlines()[-1]))
    print(f"\ndealer-free triples per second at {bits} bits (both parties in one process, median of {repeats}); "
          f"load average {load()}")
    print(f"  {'source':<40} {'mul':>9} {'trunc':>9} {'AND words':>10} {'128x31 matvec':>14}")
    base = results[trees[0][0]] if before else None
    for label, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"  {label:<40} {med['mul']:>8.1f}/s {med['trunc']:>8.1f}/s {med['and']:>9.2f}/s {med['matvec']:>13.3f}/s")
        if base is not None and runs is not base:
            ratio = {k: statistics.median(r[k] / b[k] for r, b in zip(runs, base)) for k in med}
            print(f"  {'  x before':<40} {ratio['mul']:>8.1f}x {ratio['trunc']:>8.1f}x {ratio['and']:>9.1f}x "
                  f"{ratio['matvec']:>13.1f}x")


def regression(bits: int) -> None:
    """Breast-cancer secure logistic regression, dealer-free (OU triples) against dealer-aided, 10 epochs."""
    import time

    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    from protocols.regression import SecureLogisticRegression

    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    parts = [x[:, :15], x[:, 15:]]
    fits = {}
    for triples in ("dealer", "paillier"):
        start = time.perf_counter()
        model = SecureLogisticRegression(triples=triples, epochs=10, batch_size=128, key_bits=bits, random_state=0)
        fits[triples] = (model.fit(parts, y), time.perf_counter() - start)
    (dealer, t_dealer), (free, t_free) = fits["dealer"], fits["paillier"]
    gap = max(float(np.max(np.abs(np.ravel(a) - np.ravel(b)))) for a, b in zip(free.coef_, dealer.coef_))
    print(f"\nbreast cancer logistic regression, 10 epochs, batch 128, 15/15 split, {bits}-bit {he.DEFAULT_SCHEME} keys: "
          f"dealer-free {t_free:.1f}s ({free.communication_.total_bytes / 1e6:.0f} MB, {free.communication_.rounds} rounds), "
          f"dealer-aided {t_dealer:.2f}s ({dealer.communication_.total_bytes / 1e6:.1f} MB, {dealer.communication_.rounds} rounds); "
          f"training accuracy {(free.predict(parts) == y).mean():.4f} "
          f"vs {(dealer.predict(parts) == y).mean():.4f}; max |weight difference| {gap:.1e}; load average {load()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1024-bit keys and small sizes: a smoke run")
    parser.add_argument("--bits", type=int, default=None, help="key size (default 2048; 1024 with --quick)")
    parser.add_argument("--count", type=int, default=None, help="values per mpcml operation (default 2000)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per figure (default 3)")
    parser.add_argument("--before", default=None, help="another mpcml checkout whose dealer-free triples to time too")
    parser.add_argument("--skip-triples", action="store_true", help="primitives only")
    parser.add_argument("--triples-only", action="store_true", help="dealer-free triples only")
    parser.add_argument("--regression", action="store_true",
                        help="also time the dealer-free breast-cancer logistic regression (about 15 minutes at 2048 bits)")
    args = parser.parse_args(argv)
    bits = args.bits or (1024 if args.quick else 2048)
    count = args.count or (64 if args.quick else 2000)
    repeats = args.repeats or (1 if args.quick else 3)
    with insecure_test_keys(bits < 2048):
        if not args.triples_only:
            primitive_rates(bits, count, max(count // 20, 4), repeats)
        if not args.skip_triples:
            triples(bits, 64 if args.quick else 400, repeats, args.before)
        if args.regression:
            regression(bits)


if __name__ == "__main__":
    main()
