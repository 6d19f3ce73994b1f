"""CAESAR on synthetic one-hot sparse data: time and bytes per epoch, against dense secret sharing and plaintext.

    python -m benchmarks.bench_caesar            # 20,000 x 20,000 at 0.1% and 0.2%, 2048-bit Paillier
    python -m benchmarks.bench_caesar --quick    # 2,000 x 2,000, 1024-bit keys: a smoke run

Per configuration it prints CAESAR's wall time and bytes for one epoch (both parties in this
process, key generation and the final output excluded), the plaintext algorithm's time for one
epoch as a ratio, and test AUC against plaintext logistic regression (exact sigmoid, the same
hyperparameters). The dense secret-sharing baseline (``protocols.regression``: Beaver triples,
masked matrix) needs the data dense, n x d x 8 bytes per array, so it runs on the first
``--ss-rows`` rows with all columns, one epoch end to end, next to CAESAR end to end on the same
rows; its per-epoch cost is linear in the rows (dense products over all d columns), which gives
the full-size estimate. A third configuration doubles the columns at the same non-zeros per row
to show that CAESAR's cost follows the non-zeros, not the columns.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.timing import median_time
from protocols.caesar import CaesarLogisticRegression, CaesarParams, make_sparse_logistic, reference_fit
from protocols.regression import SecureLogisticRegression


def _split(x, cols: int):
    half = cols // 2
    return [x[:, :half], x[:, half:]]


def run_config(rows: int, cols: int, density: float, args: argparse.Namespace) -> dict:
    test_rows = rows // 5
    x, y, _ = make_sparse_logistic(rows + test_rows, cols, density, seed=args.seed)
    xtr, xte, ytr, yte = x[:rows], x[rows:], y[:rows], y[rows:]
    params = dict(learning_rate=args.lr, batch_size=args.batch_size, key_bits=args.key_bits)
    epochs, seconds, traffic = [], [], []
    for _ in range(args.repeats):
        model = CaesarLogisticRegression(epochs=args.epochs, **params).fit(_split(xtr, cols), ytr)
        seconds.append(float(np.median(model.epoch_seconds_)))
        traffic.append(int(np.median(model.epoch_bytes_)))
        epochs.append(model)
    model = epochs[-1]
    auc = roc_auc_score(yte, model.decision_function(_split(xte, cols)))
    plain = CaesarParams(learning_rate=args.lr, epochs=args.epochs, batch_size=args.batch_size, sigmoid="logistic")
    plain_time = median_time(lambda: reference_fit(_split(xtr, cols), ytr, plain), 3) / args.epochs
    ref_w, ref_b = reference_fit(_split(xtr, cols), ytr, plain)
    ref_auc = roc_auc_score(yte, xte @ np.concatenate(ref_w) + ref_b)
    return {"rows": rows, "cols": cols, "density": density, "nnz": int(xtr.nnz), "seconds": statistics.median(seconds),
            "bytes": statistics.median(traffic), "plain": plain_time, "auc": auc, "ref_auc": ref_auc, "x": xtr, "y": ytr}


def dense_baseline(config: dict, args: argparse.Namespace) -> dict:
    """One epoch end to end on the first ``ss_rows`` rows: dense secret sharing vs CAESAR."""
    rows = min(args.ss_rows, config["rows"])
    x, y = config["x"][:rows], config["y"][:rows]
    dense = x.toarray()
    ss = SecureLogisticRegression(learning_rate=args.lr, epochs=1, batch_size=args.batch_size, timeout=3600)
    ss_time = median_time(lambda: ss.fit(_split(dense, config["cols"]), y), args.repeats)
    caesar = CaesarLogisticRegression(learning_rate=args.lr, epochs=1, batch_size=args.batch_size, key_bits=args.key_bits)
    caesar_time = median_time(lambda: caesar.fit(_split(x, config["cols"]), y), args.repeats)
    return {"rows": rows, "ss": ss_time, "ss_bytes": ss.communication_.total_bytes, "caesar": caesar_time,
            "caesar_bytes": caesar.communication_.total_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 x 2,000 with 1024-bit keys")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--cols", type=int, default=20_000)
    parser.add_argument("--densities", default="0.001,0.002")
    parser.add_argument("--ss-rows", type=int, default=1_000, help="rows for the dense secret-sharing baseline")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--lr", type=float, default=4.0)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.cols, args.densities, args.ss_rows = 2_000, 2_000, "0.01,0.02", 500
        args.key_bits, args.batch_size, args.repeats, args.lr = 1024, 250, 3, 4.0
    densities = [float(d) for d in args.densities.split(",")]
    print(f"CAESAR benchmark: {args.rows} train rows, Paillier {args.key_bits} bits, batch {args.batch_size}, "
          f"lr {args.lr}, {args.epochs} epoch(s), medians of {args.repeats} run(s)")
    configs = [run_config(args.rows, args.cols, d, args) for d in densities]
    configs.append(run_config(args.rows, 2 * args.cols, densities[0] / 2, args))
    print(f"{'cols':>7} {'density':>8} {'nnz':>9} {'s/epoch':>9} {'MB/epoch':>9} {'x plain':>9} {'AUC':>7} {'plain AUC':>10}")
    for c in configs:
        print(f"{c['cols']:>7} {c['density']:>8.4f} {c['nnz']:>9} {c['seconds']:>9.2f} {c['bytes'] / 1e6:>9.2f} "
              f"{c['seconds'] / c['plain']:>9.0f} {c['auc']:>7.4f} {c['ref_auc']:>10.4f}")
    base = dense_baseline(configs[0], args)
    full = base["ss"] * configs[0]["rows"] / base["rows"]
    print(f"\ndense secret sharing (protocols.regression) vs CAESAR, one epoch end to end on {base['rows']} rows "
          f"x {configs[0]['cols']} cols at density {configs[0]['density']}:")
    print(f"  secret sharing {base['ss']:.1f} s, {base['ss_bytes'] / 1e6:.1f} MB; CAESAR {base['caesar']:.1f} s, "
          f"{base['caesar_bytes'] / 1e6:.1f} MB (incl. key generation and output): CAESAR {base['ss'] / base['caesar']:.1f}x faster")
    print(f"  full size, per epoch: secret sharing ~{full:.0f} s (scaled by rows) vs CAESAR {configs[0]['seconds']:.1f} s "
          f"measured: CAESAR ~{full / configs[0]['seconds']:.1f}x faster")
    ss_bytes = base["ss_bytes"] * configs[0]["rows"] / base["rows"]
    print(f"  full size, bytes: secret sharing ~{ss_bytes / 1e6:.0f} MB (scaled by rows; mostly the masked matrix) vs "
          f"CAESAR {configs[0]['bytes'] / 1e6:.1f} MB per epoch: {ss_bytes / configs[0]['bytes']:.0f}x less traffic")
    for mbps in (1000, 100):
        ss_net, caesar_net = full + ss_bytes * 8 / (mbps * 1e6), configs[0]["seconds"] + configs[0]["bytes"] * 8 / (mbps * 1e6)
        print(f"  model at {mbps} Mbit/s (compute + bytes / bandwidth, one epoch): secret sharing ~{ss_net:.0f} s, "
              f"CAESAR ~{caesar_net:.0f} s: CAESAR ~{ss_net / caesar_net:.1f}x faster")
    grow = configs[1]["seconds"] / configs[0]["seconds"]
    print(f"  cost vs non-zeros: {densities[1] / densities[0]:.1f}x the non-zeros -> {grow:.2f}x the epoch time; "
          f"2x the columns at the same non-zeros -> {configs[-1]['seconds'] / configs[0]['seconds']:.2f}x")


if __name__ == "__main__":
    main()
