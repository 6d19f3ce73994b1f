"""One party process: build the app's role, start the server, run the role over gRPC, shut down."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from mpcml import codec
from mpcml.party import CommStats

from .apps import build_role, load_app, party_model
from .certs import load_tls
from .config import Federation
from .transport import GrpcParty, PartyServer

STOP_GRACE = 5.0  # seconds in-flight RPCs (e.g. the ack of a peer's last message) may take to finish


@dataclass
class PartyResult:
    """A party's output with its payload statistics, transport overhead and wall time.

    ``started`` is ``time.monotonic()`` when the clock started (once connected to every peer): one
    clock for all processes of a machine, so a launcher can line the parties' runs up.
    """

    output: Any
    stats: CommStats
    transport: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    started: float = 0.0

    def to_bytes(self) -> bytes:
        """Codec encoding (no pickle) for handing the result to the launcher."""
        stats = {**self.stats.as_dict(), "sent_to": self.stats.sent_to, "received_from": self.stats.received_from}
        return codec.encode({"output": self.output, "stats": stats, "transport": self.transport, "seconds": self.seconds,
                             "started": self.started})

    @classmethod
    def from_bytes(cls, data: bytes) -> "PartyResult":
        obj = codec.decode(data)
        return cls(obj["output"], CommStats(**obj["stats"]), obj["transport"], obj["seconds"], obj["started"])


def run_party(
    federation: Federation,
    party_id: str,
    protocol: str,
    data: Path | None = None,
    options: Mapping[str, str] | None = None,
    *,
    secure: bool = True,
    listen: str | None = None,
    on_refusal: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
    verbose: int = 0,
    model_path: Path | None = None,
) -> PartyResult:
    """Run ``party_id``'s role of app ``protocol`` against its peers in ``federation``.

    Inputs, certificates and the listening port are checked before anything is sent. Raises
    :class:`~mpcml.party.PartyTimeout` (naming the silent peer) if a peer is silent longer than
    ``federation.timeout``, and :class:`~parties.transport.PeerUnreachable` if a message cannot be delivered.
    The clock in the result starts once every peer is connected; ``progress`` gets one line then;
    ``verbose`` is handed to the app (a line per epoch, round or tree). With ``model_path`` the
    party's fitted model (if it learns one) is saved there (:func:`parties.apps.party_model`).
    """
    spec = federation.party(party_id)
    app = load_app(protocol)
    role, args = build_role(app, party_id, federation.roles(), data, options or {}, verbose)
    tls = load_tls(federation, party_id) if secure else None
    peers = {pid: s.address for pid, s in federation.parties.items() if pid != party_id}
    server = PartyServer(party_id, listen or spec.address, peers, federation.session, tls=tls,
                         chunk_bytes=federation.chunk_bytes, on_refusal=on_refusal).start()
    party = GrpcParty(party_id, peers, server, federation.session, tls=tls, timeout=federation.timeout,
                      chunk_bytes=federation.chunk_bytes)
    try:
        party.connect()
        if progress is not None:
            progress(f"{party_id}: connected to {', '.join(sorted(peers))}; running {protocol}")
        started, start = time.monotonic(), time.perf_counter()
        output = role(party, **args) if isinstance(args, dict) else role(party, *args)
        seconds = time.perf_counter() - start
    finally:
        party.close()
        server.stop(grace=STOP_GRACE)
    if model_path is not None:
        model = party_model(app, output, party_id, federation.roles(), options or {})
        if model is None:
            raise ValueError(f"party {party_id!r} learns no model it can use alone in this {protocol} run "
                             "(see the protocol's docs for its outputs); drop --model")
        model.save(model_path)
    return PartyResult(output, party.stats, party.transport.as_dict(), seconds, started)
