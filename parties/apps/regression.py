"""Secure linear / logistic regression (Chen et al. 2020) as party processes.

Roles: ``label`` (a data holder whose CSV's last column is the label; vertical partition),
``holder`` (more data holders: vertical, their feature columns of the same rows; horizontal,
their rows with the label as the last column) and ``dealer`` (Beaver triples; sees no data; with
``triples=paillier`` two holders make their own triples and a federation needs no dealer).
The holders are the compute parties, in the order of their sorted ids (which fixes the column
order of a vertical model). Threat model and leakage: see :mod:`protocols.regression`; by
default every holder learns all the weights. Options: the fields of
:class:`protocols.regression.RegressionConfig` (``mpcml options regression``).

Demo data: ``load_breast_cancer`` standardised (logistic) or ``load_diabetes`` (squared loss;
features standardised, targets in their own units), split between alice (label holder) and bob.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.preprocessing import StandardScaler

from protocols.config import ProtocolConfig
from protocols.regression import (
    RegressionConfig,
    SecureLinearRegression,
    SecureLogisticRegression,
    plaintext_sgd,
    replay_tolerance,
    roles,
)

from . import AppContext, CheckResult, parse, read_csv, write_csv

DESCRIPTION = "secure linear/logistic regression by mini-batch SGD on secret-shared data (holders + dealer)"
DEMO_PARTIES = {"alice": "label", "bob": "holder", "dealer": "dealer"}
CONFIG = RegressionConfig


@dataclass(frozen=True)
class DEMO(ProtocolConfig):
    """No demo-only options: ``loss`` picks the data set."""


def _topology(federation_roles: Mapping[str, str], partition: str, triples: str) -> dict[str, Any]:
    labels = sorted(p for p, r in federation_roles.items() if r == "label")
    holders = tuple(sorted((*labels, *(p for p, r in federation_roles.items() if r == "holder"))))
    if partition == "vertical" and len(labels) != 1:
        raise ValueError(f"a vertical run needs exactly one party with role 'label', found {labels}")
    dealers = sorted(p for p, r in federation_roles.items() if r == "dealer")
    if triples == "dealer" and len(dealers) != 1:
        raise ValueError(f"the federation must have exactly one party with role 'dealer', found {dealers}")
    return {"holders": holders, "label_holder": labels[0] if partition == "vertical" else None,
            "dealer": dealers[0] if dealers else "dealer"}


def _config(options: Mapping[str, str], federation_roles: Mapping[str, str]) -> RegressionConfig:
    given = CONFIG.parse_options(options)
    defaults = CONFIG.defaults()
    topology = _topology(federation_roles, given.get("partition", defaults["partition"]),
                         given.get("triples", defaults["triples"]))
    return parse(options, CONFIG, DEMO, **topology)


def build(ctx: AppContext) -> tuple[Callable[..., Any], dict]:
    config = _config(ctx.options, ctx.federation)
    if ctx.role not in ("label", "holder", "dealer"):
        raise ValueError(f"regression has roles label, holder and dealer, not {ctx.role!r}")
    data: dict[str, tuple[Any, Any]] = {}
    if ctx.role != "dealer":
        table = read_csv(ctx.require_data())
        if config.has_labels(ctx.party_id):
            if table.shape[1] < 2:
                raise ValueError(f"data file {str(ctx.data)!r} needs feature columns and a last label column")
            data[ctx.party_id] = (table[:, :-1], table[:, -1])
        else:
            data[ctx.party_id] = (table, None)
    party_roles, inputs = roles(config, data, progress=ctx.progress(config.epochs, "epoch"))
    if ctx.party_id not in party_roles:
        raise ValueError(f"party {ctx.party_id!r} (role {ctx.role!r}) has nothing to do with triples={config.triples!r}")
    return party_roles[ctx.party_id], inputs[ctx.party_id]


def _demo_dataset(options: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray]:
    if CONFIG.parse_options(options, extra=DEMO.option_names()).get("loss", CONFIG.defaults()["loss"]) == "squared":
        X, y = load_diabetes(return_X_y=True)
        return StandardScaler().fit_transform(X), y.astype(np.float64)
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y.astype(np.float64)


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    X, y = _demo_dataset(options)
    out_dir = Path(out_dir)
    if CONFIG.parse_options(options, extra=DEMO.option_names()).get("partition") == "horizontal":
        half = X.shape[0] // 2
        parts = {"alice": (X[:half], y[:half]), "bob": (X[half:], y[half:])}
        return {pid: write_csv(out_dir / f"{pid}.csv", np.column_stack(p)) for pid, p in parts.items()}
    left, right = np.array_split(X, 2, axis=1)
    return {
        "alice": write_csv(out_dir / "alice.csv", np.column_stack([left, y])),
        "bob": write_csv(out_dir / "bob.csv", right),
    }


def check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult:
    """Replays the same algorithm in plaintext (same batches, approximation and quantisation) and
    compares the weights within :func:`protocols.regression.replay_tolerance`."""
    holders = tuple(sorted(data))
    tables = {pid: read_csv(data[pid]) for pid in holders}
    federation = {pid: ("label" if pid == "alice" else "holder") for pid in holders} | {"dealer": "dealer"}
    config = _config(options, federation)
    if config.partition == "vertical":
        X = np.hstack([tables["alice"][:, :-1] if pid == "alice" else tables[pid] for pid in holders])
        y = tables["alice"][:, -1]
    else:
        X = np.vstack([tables[pid][:, :-1] for pid in holders])
        y = np.concatenate([tables[pid][:, -1] for pid in holders])
    lead = outputs[holders[0]]
    coef, intercept = plaintext_sgd(X, y, config, lead["seed"])
    if config.output == "own":
        secure_coef = np.concatenate([np.asarray(outputs[pid]["coef"]) for pid in holders], axis=1)
        secure_intercept = np.asarray(outputs[config.label_holder]["intercept"])
    else:
        secure_coef, secure_intercept = np.asarray(lead["coef"]), np.asarray(lead["intercept"])
    steps = lead["n_epochs"] * -(-X.shape[0] // config.batch_size)
    bound = replay_tolerance(config, X, steps, lead["y_shift"])
    error = max(float(np.max(np.abs(secure_coef - coef))), float(np.max(np.abs(secure_intercept - intercept))))
    return CheckResult(error <= bound, f"max |weight error| vs the plaintext replay {error:.2e} (bound {bound:.2e}, "
                                       f"{steps} steps)")


def model(output: Mapping[str, Any], ctx: AppContext) -> Any:
    """A holder's revealed model as a fitted estimator (``output=reveal`` only; labels 0/1 in process mode)."""
    config = _config(ctx.options, ctx.federation)
    if config.output != "reveal" or output.get("coef") is None:
        return None
    cls = SecureLogisticRegression if config.loss == "logistic" else SecureLinearRegression
    estimator = cls(**{k: v for k, v in config.options().items() if k in cls.param_defaults()})
    coef, intercept = np.asarray(output["coef"], dtype=np.float64), np.asarray(output["intercept"], dtype=np.float64)
    estimator.n_features_in_, estimator.n_iter_ = coef.shape[1], int(output["n_epochs"])
    if cls is SecureLogisticRegression:
        estimator.coef_, estimator.intercept_, estimator.classes_ = coef, intercept, np.array([0.0, 1.0])
    else:
        estimator.coef_, estimator.intercept_ = coef[0], float(intercept[0])
    return estimator
