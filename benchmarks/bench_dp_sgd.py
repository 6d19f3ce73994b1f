"""DP-SGD for logistic regression (PEA): accuracy at epsilon 1 and 4 against non-private training, PEA's
accuracy aids, and the secure DP fit (the estimator) against plaintext DP-SGD and the non-private secure fit.

Run: ``python -m benchmarks.bench_dp_sgd`` (``--quick``: fewer folds and seeds; ``--part``: one part). Breast cancer,
standardised with the training fold's statistics (treated as public here: a real deployment takes them
from public knowledge or spends budget on them) and clipped to the public bound 13; delta = 1e-5;
expected batch 64, 10 epochs, learning rate 1, clip 1 (fixed beforehand, not tuned per epsilon).
Accuracy: test accuracy over 5 stratified folds x seeds (batches and noise), median and 10th percentile.

- "non-private": scikit-learn ``LogisticRegression`` and the same SGD with neither clipping nor noise;
- "DP-SGD central": :func:`protocols.dp_sgd.plaintext_dp_sgd`, exact sigmoid, noise ``sigma C``;
- "DP-SGD secure noise": the noise the secure run adds with 2 compute parties tolerating 1 colluder
  (each adds ``sigma C``: total ``sqrt(2) sigma C``), or 3 tolerating 1 (each ``sigma C / sqrt(2)``:
  total ``sqrt(1.5) sigma C``), with the "linear" sigmoid of the secure run;
- PEA's aids: local DP initialisation (2 holders, horizontal halves, 5 local epochs then 5 global ones,
  the budget shared by the accountant) and a data-independent random projection to k dimensions.

Through the estimator (``--part estimator``): ``SecureLogisticRegression(dp_epsilon=...)``, 2 holders with
vertical halves + dealer (each adds ``sigma C``, the "linear" sigmoid), 5 folds x 3 fits, against
plaintext DP-SGD central with the exact sigmoid at the same epsilon and hyperparameters, and the
non-private secure fit.

Cost (``--part cost``): the same estimator with and without ``dp_epsilon=4``, in one process; wall time,
CPU time of the process (every party is a thread of it: steadier than wall time on a shared machine) and
bytes per epoch from the difference of a 2-epoch and a 6-epoch fit (set-up, the accountant's calibration
included, cancels), medians of 3.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from mpcml.csprng import new_seed
from mpcml.nonlinear import SIGMOID_METHODS
from protocols.dp_sgd import (
    DPSGDConfig,
    epsilon_known_batches,
    local_dp_models,
    party_noise_sources,
    plaintext_dp_sgd,
    plan,
    poisson_batches,
    random_projection,
)
from protocols.regression import SecureLogisticRegression
from protocols.regression.privacy import dp_plan

BOUND = 13.0
PLAYERS = ("alice", "bob")


def folds(X: np.ndarray, y: np.ndarray, n_folds: int):
    for train, test in StratifiedKFold(n_folds, shuffle=True, random_state=0).split(X, y):
        scaler = StandardScaler().fit(X[train])
        yield (np.clip(scaler.transform(X[train]), -BOUND, BOUND), y[train],
               np.clip(scaler.transform(X[test]), -BOUND, BOUND), y[test])


def accuracy(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(((X @ w[:-1] + w[-1]) > 0) == y))


def config(epsilon: float, **changes) -> DPSGDConfig:
    return DPSGDConfig(**{**dict(loss="logistic", clip=1.0, feature_bound=BOUND, epsilon=epsilon, delta=1e-5,
                                 expected_batch_size=64, epochs=10.0, learning_rate=1.0), **changes})


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.4f}  p10 {np.percentile(values, 10):.4f}  (n={len(values)})"


def accuracy_study(X: np.ndarray, y: np.ndarray, n_folds: int, seeds: int) -> None:
    results: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    for Xtr, ytr, Xte, yte in folds(X, y, n_folds):
        add("non-private sklearn LogisticRegression", float(LogisticRegression(max_iter=1000).fit(Xtr, ytr).score(Xte, yte)))
        # the same SGD with neither clipping nor noise: a huge clip and no noise source
        free = plan(config(None, noise_multiplier=1.0, clip=1e6, feature_bound=BOUND), len(ytr))
        for _ in range(seeds):
            add("non-private SGD (same schedule)", accuracy(plaintext_dp_sgd(Xtr, ytr, free, new_seed(), noise=[]), Xte, yte))
        for epsilon in (1.0, 4.0):
            dp = plan(config(epsilon), len(ytr))
            secure_noise = [(source, dp.config.party_sigma(2)) for source in party_noise_sources(None, PLAYERS).values()]
            three = ("p0", "p1", "p2")
            honest_majority = dataclasses.replace(dp.config, colluders=1)
            three_noise = [(source, honest_majority.party_sigma(3)) for source in party_noise_sources(None, three).values()]
            half = len(ytr) // 2
            blocks = [(Xtr[:half], ytr[:half]), (Xtr[half:], ytr[half:])]
            # same total passes as the central run: 5 local epochs at each holder, then 5 global ones
            with_local = plan(config(epsilon, epochs=5.0), len(ytr), local_rows=[half, len(ytr) - half],
                              local_epochs=5.0)
            for _ in range(seeds):
                add(f"eps={epsilon:g} DP-SGD central", accuracy(plaintext_dp_sgd(Xtr, ytr, dp, new_seed()), Xte, yte))
                add(f"eps={epsilon:g} DP-SGD secure noise (2 parties, t=1), linear sigmoid", accuracy(plaintext_dp_sgd(
                    Xtr, ytr, dp, new_seed(), noise=secure_noise, activation=SIGMOID_METHODS["linear"].plain), Xte, yte))
                add(f"eps={epsilon:g} DP-SGD secure noise (3 parties, t=1), linear sigmoid", accuracy(plaintext_dp_sgd(
                    Xtr, ytr, dp, new_seed(), noise=three_noise, activation=SIGMOID_METHODS["linear"].plain), Xte, yte))
                init = local_dp_models(blocks, with_local, [new_seed(), new_seed()]).average
                add(f"eps={epsilon:g} local average only (PEA init, no global phase)", accuracy(init, Xte, yte))
                add(f"eps={epsilon:g} PEA local init (5 epochs) + global DP-SGD (5)", accuracy(
                    plaintext_dp_sgd(Xtr, ytr, with_local, new_seed(), init=init), Xte, yte))
            for k in (10, 20):
                P = random_projection(Xtr.shape[1], k, new_seed())  # public, drawn before looking at the data
                bound = float(BOUND * np.max(np.sum(np.abs(P), axis=0)))  # |x P|_j <= b ||P_j||_1: data-independent
                proj = plan(config(epsilon, feature_bound=bound), len(ytr))
                for _ in range(seeds):
                    add(f"eps={epsilon:g} random projection k={k}",
                        accuracy(plaintext_dp_sgd(Xtr @ P, ytr, proj, new_seed()), Xte @ P, yte))
    n = int(len(y) * (n_folds - 1) / n_folds)
    for epsilon in (1.0, 4.0):
        dp = plan(config(epsilon), n)
        known = epsilon_known_batches(list(poisson_batches(new_seed(), n, dp.sampling_rate, dp.steps)), n,
                                      dp.config.noise_multiplier, 1e-5)
        local = plan(config(epsilon, epochs=5.0), n, local_rows=[n // 2, n - n // 2], local_epochs=5.0)
        print(f"eps={epsilon:g}: q={dp.sampling_rate:.4f}, {dp.steps} steps, noise multiplier {dp.config.noise_multiplier:.3f} "
              f"(with the local phase: {local.config.noise_multiplier:.3f}); epsilon towards a party that knows the "
              f"batches: {known:.1f}")
    for name, values in results.items():
        print(f"  {name:<62} {summary(values)}")


def _estimator(epsilon: float | None, epochs: int = 10) -> SecureLogisticRegression:
    """The secure fit of the study: 2 holders (vertical halves) + dealer; DP-SGD when ``epsilon`` is given."""
    dp = dict(dp_epsilon=epsilon, dp_delta=1e-5, dp_clip=1.0, dp_feature_bound=BOUND) if epsilon is not None else {}
    return SecureLogisticRegression(epochs=epochs, batch_size=64, learning_rate=1.0, sigmoid="linear", **dp)


def estimator_study(X: np.ndarray, y: np.ndarray, n_folds: int, seeds: int) -> None:
    """Test accuracy of ``SecureLogisticRegression(dp_epsilon=...)`` against plaintext DP-SGD of the same
    algorithm (central noise, exact sigmoid) and against the non-private secure fit, fold by fold."""
    results: dict[str, list[float]] = {}
    for Xtr, ytr, Xte, yte in folds(X, y, n_folds):
        blocks = np.array_split(Xtr, 2, axis=1)
        for _ in range(seeds):
            results.setdefault("secure non-private", []).append(_estimator(None).fit(blocks, ytr).score(Xte, yte))
        for epsilon in (1.0, 4.0):
            dp = plan(config(epsilon), len(ytr))
            for _ in range(seeds):
                est = _estimator(epsilon).fit(blocks, ytr)
                assert abs(est.epsilon_ - dp.epsilon) < 1e-9 and est.epsilon_ <= epsilon
                results.setdefault(f"eps={epsilon:g} secure DP (estimator)", []).append(est.score(Xte, yte))
                results.setdefault(f"eps={epsilon:g} plaintext DP-SGD central", []).append(
                    accuracy(plaintext_dp_sgd(Xtr, ytr, dp, new_seed()), Xte, yte))
    for name, values in results.items():
        print(f"  {name:<44} {summary(values)}")
    for epsilon in (1.0, 4.0):
        gap = (statistics.median(results[f"eps={epsilon:g} plaintext DP-SGD central"])
               - statistics.median(results[f"eps={epsilon:g} secure DP (estimator)"]))
        print(f"  eps={epsilon:g}: plaintext - secure median accuracy {gap:+.4f} (target <= 0.03)")


def _cost(epsilon: float | None, X: np.ndarray, y: np.ndarray, epochs: int) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of this process (every party is a thread of it), bytes sent by all."""
    est = _estimator(epsilon, epochs)
    if epsilon is not None:  # the accountant's calibration (seconds) is set-up, cached per (options, rows): warm it
        dp_plan(est.make_config(**est._topology(2)), len(y))
    wall, cpu = time.perf_counter(), time.process_time()
    est.fit(np.array_split(X, 2, axis=1), y)
    return time.perf_counter() - wall, time.process_time() - cpu, est.communication_.total_bytes


def cost_study(X: np.ndarray, y: np.ndarray, repeats: int) -> None:
    """Per epoch, from the difference of a 2- and a 6-epoch fit (set-up cancels), medians of ``repeats``."""
    X = np.clip(StandardScaler().fit_transform(X), -BOUND, BOUND)
    short, long = 2, 6
    figures: dict[str, list[tuple[float, float, float]]] = {"dp": [], "plain": []}
    for _ in range(repeats):
        for name, epsilon in (("dp", 4.0), ("plain", None)):
            w1, c1, b1 = _cost(epsilon, X, y, short)
            w2, c2, b2 = _cost(epsilon, X, y, long)
            figures[name].append(((w2 - w1) / (long - short), (c2 - c1) / (long - short), (b2 - b1) / (long - short)))
    med = {name: [statistics.median(v[i] for v in rows) for i in range(3)] for name, rows in figures.items()}
    for name, label in (("dp", "secure DP (estimator, eps=4, Poisson B=64)"), ("plain", "secure non-private (batch 64)")):
        wall, cpu, sent = med[name]
        print(f"{label:<44} wall {wall * 1e3:8.1f} ms/epoch  CPU {cpu * 1e3:8.1f} ms/epoch  {sent / 1e6:6.2f} MB/epoch")
    print(f"ratio DP / non-private (medians of {repeats}): wall {med['dp'][0] / med['plain'][0]:.2f}x, "
          f"CPU {med['dp'][1] / med['plain'][1]:.2f}x, bytes {med['dp'][2] / med['plain'][2]:.2f}x; load {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 folds x 2 seeds (1 through the estimator), one cost repeat")
    parser.add_argument("--part", choices=("all", "plaintext", "estimator", "cost"), default="all",
                        help="plaintext variants and PEA's aids, the estimator's accuracy, or its cost per epoch")
    args = parser.parse_args()
    X, y = load_breast_cancer(return_X_y=True)
    y = y.astype(np.float64)
    print(f"load {os.getloadavg()[0]:.1f}")
    if args.part in ("all", "plaintext"):
        print("accuracy: breast cancer, delta=1e-5, B=64, 10 epochs, lr 1, clip 1")
        accuracy_study(X, y, 2 if args.quick else 5, 2 if args.quick else 8)
    if args.part in ("all", "estimator"):
        print("accuracy through the estimator: SecureLogisticRegression(dp_epsilon=...), 2 holders + dealer")
        estimator_study(X, y, 2 if args.quick else 5, 1 if args.quick else 3)
    if args.part in ("all", "cost"):
        print("cost through the estimator: 2 holders (vertical) + dealer, in-process")
        cost_study(X, y, 1 if args.quick else 3)
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
