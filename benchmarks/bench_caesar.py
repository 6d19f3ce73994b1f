"""CAESAR on synthetic one-hot sparse data: time and bytes per epoch, against dense secret sharing and plaintext.

    python -m benchmarks.bench_caesar            # 20,000 x 20,000 at 0.1% and 0.2%, 2048-bit Paillier
    python -m benchmarks.bench_caesar --quick    # 2,000 x 2,000, 1024-bit keys: a smoke run
    python -m benchmarks.bench_caesar --he-only --repeats 3   # 20,000 cols at 0.1%: OU vs Paillier, one run
    python -m benchmarks.bench_caesar --floor --repeats 5     # each HE operation of a batch, alone, per scheme

``--he`` picks the schemes (default ``ou,paillier``): ``--he-only`` times one epoch of the first
density under each, interleaved ``--repeats`` times (medians, and the OU/Paillier ratio); the other
measurements use the first scheme listed.

Per configuration it prints CAESAR's wall time and bytes for one epoch (both parties in this
process, key generation and the final output excluded), the plaintext algorithm's time for one
epoch as a ratio, and test AUC against plaintext logistic regression (exact sigmoid, the same
hyperparameters). Two dense secret-sharing baselines (``protocols.regression``, Beaver
triples on the masked matrix) need the data dense, n x d x 8 bytes per array, so they run on a
slice and are scaled to full size:

- with a trusted dealer (three parties, a trust assumption CAESAR does not make): the first
  ``--ss-rows`` rows with all columns, 1 and 3 epochs end to end, giving the first epoch (set-up
  and masking of X included) and the steady-state cost of a further epoch; both are linear in
  the rows (dense products over all d columns);
- dealer-free (``triples="paillier"``: the same two parties and trust as CAESAR): every batch's
  triple costs Paillier work on each element of the dense ``batch x d`` mask, so one epoch is
  linear in ``n x d``; it runs on ``--free-rows`` rows at two column counts; the marginal cost of a
  column (per row) times ``n x d`` gives the full-size estimate, leaving the per-row overhead out.

A third configuration doubles the columns at the same non-zeros per row to show that CAESAR's
cost follows the non-zeros, not the columns. Last, wine (3 classes, standardised): one
one-vs-rest fit of the three models in one run (shared keys, set-up and messages) against one
binary fit with the same options, and its accuracy against scikit-learn's
``OneVsRestClassifier(LogisticRegression())`` on the same split.

``--processes`` instead runs CAESAR and the dealer-aided dense regression as mTLS party processes
(the ``caesar`` and ``regression`` apps, checked against their plaintext replays) on the first
``--ss-rows`` rows of the first density, under each of ``--profiles`` (emulated links, see
docs/network.md), for 1 and 3 epochs, interleaved: the first epoch is the 1-epoch run end to end
(key generation, the opening of ``X - U`` and the output included), a further epoch is half the
difference between the 3- and the 1-epoch runs. A further epoch is linear in the rows at a fixed
batch size (one batch per ``--batch-size`` rows), so it is also shown scaled to ``--rows``; the
first is not (CAESAR's set-up and output do not grow with the rows).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler

from benchmarks.bench_network import label, load, run_measured
from benchmarks.timing import median_time, timed
from mpcml import he
from mpcml.csprng import Csprng
from mpcml.floors import insecure_test_keys
from mpcml.he import _modexp
from parties.apps import write_csv
from parties.netem import parse_network
from protocols.caesar import CaesarLogisticRegression, make_sparse_logistic, reference_fit
from protocols.caesar.packing import encode_features
from protocols.regression import SecureLogisticRegression


def _split(x, cols: int):
    half = cols // 2
    return [x[:, :half], x[:, half:]]


def run_config(rows: int, cols: int, density: float, args: argparse.Namespace, he: str | None = None) -> dict:
    test_rows = rows // 5
    x, y, _ = make_sparse_logistic(rows + test_rows, cols, density, seed=args.seed)
    xtr, xte, ytr, yte = x[:rows], x[rows:], y[:rows], y[rows:]
    params = dict(learning_rate=args.lr, batch_size=args.batch_size, key_bits=args.key_bits,
                  he=he or args.he.split(",")[0], random_state=args.seed)  # the same batches under every scheme
    epochs, seconds, traffic, cpu = [], [], [], []
    for _ in range(args.repeats):
        start = time.process_time()  # every party is a thread of this process (MPCML_HE_PROCESSES=1: all its work)
        model = CaesarLogisticRegression(epochs=args.epochs, **params).fit(_split(xtr, cols), ytr)
        cpu.append(time.process_time() - start)
        seconds.append(float(np.median(model.epoch_seconds_)))
        traffic.append(int(np.median(model.epoch_bytes_)))
        epochs.append(model)
    model = epochs[-1]
    auc = roc_auc_score(yte, model.decision_function(_split(xte, cols)))

    def plain():
        return reference_fit(_split(xtr, cols), ytr, model.config_, model.batch_seed_, exact_sigmoid=True)

    plain_time = median_time(plain, 3) / args.epochs
    ref_w, ref_b = plain()
    ref_auc = roc_auc_score(yte, xte @ ref_w[0] + ref_b[0])
    return {"rows": rows, "cols": cols, "density": density, "nnz": int(xtr.nnz), "seconds": statistics.median(seconds),
            "cpu": statistics.median(cpu),
            "bytes": statistics.median(traffic), "plain": plain_time, "auc": auc, "ref_auc": ref_auc, "x": xtr, "y": ytr}


def scheme_comparison(args: argparse.Namespace, density: float) -> None:
    """One epoch under each scheme of ``--he``, interleaved ``--repeats`` times: medians, AUC, ratio to the first."""
    schemes = args.he.split(",")
    repeats, args.repeats = args.repeats, 1
    runs: dict[str, list[dict]] = {s: [] for s in schemes}
    for _ in range(repeats):
        for scheme in schemes:
            runs[scheme].append(run_config(args.rows, args.cols, density, args, scheme))
    args.repeats = repeats
    print(f"CAESAR per scheme: {args.rows} train rows x {args.cols} cols at density {density}, {args.key_bits}-bit keys, "
          f"batch {args.batch_size}, lr {args.lr}, {args.epochs} epoch(s); medians of {repeats} interleaved runs")
    print("wall s/epoch: the median epoch's wall time; CPU s/fit: the whole fit (key generation and set-up included) "
          "in CPU seconds of this process, the steadier figure on a loaded machine")
    print(f"{'he':>9} {'s/epoch':>9} {'each run':>24} {'CPU s/fit':>10} {'each run':>24} {'MB/epoch':>9} {'AUC':>7} "
          f"{'plain AUC':>10} {'wall x ' + schemes[-1]:>15} {'CPU x ' + schemes[-1]:>15}")
    last = {k: statistics.median(r[k] for r in runs[schemes[-1]]) for k in ("seconds", "cpu")}
    for scheme in schemes:
        seconds, cpu = (statistics.median(r[k] for r in runs[scheme]) for k in ("seconds", "cpu"))
        each = {k: " ".join(f"{r[k]:.2f}" for r in runs[scheme]) for k in ("seconds", "cpu")}
        first = runs[scheme][0]
        print(f"{scheme:>9} {seconds:>9.2f} {each['seconds']:>24} {cpu:>10.2f} {each['cpu']:>24} {first['bytes'] / 1e6:>9.2f} "
              f"{first['auc']:>7.4f} {first['ref_auc']:>10.4f} {seconds / last['seconds']:>15.3f} "
              f"{cpu / last['cpu']:>15.3f}")


def per_row_operations(args: argparse.Namespace, density: float) -> None:
    """The HE operations of one party in one CAESAR batch, each timed alone on one core, per scheme.

    On the first batch of the first party's block (``--batch-size`` rows, half the columns, 0/1
    data) and weights encrypted under a peer's key: step 4's product ``X[S] [w]``, its Horner
    packing into ``--slot-value-bits``-bit masked slots, the packed masks' ``"subgroup"``
    encryptions, the key owner's decryption; step 6's key-owner encryption of the residual shares,
    the plaintext half added to the peer's, and the sparse gradient product with the update of
    the touched weights. Their sum is what a batch costs a party without any of the protocol's own
    work (shares, masks, messages): a floor for the epoch, per row.
    """
    x, _, _ = make_sparse_logistic(args.rows, args.cols, density, seed=args.seed)
    batch, _ = encode_features(x[: args.batch_size, : args.cols // 2], 16)
    touched = np.unique(batch.indices)
    rng, data = Csprng(), np.random.default_rng(args.seed)
    shares = data.integers(-(2**62), 2**62, size=(args.batch_size, 1)).astype(object) << 4  # 66-bit residual shares
    _modexp.set_processes(1)
    floors = {}
    print(f"CAESAR's HE operations per party and batch of {args.batch_size} rows ({batch.shape[1]} columns at density "
          f"{density}, {batch.nnz} non-zeros, {len(touched)} columns touched), {args.slot_value_bits}-bit products, "
          f"{args.key_bits}-bit keys, one core, median of {args.repeats} (us per row; {load()})")
    try:
        for scheme in args.he.split(","):
            (peer_pk, peer_sk), (_, own_sk) = (he.generate_keypair(scheme, args.key_bits) for _ in range(2))
            peer_pk.prepare("subgroup")
            peer_sk.prepare()
            own_sk.prepare()
            layout = he.MaskedPacking.for_values(args.slot_value_bits, signed=True)
            weights = peer_pk.encrypt_int(data.integers(-(2**20), 2**20, size=(batch.shape[1], 1)))
            products = weights.rmatmul(batch)
            masks = he.statistical_masks(rng, args.batch_size, args.slot_value_bits, signed=True)
            words = he.pack_plain(masks, layout.slots(peer_pk), layout.width)
            sealed = layout.seal(peer_pk, list(products.ciphertexts.flat), masks)
            theirs = peer_sk.encrypt_int(shares)
            steps = {
                "4. product X[S] [w]": lambda: weights.rmatmul(batch),
                "4. Horner packing": lambda: he.pack_ciphertexts(peer_pk, list(products.ciphertexts.flat), layout.width),
                "4. packed masks, subgroup": lambda: peer_pk.encrypt_int(he.object_array(words), randomness="subgroup"),
                "4. key owner's decryption": lambda: layout.open(peer_sk, sealed, args.batch_size),
                "6. key owner's encryption": lambda: own_sk.encrypt_int(shares),
                "6. plaintext half added": lambda: theirs + shares,
                "6. gradient product, update": lambda: weights[touched] + theirs.T.matmul(batch[:, touched]).T,
            }
            floors[scheme] = {name: median_time(step, args.repeats) / args.batch_size * 1e6 for name, step in steps.items()}
    finally:
        _modexp.set_processes(None)
    schemes = list(floors)

    def line(name: str, values: list) -> str:  # the second scheme over the first, when there are two
        cells = [f"{v:>10}" if isinstance(v, str) else f"{v:>10.1f}" for v in values]
        ratio = ("ratio" if isinstance(values[0], str) else f"{values[1] / values[0]:.2f}") if len(values) == 2 else ""
        return f"{name:>30} {' '.join(cells)} {ratio:>7}"

    print(line("operation", schemes))
    for name in floors[schemes[0]]:
        print(line(name, [floors[s][name] for s in schemes]))
    print(line("sum (a floor per row)", [sum(floors[s].values()) for s in schemes]))


def dealer_baseline(config: dict, args: argparse.Namespace) -> dict:
    """The first ``ss_rows`` rows: dealer-aided dense secret sharing for 1 and 3 epochs (medians), CAESAR for 1."""
    rows = min(args.ss_rows, config["rows"])
    x, y = config["x"][:rows], config["y"][:rows]
    blocks = _split(x.toarray(), config["cols"])

    def fit(epochs: int) -> tuple[float, int]:
        ss = SecureLogisticRegression(learning_rate=args.lr, epochs=epochs, batch_size=args.batch_size, timeout=3600)
        return median_time(lambda: ss.fit(blocks, y), args.ss_repeats), ss.communication_.total_bytes

    fit(1)  # warm-up: the first run pays for allocating the dense arrays
    (first, first_bytes), (three, _) = fit(1), fit(3)
    caesar = CaesarLogisticRegression(learning_rate=args.lr, epochs=1, batch_size=args.batch_size, key_bits=args.key_bits,
                                      he=args.he.split(",")[0])
    caesar_time = median_time(lambda: caesar.fit(_split(x, config["cols"]), y), args.repeats)
    return {"rows": rows, "first": first, "steady": (three - first) / 2, "bytes": first_bytes,
            "caesar": caesar_time, "caesar_bytes": caesar.communication_.total_bytes}


def dealer_free_baseline(config: dict, args: argparse.Namespace) -> list[dict]:
    """One epoch of dealer-free dense secret sharing on ``free_rows`` rows (half of each class) at two column counts."""
    rows = args.free_rows
    picked = np.concatenate([np.flatnonzero(config["y"] == label)[: rows - rows // 2 if label else rows // 2]
                             for label in (0, 1)])
    x, y = config["x"][picked].toarray(), config["y"][picked]
    runs = []
    for cols in (args.free_cols, 2 * args.free_cols):
        est = SecureLogisticRegression(learning_rate=args.lr, epochs=1, batch_size=rows, triples="paillier",
                                       key_bits=args.key_bits, timeout=3600)
        seconds = timed(lambda: est.fit([x[:, : cols // 2], x[:, cols // 2 : cols]], y))
        runs.append({"rows": rows, "cols": cols, "seconds": seconds, "per_element": seconds / (rows * cols)})
    return runs


def wine_one_vs_rest(args: argparse.Namespace) -> dict:
    """Wine: the three one-vs-rest models in one run vs one binary fit (same options, medians), and accuracy."""
    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    options = dict(learning_rate=0.5, epochs=6, batch_size=32, key_bits=args.key_bits, he=args.he.split(",")[0],
                   random_state=1)

    def fit(labels: np.ndarray) -> CaesarLogisticRegression:
        return CaesarLogisticRegression(**options).fit(_split(X_train, X_train.shape[1]), labels)

    binary = (y_train == 0).astype(int)
    seconds = {"ovr": [], "binary": []}
    for _ in range(args.repeats):
        seconds["ovr"].append(timed(lambda: fit(y_train)))
        seconds["binary"].append(timed(lambda: fit(binary)))
    ovr, one = fit(y_train), fit(binary)
    plain = OneVsRestClassifier(LogisticRegression()).fit(X_train, y_train).score(X_test, y_test)
    return {"ovr": statistics.median(seconds["ovr"]), "binary": statistics.median(seconds["binary"]),
            "ovr_bytes": ovr.communication_.total_bytes, "binary_bytes": one.communication_.total_bytes,
            "accuracy": ovr.score(X_test, y_test), "plain": plain}


def processes_over_links(args: argparse.Namespace) -> None:
    """CAESAR vs the dealer-aided dense regression as party processes under each profile (see the module docstring)."""
    density = float(args.densities.split(",")[0])
    rows, half = args.ss_rows, args.cols // 2
    x, y, _ = make_sparse_logistic(args.rows + args.rows // 5, args.cols, density, seed=args.seed)
    x, y = x[:rows].toarray(), y[:rows]
    profiles = [parse_network(p) for p in args.profiles.split(",") if p.strip()]
    apps = {  # app: (federation {id: role} or None for the demo's, options without epochs)
        "caesar": (None, {"learning_rate": args.lr, "batch_size": args.batch_size, "key_bits": args.key_bits}),
        "regression": ({"alice": "label", "bob": "holder", "dealer": "dealer"},
                       {"learning_rate": args.lr, "batch_size": args.batch_size}),
    }
    runs: dict[tuple[str, int, str], list] = {}
    print(f"CAESAR vs dealer-aided dense secret sharing as party processes: {rows} rows x {args.cols} cols at density "
          f"{density}, batch {args.batch_size}, lr {args.lr}, CAESAR keys {args.key_bits} bits, {args.repeats} repeats "
          f"({load()})\n")
    with tempfile.TemporaryDirectory(prefix="mpcml-bench-caesar-") as tmp:
        data = {"caesar": {"alice": write_csv(Path(tmp) / "caesar-alice.csv", x[:, :half]),
                           "bob": write_csv(Path(tmp) / "caesar-bob.csv", np.column_stack([x[:, half:], y]))},
                "regression": {"alice": write_csv(Path(tmp) / "ss-alice.csv", np.column_stack([x[:, :half], y])),
                               "bob": write_csv(Path(tmp) / "ss-bob.csv", x[:, half:])}}
        for repeat in range(args.repeats):
            for epochs in (1, 3):
                for profile in profiles:  # interleaved, so load drifts hit every profile and app alike
                    for name, (parties, options) in apps.items():
                        work = Path(tmp) / f"{name}-{epochs}-{label(profile)}-{repeat}"
                        chosen = {k: str(v) for k, v in {**options, "epochs": epochs}.items()}
                        runs.setdefault((name, epochs, label(profile)), []).append(
                            run_measured(name, data[name], chosen, profile, work, args.timeout, parties,
                                         args.buffer_mib if parties else None))
    print("| protocol | epochs | network | time s (median) | (min-max) | MB sent (max party) | MB all | rounds | msgs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (name, epochs, net), ms in runs.items():
        times = [m.seconds for m in ms]
        print(f"| {name} | {epochs} | {net} | {statistics.median(times):.2f} | {min(times):.2f}-{max(times):.2f} | "
              f"{statistics.median(m.bytes_sent for m in ms) / 1e6:.2f} | {statistics.median(m.total_bytes for m in ms) / 1e6:.2f} | "
              f"{statistics.median(m.rounds for m in ms):g} | {statistics.median(m.messages for m in ms):g} |")
    scale = args.rows / rows
    print(f"\nper epoch on the slice (medians; further epochs also x{scale:g}, scaled to {args.rows} rows):\n")
    print("| network | CAESAR first epoch s | dense SS first epoch s | SS / CAESAR | CAESAR further epoch s | "
          "dense SS further epoch s | SS / CAESAR | scaled further epoch: CAESAR / SS s |")
    print("|---|---|---|---|---|---|---|---|")
    for profile in profiles:
        net = label(profile)
        first = {n: statistics.median(m.seconds for m in runs[(n, 1, net)]) for n in apps}
        further = {n: statistics.median((c.seconds - o.seconds) / 2 for o, c in zip(runs[(n, 1, net)], runs[(n, 3, net)]))
                   for n in apps}
        print(f"| {net} | {first['caesar']:.2f} | {first['regression']:.2f} | {first['regression'] / first['caesar']:.1f} | "
              f"{further['caesar']:.2f} | {further['regression']:.2f} | {further['regression'] / further['caesar']:.2f} | "
              f"{further['caesar'] * scale:.0f} / {further['regression'] * scale:.0f} |")
    print(f"\n{load()} at the end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 x 2,000 with 1024-bit keys")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--cols", type=int, default=20_000)
    parser.add_argument("--densities", default="0.001,0.002")
    parser.add_argument("--ss-rows", type=int, default=1_000, help="rows for the dense secret-sharing baseline")
    parser.add_argument("--ss-repeats", type=int, default=3, help="runs (median) of the dealer baseline")
    parser.add_argument("--free-rows", type=int, default=2, help="rows for the dealer-free baseline")
    parser.add_argument("--free-cols", type=int, default=500, help="columns (then twice as many) for the dealer-free baseline")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--lr", type=float, default=4.0)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--wine-only", action="store_true", help="only the wine one-vs-rest measurement")
    parser.add_argument("--he", default="ou,paillier", help="additively homomorphic schemes (the first for the rest)")
    parser.add_argument("--he-only", action="store_true", help="only the per-scheme epoch times at the first density")
    parser.add_argument("--floor", action="store_true",
                        help="only the HE operations of one party's batch, each timed alone per scheme (a floor per row)")
    parser.add_argument("--slot-value-bits", type=int, default=34,
                        help="--floor: bits of the packed products (34: what the range analysis gives this benchmark)")
    parser.add_argument("--processes", action="store_true",
                        help="only CAESAR vs the dealer baseline as party processes over emulated links (see above)")
    parser.add_argument("--profiles", default="loopback,lan,wan", help="--processes: comma-separated network profiles")
    parser.add_argument("--timeout", type=float, default=600.0, help="--processes: per-receive deadline of the parties (s)")
    parser.add_argument("--buffer-mib", type=int, default=None,
                        help="--processes: the dense regression's limits.buffer_mib (its opening of X - U is one message of "
                             "rows x cols x 8 bytes: above 3,000 rows it exceeds the default 512)")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.cols, args.densities, args.ss_rows, args.free_cols = 2_000, 2_000, "0.01,0.02", 500, 100
        args.key_bits, args.batch_size, args.repeats, args.lr = 1024, 250, 3, 4.0
    with insecure_test_keys(args.key_bits < 2048):  # --quick's 1024-bit keys: a smoke run, never a deployment
        run(args)


def run(args: argparse.Namespace) -> None:
    """The measurements ``args`` asks for (see the module docstring)."""
    if args.he_only:
        scheme_comparison(args, float(args.densities.split(",")[0]))
        return
    if args.floor:
        per_row_operations(args, float(args.densities.split(",")[0]))
        return
    if args.processes:
        processes_over_links(args)
        return
    wine = wine_one_vs_rest(args)
    print(f"wine, 3 classes one-vs-rest in one run vs one binary fit ({args.key_bits}-bit keys, lr 0.5, 6 epochs, "
          f"batch 32, medians of {args.repeats}): {wine['ovr']:.1f} s vs {wine['binary']:.1f} s "
          f"({wine['ovr'] / wine['binary']:.2f}x; 3 separate fits would be 3x), {wine['ovr_bytes'] / 1e6:.2f} MB vs "
          f"{wine['binary_bytes'] / 1e6:.2f} MB ({wine['ovr_bytes'] / wine['binary_bytes']:.2f}x); test accuracy "
          f"{wine['accuracy']:.4f} vs OneVsRestClassifier(LogisticRegression()) {wine['plain']:.4f}\n")
    if args.wine_only:
        return
    densities = [float(d) for d in args.densities.split(",")]
    print(f"CAESAR benchmark: {args.rows} train rows, {args.he.split(',')[0]} {args.key_bits} bits, batch {args.batch_size}, "
          f"lr {args.lr}, {args.epochs} epoch(s), medians of {args.repeats} run(s)")
    configs = [run_config(args.rows, args.cols, d, args) for d in densities]
    configs.append(run_config(args.rows, 2 * args.cols, densities[0] / 2, args))
    print(f"{'cols':>7} {'density':>8} {'nnz':>9} {'s/epoch':>9} {'MB/epoch':>9} {'x plain':>9} {'AUC':>7} {'plain AUC':>10}")
    for c in configs:
        print(f"{c['cols']:>7} {c['density']:>8.4f} {c['nnz']:>9} {c['seconds']:>9.2f} {c['bytes'] / 1e6:>9.2f} "
              f"{c['seconds'] / c['plain']:>9.0f} {c['auc']:>7.4f} {c['ref_auc']:>10.4f}")
    first = configs[0]
    base = dealer_baseline(first, args)
    scale = first["rows"] / base["rows"]
    print(f"\ndense secret sharing with a dealer (protocols.regression; three parties) on {base['rows']} rows x "
          f"{first['cols']} cols at density {first['density']}:")
    print(f"  first epoch end to end {base['first']:.1f} s, {base['bytes'] / 1e6:.1f} MB; each further epoch "
          f"{base['steady']:.2f} s; CAESAR one epoch end to end {base['caesar']:.1f} s, {base['caesar_bytes'] / 1e6:.1f} MB "
          f"(incl. key generation and output)")
    print(f"  full size (scaled by rows): first epoch ~{base['first'] * scale:.0f} s, further epochs "
          f"~{base['steady'] * scale:.1f} s each, vs CAESAR {first['seconds']:.1f} s per epoch: CAESAR "
          f"{base['first'] * scale / first['seconds']:.1f}x faster on the first epoch, "
          f"{base['steady'] * scale / first['seconds']:.2f}x on each further one")
    ss_bytes = base["bytes"] * scale
    print(f"  full size, bytes: secret sharing ~{ss_bytes / 1e6:.0f} MB (mostly the masked matrix) vs CAESAR "
          f"{first['bytes'] / 1e6:.1f} MB per epoch: {ss_bytes / first['bytes']:.0f}x less traffic")
    for mbps in (1000, 100):
        ss_net = base["first"] * scale + ss_bytes * 8 / (mbps * 1e6)
        caesar_net = first["seconds"] + first["bytes"] * 8 / (mbps * 1e6)
        print(f"  model at {mbps} Mbit/s (compute + bytes / bandwidth, first epoch): secret sharing ~{ss_net:.0f} s, "
              f"CAESAR ~{caesar_net:.0f} s: CAESAR ~{ss_net / caesar_net:.1f}x faster")
    free = dealer_free_baseline(first, args)
    print("\ndense secret sharing without a dealer (triples='paillier'; the same two parties and trust as CAESAR), "
          "one epoch end to end:")
    for run in free:
        print(f"  {run['rows']} rows x {run['cols']} cols: {run['seconds']:.1f} s, {run['per_element'] * 1e3:.2f} ms "
              f"per element of X")
    per_element = (free[1]["seconds"] - free[0]["seconds"]) / (free[0]["rows"] * (free[1]["cols"] - free[0]["cols"]))
    full_free = per_element * first["rows"] * first["cols"]
    print(f"  marginal cost {per_element * 1e3:.2f} ms per element of X (the per-row overhead left out); full size "
          f"~{full_free:.2e} s per epoch vs CAESAR "
          f"{first['seconds']:.1f} s: CAESAR ~{full_free / first['seconds']:.0e}x faster")
    grow = configs[1]["seconds"] / configs[0]["seconds"]
    print(f"  cost vs non-zeros: {densities[1] / densities[0]:.1f}x the non-zeros -> {grow:.2f}x the epoch time; "
          f"2x the columns at the same non-zeros -> {configs[-1]['seconds'] / configs[0]['seconds']:.2f}x")


if __name__ == "__main__":
    main()
