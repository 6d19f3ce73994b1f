"""``run_loopback``: :func:`mpcml.run_local`'s contract over the real gRPC transport, in one process.

Every party gets a :class:`~parties.server.PartyServer` on a free loopback port and a
:class:`~parties.transport.GrpcParty`, and runs its role on its own thread; messages travel
through gRPC (with mutual TLS when ``secure``, certificates made in a temporary folder). Tests
use it to run one test body over both transports (``tests/conftest.py``'s ``transport``
fixture); outputs and ``party.stats`` equal those of :func:`mpcml.run_local`.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

from mpcml.local import RunOutputs, check_roles, run_threads
from mpcml.party import DEFAULT_TIMEOUT

from .certs import load_tls, write_federation_certs
from .config import federation_from_dict
from .launcher import free_ports
from .server import PartyServer
from .transport import GrpcParty


def run_loopback(
    roles: Mapping[str, Callable[..., Any]],
    inputs: Mapping[str, Any] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    secure: bool = False,
) -> RunOutputs:
    """Run ``roles[pid](party, *inputs[pid])`` with every party on gRPC over loopback (see the module docstring)."""
    inputs = check_roles(roles, inputs)
    ids = list(roles)
    with tempfile.TemporaryDirectory(prefix="mpcml-loopback-") as tmp:
        session = secrets.token_hex(8)
        ports = free_ports(len(ids))
        federation = federation_from_dict(
            {"session": session, "parties": {p: {"address": f"127.0.0.1:{port}"} for p, port in zip(ids, ports)}}, Path(tmp))
        if secure:
            write_federation_certs(federation)
        started: dict[str, tuple[GrpcParty, PartyServer]] = {}

        def abort_all(reason: str) -> None:
            for _, server in started.values():
                server.mailboxes.inbox.abort(reason)

        try:
            for pid in ids:
                tls = load_tls(federation, pid) if secure else None
                peers = {p: s.address for p, s in federation.parties.items() if p != pid}
                server = PartyServer(pid, federation.parties[pid].address, peers, session, tls=tls).start()
                started[pid] = (GrpcParty(pid, peers, server, session, tls=tls, timeout=timeout), server)
            return run_threads({pid: party for pid, (party, _) in started.items()}, roles, inputs, abort_all)
        finally:
            for party, server in started.values():
                party.close()
                server.stop(0)
