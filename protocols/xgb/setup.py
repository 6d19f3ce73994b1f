"""The set-up both methods share: local input checks, binning, and the public facts every party announces.

Each data party checks its block (and the label holder its labels) locally, before any message;
then announces ``rows`` (its row count), ``candidates`` (its number of candidate splits) and the
digest of the options it was started with (:meth:`protocols.config.ProtocolConfig.digest`), so
parties started with different options or misaligned data stop at set-up with a message naming
the party, instead of failing later. Every party then runs the range analysis
(:func:`protocols.xgb.config.plan`) on the same facts.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mpcml.party import Party
from mpcml.schema import Int, Record, Str

from ..common import check_labels, check_matrix
from .config import Plan, XGBConfig, plan, target_shift
from .trees import QuantileBinner, base_margin, feature_values

FACTS = Record(rows=Int(low=1), candidates=Int(low=0), digest=Str())


def party_input(config: XGBConfig, pid: str, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """One data party's block (float32 values, as xgboost compares them) and labels, checked locally."""
    if pid not in config.players:
        raise ValueError(f"party {pid!r} is not one of the data parties {list(config.players)}")
    X = feature_values(check_matrix(X, f"X of party {pid!r}"))
    if (pid == config.label_holder) != (y is not None):
        raise ValueError(f"the labels y go to the label holder {config.label_holder!r} only; party {pid!r} was "
                         f"{'not given them' if y is None else 'given them'}")
    return X, None if y is None else check_labels(y, X.shape[0], binary=config.loss == "logistic", name=f"y of party {pid!r}")


def binner(config: XGBConfig, X: np.ndarray) -> QuantileBinner:
    """A party's candidate splits, from its own columns only."""
    return QuantileBinner(config.max_bin, config.binning).fit(X)


def facts(config: XGBConfig, X: np.ndarray, bins: QuantileBinner) -> dict[str, Any]:
    return {"rows": int(X.shape[0]), "candidates": int(bins.n_candidates), "digest": config.digest()}


def agree(party: Party, config: XGBConfig, mine: dict[str, Any], peers: Sequence[str]) -> tuple[Plan, dict[str, dict]]:
    """Send this party's facts to ``peers``, gather theirs, check them and run the range analysis.

    Returns ``(plan, {party: facts})`` including this party's own facts.
    """
    party.send_all(peers, mine)
    got = party.gather(peers, expect=FACTS, what="set-up facts")
    for pid, theirs in got.items():
        if theirs["digest"] != mine["digest"]:
            raise ValueError(f"party {pid!r} was started with other options than party {party.id!r} (digest of the "
                             f"options {theirs['digest'][:12]}... vs {mine['digest'][:12]}...); every party must use the same")
        if theirs["rows"] != mine["rows"]:
            raise ValueError(f"party {pid!r} holds {theirs['rows']} rows but party {party.id!r} holds {mine['rows']}: "
                             "vertical blocks must hold the same rows in the same order")
    return plan(config, mine["rows"]), {**got, party.id: mine}


def label_start(config: XGBConfig, y: np.ndarray) -> tuple[float, int, np.ndarray]:
    """The label holder's private ``(base, s, y')``: the initial margin, the target scale and the targets
    trained on (squared loss: ``(y - base) / 2^s`` with ``|y'| <= 1``; logistic: the 0/1 labels)."""
    base = base_margin(y, config.loss)
    if config.loss == "logistic":
        return base, 0, y
    shift = target_shift(config, y, base)
    return base, shift, (y - base) * 2.0**-shift
