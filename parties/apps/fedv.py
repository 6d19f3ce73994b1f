"""FedV (Xu et al. 2021): vertical logistic regression, SVM or linear regression with two functional-encryption
steps per gradient and no message between data holders, as party processes.

Roles: ``tpa``, ``aggregator``, ``active`` (one; data: its feature columns with the label or target
in the last column) and ``passive`` (data: feature columns of the same rows). Parties are ordered
active first, then passive by id (the column order of the model). Threat model and leakage: see
:mod:`protocols.fedv` (the aggregator learns the scores, the gradients, the model and, for
logistic regression and the SVM, the labels; the TPA every party's weights and the batch's
errors, each in a secret order). Options: the fields of :class:`protocols.fedv.FedVConfig`
(``mpcml options fedv``). The aggregator learns the model (``mpcml party --model``).

Demo data: ``load_breast_cancer`` (``load_diabetes`` for ``model=linear``) standardised, its
columns split among alice (active), bob and carol; ``rows`` keeps the first rows only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.preprocessing import StandardScaler

from protocols.config import ProtocolConfig, integer, option
from protocols.fedv import FedVClassifier, FedVConfig, FedVRegressor, plaintext_fedv, reference_plan, replay_tolerance, roles

from . import AppContext, CheckResult, parse, read_csv, write_csv

DESCRIPTION = "FedV: vertical logistic/linear regression or SVM with functional encryption (no peer-to-peer)"
DEMO_PARTIES = {"tpa": "tpa", "aggregator": "aggregator", "alice": "active", "bob": "passive", "carol": "passive"}
CONFIG = FedVConfig


@dataclass(frozen=True)
class DEMO(ProtocolConfig):
    rows: int = option(0, "demo rows to keep (0: all)", integer(0))


def _config(options: Mapping[str, str], federation: Mapping[str, str]) -> FedVConfig:
    found = {role: sorted(p for p, r in federation.items() if r == role) for role in ("tpa", "aggregator", "active")}
    for role, ids in found.items():
        if len(ids) != 1:
            raise ValueError(f"the federation must have exactly one party with role {role!r}, found {ids}")
    passive = sorted(p for p, r in federation.items() if r == "passive")
    return parse(options, CONFIG, DEMO, parties=(found["active"][0], *passive), active=found["active"][0],
                 tpa=found["tpa"][0], aggregator=found["aggregator"][0])


def build(ctx: AppContext) -> tuple[Callable[..., Any], dict]:
    config = _config(ctx.options, ctx.federation)
    if ctx.role not in ("tpa", "aggregator", "active", "passive"):
        raise ValueError(f"fedv has roles tpa, aggregator, active and passive, not {ctx.role!r}")
    data = {}
    if ctx.role in ("active", "passive"):
        table = read_csv(ctx.require_data())
        if ctx.role == "active" and table.shape[1] < 2:
            raise ValueError(f"data file {str(ctx.data)!r} needs feature columns and a last label column")
        data[ctx.party_id] = (table[:, :-1], table[:, -1]) if ctx.role == "active" else (table, None)
    party_roles, inputs = roles(config, data, progress=ctx.progress(config.epochs, "epoch"))
    return party_roles[ctx.party_id], inputs.get(ctx.party_id, {})


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    given = {**CONFIG.parse_options(options, extra=DEMO.option_names()),
             **DEMO.parse_options(options, extra=CONFIG.option_names())}
    X, y = (load_diabetes if given.get("model") == "linear" else load_breast_cancer)(return_X_y=True)
    keep = given.get("rows") or len(y)
    X, y = StandardScaler().fit_transform(X)[:keep], y[:keep].astype(np.float64)
    blocks = np.array_split(X, 3, axis=1)
    out = Path(out_dir)
    return {"alice": write_csv(out / "alice.csv", np.column_stack([blocks[0], y])),
            "bob": write_csv(out / "bob.csv", blocks[1]), "carol": write_csv(out / "carol.csv", blocks[2])}


def check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult:
    """Replays the same gradient descent on the same quantised integers and compares the models within :func:`protocols.fedv.replay_tolerance`."""
    config = _config(options, DEMO_PARTIES)
    active = read_csv(data[config.active])
    blocks = [active[:, :-1] if pid == config.active else read_csv(data[pid]) for pid in config.parties]
    y = active[:, -1]
    result = outputs[config.aggregator]
    reference = plaintext_fedv(blocks, y, config)
    error = max(float(np.max(np.abs(result["coef"] - reference["coef"]))),
                float(np.max(np.abs(result["intercept"] - reference["intercept"]))))
    bound = replay_tolerance(config, reference_plan(config, blocks, y))
    loss = result["history"][-1]["loss"]
    return CheckResult(error <= bound, f"{config.model}, {config.epochs} epochs: last epoch's loss {loss:.4g}; "
                                       f"max |w - replay| = {error:.2e} (bound {bound:.2e})")


def model(output: Mapping[str, Any], ctx: AppContext) -> Any:
    """The aggregator's model as a fitted estimator (labels 0/1 in process mode); the other roles learn none."""
    config = _config(ctx.options, ctx.federation)
    if ctx.party_id != config.aggregator:
        return None
    cls = FedVRegressor if config.linear else FedVClassifier
    estimator = cls(**{k: v for k, v in config.options().items() if k in cls.param_defaults()})
    coef, intercept = np.asarray(output["coef"], dtype=np.float64), np.asarray(output["intercept"], dtype=np.float64)
    estimator.n_features_in_, estimator.n_iter_ = coef.shape[1], config.epochs
    estimator.block_widths_ = list(output["plan"]["widths"])
    if config.linear:
        estimator.coef_, estimator.intercept_ = coef[0], float(intercept[0])
    else:
        estimator.coef_, estimator.intercept_, estimator.classes_ = coef, intercept, np.array([0.0, 1.0])
    return estimator
