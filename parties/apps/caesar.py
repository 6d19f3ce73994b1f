"""CAESAR sparse logistic regression (Chen et al., KDD 2021) as two party processes.

Roles: ``features`` (party A: a CSV of its feature columns) and ``labels`` (party B: a CSV of its
feature columns with the label as the last column: 0/1); rows are aligned. With the default
``output=own`` A learns its weights ``w_A``, B learns ``w_B`` and the intercept; with
``output=reveal`` both learn the whole model (``mpcml party --model`` saves it for ``mpcml
predict``); with ``output=shared`` each keeps its shares (secure prediction:
:mod:`protocols.caesar.prediction`). Threat model and leakage: see :mod:`protocols.caesar`.
Options: the fields of :class:`protocols.caesar.CaesarConfig` (``mpcml options caesar``), and for
the demo data ``rows``, ``cols`` (split evenly) and ``density``.

Demo data: synthetic one-hot sparse features with a known logistic model
(:func:`protocols.caesar.make_sparse_logistic`), written as dense CSV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from protocols.caesar import CaesarConfig, CaesarLogisticRegression, make_sparse_logistic, reference_fit, replay_tolerance, roles
from protocols.config import ProtocolConfig, integer, number, option

from . import AppContext, CheckResult, parse, read_csv, write_csv

DESCRIPTION = "CAESAR: two-party sparse logistic regression, Paillier products + secret sharing (features + labels)"
DEMO_PARTIES = {"alice": "features", "bob": "labels"}
CONFIG = CaesarConfig


@dataclass(frozen=True)
class DEMO(ProtocolConfig):
    """The synthetic one-hot demo data."""

    rows: int = option(400, "rows of demo data", integer(2))
    cols: int = option(200, "one-hot columns (alice the first half, bob the rest)", integer(2))
    density: float = option(0.05, "fraction of ones per row", number(high=1.0))


def _config(options: Mapping[str, str], federation: Mapping[str, str]) -> CaesarConfig:
    found = {role: sorted(p for p, r in federation.items() if r == role) for role in ("features", "labels")}
    for role, parties in found.items():
        if len(parties) != 1:
            raise ValueError(f"the federation must have exactly one party with role {role!r}, found {parties}")
    return parse(options, CONFIG, DEMO, features=found["features"][0], labels=found["labels"][0])


def build(ctx: AppContext) -> tuple[Callable[..., Any], dict]:
    if ctx.role not in ("features", "labels"):
        raise ValueError(f"caesar has roles features and labels, not {ctx.role!r}")
    config = _config(ctx.options, ctx.federation)
    table = read_csv(ctx.require_data())
    if ctx.role == "features":
        data = (table, None)
    elif table.shape[1] < 2:
        raise ValueError(f"the labels party's file {str(ctx.data)!r} needs feature columns and a last label column")
    else:
        data = (table[:, :-1], table[:, -1])
    party_roles, inputs = roles(config, {ctx.party_id: data}, progress=ctx.progress(config.epochs, "epoch"))
    return party_roles[ctx.party_id], inputs[ctx.party_id]


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    demo = parse(options, DEMO, CONFIG)
    x, y, _ = make_sparse_logistic(demo.rows, demo.cols, demo.density, seed=seed)
    dense = x.toarray()
    half = demo.cols // 2
    return {
        "alice": write_csv(Path(out_dir) / "alice.csv", dense[:, :half]),
        "bob": write_csv(Path(out_dir) / "bob.csv", np.column_stack([dense[:, half:], y])),
    }


def check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult:
    """Replays the same algorithm in plaintext (same batches from the agreed seed, sigmoid and
    quantisation) and compares the weights within :func:`protocols.caesar.replay_tolerance`."""
    config = _config(options, DEMO_PARTIES)
    x_a, table = read_csv(data["alice"]), read_csv(data["bob"])
    blocks, y = [x_a, table[:, :-1]], table[:, -1]
    seed = outputs["bob"]["seed"]
    coef, intercept = reference_fit(blocks, y, config, seed)
    bound = replay_tolerance(blocks, config, seed)
    if config.output == "shared":
        return CheckResult(outputs["alice"]["weight_shares"] is not None and outputs["bob"]["weight_shares"] is not None,
                           "output=shared: the weights stay shared (compare with the estimator's secure prediction)")
    if config.output == "reveal":
        got, got_b = np.asarray(outputs["alice"]["coef"]), np.asarray(outputs["alice"]["intercept"])
    else:
        got = np.hstack([np.asarray(outputs["alice"]["coef"]), np.asarray(outputs["bob"]["coef"])])
        got_b = np.asarray(outputs["bob"]["intercept"])
    error = max(float(np.max(np.abs(got - coef))), float(np.max(np.abs(got_b - intercept))))
    return CheckResult(error <= bound, f"{got.size} weights + intercept: max |error| vs the plaintext replay = "
                                       f"{error:.2e} (bound {bound:.2e})")


def model(output: Mapping[str, Any], ctx: AppContext) -> Any:
    """With ``output=reveal`` the whole model as a fitted estimator (labels 0/1 in process mode); else ``None``."""
    config = _config(ctx.options, ctx.federation)
    if config.output != "reveal":
        return None
    estimator = CaesarLogisticRegression(**{k: v for k, v in config.options().items()
                                            if k in CaesarLogisticRegression.param_defaults()})
    estimator.coef_ = np.asarray(output["coef"], dtype=np.float64)
    estimator.intercept_ = np.asarray(output["intercept"], dtype=np.float64)
    estimator.n_features_in_, estimator.n_iter_ = estimator.coef_.shape[1], int(output["n_epochs"])
    estimator.classes_ = np.array([0.0, 1.0])
    return estimator
