"""Dropout-resilient coded training: set-up, per-round and decode cost for N = 10, 20, 40, and one-vs-rest.

Run: ``python -m benchmarks.bench_coded`` (``--quick`` for a smoke run).

A fixed synthetic data set (``rows`` x 30 standardised features, logistic labels) is split evenly
over ``N`` clients; ``T = 2`` masks and the largest ``K`` with ``R = 2 (K + 1) + 1 <= 0.7 N`` so
30% of the clients may drop each round, and 30% do (simulated). All parties run in this process
(threads, :func:`mpcml.run_local`), so the measured round time serialises work that a real
federation runs in parallel; the per-client gradient time is therefore also timed alone. Every
time is a median and is shown as a ratio to one plaintext full-batch gradient step
(``X^T (sigma(X w) - y)`` in float64 numpy on all the data) measured in the same run.

One-vs-rest: three classes in one run (one set-up, every round carries the three models) against
one binary fit and against three binary fits, on the same data (N = 10): wall time and bytes.
"""

from __future__ import annotations

import numpy as np

from benchmarks.timing import median_time, quick_main
from mpcml.csprng import Csprng
from protocols.coded import CodedLogisticRegression, CodedStack, design, encode_data
from protocols.coded.coding import residues, weight_integers

FEATURES = 30


def dataset(rows: int) -> tuple[np.ndarray, np.ndarray]:
    data = np.random.default_rng(0)
    X = data.normal(size=(rows, FEATURES))
    y = (X @ np.linspace(-1, 1, FEATURES) + data.normal(size=rows) > 0).astype(float)
    return X, y


def plaintext_step(X: np.ndarray, y: np.ndarray, repeats: int) -> float:
    design_matrix = np.column_stack([X, np.ones(len(y))])
    w = np.full(design_matrix.shape[1], 0.01)
    return median_time(lambda: design_matrix.T @ (1.0 / (1.0 + np.exp(-(design_matrix @ w))) - y) / len(y), repeats)


def bench_n(n_clients: int, X: np.ndarray, y: np.ndarray, rounds: int, repeats: int) -> dict[str, float]:
    k = max(1, int((0.7 * n_clients - 3) // 2))
    parts = list(zip(np.array_split(X, n_clients), np.array_split(y, n_clients)))
    est = CodedLogisticRegression(n_blocks=k, n_masks=2, n_rounds=rounds, n_dropouts=int(0.3 * n_clients),
                                  random_state=0, round_timeout=60.0).fit(parts)
    config, plan = est.config_, est.plan_
    rng = Csprng()
    data = design(config, plan, parts[0][0], parts[0][1][:, None])
    encode = median_time(lambda: encode_data(config, data, rng), repeats)
    stack = CodedStack(np.concatenate([encode_data(config, design(config, plan, Xi, yi[:, None]), rng)[0]
                                       for Xi, yi in parts], axis=1), FEATURES + 1)
    weights = residues(config, weight_integers(plan, np.r_[est.coef_.T, est.intercept_[None, :]]))
    client = median_time(lambda: stack.gradient(weights, config.primes), repeats)
    return {
        "K": k, "R": config.recovery_threshold, "P": plan.frac_x, "F": plan.frac_v, "encode": encode,
        "setup_bytes": est.setup_bytes_ / n_clients, "round": float(np.median(est.round_seconds_)), "client": client,
        "decode": float(np.median(est.decode_seconds_)), "round_bytes": float(np.median(est.round_bytes_)),
        "rows": stack.features.shape[1],
    }


def one_vs_rest(X: np.ndarray, rounds: int, repeats: int) -> None:
    """Three classes in one run against one and three binary runs (N = 10, defaults)."""
    labels = np.digitize(X @ np.linspace(-1, 1, FEATURES), [-1.0, 1.0])  # 0, 1, 2
    three = list(zip(np.array_split(X, 10), np.array_split(labels, 10)))
    binary = [(Xi, (yi == 0).astype(float)) for Xi, yi in three]
    fits = {}
    for name, parts in (("3 classes, one run", three), ("binary", binary)):
        est = CodedLogisticRegression(n_rounds=rounds, round_timeout=60.0)
        seconds = median_time(lambda: est.fit(parts), repeats)
        fits[name] = (seconds, est.communication_.total_bytes)
    (ovr_s, ovr_b), (bin_s, bin_b) = fits["3 classes, one run"], fits["binary"]
    print(f"one-vs-rest, N = 10, {rounds} rounds: 3 classes in one run {ovr_s:.2f} s, {ovr_b / 1e6:.2f} MB; one binary fit "
          f"{bin_s:.2f} s, {bin_b / 1e6:.2f} MB; so 3 classes cost {ovr_s / bin_s:.2f}x one fit in time and "
          f"{ovr_b / bin_b:.2f}x in bytes (three binary fits: 3x)")


def main(argv: list[str] | None = None) -> None:
    quick_main(__doc__, "smaller data, N = 10 and 20 only, few rounds", run, argv)


def run(quick: bool) -> None:
    rows, rounds, repeats = (2000, 3, 3) if quick else (20000, 10, 5)
    sizes = (10, 20) if quick else (10, 20, 40)
    X, y = dataset(rows)
    plain = plaintext_step(X, y, 20)
    print(f"coded logistic regression, {rows} rows x {FEATURES} features split over N clients, T = 2, 30% dropouts "
          f"per round; plaintext full-batch gradient step = {plain * 1e3:.2f} ms (ratios below are to it)")
    print(f"{'N':>3} {'K':>3} {'R':>3} {'P/F':>6} | {'encode/client':>14} {'setup B/client':>14} | {'rows held':>9}"
          f" {'client grad':>12} | {'round (in-proc)':>16} {'round B':>8} | {'decode':>12}")
    results = {}
    for n in sizes:
        r = results[n] = bench_n(n, X, y, rounds, repeats)
        print(f"{n:>3} {r['K']:>3} {r['R']:>3} {r['P']:>2}/{r['F']:<3} | {r['encode'] * 1e3:>7.1f} ms "
              f"{r['encode'] / plain:>4.0f}x {r['setup_bytes'] / 1e6:>11.2f} MB | {r['rows']:>9} {r['client'] * 1e3:>6.1f} ms "
              f"{r['client'] / plain:>3.0f}x | {r['round'] * 1e3:>8.1f} ms {r['round'] / plain:>4.0f}x "
              f"{r['round_bytes'] / 1e3:>6.1f}k | {r['decode'] * 1e3:>6.2f} ms {r['decode'] / plain:>3.1f}x")
    first = results[sizes[0]]
    print(f"growth relative to N = {sizes[0]}: " + "; ".join(
        f"N = {n}: round {r['round'] / first['round']:.2f}x, client gradient {r['client'] / first['client']:.2f}x, "
        f"decode {r['decode'] / first['decode']:.2f}x, server bytes/round {r['round_bytes'] / first['round_bytes']:.2f}x"
        for n, r in results.items()))
    one_vs_rest(X[: rows // 4], 20 if quick else 100, 1 if quick else 3)


if __name__ == "__main__":
    main()
