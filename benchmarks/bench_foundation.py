"""Foundation benchmark: ring matmul vs float64 BLAS, and 2-party SharedTensor matmul vs plaintext.

Run: ``python -m benchmarks.bench_foundation`` (``--quick`` for a small smoke run). Every figure
is a median over ``--repeats`` runs, reported as a ratio to the plaintext float64 computation
timed in the same run. Shared matmuls run in-process (``run_local``, a thread per party) with
the dealer's triple generation inside the timed region; bytes and rounds are those of the
matmul alone (input sharing and reveal excluded), from ``party.stats``. Plaintext and shared
runs use the same BLAS threading; on a loaded machine the ratios move, so compare them only
within one run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np

from mpcml import DealerTriples, Session, run_dealer, run_local
from mpcml.csprng import Csprng
from mpcml.ring import ring_matmul

PLAYERS = ("alice", "bob")


def median_time(func: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ring_figures(n: int, repeats: int) -> dict[str, float]:
    rng = Csprng()
    a, b = rng.random_uint64((n, n)), rng.random_uint64((n, n))
    fa, fb = a.astype(np.float64), b.astype(np.float64)
    blas = median_time(lambda: fa @ fb, repeats)
    ring = median_time(lambda: ring_matmul(a, b), repeats)
    native = median_time(lambda: a @ b, 1)
    return {"blas_s": blas, "ring_s": ring, "native_s": native}


def shared_matmul(shape_a: tuple[int, int], shape_b: tuple[int, int], repeats: int) -> dict[str, float]:
    data = np.random.default_rng(0)  # benchmark data only
    x, y = data.normal(size=shape_a), data.normal(size=shape_b)
    plain = median_time(lambda: x @ y, max(repeats, 5))

    def compute(party, value):
        session = Session(party, PLAYERS, DealerTriples(party, PLAYERS, dealer="dealer"))
        xs = session.input(value if party.id == "alice" else None, owner="alice")
        ys = session.input(value if party.id == "bob" else None, owner="bob")
        times, deltas = [], []
        for _ in range(repeats):
            xs[:1, :1].reveal()  # sync: every party's next send starts a new round
            before = party.stats.snapshot()
            start = time.perf_counter()
            product = xs @ ys
            times.append(time.perf_counter() - start)
            deltas.append(party.stats.snapshot() - before)
        error = float(np.max(np.abs(product.reveal() - x @ y)))
        session.close()
        return statistics.median(times), deltas[-1], error

    roles = {pid: compute for pid in PLAYERS}
    roles["dealer"] = lambda party: run_dealer(party, PLAYERS)
    out = run_local(roles, {"alice": (x,), "bob": (y,)}, timeout=600)
    secs = max(out[pid][0] for pid in PLAYERS)
    deltas = [out[pid][1] for pid in PLAYERS]
    return {
        "plain_s": plain,
        "shared_s": secs,
        "player_bytes": sum(d.sent_to.get(p, 0) for d in deltas for p in PLAYERS),
        "dealer_bytes": sum(d.received_from.get("dealer", 0) + d.sent_to.get("dealer", 0) for d in deltas),
        "rounds": max(d.rounds for d in deltas),
        "error": max(out[pid][2] for pid in PLAYERS),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, one repeat (smoke run)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    n = 200 if args.quick else 1000
    repeats = 1 if args.quick else args.repeats

    ring = ring_figures(n, repeats)
    print(f"ring matmul uint64 {n}x{n} (median of {repeats}):")
    print(f"  float64 BLAS            {ring['blas_s'] * 1e3:9.1f} ms   1.0x")
    print(f"  mpcml.ring.ring_matmul  {ring['ring_s'] * 1e3:9.1f} ms   {ring['ring_s'] / ring['blas_s']:5.1f}x  (target <= 12x)")
    print(f"  numpy native uint64 @   {ring['native_s'] * 1e3:9.1f} ms   {ring['native_s'] / ring['blas_s']:5.1f}x  (reference)")

    shapes = [((n, n), (n, n)), ((n * 10, 100), (100, 1))]
    print(f"2-party SharedTensor matmul, in-process, dealer triples included (median of {repeats}):")
    for shape_a, shape_b in shapes:
        fig = shared_matmul(shape_a, shape_b, repeats)
        ratio = fig["shared_s"] / fig["plain_s"]
        label = f"{shape_a[0]}x{shape_a[1]} @ {shape_b[0]}x{shape_b[1]}"
        target = "  (target <= 60x)" if shape_a == (n, n) else ""
        print(
            f"  {label:<22} plaintext {fig['plain_s'] * 1e3:8.2f} ms  shared {fig['shared_s'] * 1e3:9.1f} ms  "
            f"{ratio:7.1f}x{target}\n      bytes between players {fig['player_bytes']}, to/from dealer {fig['dealer_bytes']}, "
            f"rounds {fig['rounds']} (2 between players + 1 dealer round trip), max|err| {fig['error']:.1e}"
        )


if __name__ == "__main__":
    main()
