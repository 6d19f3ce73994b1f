"""Dropout-resilient coded training (DReS-FL style): clients share Lagrange-coded data, a server trains.

Roles: ``server`` (exactly one; learns the model) and ``client`` (every data holder; N of them).
Each client's CSV holds its features with the target (0/1 label, or a real target for
``model=linear``) as the last column. Threat model and leakage: see :mod:`protocols.coded`; in
short, any ``T`` colluding clients learn nothing about another client's data, the server learns
the per-block aggregate gradients and the model, and every client receives the model each round.
Options: the fields of :class:`protocols.coded.CodedConfig` (``mpcml options coded``).

Demo data: ``load_breast_cancer`` (logistic) or ``load_diabetes`` (linear; targets in their own
units), features standardised and not clipped, rows shuffled and split among eight clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.preprocessing import StandardScaler

from protocols.coded import CodedConfig, CodedLinearRegression, CodedLogisticRegression, plaintext_training, roles
from protocols.config import ProtocolConfig

from . import AppContext, CheckResult, parse, read_csv, shuffled_row_groups, write_csv

DESCRIPTION = "dropout-resilient coded logistic/linear regression (Lagrange coded data sharing, DReS-FL style)"
DEMO_PARTIES = {"server": "server", **{f"client-{i}": "client" for i in range(8)}}
CONFIG = CodedConfig


@dataclass(frozen=True)
class DEMO(ProtocolConfig):
    """No demo-only options: ``model`` picks the data set."""


def _config(options: Mapping[str, str], federation: Mapping[str, str]) -> CodedConfig:
    servers = sorted(p for p, r in federation.items() if r == "server")
    if len(servers) != 1:
        raise ValueError(f"the federation must have exactly one party with role 'server', found {servers}")
    clients = tuple(sorted(p for p, r in federation.items() if r == "client"))
    return parse(options, CONFIG, DEMO, server=servers[0], clients=clients)


def _split(table: np.ndarray, path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    if table.shape[1] < 2:
        raise ValueError(f"data file {str(path)!r} needs feature columns and a last target column")
    return table[:, :-1], table[:, -1]


def build(ctx: AppContext) -> tuple[Callable[..., Any], dict]:
    config = _config(ctx.options, ctx.federation)
    if ctx.role not in ("server", "client"):
        raise ValueError(f"coded has roles server and client, not {ctx.role!r}")
    data = {}
    if ctx.role == "client":
        data[ctx.party_id] = _split(read_csv(ctx.require_data()), ctx.data)
    party_roles, inputs = roles(config, data, progress=ctx.progress(config.n_rounds, "round"))
    return party_roles[ctx.party_id], inputs[ctx.party_id]


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    linear = CONFIG.parse_options(options, extra=DEMO.option_names()).get("model") == "linear"
    X, y = load_diabetes(return_X_y=True) if linear else load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clients = [pid for pid, role in DEMO_PARTIES.items() if role == "client"]
    rows = shuffled_row_groups(len(y), len(clients), seed)
    return {pid: write_csv(Path(out_dir) / f"{pid}.csv", np.column_stack([X[r], y[r]])) for pid, r in zip(clients, rows)}


def check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult:
    """The server's weights must equal full-participation plaintext training of the same quantised model."""
    server = next(pid for pid, out in outputs.items() if isinstance(out, dict) and "weights" in out)
    clients = tuple(sorted(data))
    config = _config(options, {server: "server", **{c: "client" for c in clients}})
    parts = [_split(read_csv(data[c]), data[c]) for c in clients]
    result = outputs[server]
    expected, _ = plaintext_training(config, parts)
    weights = np.asarray(result["weights"])
    error = float(np.max(np.abs(weights - expected)))
    X, y = np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    scores = X @ weights[:-1, 0] + weights[-1, 0]
    fit = (f"training accuracy {np.mean((scores > 0) == y):.3f}" if config.model == "logistic"
           else f"training R^2 {1 - np.sum((scores - y) ** 2) / np.sum((y - y.mean()) ** 2):.3f}")
    counts = sorted({len(r) for r in result["responders"]})
    return CheckResult(
        error == 0.0,
        f"{config.n_rounds} rounds, each decoded from {counts} of {len(clients)} clients (R = {config.recovery_threshold}"
        f"); max |w - plaintext full-participation w| = {error:.1e}; {fit}",
    )


def model(output: Mapping[str, Any], ctx: AppContext) -> Any:
    """The server's model as a fitted estimator (labels 0/1 in process mode); clients learn no final model."""
    if "weights" not in output:
        return None
    config = _config(ctx.options, ctx.federation)
    cls = CodedLogisticRegression if config.model == "logistic" else CodedLinearRegression
    estimator = cls(**{k: v for k, v in config.options().items() if k in cls.param_defaults()})
    weights = np.asarray(output["weights"], dtype=np.float64)
    estimator.n_features_in_, estimator.n_iter_ = weights.shape[0] - 1, int(output["n_rounds"])
    if cls is CodedLogisticRegression:
        estimator.classes_ = np.array([0.0, 1.0])
    estimator._set_weights(weights)
    return estimator
