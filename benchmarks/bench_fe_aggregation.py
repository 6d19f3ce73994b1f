"""HybridAlpha vs Paillier secure aggregation vs plaintext averaging; FedV vs secret-sharing regression.

Run: ``python -m benchmarks.bench_fe_aggregation`` (``--quick`` for a small smoke run).

Part 1, one aggregation round of ``--parties`` x ``--params`` (default 10 x 10,000) at the
128-bit settings (FE: ``--group``, default the secp256k1 curve, or the 3072-bit group
``dsa-3072-256``; Paillier: 2048-bit keys), all roles in one process
(``run_local``, a thread per party): per-round seconds (aggregator's view: model broadcast,
every party's encryption, collection, key request, decryption) and bytes through the aggregator
(``party.stats``), as ratios to the ``phe`` baseline (one value per ciphertext) and to mpcml's
packed Paillier. The ``phe`` round is measured at ``--phe-params`` parameters and scaled
linearly to the full size (its cost is exactly per value); FE is also measured at that size so
one ratio is measured like for like. Parties' encryptions run one after another on one
interpreter (GIL), so these round times add up all parties' work: a deployment with one machine
per party would overlap it. ``enc/party`` is one party's encryption alone. ``fe-precomputed``:
the same FE aggregation with every message-independent exponentiation done offline before the
round (labels are predictable: parties prepare ``h^r g^{u}``, the TPA ``g^{-u}``), so the round
itself costs small exponentiations and multiplications; the offline time is printed too.

Part 2, FedV on vertically partitioned breast-cancer data (569 x 30, three parties, logistic
regression, full batch) vs mpcml's secret-sharing logistic regression (protocols.regression,
dealer triples, same parties and data): seconds and bytes per epoch, as a ratio.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from mpcml import paillier, run_local
from mpcml.fe import DEFAULT_GROUP, MIFEMasterKey, group_by_name
from benchmarks.timing import timed
from protocols.fe_aggregation import FedVConfig, HybridAlphaConfig, _party_payload, fedv_roles, hybridalpha_roles
from protocols.regression import SecureLogisticRegression


def aggregation_round(
    scheme: str, n_parties: int, n_params: int, repeats: int, group: str, precompute: bool = False
) -> dict[str, float]:
    ids = tuple(f"party-{i}" for i in range(n_parties))
    data = np.random.default_rng(n_params)  # benchmark data only
    updates = {pid: data.normal(scale=0.05, size=n_params) for pid in ids}
    config = HybridAlphaConfig(ids, n_params, rounds=repeats, scheme=scheme, min_parties=2, deadline=3600.0,
                               group=group, precompute=precompute)
    roles, inputs = hybridalpha_roles(config, {p: (lambda m, r, u=u: u) for p, u in updates.items()}, np.zeros(n_params))
    out = run_local(roles, inputs, timeout=3600.0)
    history = out[config.aggregator]["history"]
    expected = sum(updates.values()) / n_parties * repeats
    if np.max(np.abs(out[config.aggregator]["model"] - expected)) > repeats * 2.0**-16:
        raise SystemExit(f"{scheme}: aggregate does not match the plaintext mean")
    return {"seconds": statistics.median(h["seconds"] for h in history), "bytes": history[0]["bytes"],
            "enc_party": encrypt_one(config, updates[ids[0]]), "offline": out[config.aggregator]["setup_seconds"]}


def encrypt_one(config: HybridAlphaConfig, update: np.ndarray) -> float:
    """Seconds for one party to quantise and encrypt its update (online part only when precomputing)."""
    prepared = None
    if config.scheme == "fe":
        key = MIFEMasterKey.setup(len(config.parties), 1, config.bound_x, 1, group_by_name(config.group)).slot_key(0)
        prepared = key.prepare((0, "update"), config.n_params) if config.precompute else None
    elif config.scheme in ("paillier-packed", "phe"):
        key = paillier.generate_keypair(config.paillier_bits)[0]
    else:
        key = None
    return timed(lambda: _party_payload(config, key, update, (0, "update"), prepared))


def part1(n_parties: int, n_params: int, phe_params: int, repeats: int, group: str) -> None:
    print(f"== HybridAlpha round: {n_parties} parties x {n_params} parameters "
          f"(FE {group}, Paillier-2048; median of {repeats} round(s)) ==")
    rows = {name: aggregation_round(name, n_parties, n_params, repeats, group) for name in ("fe", "paillier-packed", "plain")}
    rows["fe-precomputed"] = aggregation_round("fe", n_parties, n_params, repeats, group, precompute=True)
    small_fe = aggregation_round("fe", n_parties, phe_params, 1, group)
    small_phe = aggregation_round("phe", n_parties, phe_params, 1, group)
    scale = n_params / phe_params
    rows["phe"] = {key: value * scale for key, value in small_phe.items()}
    phe, packed = rows["phe"], rows["paillier-packed"]
    print(f"{'scheme':<18}{'round s':>10}{'MB':>10}{'enc/party s':>13}{'time vs phe':>13}{'bytes vs phe':>14}"
          f"{'time vs packed':>16}")
    for name in ("fe", "fe-precomputed", "paillier-packed", "phe", "plain"):
        r = rows[name]
        note = f"  (phe scaled x{scale:g} from {phe_params} params)" if name == "phe" else ""
        if name == "fe-precomputed":
            note = f"  (online; offline preparation {r['offline']:.2f} s before the round)"
        print(f"{name:<18}{r['seconds']:>10.2f}{r['bytes'] / 1e6:>10.2f}{r['enc_party']:>13.3f}"
              f"{r['seconds'] / phe['seconds']:>12.3f}x{r['bytes'] / phe['bytes']:>13.3f}x"
              f"{r['seconds'] / packed['seconds']:>15.2f}x{note}")
    print(f"like for like at {phe_params} params: FE / phe round time = {small_fe['seconds'] / small_phe['seconds']:.3f}x, "
          f"bytes = {small_fe['bytes'] / small_phe['bytes']:.3f}x")


def part2(rows: int, epochs: int, group: str) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    X, y = np.clip(StandardScaler().fit_transform(X), -15, 15)[:rows], y[:rows].astype(np.float64)
    parts = [X[:, c] for c in np.array_split(np.arange(X.shape[1]), 3)]
    print(f"== FedV vs secret-sharing logistic regression: {rows} x {X.shape[1]} in 3 vertical blocks, "
          f"full batch, {epochs} epoch(s) ==")
    config = FedVConfig(("a", "b", "c"), tuple(p.shape[1] for p in parts), rows, "a", "logistic", epochs=epochs,
                        group=group)
    out = run_local(*fedv_roles(config, parts, y), timeout=3600.0)
    epochs_hist = [h for h in out["aggregator"]["history"] if "seconds" in h]
    fedv_s = statistics.median(h["seconds"] for h in epochs_hist)
    fedv_b = statistics.median(h["bytes"] for h in epochs_hist)
    ss = SecureLogisticRegression(epochs=epochs, batch_size=rows, learning_rate=0.5, random_state=0)
    ss_s = timed(lambda: ss.fit(parts, y)) / epochs
    ss_b = ss.communication_.total_bytes / epochs
    print(f"{'protocol':<34}{'s/epoch':>10}{'MB/epoch':>10}")
    print(f"{'FedV (FE, ' + group + ')':<34}{fedv_s:>10.2f}{fedv_b / 1e6:>10.2f}")
    print(f"{'secret sharing (incl. setup/epochs)':<34}{ss_s:>10.2f}{ss_b / 1e6:>10.2f}")
    print(f"FedV / secret sharing: time {fedv_s / ss_s:.2f}x, bytes {fedv_b / ss_b:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 parties x 500 parameters, FedV on 100 rows")
    parser.add_argument("--parties", type=int, default=10)
    parser.add_argument("--params", type=int, default=10_000)
    parser.add_argument("--phe-params", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1)
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
