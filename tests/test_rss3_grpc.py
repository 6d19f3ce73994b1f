"""The rss3 engine over the gRPC transport with mutual TLS on loopback (``parties.loopback``)."""

from __future__ import annotations

from functools import partial

import numpy as np

from mpcml import decode, encode
from mpcml import nonlinear as nl
from parties.loopback import run_loopback
from tests.conftest import critical_rounds, run_players

ULP = 2.0**-16


def test_rss3_products_and_comparisons_over_grpc_mtls():
    data = np.random.default_rng(5)
    x, y = data.normal(scale=3, size=(40, 6)), data.normal(size=(6, 2))

    def body(s):
        X = s.input(x if s.party.id == "p0" else None, "p0")
        Y = s.input(y if s.party.id == "p2" else None, "p2")
        X[:1].reveal()
        depth = s.party.depth
        relu = nl.relu(X)
        return {"depth": (depth, s.party.depth), "product": (X @ Y).reveal(), "relu": relu.reveal(),
                "square": (X * X).reveal(to="p1")}

    outputs = run_players(3, body, engine="rss3", timeout=60.0, runner=partial(run_loopback, secure=True))
    qx, qy = decode(encode(x)), decode(encode(y))
    assert critical_rounds(outputs) == 4  # a comparison with its product in the last round, as in-process
    for pid, out in outputs.items():
        np.testing.assert_allclose(out["product"], qx @ qy, rtol=0, atol=2 * ULP)  # one truncation
        np.testing.assert_array_equal(out["relu"], np.maximum(qx, 0))  # exact
        if pid == "p1":
            np.testing.assert_allclose(out["square"], qx * qx, rtol=0, atol=2 * ULP)
        else:
            assert out["square"] is None
        assert outputs.stats[pid].bytes_sent > 0
