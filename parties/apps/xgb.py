"""Secure vertical XGBoost (SS-XGB, Fang et al. 2021, or HE SecureBoost, Cheng et al. 2021) as party processes.

Roles: ``label`` (one party; its CSV's last column is the 0/1 label, the others its features),
``holder`` (more parties, their feature columns of the same rows) and ``dealer`` (correlated
randomness for ``method=ss``; idle for ``method=he``). The players are the label party followed by
the holders in sorted order. Every data party trains on the first rows and predicts the last
``test_fraction`` of the rows with the distributed model; the label party receives the margins.
Threat model and leakage: :mod:`protocols.xgb_ss` and :mod:`protocols.xgb_he`.

Options: ``method`` (``ss`` | ``he``, default ss), ``n_estimators`` (5), ``max_depth`` (3),
``learning_rate`` (0.3), ``max_bin`` (32), ``key_bits`` (Paillier, default 2048),
``test_fraction`` (0.3), ``model_dir`` (if given, each party writes its own model part there as
``<party id>.npz``).

Demo data: ``load_breast_cancer`` split between alice (label, first 15 columns) and bob (the rest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import xgboost
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score

from mpcml import run_dealer
from mpcml.party import Party
from protocols import xgb_he, xgb_ss
from protocols.common import check_labels, check_matrix
from protocols.xgb import save_party_model
from protocols.xgb_trees import XGBParams

from . import AppContext, CheckResult, get_option, read_csv, shuffled_row_groups, write_csv

DESCRIPTION = "secure vertical XGBoost: SS-XGB with a distributed model, or HE SecureBoost (label + holders [+ dealer])"
DEMO_PARTIES = {"alice": "label", "bob": "holder", "dealer": "dealer"}
LOCAL_OPTIONS = frozenset({"model_dir"})  # where this party saves its part of the model


def _params(options: Mapping[str, str]) -> XGBParams:
    return XGBParams(
        n_estimators=get_option(options, "n_estimators", int, 5),
        max_depth=get_option(options, "max_depth", int, 3),
        learning_rate=get_option(options, "learning_rate", float, 0.3),
        max_bin=get_option(options, "max_bin", int, 32),
    )


def _split(n: int, options: Mapping[str, str]) -> int:
    fraction = get_option(options, "test_fraction", float, 0.3)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"option 'test_fraction' must be in (0, 1), got {fraction}")
    return n - max(1, int(round(fraction * n)))


def data_party(party: Party, players: Sequence[str], dealer: str, method: str, x: np.ndarray, y: np.ndarray | None,
               params: XGBParams, key_bits: int, train_rows: int, model_dir: str) -> dict[str, Any]:
    """Train on the first ``train_rows`` rows, predict the rest; the label party gets the margins."""
    players = tuple(players)
    xtr, xte = x[:train_rows], x[train_rows:]
    ytr = None if y is None else y[:train_rows]
    if method == "ss":
        model = xgb_ss.train_player(party, players, dealer, xtr, params, ytr)
        margin = xgb_ss.predict_player(party, dealer, xte, model)
    elif party.id == players[0]:
        model = xgb_he.train_label_holder(party, players[1:], xtr, ytr, params, key_bits=key_bits)
        margin = xgb_he.predict_label_holder(party, players[1:], xte, model)
    else:
        model = xgb_he.train_passive(party, players[0], xtr)
        margin = xgb_he.predict_passive(party, players[0], xte, model)
    if model_dir:
        save_party_model(Path(model_dir) / f"{party.id}.npz", model, method=method, party=party.id, parties=players,
                         params=params, n_features=x.shape[1])
    out: dict[str, Any] = {"owned_nodes": int((model.trees.features >= 0).sum())}
    if margin is not None:
        out["margin"] = np.asarray(margin, dtype=np.float64)
    return out


def deal(party: Party, players: Sequence[str], method: str) -> dict[str, int]:
    """Dealer: serve the training session and the prediction session (nothing for ``he``)."""
    if method != "ss":
        return {}
    served = run_dealer(party, players)
    for kind, count in run_dealer(party, players).items():
        served[kind] = served.get(kind, 0) + count
    return served


def build(ctx: AppContext) -> tuple[Callable[..., Any], tuple]:
    players = (ctx.party_for("label"), *ctx.parties_for("holder"))
    method = ctx.option("method", str, "ss")
    if method not in ("ss", "he"):
        raise ValueError(f"option 'method' must be 'ss' or 'he', got {method!r}")
    params = _params(ctx.options)
    if ctx.role == "dealer":
        return deal, (players, method)
    if ctx.role not in ("label", "holder"):
        raise ValueError(f"xgb has roles label, holder and dealer, not {ctx.role!r}")
    table = read_csv(ctx.require_data())
    if ctx.role == "label":
        if table.shape[1] < 2:
            raise ValueError(f"data file {str(ctx.data)!r} needs feature columns and a last label column")
        x, y = table[:, :-1], table[:, -1]
    else:
        x, y = table, None
    x = check_matrix(x, f"data of {ctx.party_id!r}")
    train_rows = _split(x.shape[0], ctx.options)
    if y is not None:
        check_labels(y[:train_rows], train_rows, binary=True, name=f"labels of {ctx.party_id!r}")
    dealer = ctx.party_for("dealer") if method == "ss" else ""
    if method == "ss":
        xgb_ss.check_params(train_rows, params, "spline")
    key_bits = ctx.option("key_bits", int, 2048)
    model_dir = ctx.option("model_dir", str, "")
    return data_party, (players, dealer, method, x, y, params, key_bits, train_rows, model_dir)


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    x, y = load_breast_cancer(return_X_y=True)
    (order,) = shuffled_row_groups(len(y), 1, seed)
    x, y = x[order], y[order].astype(np.float64)
    out_dir = Path(out_dir)
    return {
        "alice": write_csv(out_dir / "alice.csv", np.column_stack([x[:, :15], y])),
        "bob": write_csv(out_dir / "bob.csv", x[:, 15:]),
    }


def check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult:
    """Trains xgboost (hist, same parameters and split) on all columns and compares test AUC."""
    label = read_csv(data["alice"])
    others = [read_csv(data[pid]) for pid in sorted(p for p in data if p != "alice")]
    x = np.hstack([label[:, :-1], *others])
    y = label[:, -1]
    params = _params(options)
    train_rows = _split(x.shape[0], options)
    plain = xgboost.XGBClassifier(n_estimators=params.n_estimators, max_depth=params.max_depth,
                                  learning_rate=params.learning_rate, max_bin=params.max_bin, tree_method="hist")
    plain.fit(x[:train_rows], y[:train_rows])
    auc_plain = roc_auc_score(y[train_rows:], plain.predict_proba(x[train_rows:])[:, 1])
    auc = roc_auc_score(y[train_rows:], np.asarray(outputs["alice"]["margin"]))
    return CheckResult(abs(auc - auc_plain) <= 0.01,
                       f"test AUC secure {auc:.4f} vs xgboost {auc_plain:.4f} (tolerance 0.01)")
