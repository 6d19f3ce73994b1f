"""Secure linear / logistic regression (Chen et al. 2020) as party processes.

Roles: ``label`` (a data holder whose CSV's last column is the label; vertical partition),
``holder`` (more data holders: vertical, their feature columns of the same rows; horizontal,
their rows with the label as the last column) and ``dealer`` (Beaver triples; sees no data; with
``triples=paillier`` two holders make their own triples and a federation needs no dealer; a dealer
listed anyway has nothing to do and ends at once).
The holders are the compute parties, in the order of their sorted ids (which fixes the column
order of a vertical model). Threat model and leakage: see :mod:`protocols.regression`; by
default every holder learns all the weights.

Options: ``loss`` (``logistic`` | ``squared``, default logistic), ``partition`` (``vertical`` |
``horizontal``), ``epochs`` (10), ``batch_size`` (32), ``learning_rate`` (0.1), ``alpha`` (0),
``decay`` (0), ``sigmoid`` (default ``linear``), ``frac_bits`` (16), ``output`` (``reveal`` |
``own``), ``random_state`` (batch-order seed, default 0 so ``check`` can replay the batches),
``triples`` (``dealer`` | ``paillier``) and ``key_bits`` (2048, Paillier keys for ``triples=paillier``).

Demo data: ``load_breast_cancer`` standardised (logistic) or ``load_diabetes`` standardised
(squared loss), split between alice (label holder) and bob.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from protocols.regression import (
    DEFAULT_SIGMOID,
    RegressionConfig,
    plaintext_sgd,
    regression_dealer,
    regression_party,
    seed_from_random_state,
)

from . import AppContext, CheckResult, get_option, read_csv, write_csv

DESCRIPTION = "secure linear/logistic regression by mini-batch SGD on secret-shared data (holders + dealer)"
DEMO_PARTIES = {"alice": "label", "bob": "holder", "dealer": "dealer"}


def config_from_options(options: Mapping[str, str], holders: tuple[str, ...], label: str | None,
                        dealer: str) -> RegressionConfig:
    partition = get_option(options, "partition", str, "vertical")
    return RegressionConfig(
        loss=get_option(options, "loss", str, "logistic"),
        holders=holders,
        partition=partition,
        label_holder=label if partition == "vertical" else None,
        dealer=dealer,
        learning_rate=get_option(options, "learning_rate", float, 0.1),
        epochs=get_option(options, "epochs", int, 10),
        batch_size=get_option(options, "batch_size", int, 32),
        alpha=get_option(options, "alpha", float, 0.0),
        decay=get_option(options, "decay", float, 0.0),
        sigmoid=get_option(options, "sigmoid", str, DEFAULT_SIGMOID),
        output=get_option(options, "output", str, "reveal"),
        frac_bits=get_option(options, "frac_bits", int, 16),
        triples=get_option(options, "triples", str, "dealer"),
        key_bits=get_option(options, "key_bits", int, 2048),
        seed=seed_from_random_state(get_option(options, "random_state", int, 0)),
    )


def _config(ctx: AppContext) -> RegressionConfig:
    labels = ctx.parties_for("label")
    holders = tuple(sorted((*labels, *ctx.parties_for("holder"))))
    partition = ctx.option("partition", str, "vertical")
    if partition == "vertical" and len(labels) != 1:
        raise ValueError(f"a vertical run needs exactly one party with role 'label', found {list(labels)}")
    if ctx.option("triples", str, "dealer") == "dealer":
        dealer = ctx.party_for("dealer")
    else:
        dealers = ctx.parties_for("dealer")
        dealer = dealers[0] if dealers else "dealer"
    return config_from_options(ctx.options, holders, labels[0] if labels else None, dealer)


def build(ctx: AppContext) -> tuple[Callable[..., Any], dict]:
    config = _config(ctx)
    if ctx.role == "dealer":
        return regression_dealer, {"config": config}
    if ctx.role not in ("label", "holder"):
        raise ValueError(f"regression has roles label, holder and dealer, not {ctx.role!r}")
    table = read_csv(ctx.require_data())
    if not config.has_labels(ctx.party_id):
        return regression_party, {"X": table, "config": config}
    if table.shape[1] < 2:
        raise ValueError(f"data file {str(ctx.data)!r} needs feature columns and a last label column")
    return regression_party, {"X": table[:, :-1], "y": table[:, -1], "config": config}


def _demo_dataset(options: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray]:
    if get_option(options, "loss", str, "logistic") == "squared":
        X, y = load_diabetes(return_X_y=True)
        return StandardScaler().fit_transform(X), (y - y.mean()) / y.std()
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y.astype(np.float64)


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    X, y = _demo_dataset(options)
    out_dir = Path(out_dir)
    if get_option(options, "partition", str, "vertical") == "horizontal":
        half = X.shape[0] // 2
        parts = {"alice": (X[:half], y[:half]), "bob": (X[half:], y[half:])}
        return {pid: write_csv(out_dir / f"{pid}.csv", np.column_stack(p)) for pid, p in parts.items()}
    left, right = np.array_split(X, 2, axis=1)
    return {
        "alice": write_csv(out_dir / "alice.csv", np.column_stack([left, y])),
        "bob": write_csv(out_dir / "bob.csv", right),
    }


def check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult:
    """Replays the same mini-batches in float64 and compares the model's quality and weights."""
    holders = tuple(sorted(data))
    tables = {pid: read_csv(data[pid]) for pid in holders}
    config = config_from_options(options, holders, "alice", "dealer")
    if config.partition == "vertical":
        X = np.hstack([tables["alice"][:, :-1] if pid == "alice" else tables[pid] for pid in holders])
        y = tables["alice"][:, -1]
    else:
        X = np.vstack([tables[pid][:, :-1] for pid in holders])
        y = np.concatenate([tables[pid][:, -1] for pid in holders])
    coef, intercept = plaintext_sgd(X, y, config, config.seed)
    if config.output == "own":
        secure_coef = np.concatenate([np.asarray(outputs[pid]["coef"]) for pid in holders])
        secure_intercept = outputs[config.label_holder]["intercept"]
    else:
        secure_coef, secure_intercept = np.asarray(outputs[holders[0]]["coef"]), outputs[holders[0]]["intercept"]
    metric, name, tolerance = (roc_auc_score, "AUC", 0.005) if config.loss == "logistic" else (r2_score, "R^2", 0.01)
    secure = metric(y, X @ secure_coef + secure_intercept)
    plain = metric(y, X @ coef + intercept)
    weight_error = float(np.max(np.abs(secure_coef - coef)))
    return CheckResult(
        bool(abs(secure - plain) <= tolerance),
        f"training {name} secure {secure:.4f} vs plaintext SGD {plain:.4f} (tolerance {tolerance}); "
        f"max |weight error| {weight_error:.1e}",
    )
