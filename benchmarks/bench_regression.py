"""Secure logistic regression: time and bytes per epoch against the same algorithm in plaintext numpy.

Run: ``python -m benchmarks.bench_regression`` (``--quick`` for a small smoke run). Two holders,
vertical partition (half the columns each), the dealer supplying triples, all in one process
(:func:`mpcml.run_local`). For ``load_breast_cancer`` (standardised) and a synthetic
100,000 x 100 data set prints, per epoch: the secure time (median over the epochs of a run, the
setup that opens the masked matrix excluded and printed apart), the plaintext time of
:func:`protocols.regression.plaintext_sgd` (the same algorithm: batches, approximation,
quantisation; median of several runs), their ratio, and the bytes and rounds per epoch (exact:
the difference between a 1-epoch and a 2-epoch run).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from benchmarks.timing import median_time
from mpcml import run_local
from protocols.common import logistic
from protocols.progress import Progress
from protocols.regression import RegressionConfig, plaintext_sgd, roles

HOLDERS = ("alice", "bob")


def secure_run(X: np.ndarray, y: np.ndarray, config: RegressionConfig) -> tuple[dict, list[float], float]:
    """Train once; returns the outputs, the epoch-end times (seconds from the start) and the total time."""
    blocks = np.array_split(X, 2, axis=1)
    progress = Progress(config.epochs, "epoch")
    party_roles, inputs = roles(config, {"alice": (blocks[0], y), "bob": (blocks[1], None)}, progress=progress)
    start = time.perf_counter()
    out = run_local(party_roles, inputs, timeout=600)
    return out, [step["elapsed"] for step in progress.history], time.perf_counter() - start


def plain_epoch_time(X: np.ndarray, y: np.ndarray, config: RegressionConfig, repeats: int) -> float:
    """Median time of one plaintext epoch of the same algorithm (same approximation and quantisation)."""
    return median_time(lambda: plaintext_sgd(X, y, replace(config, epochs=1)), repeats)


def figures(name: str, X: np.ndarray, y: np.ndarray, batch_size: int, epochs: int, repeats: int) -> None:
    config = RegressionConfig(holders=HOLDERS, label_holder="alice", batch_size=batch_size, epochs=epochs,
                              random_state=0)
    out, marks, _ = secure_run(X, y, config)
    epoch_times = np.diff(marks)
    secure_epoch = float(np.median(epoch_times)) if len(epoch_times) else marks[0]
    setup = max(0.0, marks[0] - secure_epoch)  # first epoch minus a typical one; noise can make it negative
    one, _, _ = secure_run(X, y, replace(config, epochs=1))
    two, _, _ = secure_run(X, y, replace(config, epochs=2))
    total = lambda o: sum(s.bytes_sent for s in o.stats.values())  # noqa: E731
    rounds = lambda o: max(s.rounds for s in o.stats.values())  # noqa: E731
    epoch_bytes = total(two) - total(one)
    plain = plain_epoch_time(X, y, config, repeats)
    coef, intercept = plaintext_sgd(X, y, config)
    secure_auc = roc_auc_score(y, logistic(X @ out["alice"]["coef"][0] + out["alice"]["intercept"][0]))
    plain_auc = roc_auc_score(y, X @ coef[0] + intercept[0])
    n_iter = -(-X.shape[0] // batch_size)
    print(f"{name:<24} {X.shape[0]:>7}x{X.shape[1]:<4} B={batch_size:<5} secure {secure_epoch * 1e3:9.1f} ms/epoch "
          f"plain {plain * 1e3:8.2f} ms/epoch ratio {secure_epoch / plain:7.1f}x | "
          f"{epoch_bytes / 1e6:8.2f} MB/epoch ({epoch_bytes / n_iter / 1e3:.1f} kB/iteration, "
          f"{(rounds(two) - rounds(one)) / n_iter:.1f} rounds/iteration) | setup {setup:.2f} s, "
          f"{(total(one) - epoch_bytes) / 1e6:.1f} MB | train AUC secure {secure_auc:.4f} plain {plain_auc:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 4096],
                        help="mini-batch sizes for the synthetic data set (default: 1024 4096)")
    args = parser.parse_args()
    cancer_X, cancer_y = load_breast_cancer(return_X_y=True)
    cancer_X = StandardScaler().fit_transform(cancer_X)
    data = np.random.default_rng(0)  # benchmark data only
    n, d = (10_000, 20) if args.quick else (100_000, 100)
    X = data.normal(size=(n, d))
    y = (data.random(n) < logistic(X @ (data.normal(size=d) / np.sqrt(d)))).astype(np.float64)
    print("secure logistic regression, 2 holders (vertical) + dealer, in-process; 'linear' sigmoid")
    figures("breast_cancer", cancer_X, cancer_y, 32, 3 if args.quick else 5, 3 if args.quick else 7)
    for batch_size in args.batch_sizes:
        figures("synthetic", X, y, batch_size, 3, 3)


if __name__ == "__main__":
    main()
