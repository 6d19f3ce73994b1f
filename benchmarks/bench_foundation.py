"""Foundation benchmark: ring matmul vs float64 BLAS, SharedTensor matmul vs plaintext, and the two engines.

Run: ``python -m benchmarks.bench_foundation`` (``--quick`` for a small smoke run). Every ratio
is the median over ``--repeats`` runs of (mpcml time / plaintext float64 time), the two timed
back to back in each run so that both see the same machine load. Shared matmuls run in-process (``run_local``, a thread per party) with
the dealer's triple generation inside the timed region; bytes and rounds are those of the
matmul alone (input sharing and reveal excluded), from ``party.stats``. Plaintext and shared
runs use the same BLAS threading; on a loaded machine the ratios move, so compare them only
within one run.

Engines (``--engines``): the same operations on the ``"beaver"`` engine (two players and a
dealer, the dealer's work inside the timed region) and the ``"rss3"`` engine (three players, no
dealer), run back to back in each repeat; the ratio is rss3 / beaver per repeat, median over
repeats. Operations: a 10,000 x 100 by 100 x 1 product, an n x n product, a batch of
comparisons and of ``"linear"`` and ``"sqrt"`` sigmoids, and the breast-cancer logistic
regression (10 epochs, batch 128, ``"linear"`` sigmoid): input sharing, then
:func:`protocols.regression.train_shared` (masked matrix, training, the per-epoch guard) and the
reveal of the weights, all timed, with its train AUC against the plaintext replay's. Bytes: sent between players, and to/from the dealer; rounds: between players on the
critical path (:class:`mpcml.recording.RecordingParty`; dealer round trips not counted). The engine
runs use one BLAS thread per call (three party threads share the machine's cores).
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any, Callable

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from benchmarks.timing import timed
from mpcml import DealerTriples, Session, SharedTensor, make_session, run_dealer, run_local
from mpcml.csprng import Csprng
from mpcml.nonlinear import sigmoid
from mpcml.recording import recorded_run
from mpcml.ring import ring_matmul
from protocols.common import logistic
from protocols.regression import RegressionConfig, plaintext_sgd, train_shared
from protocols.regression.reference import reference_scales

PLAYERS = ("alice", "bob")
ENGINE_PLAYERS = {"beaver": ("alice", "bob"), "rss3": ("alice", "bob", "carol")}


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


def run_engine(engine: str, compute: Callable[[Session], Any], inputs: dict[str, Any]) -> tuple[dict, dict]:
    """``compute(session, *inputs)`` at every player of ``engine`` (plus the dealer for beaver);
    returns the players' outputs and their ``CommStats`` (the dealer's under ``"dealer"``)."""
    players = ENGINE_PLAYERS[engine]

    def role(party, *args):
        session = make_session(party, players, engine)
        result = compute(session, *args)
        session.close()
        return result

    roles = {pid: role for pid in players}
    if engine == "beaver":
        roles["dealer"] = lambda party: run_dealer(party, players)
    out = recorded_run(roles, {pid: inputs.get(pid, ()) for pid in players}, timeout=1200)
    return {pid: out[pid] for pid in players}, out.stats


def timed_step(session: Session, step: Callable[[], Any]) -> dict[str, Any]:
    """Time ``step`` after a synchronising opening, with this player's traffic and depth during it."""
    session.zeros(1).reveal_ring()
    before, depth = session.party.stats.snapshot(), session.party.depth
    seconds = timed(step)
    return {"seconds": seconds, "traffic": session.party.stats.snapshot() - before, "depth": (depth, session.party.depth)}


def step_figures(outputs: dict) -> dict[str, float]:
    """Slowest player's time, bytes between players and to/from the dealer, and the rounds between
    players on the critical path (:class:`mpcml.recording.RecordingParty` depth)."""
    players = tuple(outputs)
    traffic = [out["traffic"] for out in outputs.values()]
    depths = [out["depth"] for out in outputs.values()]
    return {
        "seconds": max(out["seconds"] for out in outputs.values()),
        "player_bytes": sum(t.sent_to.get(p, 0) for t in traffic for p in players),
        "dealer_bytes": sum(t.sent_to.get("dealer", 0) + t.received_from.get("dealer", 0) for t in traffic),
        "rounds": max(d[1] for d in depths) - max(d[0] for d in depths),
    }


def operation(engine: str, kind: str, size: tuple) -> dict[str, float]:
    """One timed shared operation on ``engine``: ``("matmul", shape_a, shape_b)`` or ``("ltz"|"linear"|"sqrt", n)``."""
    data = np.random.default_rng(0)  # benchmark data only
    if kind == "matmul":
        x, y = data.normal(size=size[0]), data.normal(size=size[1])
    else:
        x, y = data.normal(scale=4.0, size=size[0]), None

    def compute(session: Session, value=None, other=None):
        xs = session.input(value, owner="alice")
        if kind == "matmul":
            ys = session.input(other, owner="bob")
            return timed_step(session, lambda: xs @ ys)
        if kind == "ltz":
            return timed_step(session, xs.ltz_bits)
        return timed_step(session, lambda: sigmoid(xs, kind))

    outputs, _ = run_engine(engine, compute, {"alice": (x, None), "bob": (None, y)})
    return step_figures(outputs)


def regression_inputs() -> tuple[np.ndarray, np.ndarray, RegressionConfig]:
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    config = RegressionConfig(loss="logistic", batch_size=128, epochs=10, random_state=0, holders=("alice", "bob"),
                              label_holder="alice")
    return X, y.astype(np.float64), config


def train(session: Session, block: np.ndarray | None, y: np.ndarray | None, config: RegressionConfig) -> np.ndarray:
    """Steps 3-6 of :mod:`protocols.regression` at a player: alice holds the first half of the
    columns and the labels, bob the second half (vertical); :func:`protocols.regression.train_shared`
    (masked matrix, batches, sigmoid, fused update, per-epoch guard); returns the revealed weights."""
    xs = SharedTensor.concatenate([session.input(block if session.party.id == h else None, owner=h) for h in ("alice", "bob")], axis=1)
    ys = session.input(None if y is None else y[:, None], owner="alice")
    xs = SharedTensor.concatenate([xs, session.public(np.ones((xs.shape[0], 1)))], axis=1)
    X, labels, _ = regression_inputs()
    scales = reference_scales(config, X, labels[:, None])
    w, _ = train_shared(session, xs, ys, config, scales, config.seed)
    return w.reveal()[:, 0]


def regression(engine: str) -> dict[str, float]:
    """The timed training run on ``engine``, with the train AUC of the weights it reveals."""
    X, y, config = regression_inputs()
    halves = np.array_split(X, 2, axis=1)

    def compute(session: Session, block=None, labels=None):
        weights = []
        figures = timed_step(session, lambda: weights.append(train(session, block, labels, config)))
        return {**figures, "weights": weights[0]}

    outputs, _ = run_engine(engine, compute, {"alice": (halves[0], y), "bob": (halves[1], None)})
    weights = outputs["alice"]["weights"]
    return {**step_figures(outputs), "auc": float(roc_auc_score(y, logistic(X @ weights[:-1] + weights[-1])))}


def engine_table(n: int, size: int, repeats: int) -> None:
    """Every operation on both engines, back to back per repeat; medians and rss3/beaver ratios."""
    cases: list[tuple[str, Callable[[str], dict]]] = [
        (f"matmul {n * 10}x100 @ 100x1", lambda e: operation(e, "matmul", ((n * 10, 100), (100, 1)))),
        (f"matmul {n}x{n} @ {n}x{n}", lambda e: operation(e, "matmul", ((n, n), (n, n)))),
        (f"comparison x {size}", lambda e: operation(e, "ltz", ((size,),))),
        (f"sigmoid 'linear' x {size}", lambda e: operation(e, "linear", ((size,),))),
        (f"sigmoid 'sqrt' x {size}", lambda e: operation(e, "sqrt", ((size,),))),
        ("logistic regression, breast cancer", regression),
    ]
    print(f"engines, in-process, one BLAS thread, beaver: 2 players + dealer, rss3: 3 players "
          f"(medians of {repeats}; ratio rss3/beaver per repeat)")
    print(f"  {'operation':<36} {'beaver ms':>10} {'rss3 ms':>10} {'ratio':>6}   bytes between players (+dealer), rounds: beaver | rss3")
    for label, case in cases:
        runs = [(case("beaver"), case("rss3")) for _ in range(repeats)]
        beaver, rss3 = runs[-1]
        med = {e: statistics.median(r[i]["seconds"] for r in runs) for i, e in enumerate(("beaver", "rss3"))}
        ratio = statistics.median(r[1]["seconds"] / r[0]["seconds"] for r in runs)
        print(f"  {label:<36} {med['beaver'] * 1e3:10.1f} {med['rss3'] * 1e3:10.1f} {ratio:6.2f}   "
              f"{beaver['player_bytes']} (+{beaver['dealer_bytes']}), {beaver['rounds']} | {rss3['player_bytes']}, {rss3['rounds']}")
    X, y, config = regression_inputs()
    coef, intercept = plaintext_sgd(X, y, config)
    print(f"  logistic regression train AUC: beaver {beaver['auc']:.4f}, rss3 {rss3['auc']:.4f}, "
          f"plaintext replay {roc_auc_score(y, X @ coef[0] + intercept[0]):.4f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, one repeat (smoke run)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-engines", dest="engines", action="store_false", help="skip the engine comparison")
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
    if args.engines:
        with threadpool_limits(limits=1, user_api="blas"):
            engine_table(200 if args.quick else 1000, 10_000 if args.quick else 100_000, repeats)


if __name__ == "__main__":
    main()
