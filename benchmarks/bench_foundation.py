"""Foundation benchmark: ring matmul vs float64 BLAS, and 2-party SharedTensor matmul vs plaintext.

Run: ``python -m benchmarks.bench_foundation`` (``--quick`` for a small smoke run). Every ratio
is the median over ``--repeats`` runs of (mpcml time / plaintext float64 time), the two timed
back to back in each run so that both see the same machine load. Shared matmuls run in-process (``run_local``, a thread per party) with
the dealer's triple generation inside the timed region; bytes and rounds are those of the
matmul alone (input sharing and reveal excluded), from ``party.stats``. Plaintext and shared
runs use the same BLAS threading; on a loaded machine the ratios move, so compare them only
within one run.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from benchmarks.timing import timed
from mpcml import DealerTriples, Session, run_dealer, run_local
from mpcml.csprng import Csprng
from mpcml.ring import ring_matmul

PLAYERS = ("alice", "bob")


def ring_figures(n: int, repeats: int) -> dict[str, float]:
    """Interleaved timings (BLAS, ring) per repeat, so both see the same machine load."""
    rng = Csprng()
    a, b = rng.random_uint64((n, n)), rng.random_uint64((n, n))
    fa, fb = a.astype(np.float64), b.astype(np.float64)
    pairs = [(timed(lambda: fa @ fb), timed(lambda: ring_matmul(a, b))) for _ in range(repeats)]
    blas = timed(lambda: fa @ fb)
    native = timed(lambda: a @ b)
    return {
        "blas_s": statistics.median(p[0] for p in pairs),
        "ring_s": statistics.median(p[1] for p in pairs),
        "ring_ratio": statistics.median(p[1] / p[0] for p in pairs),
        "native_ratio": native / blas,
    }


def shared_matmul(shape_a: tuple[int, int], shape_b: tuple[int, int], repeats: int) -> dict[str, float]:
    """Per repeat: plaintext ``x @ y`` timed at alice, then the shared product at both players."""
    data = np.random.default_rng(0)  # benchmark data only
    x, y = data.normal(size=shape_a), data.normal(size=shape_b)

    def compute(party, value):
        session = Session(party, PLAYERS, DealerTriples(party, PLAYERS, dealer="dealer"))
        xs = session.input(value if party.id == "alice" else None, owner="alice")
        ys = session.input(value if party.id == "bob" else None, owner="bob")
        plain, shared, deltas = [], [], []
        for _ in range(repeats):
            if party.id == "alice":
                plain.append(min(timed(lambda: x @ y) for _ in range(3)))
            # sync (bob waits here during the plaintext timing); every next send starts a round
            session.open([np.zeros(1, np.uint64)])
            before = party.stats.snapshot()
            shared.append(timed(lambda: xs @ ys))
            deltas.append(party.stats.snapshot() - before)
        error = float(np.max(np.abs((xs @ ys).reveal() - x @ y)))
        session.close()
        return plain, shared, deltas[-1], error

    roles = {pid: compute for pid in PLAYERS}
    roles["dealer"] = lambda party: run_dealer(party, PLAYERS)
    out = run_local(roles, {"alice": (x,), "bob": (y,)}, timeout=600)
    plain = out["alice"][0]
    shared = [max(a, b) for a, b in zip(out["alice"][1], out["bob"][1])]
    deltas = [out[pid][2] for pid in PLAYERS]
    return {
        "plain_s": statistics.median(plain),
        "shared_s": statistics.median(shared),
        "ratio": statistics.median(s / p for s, p in zip(shared, plain)),
        "player_bytes": sum(d.sent_to.get(p, 0) for d in deltas for p in PLAYERS),
        "dealer_bytes": sum(d.received_from.get("dealer", 0) + d.sent_to.get("dealer", 0) for d in deltas),
        "rounds": max(d.rounds for d in deltas),
        "error": max(out[pid][3] for pid in PLAYERS),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, one repeat (smoke run)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    n = 200 if args.quick else 1000
    repeats = 1 if args.quick else args.repeats

    ring = ring_figures(n, repeats)
    print(f"ring matmul uint64 {n}x{n} (medians of {repeats} interleaved runs):")
    print(f"  float64 BLAS            {ring['blas_s'] * 1e3:9.1f} ms   1.0x")
    print(f"  mpcml.ring.ring_matmul  {ring['ring_s'] * 1e3:9.1f} ms   {ring['ring_ratio']:5.1f}x  (target <= 12x)")
    print(f"  numpy native uint64 @                {ring['native_ratio']:5.1f}x  (reference, one run)")

    shapes = [((n, n), (n, n)), ((n * 10, 100), (100, 1))]
    print(f"2-party SharedTensor matmul, in-process, dealer triples included (medians of {repeats}):")
    for shape_a, shape_b in shapes:
        fig = shared_matmul(shape_a, shape_b, repeats)
        label = f"{shape_a[0]}x{shape_a[1]} @ {shape_b[0]}x{shape_b[1]}"
        target = "  (target <= 60x)" if shape_a == (n, n) else ""
        print(
            f"  {label:<22} plaintext {fig['plain_s'] * 1e3:8.2f} ms  shared {fig['shared_s'] * 1e3:9.1f} ms  "
            f"{fig['ratio']:7.1f}x{target}\n      bytes between players {fig['player_bytes']}, to/from dealer "
            f"{fig['dealer_bytes']}, rounds {fig['rounds']} (2 between players + 1 dealer round trip), "
            f"max|err| {fig['error']:.1e}"
        )

if __name__ == "__main__":
    main()
