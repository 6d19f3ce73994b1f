"""One party process: start the server, build the app's role, connect and agree, run the role over gRPC, shut down;
on failure, name the party that failed and tell every peer."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from mpcml import codec
from mpcml.party import CommStats, PartyTimeout

from .agreement import Agreement, ConfigurationMismatch
from .apps import build_role, effective_options, load_app, party_model
from .certs import load_tls
from .config import Federation
from .failures import Failure, RunAborted, RunState, find_culprit
from .server import PartyServer
from .transport import GrpcParty, PeerRefused, PeerUnreachable

SIGNAL_POLL = 0.25  # seconds between the main thread's checks for a pending signal (Ctrl-C) while the role runs
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

    Certificates and the listening port are checked first; then the app builds the role from
    the data and options, the party connects to every peer and compares the public
    configuration (:mod:`parties.agreement`), and runs the role. If anything fails, in this
    party or (told by ``Abort``) in another, it raises :class:`~parties.failures.RunAborted`
    naming the party that failed and why, after telling every peer it can reach; a receive
    that timed out names the party that really failed (:func:`~parties.failures.find_culprit`).
    The clock in the result starts once every peer is connected; ``progress`` gets one line then;
    ``verbose`` is handed to the app (a line per epoch, round or tree). With ``model_path`` the
    party's fitted model (if it learns one) is saved there (:func:`parties.apps.party_model`).
    """
    spec = federation.party(party_id)
    app = load_app(protocol)
    options = dict(options or {})
    tls = load_tls(federation, party_id) if secure else None
    peers = {pid: s.address for pid, s in federation.parties.items() if pid != party_id}
    try:
        public = effective_options(app, options)  # given or default: epochs=10 at one party agrees with the default 10
    except ValueError:
        public = options  # build_role raises the same error below, and tells the peers
    agreement = Agreement.of(protocol, federation.session, federation.roles(), public, getattr(app, "LOCAL_OPTIONS", ()))
    server = PartyServer(party_id, listen or spec.address, peers, federation.session, tls=tls,
                         chunk_bytes=federation.chunk_bytes, on_refusal=on_refusal, limits=federation.limits,
                         timeout=federation.timeout, agreement=agreement).start()
    party = GrpcParty(party_id, peers, server, federation.session, tls=tls, timeout=federation.timeout,
                      chunk_bytes=federation.chunk_bytes, agreement=agreement)
    grace, connected = STOP_GRACE, False
    try:
        role, args = build_role(app, party_id, federation.roles(), data, options, verbose)
        party.connect()
        connected = True
        party.agree()
        if progress is not None:
            progress(f"{party_id}: connected to {', '.join(sorted(peers))}; running {protocol}")
        started, start = time.monotonic(), time.perf_counter()
        output = run_role(party, role, args)
        seconds = time.perf_counter() - start
        # a party with little to do (e.g. a dealer the engine does not need) may finish before a slow
        # peer has even compared configurations with it: keep serving until every peer's Hello arrived
        wait_on_main_thread(party.state, lambda: party.state.greeted() >= set(peers), federation.timeout)
    except BaseException as exc:
        grace = 0.0  # what is still arriving no longer matters, and peers know why: they were told before the stop
        failure, unreachable = name_failure(party, exc)
        failure = party.state.fail(failure)
        # the party that told us, and the failed one, know; before every peer was connected, some may
        # still be starting: the party that failed waits for them up to the deadline
        own = failure.reporter == party_id
        party.tell_failure(failure, skip=unreachable | ({failure.reporter, failure.culprit} - {party_id}),
                           wait_for_peers=own and not connected)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise RunAborted(failure) from exc
    finally:
        party.close()
        server.stop(grace=grace)
    if model_path is not None:
        model = party_model(app, output, party_id, federation.roles(), options or {})
        if model is None:
            raise ValueError(f"party {party_id!r} learns no model it can use alone in this {protocol} run "
                             "(see the protocol's docs for its outputs); drop --model")
        model.save(model_path)
    return PartyResult(output, party.stats, party.transport.as_dict(), seconds, started)


def run_role(party: GrpcParty, role: Callable[..., Any], args: tuple | dict) -> Any:
    """``role(party, *args)`` on a thread of its own; returns its output or raises its exception.

    The calling thread waits for the role or for a failure the server records (an ``Abort``
    from a peer), whichever comes first, so the party stops at once even while its role
    computes; the role thread, a daemon, ends at its next receive or send.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            output = role(party, **args) if isinstance(args, dict) else role(party, *args)
            party.flush()  # the output counts once every message the role sent has arrived
            outcome["output"] = output
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            outcome["error"] = exc
        finally:
            party.state.notify()

    threading.Thread(target=target, name=f"mpcml-{party.id}-role", daemon=True).start()
    wait_on_main_thread(party.state, lambda: bool(outcome), None)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["output"]


def wait_on_main_thread(state: RunState, done: Callable[[], bool], timeout: float | None) -> bool:
    """:meth:`RunState.wait` in slices of :data:`SIGNAL_POLL`: a signal (Ctrl-C) the kernel hands to another
    thread runs its Python handler only when the main thread wakes, so a wait without end could miss it."""
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        left = SIGNAL_POLL if end is None else min(SIGNAL_POLL, end - time.monotonic())
        if state.wait(done, max(left, 0.0)):
            return True
        if end is not None and time.monotonic() >= end:
            return False


def name_failure(party: GrpcParty, exc: BaseException) -> tuple[Failure, frozenset[str]]:
    """Who failed, and why, when this party's run ended with ``exc``; and the peers that did not answer a probe.

    A failure told by a peer is relayed as it is. A timeout waiting for peers (receiving,
    connecting, or a send no peer accepted in time) is traced from the silent peers to the
    party that really failed by probing every peer (:func:`~parties.failures.find_culprit`);
    meanwhile this party still says it waits for them, so that a peer probing it follows the
    same trail. Anything else is this party's own failure.
    """
    known = party.state.failure
    if known is not None:
        return known, frozenset()
    if isinstance(exc, KeyboardInterrupt):
        return Failure(party.id, "interrupted by its operator", party.id), frozenset()
    suspects = exc.peers if isinstance(exc, PartyTimeout) else (exc.peer,) if isinstance(exc, PeerUnreachable) else ()
    if isinstance(exc, PeerRefused) and exc.code == "RESOURCE_EXHAUSTED":
        suspects = (exc.peer,)  # the peer did not read our earlier messages in time
    if not suspects:
        reason = str(exc) if isinstance(exc, ConfigurationMismatch) else f"{type(exc).__name__}: {exc}"
        return Failure(party.id, reason, party.id), frozenset()
    with party.state.waiting(suspects):
        views = party.probe()
    return find_culprit(party.id, suspects, views, str(exc)), frozenset(p for p, view in views.items() if not view.reachable)
