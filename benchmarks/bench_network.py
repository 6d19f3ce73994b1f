"""Every protocol app as party processes over emulated links: time, bytes, rounds and the network model.

Run: ``python -m benchmarks.bench_network`` (quick sizes, a few minutes; ``--quick`` is the same),
``--full`` for each app's demo sizes (long under ``wan``), ``--profiles loopback,lan,dc,wan,slow``
(default ``loopback,lan,wan``), ``--repeats N`` (default 3), ``--only matmul,xgb``,
``--skip-accuracy`` / ``--accuracy-only``, ``--option KEY=VALUE`` (e.g. ``--only regression --option
epochs=10 --option batch_size=128``), ``--two-holders`` (with ``--only regression``: alice and bob
holding the demo's columns and the dealer, the federation of issue 19's round counts, instead of
the demo's three holders).

Part 1 checks the emulator (:mod:`parties.netem`) on raw TCP: for each profile the median
ping-pong round trip and bulk throughput through a relay against the profile's figures, next to
the direct loopback path, the relay's own round-trip floor (no delay, no pacing) and its
throughput ceiling with lan's delay and no pacing.

Part 2 runs every app of ``mpcml demo --list`` as mTLS party processes (the launcher of
``mpcml demo``) on plain loopback and under each profile, the runs of one repeat interleaved,
and prints medians: ``time`` is the protocol's span, from the moment the last party is connected
to every peer to the moment the last one has its result (``ProcessRun.span_seconds``: process
start-up, the TLS handshakes and the parties' wait for peers still starting are excluded); ``MB`` and ``rounds`` and ``msgs`` are the largest per-party payload bytes sent, rounds
and messages sent from ``party.stats`` (medians too: they are the same in every run except where
a protocol reacts to timing, as coded training does to which clients answer first). The model is

    predicted = compute + rounds x latency + 8 x MB / bandwidth       (rounds x one-way latency)

with ``compute`` the median time of the same federation on loopback with no emulation
(processes, gRPC and TLS included: what the protocol costs when the network is free).
``measured / predicted`` is the median over repeats of each run's time against the prediction
from the loopback run of the same repeat (paired, so a load drift between repeats cancels). The
transport pipelines messages (a send does not wait for its acknowledgement), so a round in which
the parties exchange values (an opening) costs one one-way latency; a round in which a party
waits for a reply to its own request costs a round trip. The second prediction puts ``rounds x
RTT`` in place of ``rounds x latency``: a protocol lies between the two, nearer the first the
more of its rounds are exchanges.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from parties.apps import available_apps, load_app, read_csv, write_csv
from parties.launcher import run_processes, write_loopback_federation
from parties.linkcheck import Sink, measure_path
from parties.netem import LOOPBACK, PROFILES, LinkProfile, Relay, format_rate, parse_network

# Quick sizes: a few seconds of compute per run and under ~10 s per run under wan. Apps not listed run with their defaults.
QUICK_OPTIONS: dict[str, dict[str, str]] = {
    "matmul": {},
    "matpower": {},
    "regression": {"epochs": "1", "batch_size": "128"},
    "pca": {},
    "caesar": {"epochs": "2"},
    "xgb": {"n_estimators": "1", "max_depth": "2"},
    "hybridalpha": {"rounds": "3"},
    "fedv": {"epochs": "1"},
    "coded": {"n_rounds": "10"},
}
TWO_HOLDERS = {"alice": "label", "bob": "holder", "dealer": "dealer"}
# Bulk bytes per accuracy probe: about a quarter of a second at each profile's bandwidth.
PROBE_BYTES = {"lan": 256 << 20, "dc": 32 << 20, "wan": 4 << 20, "slow": 1 << 20}
PROBE_PINGS = {"lan": 200, "dc": 50, "wan": 15, "slow": 8}


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---- part 1: the emulator itself -------------------------------------------------------------

def probe(sink: Sink, profile: LinkProfile | None, pings: int, bulk: int, repeats: int) -> tuple[float, float]:
    """Median RTT (s) and bandwidth (bit/s) over ``repeats`` connections, through a relay unless ``profile`` is None."""
    results = []
    for _ in range(repeats):
        if profile is None:
            results.append(measure_path(sink.address, sink, pings=pings, bulk_bytes=bulk))
            continue
        with Relay("127.0.0.1:0", sink.address, profile) as relay:
            results.append(measure_path(relay.address, sink, pings=pings, bulk_bytes=bulk))
    return statistics.median(r.rtt for r in results), statistics.median(r.bandwidth for r in results)


def emulator_accuracy(repeats: int, scale: float) -> None:
    print(f"\n## Emulator accuracy (raw TCP through one relay, median of {repeats} connections; {load()})\n")
    print("| path | target RTT ms | measured RTT ms | RTT error | target bandwidth | measured bandwidth | bandwidth error |")
    print("|---|---|---|---|---|---|---|")
    with Sink() as sink:
        rows = [("direct loopback (no relay)", None), ("relay floor: no delay, no pacing", LinkProfile("floor", math.inf, 0.0)),
                ("relay ceiling: lan delay, no pacing", LinkProfile("ceiling", math.inf, PROFILES["lan"].latency))]
        for label, profile in rows:
            rtt, bw = probe(sink, profile, 200, int((256 << 20) * scale), repeats)
            print(f"| {label} | - | {rtt * 1e3:.3f} | - | - | {format_rate(bw)} | - |")
        for name, profile in PROFILES.items():
            rtt, bw = probe(sink, profile, max(4, int(PROBE_PINGS[name] * scale)), int(PROBE_BYTES[name] * scale), repeats)
            print(f"| {name} | {profile.rtt * 1e3:g} | {rtt * 1e3:.3f} | {rtt / profile.rtt - 1:+.1%} | "
                  f"{format_rate(profile.bandwidth)} | {format_rate(bw)} | {bw / profile.bandwidth - 1:+.1%} |")


# ---- part 2: every protocol under every profile -----------------------------------------------

@dataclass
class Measured:
    seconds: float
    bytes_sent: float
    total_bytes: float
    rounds: float
    messages: float


def run_once(name: str, options: dict[str, str], profile: LinkProfile | None, work: Path, timeout: float,
             two_holders: bool = False) -> Measured:
    """One run of app ``name`` on its demo data and demo federation (``two_holders``: see :func:`two_holder_data`)."""
    work.mkdir(parents=True)
    data = load_app(name).demo_data(work, 0, options)
    if two_holders:
        return run_measured(name, two_holder_data(data, work), options, profile, work, timeout, TWO_HOLDERS)
    return run_measured(name, data, options, profile, work, timeout)


def two_holder_data(data: dict[str, Path], work: Path) -> dict[str, Path]:
    """The regression demo's columns for two holders: alice's (with the labels) and bob's and carol's as bob's."""
    merged = np.hstack([read_csv(data["bob"]), read_csv(data["carol"])])
    return {"alice": data["alice"], "bob": write_csv(work / "bob-and-carol.csv", merged)}


def run_measured(name: str, data: dict[str, Path], options: dict[str, str], profile: LinkProfile | None, work: Path,
                 timeout: float, parties: dict[str, str] | None = None, buffer_mib: int | None = None) -> Measured:
    """One checked run of app ``name`` on ``data`` with the federation ``parties`` ({id: role}; default the demo's)."""
    app = load_app(name)
    federation = None if parties is None else write_loopback_federation(parties, work / "fed", timeout=timeout,
                                                                         buffer_mib=buffer_mib)
    (work / "run").mkdir(parents=True, exist_ok=True)
    run = run_processes(name, data, options, work_dir=work / "run", timeout=timeout, network=profile,
                        federation=federation)
    result = app.check(run.outputs, data, options)
    if not result.ok:
        raise RuntimeError(f"{name} under {profile.name if profile else LOOPBACK}: check failed: {result.summary}")
    stats = run.outputs.stats.values()
    return Measured(run.span_seconds, max(s.bytes_sent for s in stats), sum(s.bytes_sent for s in stats),
                    max(s.rounds for s in stats), max(s.messages_sent for s in stats))


def predict(compute: float, m: Measured, profile: LinkProfile, per_round: float) -> float:
    """compute + rounds x ``per_round`` + 8 x bytes / bandwidth (``per_round``: the one-way latency or the RTT)."""
    return compute + m.rounds * per_round + profile.transfer_seconds(m.bytes_sent)


def protocols(names: list[str], profiles: list[LinkProfile | None], repeats: int, full: bool, timeout: float,
              extra: dict[str, str], two_holders: bool = False) -> None:
    print(f"\n## Protocols over emulated links ({'demo' if full else 'quick'} sizes, median of {repeats} runs; {load()})\n")
    print("| protocol | options | network | time s | (min-max) | x loopback | MB sent (max party) | MB all | rounds | msgs "
          "| predicted s (rounds x latency) | measured / predicted | predicted s (rounds x RTT) | measured / predicted |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="mpcml-bench-network-") as tmp:
        for name in names:
            options = {**({} if full else QUICK_OPTIONS.get(name, {})), **extra}
            runs: dict[str, list[Measured]] = {label(p): [] for p in profiles}
            for repeat in range(repeats):
                for profile in profiles:  # interleaved, so load drifts hit every profile alike
                    work = Path(tmp) / f"{name}-{label(profile)}-{repeat}"
                    runs[label(profile)].append(run_once(name, options, profile, work, timeout, two_holders))
            compute = statistics.median(m.seconds for m in runs[LOOPBACK]) if LOOPBACK in runs else None
            shown = ",".join(f"{k}={v}" for k, v in options.items()) or "defaults"
            for profile in profiles:
                ms = runs[label(profile)]
                m = Measured(*(statistics.median(getattr(x, f) for x in ms) for f in Measured.__dataclass_fields__))
                cells = [name, shown, label(profile), f"{m.seconds:.3f}",
                         f"{min(x.seconds for x in ms):.3f}-{max(x.seconds for x in ms):.3f}",
                         f"{m.seconds / compute:.1f}" if compute else "-", f"{m.bytes_sent / 1e6:.3f}",
                         f"{m.total_bytes / 1e6:.3f}", f"{m.rounds:g}", f"{m.messages:g}"]
                if profile is None or compute is None:
                    cells += ["-"] * 4
                else:
                    loops = runs[LOOPBACK]
                    for per_round in (profile.latency, profile.rtt):
                        # paired: each run against the loopback run of the same repeat, so load drift cancels
                        ratio = statistics.median(x.seconds / predict(loop.seconds, x, profile, per_round)
                                                  for x, loop in zip(ms, loops))
                        cells += [f"{predict(compute, m, profile, per_round):.3f}", f"{ratio:.2f}"]
                print("| " + " | ".join(cells) + " |", flush=True)


def label(profile: LinkProfile | None) -> str:
    return LOOPBACK if profile is None else profile.name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quick sizes (the default; kept for run_all)")
    parser.add_argument("--full", action="store_true", help="each app's demo sizes instead of the quick ones (long)")
    parser.add_argument("--profiles", default=f"{LOOPBACK},lan,wan", help="comma-separated: loopback, lan, dc, wan, slow or RATE:DELAY")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median; default 3)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(available_apps())}")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="app option for every chosen app, over the quick or demo sizes (use with --only)")
    parser.add_argument("--timeout", type=float, default=120.0, help="per-receive deadline of the parties (s)")
    parser.add_argument("--two-holders", action="store_true",
                        help="regression only: two holders and the dealer (alice; bob with carol's columns), issue 19's setting")
    part = parser.add_mutually_exclusive_group()
    part.add_argument("--skip-accuracy", action="store_true", help="only the protocol table")
    part.add_argument("--accuracy-only", action="store_true", help="only the emulator accuracy table")
    args = parser.parse_args(argv)
    if args.full and args.quick:
        parser.error("--quick and --full exclude each other")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    names = [n.strip() for n in args.only.split(",") if n.strip()] or available_apps()
    unknown = sorted(set(names) - set(available_apps()))
    if unknown:
        parser.error(f"unknown protocol(s) {unknown}; choose from {available_apps()}")
    try:
        profiles = [parse_network(p) for p in args.profiles.split(",") if p.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    if args.two_holders and names != ["regression"]:
        parser.error("--two-holders needs --only regression")
    extra = dict(pair.split("=", 1) for pair in args.option if "=" in pair)
    if len(extra) != len(args.option):
        parser.error("--option expects KEY=VALUE")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one BLAS thread per party process
        os.environ.setdefault(var, "1")
    if not args.skip_accuracy:
        emulator_accuracy(args.repeats, 1.0 if args.full else 0.5)
    if not args.accuracy_only:
        protocols(names, profiles, args.repeats, args.full, args.timeout, extra, args.two_holders)
        print(f"\n{load()} at the end")


if __name__ == "__main__":
    main()
