"""Secure prediction with the weights left secret-shared by ``output="shared"`` training.

1. The suppliers of the query rows (vertical: every holder its columns; horizontal: the querier)
   secret-share them with the compute parties.
2. The compute parties compute ``X w`` (plus the intercept) on shares, one Beaver product.
3. The scores are opened to the querier only, multiplied back by the public target scale.

Leakage: the querier learns the scores of its query rows; everyone else learns only the number
of query rows. The dealer learns the shapes.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping

import numpy as np

from mpcml import fixedpoint
from mpcml.party import Party
from mpcml.tensor import SharedTensor
from mpcml.session import receive_revealed, send_input

from ..common import check_matrix
from .config import RegressionConfig
from .protocol import _input, regression_dealer


def prediction_party(party: Party, X: Any = None, weights_share: np.ndarray | None = None, *,
                     config: RegressionConfig, querier: str, y_shift: int) -> np.ndarray | None:
    """One party's role in secure prediction (steps 1-3 of the module docstring).

    Compute parties pass their ``weights_share`` (``(d, K)``); suppliers pass ``X``. The querier
    returns the ``(n, K)`` scores; every other party returns ``None``.
    """
    if querier not in config.holders:
        raise ValueError(f"querier {querier!r} is not among the holders {list(config.holders)}")
    suppliers = config.holders if config.partition == "vertical" else (querier,)
    if party.id in suppliers:
        X = check_matrix(X, f"X of holder {party.id!r}")
    elif X is not None:
        raise ValueError(f"party {party.id!r} supplies no query rows; X must be None")
    scale = 2.0**y_shift
    if party.id not in config.players:
        # 1. a supplier outside the compute parties shares its rows
        if party.id in suppliers:
            send_input(party, config.players, fixedpoint.encode(X, config.frac_bits, name="X"))
        return receive_revealed(party, config.players, config.frac_bits) * scale if party.id == querier else None
    if weights_share is None:
        raise ValueError(f"compute party {party.id!r} needs its share of the (d, K) weights, weights_share")
    session = config.session(party)
    try:
        w = SharedTensor(session, weights_share)
    except ValueError as exc:
        raise ValueError(f"compute party {party.id!r}: weights_share is not a {config.engine} share: {exc}") from None
    if w.ndim != 2:
        raise ValueError(f"compute party {party.id!r} needs its share of the (d, K) weights, got shape {w.shape}")
    xs = SharedTensor.concatenate([_input(session, X if h == party.id else None, h, f"X of holder {h!r}")
                                   for h in suppliers], axis=1)
    width = w.shape[0] - int(config.fit_intercept)
    if xs.shape[1] != width:
        raise ValueError(f"the query has {xs.shape[1]} features but the model has {width}")
    # 2. the scores on shares
    scores = xs @ w[:width]
    if config.fit_intercept:
        scores = scores + w[width:]
    # 3. opened to the querier only
    if querier in session.players:
        result = scores.reveal(to=querier)
        result = None if result is None else result * scale
    else:
        scores.reveal_outside(querier)
        result = None
    session.close()
    return result


def prediction_roles(config: RegressionConfig, queries: Mapping[str, Any], shares: Mapping[str, np.ndarray], *,
                     querier: str, y_shift: int) -> tuple[dict[str, Callable[..., Any]], dict[str, dict[str, Any]]]:
    """Every party's role and inputs for one secure prediction (``queries``: supplier -> rows)."""
    role = partial(prediction_party, config=config, querier=querier, y_shift=y_shift)
    party_roles = {pid: role for pid in dict.fromkeys((*config.holders, *config.players))}
    inputs = {pid: {} for pid in party_roles}
    for pid, X in queries.items():
        inputs[pid]["X"] = X
    for pid, share in shares.items():
        inputs[pid]["weights_share"] = share
    if config.uses_dealer:
        party_roles[config.dealer] = partial(regression_dealer, config=config)
        inputs[config.dealer] = {}
    return party_roles, inputs
