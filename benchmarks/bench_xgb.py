"""Secure XGBoost (SS-XGB and HE SecureBoost) against plaintext xgboost, in one run.

Prints, for both variants: training time as a ratio to ``xgboost.XGBClassifier(tree_method="hist",
n_jobs=1)`` with the same parameters on the same data (median of ``--repeats`` runs after a warm-up
for xgboost, which is fast; the secure runs ``--secure-repeats`` times each, interleaved, median
reported; SecureBoost once per scheme of ``--he``; all parties run as threads of this process,
so their compute adds up on the shared cores). Both wall-clock and CPU time (of the whole
process, i.e. every party) are reported: on a loaded machine the CPU ratio is the steadier
figure; test AUC of both, bytes sent per tree (all parties, from ``party.stats``), how the secure
training time grows with depth (2..5), and regression on targets of magnitude 1e9 (test R^2 of
both against xgboost's on the same data).

    python -m benchmarks.bench_xgb            # breast_cancer, synthetic 50,000 x 20 (10/10), depth sweep, regression
    python -m benchmarks.bench_xgb --quick    # small smoke run
    python -m benchmarks.bench_xgb --large-only --large-trees 3 --large-methods he --secure-repeats 3
                                              # issue 18's target: SecureBoost 50,000 x 20, OU and Paillier
"""

from __future__ import annotations

import argparse
import statistics
import time

import xgboost
from sklearn.datasets import load_breast_cancer, load_diabetes, make_classification
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import train_test_split

from mpcml.floors import insecure_test_keys
from protocols.xgb import SecureXGBClassifier, SecureXGBRegressor


def _timed(fit) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this whole process: every party's thread counts)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fit()
    return time.perf_counter() - wall, time.process_time() - cpu


def _xgb_time(xtr, ytr, xte, trees, depth, max_bin, repeats):
    times = []
    for _ in range(repeats + 1):  # the first run warms up and is dropped
        model = xgboost.XGBClassifier(n_estimators=trees, max_depth=depth, learning_rate=0.3, tree_method="hist",
                                      max_bin=max_bin, n_jobs=1)
        times.append(_timed(lambda: model.fit(xtr, ytr)))
    wall = statistics.median(t[0] for t in times[1:])
    cpu = statistics.median(t[1] for t in times[1:])
    return (wall, cpu), model.predict_proba(xte)[:, 1]


def variants(methods, schemes):
    """``(label, options)`` of every secure variant: SS-XGB, and SecureBoost once per scheme in ``schemes``."""
    out = []
    for method in methods:
        out += [("ss", {"method": "ss"})] if method == "ss" else [(f"he-{s}", {"method": "he", "he": s}) for s in schemes]
    return out


def _secure(options, parts_tr, ytr, parts_te, trees, depth, max_bin, key_bits):
    clf = SecureXGBClassifier(**options, n_estimators=trees, max_depth=depth, max_bin=max_bin, key_bits=key_bits)
    elapsed = _timed(lambda: clf.fit(parts_tr, ytr))
    return elapsed, clf.predict_proba(parts_te)[:, 1], clf.communication_.total_bytes / trees


def compare(name, x, y, bounds, trees, depth, max_bin, key_bits, repeats, methods, secure_repeats=1):
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    parts_tr = [xtr[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    parts_te = [xte[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    plain, p_plain = _xgb_time(xtr, ytr, xte, trees, depth, max_bin, repeats)
    auc_plain = roc_auc_score(yte, p_plain)
    print(f"\n{name}: {xtr.shape[0]} training rows, blocks {[b - a for a, b in zip(bounds[:-1], bounds[1:])]}, "
          f"{trees} trees, depth {depth}, max_bin {max_bin}; xgboost {plain[0] * 1e3:.1f} ms wall, "
          f"{plain[1] * 1e3:.1f} ms CPU, AUC {auc_plain:.4f}")
    runs: dict[str, list] = {label: [] for label, _ in methods}
    for _ in range(secure_repeats):  # interleaved, so every variant sees the same spread of machine load
        for label, options in methods:
            runs[label].append(_secure(options, parts_tr, ytr, parts_te, trees, depth, max_bin, key_bits))
    print(f"  {'method':<11} {'wall s':>8} {'x xgb':>7} {'CPU s':>8} {'x xgb':>7} {'AUC':>8} {'dAUC':>8} {'MB/tree':>9}"
          f"  CPU s of each run")
    for label, _ in methods:
        wall = statistics.median(r[0][0] for r in runs[label])
        cpu = statistics.median(r[0][1] for r in runs[label])
        proba, per_tree = runs[label][0][1], runs[label][0][2]
        auc = roc_auc_score(yte, proba)
        print(f"  {label:<11} {wall:>8.2f} {wall / plain[0]:>7.0f} {cpu:>8.2f} {cpu / plain[1]:>7.0f} "
              f"{auc:>8.4f} {auc - auc_plain:>+8.4f} {per_tree / 1e6:>9.2f}  "
              + " ".join(f"{r[0][1]:.1f}" for r in runs[label]))


def depth_sweep(x, y, bounds, trees, depths, max_bin, key_bits, repeats, methods):
    xtr, xte, ytr, _ = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    parts_tr = [xtr[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    parts_te = [xte[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    print(f"\ndepth sweep on breast_cancer ({trees} trees): secure CPU s per tree, CPU ratio to xgboost, MB per tree")
    print(f"  {'depth':>5} " + " ".join(f"{m + ' s/tree':>12} {m + ' x':>8} {m + ' MB':>8}" for m, _ in methods))
    for depth in depths:
        plain, _ = _xgb_time(xtr, ytr, xte, trees, depth, max_bin, repeats)
        cells = []
        for _, options in methods:
            (_, cpu), _, per_tree = _secure(options, parts_tr, ytr, parts_te, trees, depth, max_bin, key_bits)
            cells.append(f"{cpu / trees:>12.2f} {cpu / plain[1]:>8.0f} {per_tree / 1e6:>8.2f}")
        print(f"  {depth:>5} " + " ".join(cells))


def regression(trees, depth, key_bits, methods, top=1e9):
    """diabetes with the targets scaled to |y| <= ``top`` (issue 14 case 4): test R^2 of each method and xgboost's."""
    x, y = load_diabetes(return_X_y=True)
    y = y * top / y.max()
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0)
    plain = xgboost.XGBRegressor(n_estimators=trees, max_depth=depth, learning_rate=0.3, tree_method="hist", max_bin=32)
    r2_plain = r2_score(yte, plain.fit(xtr, ytr).predict(xte))
    print(f"\ndiabetes, targets up to {top:g}, {trees} trees, depth {depth}: xgboost test R^2 {r2_plain:.4f}")
    for label, options in methods:
        reg = SecureXGBRegressor(**options, n_estimators=trees, max_depth=depth, key_bits=key_bits)
        (wall, cpu) = _timed(lambda: reg.fit([xtr[:, :5], xtr[:, 5:]], ytr))
        r2 = r2_score(yte, reg.predict([xte[:, :5], xte[:, 5:]]))
        print(f"  {label:<11} test R^2 {r2:.4f} ({r2 - r2_plain:+.4f}), {wall:.1f} s wall, "
              f"{reg.communication_.total_bytes / trees / 1e6:.2f} MB/tree")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--large-trees", type=int, default=10, help="trees for the 50,000-row case")
    parser.add_argument("--large-methods", default="he,ss", help="methods for the 50,000-row case")
    parser.add_argument("--large-rows", type=int, default=50_000, help="training rows of the large case")
    parser.add_argument("--large-only", action="store_true", help="only the large case")
    parser.add_argument("--he", default="ou,paillier", help="schemes SecureBoost runs under, side by side")
    parser.add_argument("--secure-repeats", type=int, default=1, help="secure runs per variant (median reported)")
    args = parser.parse_args()
    schemes = args.he.split(",")
    methods = variants(["he", "ss"], schemes)
    large = variants(args.large_methods.split(","), schemes)
    x, y = load_breast_cancer(return_X_y=True)
    xs, ys = make_classification(n_samples=int(args.large_rows / 0.7) + 1, n_features=20, n_informative=10,
                                 random_state=0)
    if args.large_only:
        compare(f"synthetic {args.large_rows:,} x 20", xs, ys, [0, 10, 20], args.large_trees, 3, 32, args.key_bits,
                args.repeats, large, args.secure_repeats)
        return
    if args.quick:
        with insecure_test_keys():  # 1024-bit keys: a smoke run, never a deployment
            compare("breast_cancer", x, y, [0, 15, 30], 2, 2, 16, 1024, 3, methods)
            xs, ys = make_classification(n_samples=3000, n_features=20, n_informative=10, random_state=0)
            compare("synthetic", xs, ys, [0, 10, 20], 2, 2, 16, 1024, 3, methods)
            depth_sweep(x, y, [0, 15, 30], 1, [2, 3], 16, 1024, 3, methods)
            regression(2, 2, 1024, methods)
        return
    compare("breast_cancer", x, y, [0, 15, 30], 10, 3, 32, args.key_bits, args.repeats, methods, args.secure_repeats)
    compare(f"synthetic {args.large_rows:,} x 20", xs, ys, [0, 10, 20], args.large_trees, 3, 32, args.key_bits,
            args.repeats, large, args.secure_repeats)
    depth_sweep(x, y, [0, 15, 30], 2, [2, 3, 4, 5], 32, args.key_bits, args.repeats, methods)
    regression(10, 3, args.key_bits, methods)


if __name__ == "__main__":
    main()
