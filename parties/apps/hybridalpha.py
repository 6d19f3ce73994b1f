"""HybridAlpha federated logistic regression (Xu et al. 2019) as party processes: parties encrypt their
updates with labelled MIFE; the aggregator averages whoever answers before the deadline with a key from the TPA.

Roles: ``tpa`` (one), ``aggregator`` (one) and ``party`` (several; data: a CSV of features with the
0/1 label in the last column). The parties take their FE slots in the order of their sorted ids.
Threat model and leakage: see :mod:`protocols.hybridalpha` (the aggregator learns each round's
mean update of the responders and who responded; the TPA who responded; the parties the global
model). Options: the fields of :class:`protocols.hybridalpha.HybridAlphaConfig`
(``mpcml options hybridalpha``). The aggregator and every party that stays to the end learn the
final model (``mpcml party --model``).

Demo data: ``load_breast_cancer`` standardised, its rows shuffled and split among five parties.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from protocols.config import ProtocolConfig
from protocols.hybridalpha import HybridAlphaConfig, HybridAlphaLogisticRegression, plaintext_fedavg, replay_tolerance, roles

from . import AppContext, CheckResult, parse, read_csv, shuffled_row_groups, write_csv

DESCRIPTION = "HybridAlpha: federated logistic regression with multi-input FE aggregation and dropouts"
DEMO_PARTIES = {"tpa": "tpa", "aggregator": "aggregator", "alice": "party", "bob": "party", "carol": "party",
                "dave": "party", "erin": "party"}
CONFIG = HybridAlphaConfig


@dataclass(frozen=True)
class DEMO(ProtocolConfig):
    """No demo-only options."""


def _config(options: Mapping[str, str], federation: Mapping[str, str]) -> HybridAlphaConfig:
    roles_of = {role: sorted(p for p, r in federation.items() if r == role) for role in ("tpa", "aggregator", "party")}
    for role in ("tpa", "aggregator"):
        if len(roles_of[role]) != 1:
            raise ValueError(f"the federation must have exactly one party with role {role!r}, found {roles_of[role]}")
    return parse(options, CONFIG, DEMO, parties=tuple(roles_of["party"]), tpa=roles_of["tpa"][0],
                 aggregator=roles_of["aggregator"][0])


def build(ctx: AppContext) -> tuple[Callable[..., Any], dict]:
    config = _config(ctx.options, ctx.federation)
    if ctx.role not in ("tpa", "aggregator", "party"):
        raise ValueError(f"hybridalpha has roles tpa, aggregator and party, not {ctx.role!r}")
    data = {}
    if ctx.role == "party":
        table = read_csv(ctx.require_data())
        if table.shape[1] < 2:
            raise ValueError(f"data file {str(ctx.data)!r} needs feature columns and a last 0/1 label column")
        data[ctx.party_id] = (table[:, :-1], table[:, -1])
    party_roles, inputs = roles(config, data, progress=ctx.progress(config.rounds, "round"))
    return party_roles[ctx.party_id], inputs.get(ctx.party_id, {})


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    parties = [pid for pid, role in DEMO_PARTIES.items() if role == "party"]
    return {
        pid: write_csv(Path(out_dir) / f"{pid}.csv", np.column_stack([X[rows], y[rows]]))
        for pid, rows in zip(parties, shuffled_row_groups(len(y), len(parties), seed))
    }


def check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult:
    """Replays the same federated averaging in plaintext with the same responders per round and compares
    the models within :func:`protocols.hybridalpha.replay_tolerance` (with DP: the accuracies, within 0.05)."""
    ids = tuple(sorted(data))
    federation = {**{pid: "party" for pid in ids}, "tpa": "tpa", "aggregator": "aggregator"}
    config = _config(options, federation)
    tables = {pid: read_csv(data[pid]) for pid in ids}
    parts = {pid: (t[:, :-1], t[:, -1]) for pid, t in tables.items()}
    result = outputs[config.aggregator]
    responders = [h["responders"] if "refused" not in h else [] for h in result["history"]]
    reference = plaintext_fedavg(parts, config, responders)
    X = np.vstack([p[0] for p in parts.values()])
    y = np.concatenate([p[1] for p in parts.values()])

    def accuracy(model: np.ndarray) -> float:
        return float(np.mean(((X @ model[:-1] + model[-1]) > 0) == y))

    error = float(np.max(np.abs(result["model"] - reference)))
    bound = replay_tolerance(config)
    ok = abs(accuracy(result["model"]) - accuracy(reference)) <= 0.05 if config.dp_epsilon else error <= bound
    return CheckResult(bool(ok), f"{len(responders)} rounds, responders per round {[len(r) for r in responders]}; "
                                 f"accuracy {accuracy(result['model']):.4f} vs plaintext FedAvg "
                                 f"{accuracy(reference):.4f}; max |model - replay| = {error:.2e} (bound {bound:.2e})")


def model(output: Mapping[str, Any], ctx: AppContext) -> Any:
    """The final model of the aggregator or of a party that stayed to the end (labels 0/1 in process mode)."""
    if output.get("model") is None:
        return None
    config = _config(ctx.options, ctx.federation)
    estimator = HybridAlphaLogisticRegression(**config.options())
    W = np.asarray(output["model"], dtype=np.float64)
    estimator.coef_ = (W[:-1] if config.fit_intercept else W)[None, :]
    estimator.intercept_ = W[-1:] if config.fit_intercept else np.zeros(1)
    estimator.classes_, estimator.n_features_in_, estimator.n_iter_ = np.array([0.0, 1.0]), estimator.coef_.shape[1], config.rounds
    return estimator
