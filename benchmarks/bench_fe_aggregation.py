"""HybridAlpha vs Paillier secure aggregation vs plaintext averaging; FedV vs secret-sharing regression.

Run: ``python -m benchmarks.bench_fe_aggregation`` (``--quick`` for a small smoke run).

Part 1, aggregation rounds of ``--parties`` x ``--params`` (default 10 x 10,000) at the 128-bit
settings (FE: ``--group``, default the secp256k1 curve, or the 3072-bit group ``dsa-3072-256``;
Paillier: 2048-bit keys), every role in one process (``run_local``, a thread per party), through
HybridAlpha's roles with fixed updates: the median round's seconds (the aggregator's view: model
broadcast, every party's encryption, collection, key request, decryption) and bytes through the
aggregator (``party.stats``), as ratios to the ``phe`` baseline (one value per ciphertext) and to
mpcml's packed Paillier in the same run; ``enc/party`` is one party's encryption of one update
(CPU seconds of its thread, measured inside the party role). The ``phe`` round is measured at ``--phe-params`` parameters and
scaled linearly (its cost is exactly per value); FE is measured at that size too, so one ratio is
like for like. The parties share one interpreter here, so a round adds up all their encryptions; with
a machine per party they would overlap. ``fe-precomputed``: every round's masks and key pads
prepared at set-up (its offline seconds are printed).

Part 2, FedV (``FedVClassifier``, defaults) on vertically partitioned breast-cancer data (569 x 30,
three parties) vs mpcml's secret-sharing logistic regression (``SecureLogisticRegression``, dealer
triples, same parties, batch size and learning rate): seconds and bytes per epoch, as a ratio; and
the one-vs-rest cost on wine (3 classes in one run vs a binary fit).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.preprocessing import StandardScaler

from benchmarks.timing import timed
from mpcml import run_local
from mpcml.fe import DEFAULT_GROUP, group_by_name
from protocols.estimator import Vertical
from protocols.fedv import FedVClassifier, FedVConfig
from protocols.hybridalpha import HybridAlphaConfig, roles
from protocols.regression import SecureLogisticRegression


class FixedUpdate:
    """A party's update: the same vector every round, bounded by the config's ``max_abs``."""

    def __init__(self, update: np.ndarray) -> None:
        self.update = update

    def facts(self) -> dict:
        return {"n_params": self.update.size, "x_bits": None}

    def __call__(self, model: np.ndarray, rnd: int) -> np.ndarray:
        return self.update


def aggregation_rounds(scheme: str, n_parties: int, n_params: int, repeats: int, group: str,
                       precompute: bool = False) -> dict[str, float]:
    ids = tuple(f"party-{i}" for i in range(n_parties))
    data = np.random.default_rng(n_params)  # benchmark data only
    updates = {pid: data.normal(scale=0.05, size=n_params) for pid in ids}
    config = HybridAlphaConfig(rounds=repeats, scheme=scheme, deadline=3600.0, max_abs=1.0, group=group,
                               precompute=precompute, parties=ids)
    out = run_local(*roles(config, {p: FixedUpdate(u) for p, u in updates.items()}), timeout=3600.0)
    result = out[config.aggregator]
    expected = sum(updates.values()) / n_parties * repeats
    if np.max(np.abs(result["model"] - expected)) > repeats * 2.0**-16:
        raise SystemExit(f"{scheme}: the aggregate does not match the plaintext mean")
    history = result["history"]
    return {"seconds": statistics.median(h["seconds"] for h in history), "bytes": history[0]["bytes"],
            "enc_party": out[ids[0]]["encrypt_seconds"] / repeats, "offline": result["setup_seconds"]}


def part1(n_parties: int, n_params: int, phe_params: int, repeats: int, group: str) -> None:
    print(f"== HybridAlpha round: {n_parties} parties x {n_params} parameters "
          f"(FE {group}, Paillier-2048; median of {repeats} round(s)) ==")
    rows = {name: aggregation_rounds(name, n_parties, n_params, repeats, group) for name in ("fe", "paillier-packed", "plain")}
    rows["fe-precomputed"] = aggregation_rounds("fe", n_parties, n_params, repeats, group, precompute=True)
    small_fe = aggregation_rounds("fe", n_parties, phe_params, 1, group)
    small_phe = aggregation_rounds("phe", n_parties, phe_params, 1, group)
    scale = n_params / phe_params
    rows["phe"] = {key: value * scale for key, value in small_phe.items()}
    phe, packed = rows["phe"], rows["paillier-packed"]
    print(f"{'scheme':<18}{'round s':>10}{'MB':>10}{'enc/party cpu s':>16}{'time vs phe':>13}{'bytes vs phe':>14}"
          f"{'time vs packed':>16}")
    for name in ("fe", "fe-precomputed", "paillier-packed", "phe", "plain"):
        r = rows[name]
        note = f"  (phe scaled x{scale:g} from {phe_params} params)" if name == "phe" else ""
        if name == "fe-precomputed":
            note = f"  (online; set-up with the preparation {r['offline']:.2f} s)"
        print(f"{name:<18}{r['seconds']:>10.2f}{r['bytes'] / 1e6:>10.2f}{r['enc_party']:>16.3f}"
              f"{r['seconds'] / phe['seconds']:>12.3f}x{r['bytes'] / phe['bytes']:>13.3f}x"
              f"{r['seconds'] / packed['seconds']:>15.2f}x{note}")
    print(f"like for like at {phe_params} params: FE / phe round time = {small_fe['seconds'] / small_phe['seconds']:.3f}x, "
          f"bytes = {small_fe['bytes'] / small_phe['bytes']:.3f}x")


def part2(rows: int, epochs: int, group: str) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    X, y = StandardScaler().fit_transform(X)[:rows], y[:rows]
    blocks = np.array_split(X, 3, axis=1)
    defaults = FedVConfig.defaults()
    print(f"== FedV vs secret-sharing logistic regression: {rows} x {X.shape[1]} in 3 vertical blocks, "
          f"batch {defaults['batch_size']}, {epochs} epoch(s) ==")
    fedv = FedVClassifier(epochs=epochs, group=group, timeout=3600.0).fit(blocks, y)
    fedv_s = statistics.median(h["seconds"] for h in fedv.history_)
    fedv_b = statistics.median(h["bytes"] for h in fedv.history_)
    ss = SecureLogisticRegression(epochs=epochs, batch_size=defaults["batch_size"],
                                  learning_rate=defaults["learning_rate"], random_state=0)
    ss_s = timed(lambda: ss.fit(blocks, y)) / epochs
    ss_b = ss.communication_.total_bytes / epochs
    print(f"{'protocol':<34}{'s/epoch':>10}{'MB/epoch':>10}{'accuracy':>10}")
    print(f"{'FedV (FE, ' + group + ')':<34}{fedv_s:>10.2f}{fedv_b / 1e6:>10.2f}{fedv.score(blocks, y):>10.4f}")
    print(f"{'secret sharing (incl. set-up)':<34}{ss_s:>10.2f}{ss_b / 1e6:>10.2f}{ss.score(blocks, y):>10.4f}")
    print(f"FedV / secret sharing: time {fedv_s / ss_s:.1f}x, bytes {fedv_b / ss_b:.2f}x")
    Xw, yw = load_wine(return_X_y=True)
    Xw = StandardScaler().fit_transform(Xw)
    seconds = {}
    for name, target in (("3 classes, one run", yw), ("binary (class 0 vs rest)", (yw == 0).astype(int))):
        model = FedVClassifier(partition=Vertical(parts=2), epochs=epochs, group=group, timeout=3600.0)
        seconds[name] = timed(lambda: model.fit(Xw, target))
    three, one = seconds.values()
    print(f"one-vs-rest on wine (178 x 13, 2 parties, {epochs} epoch(s)): 3 classes {three:.2f} s, binary {one:.2f} s, "
          f"ratio {three / one:.2f} (3 separate fits: 3.00)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 parties x 500 parameters, FedV on 100 rows")
    parser.add_argument("--parties", type=int, default=10)
    parser.add_argument("--params", type=int, default=10_000)
    parser.add_argument("--phe-params", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fedv-epochs", type=int, default=2)
    parser.add_argument("--group", default=DEFAULT_GROUP.name, help="FE group (secp256k1 or dsa-3072-256)")
    args = parser.parse_args(argv)
    group_by_name(args.group).gpow(1)  # warm the generator tables outside the timed rounds
    if args.quick:
        part1(4, 500, 50, 1, args.group)
        part2(100, 1, args.group)
    else:
        part1(args.parties, args.params, args.phe_params, args.repeats, args.group)
        part2(569, args.fedv_epochs, args.group)


if __name__ == "__main__":
    main()
