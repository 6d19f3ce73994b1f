"""Dropout-resilient coded training (DReS-FL style): clients share Lagrange-coded data, a server trains.

Threat model (see :mod:`protocols.coded`): semi-honest, no server-client collusion; any ``T``
colluding clients learn nothing about another client's data (their coded shares are uniform); the
server learns only the per-block aggregate gradients, decoded from the first ``R = 2 (K + T - 1) + 1``
coded results of each round (zero-masked), and who answered. Row counts and the number of features are public.

Each client's CSV holds its features with the target (0/1 label, or a real target for
``model=linear``) as the last column. Options: ``model`` (logistic | linear, default logistic),
``n_blocks`` (K, default 2), ``n_masks`` (T, default 1), ``rounds`` (default 30),
``learning_rate`` (default 0.5), ``dropouts`` (clients told to stay silent per round, default 2),
``schedule_seed`` (which clients, default 0), ``feature_bound`` (default 3), ``target_bound``
(default 3), ``round_timeout`` (seconds, default 10), ``progress`` (1: the server prints a line per round).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.preprocessing import StandardScaler

from protocols.coded import CodedConfig, coded_client, coded_server, dropout_schedule, plaintext_training

from . import AppContext, CheckResult, get_option, read_csv, shuffled_row_groups, write_csv

DESCRIPTION = "dropout-resilient coded logistic/linear regression (Lagrange coded data sharing, DReS-FL style)"
DEMO_PARTIES = {"server": "server", **{f"client-{i}": "client" for i in range(8)}}
LOCAL_OPTIONS = frozenset({"progress"})  # whether the server prints a line per round


def app_config(server: str, clients: Sequence[str], options: Mapping[str, str]) -> CodedConfig:
    """The public configuration every party derives from the same options (``ValueError`` naming a bad one)."""
    n_rounds = get_option(options, "rounds", int, 30)
    dropouts = get_option(options, "dropouts", int, 2)
    if dropouts < 0:
        raise ValueError(f"option 'dropouts' must be >= 0, got {dropouts}")
    config = CodedConfig(
        server=server, clients=tuple(clients), model=get_option(options, "model", str, "logistic"),
        n_blocks=get_option(options, "n_blocks", int, 2), n_masks=get_option(options, "n_masks", int, 1),
        n_rounds=n_rounds, learning_rate=get_option(options, "learning_rate", float, 0.5),
        feature_bound=get_option(options, "feature_bound", float, 3.0),
        target_bound=get_option(options, "target_bound", float, 3.0),
        round_timeout=get_option(options, "round_timeout", float, 10.0),
    )
    config.check_tolerates(dropouts, "option 'dropouts' asks for")
    if not dropouts:
        return config
    silent = dropout_schedule(config.clients, n_rounds, dropouts, get_option(options, "schedule_seed", int, 0))
    return dataclasses.replace(config, silent=silent)


def split_xy(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if table.shape[1] < 2:
        raise ValueError(f"a client's CSV needs feature columns and a last target column, got {table.shape[1]} columns")
    return table[:, :-1], table[:, -1]


def build(ctx: AppContext) -> tuple[Callable[..., Any], dict]:
    config = app_config(ctx.party_for("server"), ctx.parties_for("client"), ctx.options)
    if ctx.role == "server":
        progress = partial(print, flush=True) if ctx.option("progress", int, 0) else None
        return partial(coded_server, config=config), {"verbose": progress}
    if ctx.role != "client":
        raise ValueError(f"coded has roles server and client, not {ctx.role!r}")
    X, y = split_xy(read_csv(ctx.require_data()))
    return partial(coded_client, config=config), {"X": X, "y": y}


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    """Breast cancer (logistic) or diabetes (linear), standardised, clipped to +-3, shuffled and split among the clients."""
    linear = get_option(options, "model", str, "logistic") == "linear"
    X, y = load_diabetes(return_X_y=True) if linear else load_breast_cancer(return_X_y=True)
    X = np.clip(StandardScaler().fit_transform(X), -3, 3)
    if linear:
        y = np.clip((y - y.mean()) / y.std(), -3, 3)
    clients = [pid for pid, role in DEMO_PARTIES.items() if role == "client"]
    rows = shuffled_row_groups(len(y), len(clients), seed)
    return {pid: write_csv(Path(out_dir) / f"{pid}.csv", np.column_stack([X[r], y[r]])) for pid, r in zip(clients, rows)}


def check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult:
    """The coded run's weights must equal full-participation plaintext training of the same quantised model."""
    server = next(pid for pid, out in outputs.items() if isinstance(out, dict) and "weights" in out)
    clients = sorted(pid for pid in outputs if pid != server)
    config = app_config(server, clients, options)
    parts = [split_xy(read_csv(data[c])) for c in clients]
    result = outputs[server]
    expected = plaintext_training(config, parts, int(result["frac_bits"]))
    weights = np.asarray(result["weights"])
    error = float(np.max(np.abs(weights - expected)))
    X, y = np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    scores = X @ weights[:-1] + weights[-1]
    fit = (f"training accuracy {np.mean((scores > 0) == y):.3f}" if config.model == "logistic"
           else f"training R^2 {1 - np.sum((scores - y) ** 2) / np.sum((y - y.mean()) ** 2):.3f}")
    counts = sorted({len(r) for r in result["responders"]})
    return CheckResult(
        error == 0.0,
        f"{config.n_rounds} rounds, each decoded from {counts} of {len(clients)} clients (R = {config.recovery_threshold}, "
        f"f = {result['frac_bits']} bits); max |w - plaintext full-participation w| = {error:.1e}; {fit}",
    )
