"""The ``mpcml`` command line.

::

    mpcml certs --federation fed.toml [--out DIR]      # a CA and one certificate per party
    mpcml party --federation fed.toml --id alice --protocol matmul --data alice.csv [--option k=v ...]
    mpcml demo [PROTOCOL] [--option k=v ...]            # every party as a process on loopback, mTLS
    mpcml demo PROTOCOL --network wan                   # ...with every link emulated (lan, dc, wan, slow, 50mbit:20ms)
    mpcml demo --list                                   # the available protocols
    mpcml options PROTOCOL [--markdown]                 # a protocol's options, defaults and meaning
    mpcml predict --model M --data X.csv --output P.csv # predictions of a saved model
    mpcml relay --listen HOST:PORT --to HOST:PORT --network wan   # an emulated link in front of one party's server

Errors (bad configuration, unreadable certificates, port in use, a silent or dead peer) are
printed as one line ``mpcml: error: ...`` with exit status 1 (2 for usage errors); ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from protocols.estimator import load_estimator

from .apps import available_apps, effective_options, load_app, read_csv
from .certs import write_federation_certs
from .config import load_federation
from .launcher import ERROR_PREFIX, demo
from .netem import LIMITATIONS, PROFILES, Relay, parse_network
from .node import run_party

INSECURE_WARNING = ("mpcml: WARNING: --insecure: plaintext channels without authentication; anyone on the network "
                    "can read and forge protocol messages. Use only for debugging on a trusted host.")


NETWORK_HELP = ("emulated links: loopback (none, the default), "
                + ", ".join(p.describe().split(" per link")[0] for p in PROFILES.values())
                + ", or RATE:DELAY such as 50mbit:20ms (delay one way); see docs/parties.md")


def _options(pairs: Sequence[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option expects key=value, got {pair!r}")
        options[key] = value
    return options


def _describe(output: object) -> str:
    if isinstance(output, np.ndarray):
        return f"array of shape {output.shape}: {np.array2string(output, threshold=8, precision=5)}"
    text = repr(output)
    return text if len(text) < 200 else f"{type(output).__name__} ({len(text)} characters)"


def _cmd_certs(args: argparse.Namespace) -> int:
    federation = load_federation(args.federation)
    for path in write_federation_certs(federation, args.out):
        print(path)
    return 0


def _cmd_party(args: argparse.Namespace) -> int:
    # Ctrl-C must stop a party whatever its parent left: a blocked or ignored SIGINT passes through fork and exec
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.insecure:
        print(INSECURE_WARNING, file=sys.stderr)
    federation = load_federation(args.federation)

    def on_refusal(message: str) -> None:
        print(f"mpcml: warning: {message}", file=sys.stderr, flush=True)

    options = _options(args.option)
    in_effect = effective_options(load_app(args.protocol), options)
    print(f"{args.id}: {args.protocol} with " + ", ".join(f"{k}={v!r}" for k, v in in_effect.items()), flush=True)
    result = run_party(federation, args.id, args.protocol, args.data, options,
                       secure=not args.insecure, listen=args.listen, on_refusal=on_refusal,
                       progress=(lambda line: print(line, flush=True)) if args.verbose else None,
                       verbose=args.verbose, model_path=args.model)
    if args.output is not None:
        args.output.write_bytes(result.to_bytes())
    s = result.stats
    print(f"{args.id}: done in {result.seconds:.3f} s; sent {s.bytes_sent} B / received {s.bytes_received} B, "
          f"{s.rounds} rounds; output: {_describe(result.output)}")
    return 0


def _cmd_options(args: argparse.Namespace) -> int:
    app = load_app(args.protocol)
    for title, table in (("protocol options", app.CONFIG), ("demo-data options", app.DEMO)):
        if not table.option_names():
            continue
        if args.markdown:
            print(table.options_table())
            continue
        print(f"{args.protocol} {title}:")
        for f in table.option_fields():
            print(f"  {f.name} (default {f.default!r}): {f.metadata['help']}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    model = load_estimator(args.model)
    X = read_csv(args.data)
    prediction = model.predict(X)
    header, extra = ["prediction"], np.empty((len(prediction), 0))
    if hasattr(model, "predict_proba"):
        header += [f"proba_{c}" for c in model.classes_]
        extra = model.predict_proba(X)
    lines = [",".join(header)] + [",".join([f"{p:.17g}" if isinstance(p, float) else str(p), *(f"{v:.17g}" for v in row)])
                                  for p, row in zip(prediction.tolist(), extra)]
    args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(prediction)} predictions of {type(model).__name__} written to {args.output}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.list:
        for name in available_apps():
            print(f"{name:>16}  {load_app(name).DESCRIPTION}")
        return 0
    if args.insecure:
        print(INSECURE_WARNING, file=sys.stderr)
    ok = demo(args.protocol, _options(args.option), secure=not args.insecure, timeout=args.timeout,
              seed=args.seed, keep=args.keep, network=args.network)
    return 0 if ok else 1


def _cmd_relay(args: argparse.Namespace) -> int:
    profile = parse_network(args.network)
    if profile is None:
        raise ValueError("mpcml relay needs an emulated network (--network lan|dc|wan|slow|RATE:DELAY), not loopback")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Relay(args.listen, args.to, profile, name="relay") as relay:
        print(f"mpcml relay: {relay.address} -> {args.to}, {profile.describe()}", flush=True)
        print(f"mpcml relay: {LIMITATIONS}", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        stats = relay.stats
    print(f"mpcml relay: stopped after {stats.connections} connections, {stats.upstream} B to {args.to}, "
          f"{stats.downstream} B back", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpcml", description="Run mpcml protocols as party processes over gRPC with mutual TLS.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    commands = parser.add_subparsers(dest="command", required=True)

    certs = commands.add_parser("certs", help="make a CA and a certificate per party of a federation")
    certs.add_argument("--federation", type=Path, required=True, help="federation file (.toml or .json)")
    certs.add_argument("--out", type=Path, help="write all files here instead of the federation's tls.dir")
    certs.set_defaults(run=_cmd_certs)

    party = commands.add_parser("party", help="run one party of a protocol")
    party.add_argument("--federation", type=Path, required=True, help="federation file (.toml or .json)")
    party.add_argument("--id", required=True, help="this party's id in the federation")
    party.add_argument("--protocol", required=True, help=f"one of: {', '.join(available_apps())}")
    party.add_argument("--data", type=Path, help="this party's private data (CSV)")
    party.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="protocol option (repeatable)")
    party.add_argument("--output", type=Path, help="write the result and statistics here (mpcml codec)")
    party.add_argument("--listen", help="listen on this host:port instead of the federation address")
    party.add_argument("--insecure", action="store_true", help="plaintext channels, no authentication (debugging only)")
    party.add_argument("--model", type=Path, help="save this party's fitted model here (.npz; see mpcml predict)")
    party.add_argument("--verbose", "-v", action="count", default=0,
                       help="print a line when every peer is connected and one per epoch, round or tree")
    party.set_defaults(run=_cmd_party)

    options = commands.add_parser("options", help="list a protocol's options with their defaults")
    options.add_argument("protocol", help=f"one of: {', '.join(available_apps())}")
    options.add_argument("--markdown", action="store_true", help="as the Markdown tables of the docs")
    options.set_defaults(run=_cmd_options)

    predict = commands.add_parser("predict", help="predict with a model saved by mpcml party --model or save()")
    predict.add_argument("--model", type=Path, required=True, help="model file (.npz)")
    predict.add_argument("--data", type=Path, required=True, help="CSV of feature rows (all the model's columns)")
    predict.add_argument("--output", type=Path, required=True, help="CSV to write: prediction (and class probabilities)")
    predict.set_defaults(run=_cmd_predict)

    demo_cmd = commands.add_parser("demo", help="run every party of a protocol as a process on loopback")
    demo_cmd.add_argument("protocol", nargs="?", default="matmul", help="protocol to run (default: matmul)")
    demo_cmd.add_argument("--list", action="store_true", help="list the protocols and exit")
    demo_cmd.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="protocol option (repeatable)")
    demo_cmd.add_argument("--timeout", type=float, default=60.0, help="per-receive deadline in seconds (default 60)")
    demo_cmd.add_argument("--seed", type=int, default=0, help="seed of the demo data (not of any mask)")
    demo_cmd.add_argument("--keep", type=Path, help="keep data, certificates and logs in this folder")
    demo_cmd.add_argument("--insecure", action="store_true", help="plaintext channels, no authentication (debugging only)")
    demo_cmd.add_argument("--network", default="loopback", metavar="PROFILE", help=NETWORK_HELP)
    demo_cmd.set_defaults(run=_cmd_demo)

    relay = commands.add_parser("relay", help="an emulated network link in front of one party's server (TCP relay)")
    relay.add_argument("--listen", required=True, help="host:port peers dial (the party's address in the federation file)")
    relay.add_argument("--to", required=True, help="host:port the party's server listens on (its mpcml party --listen)")
    relay.add_argument("--network", required=True, metavar="PROFILE", help=NETWORK_HELP)
    relay.set_defaults(run=_cmd_relay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("mpcml: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's contract is one clear line per error
        if args.debug:
            raise
        print(f"{ERROR_PREFIX}{exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
