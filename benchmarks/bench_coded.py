"""Dropout-resilient coded training: setup, per-round and decode cost for N = 10, 20, 40, against plaintext.

Run: ``python -m benchmarks.bench_coded`` (``--quick`` for a smoke run).

A fixed synthetic data set (``rows`` x 30 features, logistic labels) is split evenly over ``N``
clients; ``T = 2`` masks and the largest ``K`` with ``R = 2 (K + 1) + 1 <= 0.7 N`` so 30% of the
clients may drop each round, and 30% do (simulated). All parties run in this process
(threads, :func:`mpcml.run_local`), so the measured round time serialises work that a real
federation runs in parallel; the per-client gradient time is therefore also timed alone.
Every time is a median and is shown as a ratio to one plaintext full-batch gradient step
(``X^T (sigma(X w) - y)`` in float64 numpy on all the data) measured in the same run.
"""

from __future__ import annotations

import numpy as np

from benchmarks.timing import median_time, quick_main
from mpcml.csprng import Csprng
from protocols.coded import (
    CodedLogisticRegression,
    coded_gradient,
    encode_data,
    quantized_data,
    quantized_weights,
)

FEATURES = 30


def dataset(rows: int) -> tuple[np.ndarray, np.ndarray]:
    data = np.random.default_rng(0)
    X = np.clip(data.normal(size=(rows, FEATURES)), -3, 3)
    y = (X @ np.linspace(-1, 1, FEATURES) + data.normal(size=rows) > 0).astype(float)
    return X, y


def plaintext_step(X: np.ndarray, y: np.ndarray, repeats: int) -> float:
    design = np.column_stack([X, np.ones(len(y))])
    w = np.full(design.shape[1], 0.01)
    return median_time(lambda: design.T @ (1.0 / (1.0 + np.exp(-(design @ w))) - y) / len(y), repeats)


def bench_n(n_clients: int, X: np.ndarray, y: np.ndarray, rounds: int, repeats: int) -> dict[str, float]:
    k = max(1, int((0.7 * n_clients - 3) // 2))
    parts = list(zip(np.array_split(X, n_clients), np.array_split(y, n_clients)))
    est = CodedLogisticRegression(n_blocks=k, n_masks=2, n_rounds=rounds, learning_rate=0.5, dropout_rate=0.3,
                                  feature_bound=3.0, random_state=0, round_timeout=60.0).fit(parts)
    config, f = est.config_, est.frac_bits_
    data = quantized_data(config, *parts[0], f)
    rng = Csprng()
    encode = median_time(lambda: encode_data(config, data, rng), repeats)
    stack = np.concatenate([encode_data(config, quantized_data(config, *p, f), rng)[0] for p in parts], axis=1)
    weights_q = quantized_weights(config, np.append(est.coef_, est.intercept_), f)
    client = median_time(lambda: coded_gradient(stack, weights_q, config.primes), repeats)
    return {
        "K": k, "R": config.recovery_threshold, "f": f, "encode": encode, "setup_bytes": est.setup_bytes_ / n_clients,
        "round": float(np.median(est.round_seconds_)), "client": client,
        "decode": float(np.median(est.decode_seconds_)),
        "round_bytes": float(np.median(est.round_bytes_)), "rows": stack.shape[1],
    }


def main(argv: list[str] | None = None) -> None:
    quick_main(__doc__, "smaller data, N = 10 and 20 only, few rounds", run, argv)


def run(quick: bool) -> None:
    rows, rounds, repeats = (2000, 3, 3) if quick else (20000, 10, 5)
    sizes = (10, 20) if quick else (10, 20, 40)
    X, y = dataset(rows)
    plain = plaintext_step(X, y, 20)
    print(f"coded logistic regression, {rows} rows x {FEATURES} features split over N clients, T = 2, 30% dropouts "
          f"per round; plaintext full-batch gradient step = {plain * 1e3:.2f} ms (ratios below are to it)")
    print(f"{'N':>3} {'K':>3} {'R':>3} {'f':>3} | {'encode/client':>14} {'setup B/client':>14} | {'rows held':>9}"
          f" {'client grad':>12} | {'round (in-proc)':>16} {'round B':>8} | {'decode':>12}")
    results = {}
    for n in sizes:
        r = results[n] = bench_n(n, X, y, rounds, repeats)
        print(f"{n:>3} {r['K']:>3} {r['R']:>3} {r['f']:>3} | {r['encode'] * 1e3:>7.1f} ms {r['encode'] / plain:>4.0f}x"
              f" {r['setup_bytes'] / 1e6:>11.2f} MB | {r['rows']:>9} {r['client'] * 1e3:>6.1f} ms {r['client'] / plain:>3.0f}x"
              f" | {r['round'] * 1e3:>8.1f} ms {r['round'] / plain:>4.0f}x {r['round_bytes'] / 1e3:>6.1f}k"
              f" | {r['decode'] * 1e3:>6.2f} ms {r['decode'] / plain:>3.1f}x")
    first = results[sizes[0]]
    print(f"growth relative to N = {sizes[0]}: " + "; ".join(
        f"N = {n}: round {r['round'] / first['round']:.2f}x, client gradient {r['client'] / first['client']:.2f}x, "
        f"decode {r['decode'] / first['decode']:.2f}x, server bytes/round {r['round_bytes'] / first['round_bytes']:.2f}x"
        for n, r in results.items()))


if __name__ == "__main__":
    main()
