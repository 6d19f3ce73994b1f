"""HybridAlpha federated logistic regression: parties encrypt their updates with labelled MIFE,
the aggregator averages whoever answers before the deadline with a key from the TPA.

Threat model and leakage: see :mod:`protocols.fe_aggregation` (semi-honest parties and
aggregator, trusted TPA that never sees ciphertexts; the aggregator learns each round's average
of the responders' updates and who responded; the TPA learns who responded).

Roles: ``tpa`` (one), ``aggregator`` (one), ``party`` (several; data: CSV of features with the
0/1 label in the last column). Options: ``rounds`` (default 5), ``local_epochs`` (3),
``learning_rate`` (0.5), ``min_parties`` (t, default 3), ``deadline`` (seconds per round,
default 30), ``scheme`` (``fe``, ``paillier-packed``, ``phe``, ``plain``; default ``fe``),
``group`` (FE group name; default the 3072-bit group), ``dp_epsilon`` (enables DP with
``dp_delta`` = 1e-5, ``dp_clip`` = 1.0), ``precompute`` (1: prepare every round's FE masks
and pads at setup; default 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from mpcml.fe import DEFAULT_GROUP
from protocols.fe_aggregation import (
    DPConfig,
    HybridAlphaConfig,
    LogisticTrainer,
    hybridalpha_aggregator,
    hybridalpha_party,
    hybridalpha_tpa,
    plaintext_fedavg,
)

from . import AppContext, CheckResult, get_flag, get_option, read_csv, shuffled_row_groups, write_csv

DESCRIPTION = "HybridAlpha: federated logistic regression with multi-input FE aggregation and dropouts"
DEMO_PARTIES = {"tpa": "tpa", "aggregator": "aggregator", "alice": "party", "bob": "party", "carol": "party",
                "dave": "party", "erin": "party"}


def config_from(options: Mapping[str, str], parties: tuple[str, ...], tpa: str, aggregator: str, n_params: int) -> HybridAlphaConfig:
    epsilon = get_option(options, "dp_epsilon", float, 0.0)
    dp = DPConfig(epsilon, get_option(options, "dp_delta", float, 1e-5), get_option(options, "dp_clip", float, 1.0)) if epsilon else None
    return HybridAlphaConfig(
        parties, n_params, get_option(options, "rounds", int, 5), get_option(options, "scheme", str, "fe"),
        tpa=tpa, aggregator=aggregator, min_parties=get_option(options, "min_parties", int, 3),
        deadline=get_option(options, "deadline", float, 30.0), group=get_option(options, "group", str, DEFAULT_GROUP.name),
        dp=dp, precompute=get_flag(options, "precompute"),
    )


def _n_params(options: Mapping[str, str]) -> int:
    return get_option(options, "features", int, 30) + 1


def build(ctx: AppContext) -> tuple[Callable[..., Any], dict]:
    config = config_from(ctx.options, ctx.parties_for("party"), ctx.party_for("tpa"), ctx.party_for("aggregator"),
                         _n_params(ctx.options))
    if ctx.role == "tpa":
        return hybridalpha_tpa, {"config": config}
    if ctx.role == "aggregator":
        return hybridalpha_aggregator, {"config": config, "initial_model": np.zeros(config.n_params)}
    if ctx.role != "party":
        raise ValueError(f"hybridalpha has roles tpa, aggregator and party, not {ctx.role!r}")
    data = read_csv(ctx.require_data())
    if data.shape[1] != config.n_params:
        raise ValueError(f"data file {str(ctx.data)!r} must have {config.n_params - 1} feature columns and a label column")
    trainer = LogisticTrainer(data[:, :-1], data[:, -1], ctx.option("learning_rate", float, 0.5),
                              ctx.option("local_epochs", int, 3))
    return hybridalpha_party, {"config": config, "local_update": trainer}


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    parties = [pid for pid, role in DEMO_PARTIES.items() if role == "party"]
    return {
        pid: write_csv(Path(out_dir) / f"{pid}.csv", np.column_stack([X[rows], y[rows]]))
        for pid, rows in zip(parties, shuffled_row_groups(len(y), len(parties), seed))
    }


def check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult:
    ids = sorted(data)
    parts = [(d[:, :-1], d[:, -1]) for d in (read_csv(data[pid]) for pid in ids)]
    result = next(v for v in outputs.values() if isinstance(v, dict) and "history" in v)
    history = result["history"]
    responders = [[ids.index(p) for p in h["responders"]] if "refused" not in h else [] for h in history]
    ref = plaintext_fedavg(parts, len(history), get_option(options, "learning_rate", float, 0.5),
                           get_option(options, "local_epochs", int, 3), responders)
    X = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    acc = np.mean(((X @ result["model"][:-1] + result["model"][-1]) > 0) == y)
    ref_acc = np.mean(((X @ ref[:-1] + ref[-1]) > 0) == y)
    error = float(np.max(np.abs(result["model"] - ref)))
    dp = get_option(options, "dp_epsilon", float, 0.0) > 0
    ok = abs(acc - ref_acc) <= 0.01 if dp else error <= 1e-3 and abs(acc - ref_acc) <= 0.01
    kept = [len(r) for r in responders]
    return CheckResult(bool(ok), f"{len(history)} rounds, responders per round {kept}; accuracy {acc:.4f} vs plaintext "
                                 f"FedAvg {ref_acc:.4f}; max |model - plaintext| = {error:.2e}")
