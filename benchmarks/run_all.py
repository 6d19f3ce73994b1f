"""Run every benchmark in ``benchmarks/`` one after another, each in its own process.

Run: ``python -m benchmarks.run_all`` (real sizes; long) or ``python -m benchmarks.run_all --quick``
(smoke sizes). ``--only paillier,xgb`` picks benchmarks by name. Each benchmark prints its own
figures as ratios to the plaintext (or baseline) computation measured in the same run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCHMARKS = [path.stem.removeprefix("bench_") for path in sorted(Path(__file__).parent.glob("bench_*.py"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or BENCHMARKS
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {BENCHMARKS}")
    failed = []
    for name in chosen:
        print(f"\n=== benchmarks.bench_{name} ===", flush=True)
        command = [sys.executable, "-m", f"benchmarks.bench_{name}", *(["--quick"] if args.quick else [])]
        if subprocess.run(command, check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
