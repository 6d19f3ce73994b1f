"""DP-SGD for logistic regression (PEA): accuracy at epsilon 1 and 4 against non-private training, PEA's
accuracy aids, and the secure building blocks' cost per epoch against the non-private secure fit.

Run: ``python -m benchmarks.bench_dp_sgd`` (``--quick``: fewer folds and seeds). Breast cancer,
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

Cost: 2 compute parties (vertical halves) + dealer, in one process; wall time, CPU time (all parties'
threads together: steadier than wall time on a shared machine) and bytes per epoch from the difference
of a 2-epoch and a 6-epoch run (setup cancels), medians of 3; the non-private secure fit is
:func:`protocols.regression.roles` (batch 64, the same "linear" sigmoid) measured the same way.
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

from mpcml import DealerTriples, Session, SharedTensor, run_dealer, run_local
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
    train_dp_sgd,
)
from protocols.regression import RegressionConfig
from protocols.regression import roles as regression_roles

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


def _dp_roles(X: np.ndarray, y: np.ndarray, epochs: float):
    blocks = np.array_split(X, 2, axis=1)
    dp = plan(config(4.0, epochs=epochs), len(y))
    seed = new_seed()

    def player(party, block, labels):
        session = Session(party, PLAYERS, DealerTriples(party, PLAYERS, "dealer"))
        parts = [session.input(block if party.id == p else None, p, name="X") for p in PLAYERS]
        xs = SharedTensor.concatenate([*parts, session.public(np.ones((len(y), 1)))], axis=1)
        ys = session.input(labels, "alice", name="y")
        w = train_dp_sgd(session, xs, ys, dp, seed).reveal()
        session.close()
        return w

    roles = {p: player for p in PLAYERS}
    roles["dealer"] = lambda party: run_dealer(party, PLAYERS)
    return roles, {"alice": (blocks[0], y), "bob": (blocks[1], None)}


def _plain_roles(X: np.ndarray, y: np.ndarray, epochs: int):
    blocks = np.array_split(X, 2, axis=1)
    cfg = RegressionConfig(loss="logistic", epochs=epochs, batch_size=64, sigmoid="linear", holders=PLAYERS,
                           label_holder="alice")
    return regression_roles(cfg, {"alice": (blocks[0], y), "bob": (blocks[1], None)})


def _run(roles_inputs) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of all parties' threads together, bytes sent by all."""
    roles, inputs = roles_inputs
    cpu: list[float] = []

    def timed(role):
        def run(*args, **kwargs):
            start = time.thread_time()
            try:
                return role(*args, **kwargs)
            finally:
                cpu.append(time.thread_time() - start)
        return run

    start = time.perf_counter()
    out = run_local({pid: timed(role) for pid, role in roles.items()}, inputs, timeout=600)
    return time.perf_counter() - start, sum(cpu), sum(s.bytes_sent for s in out.stats.values())


def cost_study(X: np.ndarray, y: np.ndarray, repeats: int) -> None:
    X = np.clip(StandardScaler().fit_transform(X), -BOUND, BOUND)
    short, long = 2, 6
    figures: dict[str, list[tuple[float, float, float]]] = {"dp": [], "plain": []}
    for _ in range(repeats):
        for name, make in (("dp", _dp_roles), ("plain", _plain_roles)):
            w1, c1, b1 = _run(make(X, y, short))
            w2, c2, b2 = _run(make(X, y, long))
            figures[name].append(((w2 - w1) / (long - short), (c2 - c1) / (long - short), (b2 - b1) / (long - short)))
    med = {name: [statistics.median(v[i] for v in rows) for i in range(3)] for name, rows in figures.items()}
    for name, label in (("dp", "secure DP-SGD (Poisson, B=64 expected)"), ("plain", "secure non-private (batch 64)")):
        wall, cpu, sent = med[name]
        print(f"{label:<40} wall {wall * 1e3:8.1f} ms/epoch  CPU {cpu * 1e3:8.1f} ms/epoch  {sent / 1e6:6.2f} MB/epoch")
    print(f"ratio DP / non-private (medians of {repeats}): wall {med['dp'][0] / med['plain'][0]:.2f}x, "
          f"CPU {med['dp'][1] / med['plain'][1]:.2f}x, bytes {med['dp'][2] / med['plain'][2]:.2f}x; load {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 folds x 2 seeds, one cost repeat")
    args = parser.parse_args()
    X, y = load_breast_cancer(return_X_y=True)
    y = y.astype(np.float64)
    print("accuracy: breast cancer, delta=1e-5, B=64, 10 epochs, lr 1, clip 1")
    accuracy_study(X, y, 2 if args.quick else 5, 2 if args.quick else 8)
    print("cost: 2 compute parties (vertical) + dealer, in-process")
    cost_study(X, y, 1 if args.quick else 3)


if __name__ == "__main__":
    main()
