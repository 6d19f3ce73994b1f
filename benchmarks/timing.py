"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

from threadpoolctl import threadpool_limits


def timed(func: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def median_time(func: Callable[[], object], repeats: int) -> float:
    """Median wall-clock seconds of ``repeats`` calls."""
    return statistics.median(timed(func) for _ in range(repeats))


def quick_main(doc: str, quick_help: str, run: Callable[[bool], object], argv: list[str] | None = None) -> None:
    """Parse ``--quick`` and call ``run(quick)`` with one BLAS thread for every figure (stable on a shared machine)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    args = parser.parse_args(argv)
    with threadpool_limits(limits=1, user_api="blas"):
        run(args.quick)
