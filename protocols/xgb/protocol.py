"""The one place the roles of a secure XGBoost run are chosen: by the estimators, the party app and the tests.

:func:`roles` returns every party's role and inputs for training, :func:`prediction_roles` for
a prediction with the parts of a trained model. ``config.method`` picks SS-XGB
(:mod:`protocols.xgb.ss`: every data party a player, plus the dealer) or SecureBoost
(:mod:`protocols.xgb.he`: the label holder and passive parties, no dealer).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping

from mpcml.party import Party
from mpcml.triples import run_dealer

from ..progress import Progress
from .config import XGBConfig
from .he import he_label_holder, he_passive
from .predict import he_predict, ss_predict
from .ss import ss_player

Roles = tuple[dict[str, Callable[..., Any]], dict[str, dict[str, Any]]]


def xgb_dealer(party: Party, *, config: XGBConfig) -> dict[str, int]:
    """The dealer of SS-XGB: Beaver triples, truncation pairs and comparison material for the players."""
    return run_dealer(party, config.players)


def _with_dealer(config: XGBConfig, party_roles: dict[str, Callable[..., Any]], inputs: dict[str, dict[str, Any]]
                 ) -> Roles:
    """SS-XGB's sessions on the beaver engine need the dealer; on rss3, and SecureBoost, there is none."""
    dealer = {config.dealer: partial(xgb_dealer, config=config)} if config.needs_dealer else {}
    return {**party_roles, **dealer}, {**inputs, **{pid: {} for pid in dealer}}


def _training_role(config: XGBConfig, pid: str) -> Callable[..., Any]:
    if config.method == "ss":
        return partial(ss_player, config=config)
    return partial(he_label_holder if pid == config.label_holder else he_passive, config=config)


def roles(config: XGBConfig, data: Mapping[str, tuple[Any, Any]], *,
          progress: Progress | Mapping[str, Progress] | None = None) -> Roles:
    """Every party's training role and inputs.

    ``data`` maps a data party to its ``(X, y)`` (``y`` ``None`` except at the label holder);
    parties missing from ``data`` (other processes) get no inputs here. ``progress``: one
    :class:`~protocols.progress.Progress` for the label holder (a line per tree, with the training
    loss where it learns it), or one per party.
    """
    per_party = progress if isinstance(progress, Mapping) else {config.label_holder: progress}
    party_roles: dict[str, Callable[..., Any]] = {}
    inputs: dict[str, dict[str, Any]] = {}
    for pid in config.players:
        party_roles[pid] = _training_role(config, pid)
        inputs[pid] = {"progress": per_party.get(pid)}
        if pid in data:
            inputs[pid].update(X=data[pid][0], y=data[pid][1])
    return _with_dealer(config, party_roles, inputs)


def prediction_roles(config: XGBConfig, data: Mapping[str, Any], models: Mapping[str, Any], *,
                     to: str | None = None) -> Roles:
    """Every party's role and inputs for one prediction: ``data`` maps a data party to its rows
    (its columns), ``models`` to its model part; the margins go to ``to`` (SS-XGB; default and
    SecureBoost: the label holder)."""
    if config.method == "he" and to not in (None, config.label_holder):
        raise ValueError(f"SecureBoost predicts at the label holder {config.label_holder!r} only, not {to!r}")
    role = partial(ss_predict, config=config, to=to) if config.method == "ss" else partial(he_predict, config=config)
    party_roles: dict[str, Callable[..., Any]] = {pid: role for pid in config.players}
    inputs = {pid: {k: v for k, v in (("X", data.get(pid)), ("model", models.get(pid))) if v is not None}
              for pid in config.players}
    return _with_dealer(config, party_roles, inputs)
