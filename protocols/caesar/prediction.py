"""Secure prediction with the weights CAESAR left additively shared (``output="shared"``).

After training with ``output="shared"`` party P holds ``a_P = -R`` and its peer Q holds
``t_P = w_P + R`` for P's weights ``w_P`` (integers at P's weight scale), and neither knows
``w_P``. Scoring new rows ``X = [X_A, X_B]`` (aligned, each party its own columns):

1. Each party generates a fresh key pair of the scheme ``he`` and announces its public key and the public
   facts of its query rows (rows, columns, feature scale, quarter bits of the largest row norm).
2. Each party Q encrypts its share ``t_P`` of the peer's weights under Q's key and sends it to P.
3. P computes ``[X_P w_P]_Q = X_P [t_P]_Q + X_P a_P`` (one exponentiation per non-zero), packs
   and masks it for Q (:func:`~.packing.pack_masked`): ``z_P`` is shared.
4. A sends B its shares of ``z_A`` and ``z_B`` at one common scale; B, the querier, adds its own
   and learns the scores ``z = X_A w_A + X_B w_B + b`` (one per row and model).

Leakage: B learns the scores of the query rows (what it asked for); A learns nothing beyond the
public facts of step 1; every other value either receives is a ciphertext under the other's key
or a statistically masked value (40 bits), as in training.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping

import numpy as np
import scipy.sparse as sp

from mpcml.he import EncryptedArray, generate_keypair, public_key_from_wire
from mpcml.party import Party

from ..common import check_matrix
from .config import CaesarConfig, quarter_bits
from .packing import MASKED, encode_features, pack_masked, unpack_masked
from .protocol import with_intercept
from .schemas import ENCRYPTED, OPENED, QUERY


def _ints(rows: Any) -> np.ndarray:
    return np.array(rows, dtype=object) if len(rows) else np.empty((0, 0), dtype=object)


def prediction_party(party: Party, X: Any = None, shares: Mapping[str, Any] | None = None, *, config: CaesarConfig,
                     model: Mapping[str, Any]) -> np.ndarray | None:
    """One party's role in secure prediction (steps 1-4 of the module docstring).

    ``X``: this party's columns of the query rows; ``shares``: its ``weight_shares`` from training
    (``{"own", "peer"}``); ``model``: the public ``model`` facts training returned. B returns the
    ``(n, K)`` scores, A returns ``None``.
    """
    me, peer = party.id, config.other(party.id)
    is_b = me == config.labels
    name = f"X of party {me!r}"
    raw = check_matrix(X, name, allow_sparse=True)
    own, theirs = _ints(shares["own"]), _ints(shares["peer"])
    cols, outputs = model["cols"], model["outputs"]
    expected = cols[me] - int(is_b and config.fit_intercept)
    if raw.shape[1] != expected or own.shape != (cols[me], outputs) or theirs.shape != (cols[peer], outputs):
        raise ValueError(f"{name} has {raw.shape[1]} columns and shares of shapes {own.shape}, {theirs.shape}; "
                         f"the shared model of party {me!r} has {expected} columns and {outputs} outputs")
    x, fx = encode_features(with_intercept(raw, name) if is_b and config.fit_intercept else raw, config.frac_bits, name)
    # 1. fresh keys and the public facts of the query rows
    public_key, private_key = generate_keypair(config.he, config.key_bits)
    real = sp.csr_matrix(x, dtype=np.float64) * 2.0**-fx
    row_norm = quarter_bits(float(np.sqrt(np.asarray(real.multiply(real).sum(axis=1)).max())))
    party.send(peer, {"pk": public_key.to_wire(), "rows": x.shape[0], "cols": x.shape[1], "x_frac_bits": fx,
                      "row_norm": row_norm})
    facts = party.recv(peer, expect=QUERY, what="query facts")
    if facts["rows"] != x.shape[0] or facts["cols"] != cols[peer] or facts["x_frac_bits"] not in (0, config.frac_bits):
        raise ValueError(f"party {peer!r} has {facts['rows']} query rows of {facts['cols']} columns at scale "
                         f"{facts['x_frac_bits']}; expected {x.shape[0]} rows of {cols[peer]} columns")
    peer_key = public_key_from_wire(facts["pk"], config.he)
    # 2. my share of the peer's weights, encrypted under my key
    party.send(peer, private_key.encrypt_int(theirs).to_wire())
    mine = EncryptedArray.from_wire(peer_key, party.recv(peer, expect=ENCRYPTED, what="encrypted weight shares"))
    if mine.shape != own.shape:
        raise ValueError(f"party {peer!r} sent weight shares of shape {mine.shape}, expected {own.shape}")
    # 3. [X_P w_P]_Q, masked for the peer
    scale = {me: model["weight_frac_bits"][me] + fx, peer: model["weight_frac_bits"][peer] + facts["x_frac_bits"]}
    bound = {p: max(1, -(-q // 4) + model["weight_bits"] + scale[p])
             for p, q in ((me, row_norm), (peer, facts["row_norm"]))}
    products = (mine + own).rmatmul(x)
    message, my_share = pack_masked(products, bound[me], party.rng)
    party.send(peer, message)
    peer_share = unpack_masked(private_key, party.recv(peer, expect=MASKED, what="masked scores"), products.size,
                               bound[peer])
    # 4. both shares at one scale; A's go to B
    top = max(scale.values())
    total = my_share * (1 << (top - scale[me])) + peer_share * (1 << (top - scale[peer]))
    if not is_b:
        party.send(peer, [int(v) for v in total])
        return None
    other = party.recv(peer, expect=OPENED, what="score shares")
    if len(other) != total.size:
        raise ValueError(f"party {peer!r} sent {len(other)} score shares, expected {total.size}")
    scores = np.array(other, dtype=object) + total
    return np.array([float(v) for v in scores]).reshape(products.shape) / 2.0**top


def prediction_roles(config: CaesarConfig, queries: Mapping[str, Any], shares: Mapping[str, Mapping[str, Any]],
                     model: Mapping[str, Any]) -> tuple[dict[str, Callable[..., Any]], dict[str, dict[str, Any]]]:
    """Both parties' roles and inputs for one secure prediction (``queries``: party -> its columns of the rows)."""
    role = partial(prediction_party, config=config, model=model)
    party_roles = {pid: role for pid in (config.features, config.labels)}
    inputs = {pid: {"X": queries[pid], "shares": shares[pid]} for pid in party_roles}
    return party_roles, inputs

