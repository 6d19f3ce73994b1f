"""Secure linear / logistic regression (Chen et al. 2020) as party processes.

Roles: ``label`` (a data holder whose CSV's last column is the label; vertical partition),
``holder`` (more data holders: vertical, their feature columns of the same rows; horizontal,
their rows with the label as the last column) and ``dealer`` (Beaver triples for
``engine=beaver``; sees no data; with ``triples=paillier`` two holders make their own triples and
a federation needs no dealer). The holders are the compute parties, in the order of their sorted
ids (which fixes the column order of a vertical model); ``engine=rss3`` needs exactly three of
them and no dealer (a federation's ``dealer``, if it has one, has nothing to do and returns at
once). Threat model and leakage: see :mod:`protocols.regression`; by default every holder learns
all the weights. Options: the fields of :class:`protocols.regression.RegressionConfig`
(``mpcml options regression``).

Demo federation: alice (label holder), bob and carol (holders) and a dealer, so the same demo runs
on either engine (``mpcml demo regression --option engine=rss3``). Demo data:
``load_breast_cancer`` standardised (logistic) or ``load_diabetes`` (squared loss; features
standardised, targets in their own units), split into three blocks (vertical: columns, alice's
with the labels; horizontal: rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.preprocessing import StandardScaler

from protocols.config import ProtocolConfig
from protocols.dp_sgd import replay_tolerance as dp_replay_tolerance
from protocols.regression import (
    RegressionConfig,
    SecureLinearRegression,
    SecureLogisticRegression,
    plaintext_sgd,
    replay_tolerance,
    roles,
)
from protocols.regression.privacy import dp_plan, noise_step, plaintext_dp_fit

from . import AppContext, CheckResult, parse, read_csv, write_csv

DESCRIPTION = "secure linear/logistic regression by mini-batch SGD on secret-shared data (holders + dealer, or rss3)"
DEMO_PARTIES = {"alice": "label", "bob": "holder", "carol": "holder", "dealer": "dealer"}
DEMO_HOLDERS = ("alice", "bob", "carol")
CONFIG = RegressionConfig


@dataclass(frozen=True)
class DEMO(ProtocolConfig):
    """No demo-only options: ``loss`` picks the data set."""


def _topology(federation_roles: Mapping[str, str], partition: str, needs_dealer: bool) -> dict[str, Any]:
    labels = sorted(p for p, r in federation_roles.items() if r == "label")
    holders = tuple(sorted((*labels, *(p for p, r in federation_roles.items() if r == "holder"))))
    if partition == "vertical" and len(labels) != 1:
        raise ValueError(f"a vertical run needs exactly one party with role 'label', found {labels}")
    dealers = sorted(p for p, r in federation_roles.items() if r == "dealer")
    if needs_dealer and len(dealers) != 1:
        raise ValueError(f"the federation must have exactly one party with role 'dealer', found {dealers}")
    return {"holders": holders, "label_holder": labels[0] if partition == "vertical" else None,
            "dealer": dealers[0] if dealers else "dealer"}


def _config(options: Mapping[str, str], federation_roles: Mapping[str, str]) -> RegressionConfig:
    chosen = {**CONFIG.defaults(), **CONFIG.parse_options(options, extra=DEMO.option_names())}
    needs_dealer = chosen["engine"] == "beaver" and chosen["triples"] == "dealer"
    return parse(options, CONFIG, DEMO, **_topology(federation_roles, chosen["partition"], needs_dealer))


def _idle(party: Any) -> dict[str, Any]:
    """A federation's dealer when the engine needs none (``engine=rss3``, ``triples=paillier``): nothing to do."""
    return {}


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
        if ctx.role != "dealer":
            raise ValueError(f"party {ctx.party_id!r} (role {ctx.role!r}) takes no part in this run")
        return _idle, {}
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
        parts = zip(np.array_split(X, len(DEMO_HOLDERS)), np.array_split(y, len(DEMO_HOLDERS)))
        tables = [np.column_stack(part) for part in parts]
    else:
        tables = np.array_split(X, len(DEMO_HOLDERS), axis=1)
        tables[0] = np.column_stack([tables[0], y])
    return {pid: write_csv(out_dir / f"{pid}.csv", table) for pid, table in zip(DEMO_HOLDERS, tables)}


def check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult:
    """Replays the same algorithm in plaintext (same batches, approximation and quantisation) and
    compares the weights within :func:`protocols.regression.replay_tolerance`. With DP the parties' noise
    is fresh CSPRNG noise nobody can replay: the weights are compared with the noiseless replay of the
    same batches within :func:`protocols.dp_sgd.replay_tolerance` with each step's noise move
    (:func:`~protocols.regression.privacy.noise_step`) added to its fixed-point error."""
    holders = tuple(sorted(data))
    tables = {pid: read_csv(data[pid]) for pid in holders}
    federation = {pid: ("label" if pid == "alice" else "holder") for pid in holders} | {"dealer": "dealer"}
    config = _config(options, federation)
    if config.partition == "vertical":
        X = np.hstack([tables[pid][:, :-1] if pid == config.label_holder else tables[pid] for pid in holders])
        y = tables[config.label_holder][:, -1]
    else:
        X = np.vstack([tables[pid][:, :-1] for pid in holders])
        y = np.concatenate([tables[pid][:, -1] for pid in holders])
    lead = outputs[holders[0]]
    if config.dp:
        w = plaintext_dp_fit(X, y, config, lead["seed"], noise=False)
        coef, intercept = (w[None, :-1], w[-1:]) if config.fit_intercept else (w[None, :], np.zeros(1))
    else:
        coef, intercept = plaintext_sgd(X, y, config, lead["seed"])
    if config.output == "own":
        secure_coef = np.concatenate([np.asarray(outputs[pid]["coef"]) for pid in holders], axis=1)
        secure_intercept = np.asarray(outputs[config.label_holder]["intercept"])
    else:
        secure_coef, secure_intercept = np.asarray(lead["coef"]), np.asarray(lead["intercept"])
    if config.dp:
        # L2 bounds, so they bound every coordinate's error too
        bound = dp_replay_tolerance(X, dp_plan(config, X.shape[0]), len(config.players), lead["seed"],
                                    step_error=noise_step(config, X.shape[0], coef.shape[1] + 1))
    else:
        bound = replay_tolerance(config, X, lead["seed"], lead["n_epochs"], lead["y_shift"])
    error = max(float(np.max(np.abs(secure_coef - coef))), float(np.max(np.abs(secure_intercept - intercept))))
    replay = "the noiseless plaintext replay (DP: fresh noise)" if config.dp else "the plaintext replay"
    return CheckResult(error <= bound, f"max |weight error| vs {replay} {error:.2e} (bound {bound:.2e}, "
                                       f"{lead['n_epochs']} epochs)")


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
