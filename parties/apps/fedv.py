"""FedV: vertical federated training (logistic regression by default) with two FE steps per
gradient and no message between data holders.

Threat model and leakage: see :mod:`protocols.fe_aggregation` (the aggregator learns per-sample
scores ``w^T x`` and the gradients; for logistic regression and SVM also the labels).

Roles: ``tpa``, ``aggregator``, ``active`` (one; data: its feature columns with the label in the
last column) and ``passive`` (data: feature columns). Parties are ordered active first, then
passive by id. Options: ``model`` (``logistic``, ``linear``, ``svm``; default ``logistic``),
``epochs`` (default 5), ``learning_rate`` (0.5), ``batch_size`` (0 = full batch), ``widths``
(columns per party in that order, default ``10,10,10`` as in the demo data), ``samples``
(rows, default 569), ``group`` (FE group name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from mpcml.fe import DEFAULT_GROUP
from protocols.fe_aggregation import FedVConfig, fedv_aggregator, fedv_party, fedv_tpa, plaintext_fedv

from . import AppContext, CheckResult, get_option, read_csv, write_csv

DESCRIPTION = "FedV: vertical logistic/linear regression or SVM with functional encryption (no peer-to-peer)"
DEMO_PARTIES = {"tpa": "tpa", "aggregator": "aggregator", "alice": "active", "bob": "passive", "carol": "passive"}


def _widths(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def config_from(options: Mapping[str, str], parties: tuple[str, ...], tpa: str, aggregator: str) -> FedVConfig:
    return FedVConfig(
        parties, get_option(options, "widths", _widths, (10, 10, 10)), get_option(options, "samples", int, 569),
        parties[0], get_option(options, "model", str, "logistic"), get_option(options, "epochs", int, 5),
        get_option(options, "batch_size", int, 0), get_option(options, "learning_rate", float, 0.5), tpa=tpa,
        aggregator=aggregator, group=get_option(options, "group", str, DEFAULT_GROUP.name),
    )


def build(ctx: AppContext) -> tuple[Callable[..., Any], dict]:
    parties = (ctx.party_for("active"), *ctx.parties_for("passive"))
    config = config_from(ctx.options, parties, ctx.party_for("tpa"), ctx.party_for("aggregator"))
    if ctx.role == "tpa":
        return fedv_tpa, {"config": config}
    if ctx.role == "aggregator":
        return fedv_aggregator, {"config": config}
    if ctx.role not in ("active", "passive"):
        raise ValueError(f"fedv has roles tpa, aggregator, active and passive, not {ctx.role!r}")
    data = read_csv(ctx.require_data())
    if ctx.role == "active":
        return fedv_party, {"config": config, "X": data[:, :-1], "y": data[:, -1]}
    return fedv_party, {"config": config, "X": data}


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    X, y = load_breast_cancer(return_X_y=True)
    X = np.clip(StandardScaler().fit_transform(X), -15, 15)
    cuts = np.cumsum(get_option(options, "widths", _widths, (10, 10, 10)))[:-1]
    blocks = np.split(X, cuts, axis=1)
    return {
        "alice": write_csv(Path(out_dir) / "alice.csv", np.column_stack([blocks[0], y])),
        "bob": write_csv(Path(out_dir) / "bob.csv", blocks[1]),
        "carol": write_csv(Path(out_dir) / "carol.csv", blocks[2]),
    }


def check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult:
    parties = ("alice", "bob", "carol")
    config = config_from(options, parties, "tpa", "aggregator")
    active = read_csv(data["alice"])
    blocks = [active[:, :-1], read_csv(data["bob"]), read_csv(data["carol"])]
    y = active[:, -1]
    result = next(v for v in outputs.values() if isinstance(v, dict) and "initial" in v)
    ref = plaintext_fedv(blocks, y, config, result["initial"])
    error = max(float(np.max(np.abs(result["weights"][p] - ref[p]))) for p in parties)
    scores = lambda w: sum(b @ w[p][: b.shape[1]] for b, p in zip(blocks, parties)) + w["alice"][-1]  # noqa: E731
    if config.model == "linear":
        fit = lambda w: float(np.mean((scores(w) - y) ** 2))  # noqa: E731
        name = "MSE"
    else:
        fit = lambda w: float(np.mean((scores(w) > 0) == (y > 0.5)))  # noqa: E731
        name = "accuracy"
    got, want = fit(result["weights"]), fit(ref)
    return CheckResult(bool(abs(got - want) <= 0.01 and error <= 0.01),
                       f"{config.model}, {config.epochs} epochs: {name} {got:.4f} vs plaintext {want:.4f}; "
                       f"max |w - plaintext w| = {error:.2e}")
