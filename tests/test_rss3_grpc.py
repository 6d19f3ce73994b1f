"""The rss3 engine over the gRPC transport with mutual TLS on loopback (three players on threads)."""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from mpcml import Session, decode, encode
from mpcml import nonlinear as nl
from parties.certs import load_tls, write_federation_certs
from parties.config import MIB, federation_from_dict
from parties.launcher import free_ports
from parties.transport import GrpcParty, PartyServer

PLAYERS = ("p0", "p1", "p2")
SESSION = "rss3-grpc"
ULP = 2.0**-16


@contextlib.contextmanager
def grpc_players(base):
    ports = free_ports(len(PLAYERS))
    data = {"session": SESSION, "parties": {pid: {"address": f"127.0.0.1:{port}"} for pid, port in zip(PLAYERS, ports)}}
    federation = federation_from_dict(data, base)
    write_federation_certs(federation)
    started = []
    try:
        for pid in PLAYERS:
            tls = load_tls(federation, pid)
            peers = {p: s.address for p, s in federation.parties.items() if p != pid}
            server = PartyServer(pid, federation.parties[pid].address, peers, SESSION, tls=tls, chunk_bytes=2 * MIB).start()
            started.append((GrpcParty(pid, peers, server, SESSION, tls=tls, timeout=20.0, chunk_bytes=2 * MIB), server))
        yield {party.id: party for party, _ in started}
    finally:
        for party, server in started:
            party.close()
            server.stop(0)


def test_rss3_products_and_comparisons_over_grpc_mtls(tmp_path):
    data = np.random.default_rng(5)
    x, y = data.normal(scale=3, size=(40, 6)), data.normal(size=(6, 2))
    results, errors = {}, []

    def role(party):
        try:
            s = Session(party, PLAYERS, engine="rss3")
            X = s.input(x if party.id == "p0" else None, "p0")
            Y = s.input(y if party.id == "p2" else None, "p2")
            results[party.id] = ((X @ Y).reveal(), nl.relu(X).reveal(), (X * X).reveal(to="p1"))
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append((party.id, exc))

    with grpc_players(tmp_path) as parties:
        threads = [threading.Thread(target=role, args=(parties[pid],)) for pid in PLAYERS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        stats = {pid: parties[pid].stats.as_dict() for pid in PLAYERS}
    assert errors == [] and set(results) == set(PLAYERS)
    qx, qy = decode(encode(x)), decode(encode(y))
    for pid, (product, relu, square) in results.items():
        np.testing.assert_allclose(product, qx @ qy, rtol=0, atol=2 * ULP)  # one truncation
        np.testing.assert_array_equal(relu, np.maximum(qx, 0))  # exact
        if pid == "p1":
            np.testing.assert_allclose(square, qx * qx, rtol=0, atol=2 * ULP)
        else:
            assert square is None
        assert stats[pid]["bytes_sent"] > 0 and stats[pid]["bytes_received"] > 0
