"""gRPC transport, client half: :class:`GrpcParty`, a party whose peers are other processes.

Each party runs a :class:`~parties.server.PartyServer` (its mailboxes) and a :class:`GrpcParty`
that sends to its peers' servers over one channel per peer. Messages that fit in a chunk are
pipelined: ``send`` returns once the call is issued, up to three per peer (:data:`SEND_WINDOW`)
are in flight, and the receiver restores their order; a returned :meth:`GrpcParty.flush` means
every message sent so far was delivered. Client channels use ``wait_for_ready`` with the
party's timeout as deadline, so parties may start in any order; the target name of each channel
is the peer's id, so TLS checks that the server's certificate belongs to the peer dialled.

:attr:`GrpcParty.stats` counts codec payload bytes exactly as :class:`mpcml.local.LocalParty`
does; :attr:`GrpcParty.transport` counts what the transport adds (RPCs, chunks, protobuf
envelope bytes; TLS and HTTP/2 framing are not visible from Python and not included).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import grpc

from mpcml.party import DEFAULT_TIMEOUT, Party, PartyAborted

from . import framing, wire_pb2
from .agreement import Agreement, ConfigurationMismatch
from .certs import TlsMaterial
from .config import DEFAULT_CHUNK_MIB, MIB, MIN_STREAMS
from .failures import MAX_REASON, Failure, PeerView
from .server import SERVICE, PartyServer, channel_options, check_chunk_bytes

CONTROL_TIMEOUT = 2.0  # seconds (at most a quarter of the party's timeout) for an abort or a probe to reach a peer
SEND_WINDOW = MIN_STREAMS - 1  # messages in flight to one peer: every peer's limits.streams leaves a slot for a control call
# peers start in any order: retry dialling quickly at first (gRPC's default first back-off is 1 s)
RECONNECT_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                     ("grpc.max_reconnect_backoff_ms", 2000)]



class PeerUnreachable(TimeoutError):
    """A message could not be delivered to a peer within the deadline (dead, not started, or TLS refused)."""

    def __init__(self, party_id: str, peer: str, timeout: float, detail: str) -> None:
        self.party_id, self.peer, self.timeout = party_id, peer, timeout
        super().__init__(f"party {party_id!r} could not reach {peer!r} within {timeout:g}s: {detail}")


class PeerRefused(RuntimeError):
    """A peer's server refused a message (bad sender, session, sequence or payload)."""

    def __init__(self, party_id: str, peer: str, code: str, detail: str) -> None:
        self.party_id, self.peer, self.code = party_id, peer, code
        super().__init__(f"party {peer!r} refused a message from {party_id!r} ({code}): {detail}")


@dataclass
class TransportStats:
    """What the transport adds on top of the payload bytes in ``party.stats``."""

    rpcs: int = 0
    chunks_sent: int = 0
    envelope_bytes_sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record_chunk(self, envelope_bytes: int) -> None:
        with self._lock:
            self.chunks_sent += 1
            self.envelope_bytes_sent += envelope_bytes

    def record_rpc(self) -> None:
        with self._lock:
            self.rpcs += 1

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {"rpcs": self.rpcs, "chunks_sent": self.chunks_sent, "envelope_bytes_sent": self.envelope_bytes_sent}


def _pieces(segments: list[memoryview], chunk: int) -> Iterator[list[memoryview]]:
    """The segments regrouped into consecutive runs of ``chunk`` bytes (views, no copies)."""
    run: list[memoryview] = []
    room = chunk
    for segment in segments:
        while len(segment):
            piece, segment = segment[:room], segment[room:]
            run.append(piece)
            room -= len(piece)
            if room == 0:
                yield run
                run, room = [], chunk
    if run:
        yield run



def open_channel(address: str, peer: str, tls: TlsMaterial | None, chunk_bytes: int) -> grpc.Channel:
    """A channel to ``peer`` at ``address``; with TLS it presents our certificate and requires the peer's name."""
    options = [*channel_options(chunk_bytes), *RECONNECT_OPTIONS]
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    credentials = grpc.ssl_channel_credentials(root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert)
    return grpc.secure_channel(address, credentials, options=[*options, ("grpc.ssl_target_name_override", peer)])


class GrpcParty(Party):
    """A :class:`~mpcml.party.Party` whose peers are other processes reached over gRPC.

    Besides sending and receiving: :meth:`connect` and :meth:`agree` at session start,
    :meth:`probe` and :meth:`tell_failure` when the run fails (:mod:`parties.failures`). Every
    wait of the party (connecting, agreeing, receiving, sending) ends as soon as its server
    records a failure, with :class:`~mpcml.party.PartyAborted` naming the failed party.
    """

    def __init__(
        self,
        party_id: str,
        peers: Mapping[str, str],
        server: PartyServer,
        session: str,
        *,
        tls: TlsMaterial | None,
        timeout: float = DEFAULT_TIMEOUT,
        chunk_bytes: int = DEFAULT_CHUNK_MIB * MIB,
        agreement: Agreement | None = None,
    ) -> None:
        super().__init__(party_id, peers, timeout=timeout)
        self._server, self._session, self._chunk = server, session, check_chunk_bytes(chunk_bytes)
        self._agreement = agreement
        self.state = server.state
        self._seq = dict.fromkeys(peers, 0)
        self._send_locks = {peer: threading.Lock() for peer in peers}
        self._channels = {peer: open_channel(address, peer, tls, self._chunk) for peer, address in peers.items()}
        self._stubs = {peer: {name: (channel.stream_unary if name == "Stream" else channel.unary_unary)(
                                  f"/{SERVICE}/{name}", response_deserializer=reply.FromString)
                              for name, reply in _REPLIES.items()}
                       for peer, channel in self._channels.items()}
        self._in_flight: dict[str, list[grpc.Future]] = {peer: [] for peer in peers}
        self._in_flight_lock = threading.Lock()
        self._send_failure: Exception | None = None
        self.state.on_failure(self._cancel_in_flight)
        self.transport = TransportStats()

    def connect(self) -> None:
        """Wait until the channel to every peer is up (TLS handshake done), within the timeout.

        A start barrier, not a message: ``stats`` are unchanged. Raises :class:`PeerUnreachable`
        naming the first peer not reachable in time (not started, dead, or refusing our certificate).
        """
        futures = {peer: grpc.channel_ready_future(channel) for peer, channel in self._channels.items()}
        for future in futures.values():
            future.add_done_callback(self.state.notify)
        try:
            with self.state.waiting(futures):
                if self.state.wait(lambda: all(f.done() for f in futures.values()), self.timeout):
                    return
                missing = next(peer for peer, f in futures.items() if not f.done())
                raise PeerUnreachable(self.id, missing, self.timeout, "no connection (not started, dead, or TLS refused)")
        finally:
            for future in futures.values():
                future.cancel()

    def agree(self) -> None:
        """Compare the public configuration with every peer (``Hello``); :class:`ConfigurationMismatch` names what differs."""
        if self._agreement is None:
            raise ValueError("agree() needs the party's agreement (the public configuration)")
        request = wire_pb2.ConfigDigest(sender=self.id, session=self._session, digest=self._agreement.digest).SerializeToString()
        calls = self._call_all("Hello", request, timeout=self.timeout, wait_for_ready=True)
        problems = []
        for peer, reply in self._results(calls, self.timeout).items():
            if reply.digest != self._agreement.digest:
                problems.append(f"configuration differs from {peer!r}: "
                                + self._agreement.differences(reply.configuration, self.id, peer))
        if problems:
            raise ConfigurationMismatch("; ".join(problems))

    def probe(self) -> dict[str, PeerView]:
        """Every peer's answer to ``Status`` (within :data:`CONTROL_TIMEOUT`): what it waits for, what failure it knows.

        A peer that does not answer in time is unreachable (dead, frozen, or cut off): with a
        dead process the connection is refused at once; a frozen one costs the whole deadline.
        """
        deadline = min(self.timeout / 4, CONTROL_TIMEOUT)
        request = wire_pb2.Probe(sender=self.id, session=self._session).SerializeToString()
        calls = self._call_all("Status", request, timeout=deadline, wait_for_ready=False)
        views = {}
        for peer, call in calls.items():
            try:
                status = call.result(timeout=deadline + 1)
            except (grpc.RpcError, grpc.FutureTimeoutError, grpc.FutureCancelledError):
                views[peer] = PeerView(False)
                continue
            failure = Failure(status.culprit, status.reason, peer) if status.culprit else None
            views[peer] = PeerView(True, tuple(status.waiting_for), failure)
        return views

    def tell_failure(self, failure: Failure, skip: Iterable[str] = (), *, wait_for_peers: bool = False) -> None:
        """Send ``Abort`` with ``failure`` to every peer but ``skip`` (known not to answer).

        Each peer has :data:`CONTROL_TIMEOUT` to answer, or with ``wait_for_peers`` (a failure at
        set-up, when peers may still be starting) the party's timeout to come up and answer.
        """
        deadline = self.timeout if wait_for_peers else min(self.timeout / 4, CONTROL_TIMEOUT)
        request = wire_pb2.AbortNotice(sender=self.id, session=self._session, culprit=failure.culprit,
                                       reason=failure.reason[:MAX_REASON]).SerializeToString()
        calls = self._call_all("Abort", request, timeout=deadline, wait_for_ready=wait_for_peers, skip=frozenset(skip))
        for call in calls.values():
            with contextlib.suppress(grpc.RpcError, grpc.FutureTimeoutError, grpc.FutureCancelledError):
                call.result(timeout=deadline + 1)

    def _call_all(self, name: str, request: bytes, *, timeout: float, wait_for_ready: bool,
                  skip: frozenset[str] = frozenset()) -> dict[str, grpc.Future]:
        return {peer: stubs[name].future(request, timeout=timeout, wait_for_ready=wait_for_ready)
                for peer, stubs in self._stubs.items() if peer not in skip}

    def _results(self, calls: dict[str, grpc.Future], timeout: float) -> dict[str, Any]:
        """The replies of ``calls``, waiting abort-aware; the first failed call raises :class:`PeerUnreachable` / :class:`PeerRefused`."""
        for call in calls.values():
            call.add_done_callback(self.state.notify)
        try:
            with self.state.waiting(calls):
                self.state.wait(lambda: all(call.done() for call in calls.values()), timeout + 1)
            results = {}
            for peer, call in calls.items():
                try:
                    results[peer] = call.result(timeout=0)
                except grpc.RpcError as err:
                    raise self._send_error(peer, err) from None
                except grpc.FutureTimeoutError:
                    raise PeerUnreachable(self.id, peer, timeout, "no answer") from None
            return results
        finally:
            for call in calls.values():
                call.cancel()

    def _chunks(self, to: str, seq: int, segments: list[memoryview], size: int) -> Iterator[bytes]:
        """The serialised chunks of message ``seq`` to ``to`` (each payload byte copied once)."""
        count = max(1, -(-size // self._chunk))
        pieces = _pieces(segments, self._chunk)
        for index in range(count):
            data = next(pieces, ())
            header = wire_pb2.Chunk(sender=self.id, session=self._session, seq=seq, index=index, count=count, total_size=size)
            raw = framing.join_chunk(header, *data)
            self.transport.record_chunk(len(raw) - sum(len(piece) for piece in data))
            yield raw

    def _send_bytes(self, to: str, segments: list[memoryview], acknowledged: bool) -> None:
        """Send one message: ``Deliver`` if it fits in a chunk, else ``Stream``; up to :data:`SEND_WINDOW` in flight per peer.

        A ``Deliver`` carries its own copy of the payload, so unless ``acknowledged`` it returns
        as soon as the call is issued: the acknowledgement's round trip overlaps with what the
        protocol does next, and an exchange costs one one-way delay instead of a round trip.
        The receiver's :class:`Mailboxes` puts pipelined messages back in order. A message the
        peer refused, or did not take within the timeout, then fails the run: it is raised by
        this party's next send, receive or :meth:`flush` (a receive already waiting wakes up
        with it). A ``Stream`` reads the caller's arrays as it goes, so it returns once
        acknowledged, as does an ``acknowledged`` send, raising its own failure. Every call is a
        future, which a failure told by a peer cancels at once.
        """
        size = sum(len(s) for s in segments)
        with self._send_locks[to]:  # threads may send concurrently; messages to one peer keep their order
            self._check_sends()
            with self.state.waiting((to,)):
                while len(live := self._live(to)) >= SEND_WINDOW:
                    self._await(to, live[0])
            seq = self._seq[to]
            chunks = self._chunks(to, seq, segments, size)
            if size <= self._chunk:
                call = self._stubs[to]["Deliver"].future(next(chunks), timeout=self.timeout, wait_for_ready=True)
            else:
                call = self._stubs[to]["Stream"].future(chunks, timeout=self.timeout, wait_for_ready=True)
            with self._in_flight_lock:
                self._in_flight[to].append(call)
            self.transport.record_rpc()
            self._seq[to] = seq + 1
            if acknowledged or size > self._chunk:
                with self.state.waiting((to,)):
                    self._await(to, call)
            else:
                call.add_done_callback(lambda done: self._sent(to, done))

    def flush(self) -> None:
        """Wait until every peer acknowledged every message sent to it; raise the first refusal or lost message."""
        for to in self.peers:
            with self._send_locks[to], self.state.waiting((to,)):
                for call in self._live(to):
                    self._await(to, call)
        self._check_sends()

    def _live(self, to: str) -> list[grpc.Future]:
        """The calls to ``to`` not yet finished, oldest first (finished ones are forgotten)."""
        with self._in_flight_lock:
            self._in_flight[to] = [call for call in self._in_flight[to] if not call.done()]
            return list(self._in_flight[to])

    def _sent(self, to: str, call: grpc.Future) -> None:
        """Done-callback of a message: a refusal or timeout becomes the party's send failure, which wakes its receivers."""
        if not call.cancelled() and (err := call.exception()) is not None:
            with self._in_flight_lock:
                first = self._send_failure is None
                if first:
                    self._send_failure = self._send_error(to, err)
            if first:
                self._server.mailboxes.inbox.abort(self._send_failure)
        self.state.notify()

    def _check_sends(self) -> None:
        if self.state.failure is not None:
            raise PartyAborted(self.state.failure.describe())
        if self._send_failure is not None:
            raise self._send_failure

    def _await(self, to: str, call: grpc.Future) -> None:
        """Wait for the call to ``to``, which a failure recorded meanwhile cancels (:class:`~mpcml.party.PartyAborted`)."""
        try:
            if self.state.failure is not None:
                call.cancel()
            call.result()
        except grpc.FutureCancelledError:
            raise PartyAborted(self.state.failure.describe() if self.state.failure else f"a message to {to!r} was cancelled") from None
        except grpc.RpcError as err:
            raise self._send_error(to, err) from None

    def _cancel_in_flight(self, failure: Failure) -> None:
        with self._in_flight_lock:
            calls = [call for calls in self._in_flight.values() for call in calls]
        for call in calls:
            call.cancel()

    def _send_error(self, to: str, err: grpc.RpcError) -> Exception:
        code, detail = err.code(), err.details() or "no detail"
        if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
            return PeerUnreachable(self.id, to, self.timeout, detail)
        return PeerRefused(self.id, to, code.name, detail)

    def _recv_any(self, senders: Sequence[str], timeout: float) -> tuple[str, bytes]:
        with self.state.waiting(senders):
            return self._server.mailboxes.get(senders, timeout)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


_REPLIES = {"Deliver": wire_pb2.Ack, "Stream": wire_pb2.Ack, "Hello": wire_pb2.ConfigReply, "Abort": wire_pb2.Ack,
            "Status": wire_pb2.PartyStatus}
