"""Secure vertical XGBoost (SS-XGB, Fang et al. 2021, or SecureBoost, Cheng et al. 2021) as party processes.

Roles: ``label`` (one party; its CSV's last column is the label: 0/1, or a real target with
``loss=squared``), ``holder`` (more parties, their feature columns of the same rows) and
``dealer`` (correlated randomness for ``method=ss`` on the ``beaver`` engine; idle otherwise). The players are the
label party followed by the holders in sorted order. Threat model and leakage:
:mod:`protocols.xgb.ss`, :mod:`protocols.xgb.he`, :mod:`protocols.xgb.predict`. Options: the
fields of :class:`protocols.xgb.XGBConfig` plus this app's ``test_fraction``, ``predict_with``
and ``predictions`` (``mpcml options xgb``).

A training run trains on the first rows and predicts the last ``test_fraction`` of them with
the distributed model; every data party returns its model part (``mpcml party --model FILE``
saves it, in :mod:`protocols.persistence`'s format) and the label party the test margins. A
prediction run (``predict_with=FILE`` at every data party, the dealer too for ``ss``) predicts
every row of each party's CSV with the saved parts; the label party writes the predictions to
``predictions`` (CSV) and returns them.

Demo data: ``load_breast_cancer`` (logistic) or ``load_diabetes`` (squared; targets in their own
units) split between alice (label, first half of the columns) and bob (the rest).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes

from mpcml.party import Party
from protocols.config import ProtocolConfig, number, option
from protocols.progress import Progress
from protocols.xgb import (
    Forest,
    PartyModel,
    ReplayMismatch,
    SecureXGBClassifier,
    SecureXGBRegressor,
    XGBConfig,
    plaintext_xgb,
    prediction_roles,
    roles,
)

from . import AppContext, CheckResult, parse, read_csv, shuffled_row_groups, write_csv

DESCRIPTION = "secure vertical XGBoost: SS-XGB with a distributed model, or HE SecureBoost (label + holders [+ dealer])"
DEMO_PARTIES = {"alice": "label", "bob": "holder", "dealer": "dealer"}
LOCAL_OPTIONS = frozenset({"predict_with", "predictions"})  # paths to this party's own files


def _fraction(name: str, value: Any) -> float:
    value = number(positive=False, high=1)(name, value)
    if value >= 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return value


@dataclass(frozen=True)
class CONFIG(XGBConfig):
    """The protocol's options, then this app's: how a party's rows are used in a run."""

    test_fraction: float = option(0.3, "training runs: the last rows predicted with the trained model instead of "
                                  "trained on (0: train on every row)", _fraction)
    predict_with: str = option("", "a prediction run: this party's model part saved by `mpcml party --model` "
                               "(every data party gives its own)")
    predictions: str = option("", "prediction runs: the CSV the label party writes the predictions to")

    def protocol(self) -> XGBConfig:
        return XGBConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(XGBConfig)})


@dataclass(frozen=True)
class DEMO(ProtocolConfig):
    """No demo-only options: ``loss`` picks the data set."""


def _run_config(options: Mapping[str, str], federation: Mapping[str, str]) -> CONFIG:
    found = {role: sorted(p for p, r in federation.items() if r == role) for role in ("label", "holder", "dealer")}
    if len(found["label"]) != 1 or len(found["dealer"]) > 1:
        raise ValueError(f"the federation must have exactly one party with role 'label' and at most one with role "
                         f"'dealer', found {found['label']} and {found['dealer']}")
    dealer = found["dealer"][0] if found["dealer"] else "dealer"
    run = parse(options, CONFIG, DEMO, players=(found["label"][0], *found["holder"]), dealer=dealer)
    if run.needs_dealer and not found["dealer"]:
        raise ValueError("method=ss on the beaver engine needs a party with role 'dealer' (engine=rss3 runs three "
                         "data parties without one)")
    return run


def _train_rows(n: int, run: CONFIG) -> int:
    """The rows trained on: all with ``test_fraction=0``, else at least one row is predicted (the dealer
    counts on a prediction session)."""
    rows = n - (max(1, int(round(run.test_fraction * n))) if run.test_fraction else 0)
    if rows < 2:
        raise ValueError(f"test_fraction={run.test_fraction} leaves {rows} training rows of {n}")
    return rows


def _train_then_predict(party: Party, X: Any = None, y: Any = None, *, run: CONFIG,
                        progress: Progress | None = None) -> dict[str, Any]:
    """A data party: train on the first rows, then predict the rest with the parts just trained."""
    config = run.protocol()
    train = _train_rows(X.shape[0], run)
    train_roles, train_inputs = roles(config, {party.id: (X[:train], None if y is None else y[:train])},
                                      progress={party.id: progress})
    part = train_roles[party.id](party, **train_inputs[party.id])
    out: dict[str, Any] = {"model": part, "margin": None}
    if train < X.shape[0]:
        predict_roles, predict_inputs = prediction_roles(config, {party.id: X[train:]}, {party.id: part})
        out["margin"] = predict_roles[party.id](party, **predict_inputs[party.id])
    return out


def _dealer(party: Party, *, run: CONFIG, sessions: int) -> dict[str, int]:
    """The dealer serves each session of the run (training, then prediction); idle for SecureBoost and rss3."""
    served: dict[str, int] = {}
    if not run.needs_dealer:
        return served
    dealer_roles, _ = roles(run.protocol(), {})
    for _ in range(sessions):
        for kind, count in dealer_roles[run.dealer](party).items():
            served[kind] = served.get(kind, 0) + count
    return served


def _predict(party: Party, X: np.ndarray, part: PartyModel, *, run: CONFIG) -> dict[str, Any]:
    """A data party in a prediction run; the label party writes and returns the predictions."""
    predict_roles, predict_inputs = prediction_roles(run.protocol(), {party.id: X}, {party.id: part})
    margin = predict_roles[party.id](party, **predict_inputs[party.id])
    if margin is None:
        return {"margin": None}
    prediction = (margin > 0).astype(np.float64) if run.loss == "logistic" else margin
    if run.predictions:
        columns = ["prediction", "margin"]
        write_csv(Path(run.predictions), np.column_stack([prediction, margin]), header=columns)
    return {"margin": margin, "prediction": prediction}


def _saved_part(run: CONFIG, ctx: AppContext) -> PartyModel:
    estimator = (SecureXGBClassifier if run.loss == "logistic" else SecureXGBRegressor).load(run.predict_with)
    part = estimator.models_.get(ctx.party_id)
    if part is None or len(estimator.models_) != 1:
        raise ValueError(f"{run.predict_with!r} is not party {ctx.party_id!r}'s model part (it holds "
                         f"{sorted(estimator.models_)})")
    if part.players != run.players:
        raise ValueError(f"{run.predict_with!r} belongs to a model of the parties {list(part.players)}, not of this "
                         f"federation's {list(run.players)}")
    return part


def build(ctx: AppContext) -> tuple[Callable[..., Any], dict]:
    run = _run_config(ctx.options, ctx.federation)
    if ctx.role == "dealer":
        return partial(_dealer, run=run, sessions=1 if run.predict_with or not run.test_fraction else 2), {}
    if ctx.role not in ("label", "holder"):
        raise ValueError(f"xgb has roles label, holder and dealer, not {ctx.role!r}")
    table = read_csv(ctx.require_data())
    if ctx.role == "label" and not run.predict_with:
        if table.shape[1] < 2:
            raise ValueError(f"data file {str(ctx.data)!r} needs feature columns and a last label column")
        X, y = table[:, :-1], table[:, -1]
    else:
        X, y = table, None
    if run.predict_with:
        return partial(_predict, run=run), {"X": X, "part": _saved_part(run, ctx)}
    return partial(_train_then_predict, run=run, progress=ctx.progress(run.n_estimators, "tree")), {"X": X, "y": y}


def _demo_dataset(options: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray]:
    if CONFIG.parse_options(options, extra=DEMO.option_names()).get("loss") == "squared":
        return load_diabetes(return_X_y=True)
    X, y = load_breast_cancer(return_X_y=True)
    return X, y.astype(np.float64)


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    X, y = _demo_dataset(options)
    (order,) = shuffled_row_groups(len(y), 1, seed)
    X, y = X[order], y[order]
    half = X.shape[1] // 2
    out_dir = Path(out_dir)
    return {"alice": write_csv(out_dir / "alice.csv", np.column_stack([X[:, :half], y])),
            "bob": write_csv(out_dir / "bob.csv", X[:, half:])}


def check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult:
    """Replays the same algorithm in plaintext tree by tree (:func:`protocols.xgb.plaintext_xgb`) and
    compares the test margins within the derived tolerance."""
    label = read_csv(data["alice"])
    holders = sorted(p for p in data if p != "alice")
    federation = {"alice": "label", **{p: "holder" for p in holders}, "dealer": "dealer"}
    run = _run_config(options, federation)
    blocks = [label[:, :-1], *(read_csv(data[p]) for p in holders)]
    y = label[:, -1]
    train = _train_rows(len(y), run)
    forest = Forest.from_parts({pid: outputs[pid]["model"] for pid in run.players})
    try:
        replay = plaintext_xgb([b[:train] for b in blocks], y[:train], run.protocol(), follow=forest)
    except ReplayMismatch as exc:
        return CheckResult(False, f"the secure model differs from the plaintext replay: {exc}")
    trees = f"{run.n_estimators} trees equal to the plaintext replay's (split choices and leaf weights within the fixed-point bounds)"
    if train == len(y):
        return CheckResult(True, trees)
    test = [b[train:] for b in blocks]
    expected = replay.forest.margins(test)
    error = np.abs(np.asarray(outputs["alice"]["margin"]) - expected)
    bound = replay.margin_tolerance(test) + 1e-9 * (1 + np.abs(expected))
    return CheckResult(bool(np.all(error <= bound)),
                       f"{trees}; max |test margin - replay| {error.max():.2e} (bound {bound.max():.2e})")


def model(output: Mapping[str, Any], ctx: AppContext) -> Any:
    """This party's part of the distributed model as an estimator holding that part only (it is saved as
    one file; prediction runs between the parties, see ``predict_with``)."""
    if "model" not in output:
        return None
    run = _run_config(ctx.options, ctx.federation)
    cls = SecureXGBClassifier if run.loss == "logistic" else SecureXGBRegressor
    estimator = cls(**{k: v for k, v in run.protocol().options().items() if k in cls.param_defaults()})
    part = PartyModel.from_wire(output["model"], f"the model part of {ctx.party_id!r}")
    estimator.models_ = {ctx.party_id: part}
    estimator.config_ = estimator.make_config(players=run.players, dealer=run.dealer)
    estimator.n_features_in_ = part.n_features
    estimator.block_widths_ = [part.n_features]
    if part.is_label_holder and run.loss == "logistic":
        estimator.classes_ = np.array([0.0, 1.0])
    return estimator
