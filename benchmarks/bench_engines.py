"""Issue 20's targets in one run: the replicated engine ``rss3`` against the dealer engine ``beaver``.

Run: ``python -m benchmarks.bench_engines`` (``--repeats N``, default 3; ``--quick`` for a smoke
run with small sizes). Everything runs in this process (:func:`mpcml.run_local`, a thread per
party, one BLAS thread), through the public estimators where there is one, so each time is a whole
fit: set-up (the rss3 key exchange, the dealer's seeds), input sharing, training, output. In each
repeat the two engines run back to back (beaver first, then rss3), so both see the same load; the
figures are the medians over repeats of each time and of the per-repeat ratio rss3 / beaver, wall
clock and CPU (the process's CPU time: every party's thread, the dealer's included). The machine's
load average is printed before and after.

Both engines run on the **same three data parties**; beaver adds a dealer (a fourth party),
rss3 computes on the three (honest majority, no dealer):

(a) ``SecureLogisticRegression`` on standardised breast cancer, vertical ``Vertical(10, 10, 10)``,
    10 epochs, batch 128, default sigmoid (``"linear"``), ``random_state=0``: time ratio (target
    <= 1.5) and the train AUC of each engine's weights (target: within 0.002).
(b) ``SecureXGBClassifier(method="ss")`` on breast cancer, ``Vertical(10, 10, 10)``, 10 trees of depth
    3: time ratio (target <= 2) and the two models' margins (secure prediction, on every row): the
    splits must be the same, and each model's margins lie within :meth:`Replay.margin_tolerance` of
    the plaintext replay of its own forest (the fixed-point error of the leaf weights summed along
    each row's path), so the two differ by at most the sum of the two bounds, which is checked.
(c) a shared 10,000 x 100 by 100 x 1 product (:func:`benchmarks.bench_foundation.operation`: the
    product alone, inputs shared beforehand; beaver: two players + dealer, rss3: three players):
    target rss3 time <= beaver time.
(d) ``SecurePCA(variant="ss")`` on three holders' row blocks (breast cancer, and 3 x 20,000 x 50
    synthetic rows, 10 components): time ratio and the largest difference between the two models'
    components (both sums are exact in the ring, so it is float rounding).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any, Callable

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from benchmarks.bench_foundation import operation
from protocols.estimator import Vertical
from protocols.pca import SecurePCA
from protocols.regression import SecureLogisticRegression
from protocols.xgb import Forest, SecureXGBClassifier, plaintext_xgb

ENGINES = ("beaver", "rss3")


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def timed_fit(fit: Callable[[], Any]) -> tuple[Any, float, float]:
    """``(result, wall seconds, CPU seconds of the whole process)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fit()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def interleaved(name: str, fit: Callable[[str], Any], repeats: int, target: str,
                seconds: Callable[[Any], float] | None = None, contenders: tuple[str, ...] = ENGINES
                ) -> dict[str, list]:
    """``fit(contender)`` for every contender (the engines) back to back, ``repeats`` times; prints
    the medians and the median per-repeat ratios rss3 / each other contender (wall: of the whole
    call, or ``seconds(result)`` where the result times its own step)."""
    runs: dict[str, list] = {c: [] for c in contenders}
    for _ in range(repeats):
        for contender in contenders:
            result, wall, cpu = timed_fit(lambda: fit(contender))
            runs[contender].append((result, seconds(result) if seconds else wall, cpu))
    print(name)
    for c in contenders:
        print(f"  {c:<18} {statistics.median(r[1] for r in runs[c]):8.4f} s (CPU "
              f"{statistics.median(r[2] for r in runs[c]):7.3f})", end="")
        if c != "rss3":
            pairs = list(zip(runs["rss3"], runs[c]))
            print(f"   rss3/{c}: wall {statistics.median(r[1] / b[1] for r, b in pairs):.2f} (per repeat "
                  f"{', '.join(f'{r[1] / b[1]:.2f}' for r, b in pairs)}), CPU "
                  f"{statistics.median(r[2] / b[2] for r, b in pairs):.2f}   target {target}", end="")
        print(flush=True)
    return {c: [r[0] for r in runs[c]] for c in contenders}


def regression(repeats: int, epochs: int) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)

    def fit(contender: str) -> SecureLogisticRegression:
        engine, _, holders = contender.partition(" ")
        partition = Vertical(15, 15) if holders else Vertical(10, 10, 10)
        return SecureLogisticRegression(epochs=epochs, batch_size=128, random_state=0, engine=engine,
                                        partition=partition).fit(X, y)

    models = interleaved(f"(a) logistic regression, breast cancer {X.shape}, {epochs} epochs, batch 128, 3 holders "
                         "(and beaver on 2 holders + dealer, the cheapest beaver run)", fit, repeats, "<= 1.5",
                         contenders=("beaver", "beaver (2 holders)", "rss3"))
    auc = {c: [roc_auc_score(y, m.decision_function(X)) for m in ms] for c, ms in models.items()}
    print(f"  train AUC {'; '.join(f'{c} {min(a):.4f}..{max(a):.4f}' for c, a in auc.items())}; largest |rss3 - "
          f"beaver| over the repeats {max(abs(r - b) for r, b in zip(auc['rss3'], auc['beaver'])):.4f} "
          f"(target <= 0.002)", flush=True)


def xgb(repeats: int, trees: int, depth: int) -> None:
    X, y = load_breast_cancer(return_X_y=True)

    def fit(engine: str) -> SecureXGBClassifier:
        return SecureXGBClassifier(method="ss", engine=engine, n_estimators=trees, max_depth=depth, random_state=0,
                                   partition=Vertical(10, 10, 10)).fit(X, y)

    models = interleaved(f"(b) SS-XGB, breast cancer {X.shape}, {trees} trees of depth {depth}, 3 parties", fit,
                         repeats, "<= 2")
    def examined(est: SecureXGBClassifier) -> tuple[Forest, np.ndarray, np.ndarray]:
        """The forest, its securely predicted margins, and the replay's per-row bound (the replay of
        the same forest raises if any split or leaf is off the plaintext algorithm's)."""
        forest, blocks = Forest.from_parts(est.models_), est.feature_blocks(X)
        replay = plaintext_xgb(blocks, y, est.config_, follow=forest)
        return forest, est.margins(X), replay.margin_tolerance(blocks)

    def compare(name: str, first: SecureXGBClassifier, second: SecureXGBClassifier) -> None:
        (fa, ma, ba), (fb, mb, bb) = examined(first), examined(second)
        differing = sum(int(np.sum((a.features != b.features) | ~np.isclose(a.thresholds, b.thresholds, equal_nan=True)))
                        for a, b in zip(fa.parts, fb.parts))
        diff, bound = np.abs(ma - mb), ba + bb + 1e-9 * (1 + np.abs(ma))
        print(f"  {name}: split nodes that differ {differing}; max |margin difference| {diff.max():.2e}, rows "
              f"beyond the summed replay bounds (max {bound.max():.2e}): {int(np.sum(diff > bound))}; "
              f"predicted labels differ on {int(np.sum((ma > 0) != (mb > 0)))} rows", flush=True)

    for engine in ENGINES:
        print(f"  {engine} train AUC per repeat: "
              f"{', '.join(f'{roc_auc_score(y, m.decision_function(X)):.4f}' for m in models[engine])}")
    for i, (r, b) in enumerate(zip(models["rss3"], models["beaver"])):
        compare(f"repeat {i}: rss3 vs beaver", r, b)
    for i in range(1, repeats):  # the control: two runs on one engine differ by their truncations' randomness too
        compare(f"control: beaver repeat 0 vs {i}", models["beaver"][0], models["beaver"][i])


def product(repeats: int, rows: int) -> None:
    shapes = ((rows, 100), (100, 1))
    figures = interleaved(f"(c) shared {rows} x 100 @ 100 x 1 product (the product step alone, slowest player; "
                          "beaver 2 players + dealer, rss3 3 players; CPU: the whole run)",
                          lambda e: operation(e, "matmul", shapes), repeats, "<= 1", seconds=lambda f: f["seconds"])
    for engine in ENGINES:
        f = figures[engine][-1]
        print(f"  {engine}: bytes between players {f['player_bytes']:,} (dealer {f['dealer_bytes']:,}), "
              f"rounds {f['rounds']}", flush=True)


def pca(repeats: int, rows: int) -> None:
    cancer = StandardScaler().fit_transform(load_breast_cancer().data)
    synthetic = np.random.default_rng(0).normal(size=(3 * rows, 50)) @ np.random.default_rng(1).normal(size=(50, 50))
    for name, X in (("breast cancer", cancer), (f"synthetic {3 * rows} x 50", synthetic)):
        blocks = np.array_split(X, 3)
        models = interleaved(f"(d) SS PCA, {name}, 3 holders computing, 10 components",
                             lambda e: SecurePCA(n_components=10, variant="ss", engine=e).fit(blocks), repeats, "-")
        a, b = models["beaver"][-1], models["rss3"][-1]
        print(f"  max |components rss3 - beaver| {np.max(np.abs(a.components_ - b.components_)):.1e}, bytes beaver "
              f"{a.communication_.total_bytes:,}, rss3 {b.communication_.total_bytes:,}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per engine (default 3)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat (a smoke run)")
    parser.add_argument("--only", choices=("a", "b", "c", "d"), nargs="*", help="run only these targets")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    chosen = set(args.only or "abcd")
    print(f"bench_engines: {repeats} interleaved repeats; {load()}", flush=True)
    with threadpool_limits(limits=1, user_api="blas"):
        if "a" in chosen:
            regression(repeats, 2 if args.quick else 10)
        if "b" in chosen:
            xgb(repeats, 2 if args.quick else 10, 2 if args.quick else 3)
        if "c" in chosen:
            product(repeats, 1000 if args.quick else 10_000)
        if "d" in chosen:
            pca(repeats, 1000 if args.quick else 20_000)
    print(f"done; {load()}", flush=True)


if __name__ == "__main__":
    main()
