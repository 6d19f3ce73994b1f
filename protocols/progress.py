"""One progress convention for every long protocol run: estimators (``verbose``) and party apps.

The party that learns the per-step figures (epoch, round or tree; elapsed time; a loss where the
protocol reveals it) calls its :class:`Progress` once per step. ``verbose`` follows
scikit-learn: 0 is silent; 1 logs one line per step (and draws a ``tqdm`` bar instead when tqdm
is installed and stderr is a terminal or a notebook); 2 and above always log the lines.
Lines go through :mod:`logging` (logger ``protocols.progress``, level INFO); when nothing is
configured to show them, a handler to stderr is added so ``verbose=1`` is visible as in
scikit-learn.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

logger = logging.getLogger("protocols.progress")


def _show_info_lines() -> None:
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


def _bar(total: int, name: str) -> Any:
    """A tqdm bar on an interactive stderr or in a notebook, else ``None``."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
    return tqdm(total=total, desc=name, unit="step", leave=False) if interactive else None


class Progress:
    """``progress(step, **metrics)`` after each step of ``total``; see the module docstring."""

    def __init__(self, total: int, unit: str, *, verbose: int = 0, name: str = "") -> None:
        self.total, self.unit, self.verbose, self.name = int(total), unit, int(verbose), name
        self.start = time.perf_counter()
        self.history: list[dict[str, float]] = []
        self._bar = _bar(self.total, name) if self.verbose == 1 else None
        if self.verbose > 0 and self._bar is None:
            _show_info_lines()

    def __call__(self, step: int, **metrics: float) -> None:
        elapsed = time.perf_counter() - self.start
        self.history.append({"step": step, "elapsed": elapsed, **metrics})
        figures = "".join(f", {key} {value:.6g}" for key, value in metrics.items())
        if self._bar is not None:
            self._bar.update(1)
            if metrics:
                self._bar.set_postfix(metrics)
        elif self.verbose > 0:
            logger.info("%s%s %d/%d: %.2f s elapsed%s", f"{self.name}: " if self.name else "", self.unit, step + 1,
                        self.total, elapsed, figures)
        else:
            logger.debug("%s %s %d/%d: %.2f s elapsed%s", self.name, self.unit, step + 1, self.total, elapsed, figures)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
