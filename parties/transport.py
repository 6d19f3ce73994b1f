"""gRPC transport: a server per party holding per-sender mailboxes, and :class:`GrpcParty`.

Every message is one RPC on a channel kept open per peer: ``Deliver`` when the payload fits in
one chunk, ``Stream`` (client streaming, chunks in order) otherwise. Chunks are ``wire_pb2.Chunk``
messages on the wire; they are framed by :mod:`parties.framing` so the payload is copied once
per side (standard protobuf clients built from proto/ interoperate). The RPC returns once the
receiver's server has checked the message and put it in the mailbox of its sender. Messages
that fit in a chunk are pipelined: ``send`` returns once the call is issued, up to
three per peer (:data:`SEND_WINDOW`) are in flight, and the receiver restores their order; a
returned :meth:`GrpcParty.flush` means every message sent so far was delivered. The server
refuses, with a gRPC status and one line of explanation, and keeps serving:

- a client without a certificate from the federation CA (TLS handshake, ``require_client_auth``);
- a message whose claimed ``sender`` is not the common name of the client's certificate
  (``PERMISSION_DENIED``), or not a peer of this party;
- a message of another session, out of sequence, or with inconsistent chunk headers, or
  declaring more chunks than its size needs (``FAILED_PRECONDITION`` / ``INVALID_ARGUMENT``);
- a payload that :func:`mpcml.codec.decode` rejects (``INVALID_ARGUMENT``). Nothing is unpickled;
- more than :class:`~parties.config.Limits` allows one peer: RPCs open at once, bytes received
  and not yet read (``RESOURCE_EXHAUSTED``), time between chunks or per message (cancelled);
  see :mod:`parties.limits`.

Every handler reads its requests as a stream, so the limits apply before the first byte of a
request arrives (a unary handler would hold a worker thread while waiting for it). Besides
messages, three control calls (:mod:`parties.failures`, :mod:`parties.agreement`): ``Hello``
compares the public configuration at session start, ``Abort`` tells that a party failed,
``Status`` tells a peer what this party is waiting for.

Client channels use ``wait_for_ready`` with the party's timeout as deadline, so parties may
start in any order; the target name of each channel is the peer's id, so TLS checks that the
server's certificate belongs to the peer dialled. Message-size limits are set explicitly on
both sides to one chunk plus 64 KiB of headroom.

:attr:`GrpcParty.stats` counts codec payload bytes exactly as :class:`mpcml.local.LocalParty`
does; :attr:`GrpcParty.transport` counts what the transport adds (RPCs, chunks, protobuf
envelope bytes; TLS and HTTP/2 framing are not visible from Python and not included).
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, NoReturn, Sequence

import grpc

from mpcml import codec
from mpcml.party import DEFAULT_TIMEOUT, Inbox, Party, PartyAborted

from . import framing, wire_pb2
from .agreement import Agreement, ConfigurationMismatch
from .certs import TlsMaterial
from .config import DEFAULT_CHUNK_MIB, MIB, MIN_STREAMS, Limits
from .failures import MAX_REASON, Failure, PeerView, RunState
from .limits import Deadlines, LimitExceeded, PeerBudget, Watch

HEADROOM = 64 * 1024
MAX_PAYLOAD = 1 << 32
MIN_CHUNK = MIB  # the smallest chunk size a sender may use: a message of n bytes has at most ceil(n / MIN_CHUNK) chunks
CONTROL_TIMEOUT = 2.0  # seconds (at most a quarter of the party's timeout) for an abort or a probe to reach a peer
SEND_WINDOW = MIN_STREAMS - 1  # messages in flight to one peer: every peer's limits.streams leaves a slot for a control call
SPARE_WORKERS = 4  # server threads beyond every peer's limits.streams (refusals, control calls)
SERVICE = wire_pb2.DESCRIPTOR.services_by_name["PartyService"].full_name
# peers start in any order: retry dialling quickly at first (gRPC's default first back-off is 1 s)
RECONNECT_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                     ("grpc.max_reconnect_backoff_ms", 2000)]


class TransportError(RuntimeError):
    """The transport cannot start (e.g. the port is in use)."""


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


def channel_options(chunk_bytes: int) -> list[tuple[str, int]]:
    """Explicit message-size limits (one chunk plus headroom), the same at client and server."""
    limit = chunk_bytes + HEADROOM
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]


def check_chunk_bytes(chunk_bytes: int) -> int:
    if not isinstance(chunk_bytes, int) or not MIB <= chunk_bytes <= 4 * MIB:
        raise ValueError(f"chunk_bytes must be between 1 MiB and 4 MiB, got {chunk_bytes!r}")
    return chunk_bytes


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code, self.message = code, message
        super().__init__(message)


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


def _split(raw: bytes) -> tuple[wire_pb2.Chunk, memoryview]:
    try:
        return framing.split_chunk(raw)
    except ValueError as exc:
        raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"malformed chunk: {exc}") from None


class Mailboxes:
    """An :class:`~mpcml.party.Inbox` that hands each sender's messages to the protocol in ``seq`` order.

    A sender pipelines up to :data:`SEND_WINDOW` RPCs, which the server's threads may finish in
    any order: message ``seq`` is accepted while fewer than ``window`` (``limits.streams``) messages separate it
    from the next one due, and held until those before it have arrived. Every payload is
    counted against its sender's :class:`~parties.limits.PeerBudget` from the moment its
    message starts arriving until :meth:`get` hands it to the protocol.
    """

    def __init__(self, peers: Iterable[str], budget: PeerBudget, window: int) -> None:
        peers = tuple(peers)
        self.inbox = Inbox(peers)
        self.budget = budget
        self._window = window
        self._next = dict.fromkeys(peers, 0)
        self._early: dict[str, dict[int, bytes]] = {peer: {} for peer in peers}
        self._lock = threading.Lock()

    def put(self, sender: str, seq: int, payload: bytes) -> None:
        with self._lock:
            due, early = self._next[sender], self._early[sender]
            if not due <= seq < due + self._window or seq in early:
                raise _Refused(grpc.StatusCode.FAILED_PRECONDITION,
                               f"message {seq} from {sender!r} is out of sequence (expected {due}"
                               f"{f' to {due + self._window - 1}' if self._window > 1 else ''}, not one already received)")
            early[seq] = payload
            while self._next[sender] in early:
                self.inbox.put(sender, early.pop(self._next[sender]))
                self._next[sender] += 1

    def get(self, senders: Sequence[str], timeout: float) -> tuple[str, bytes]:
        """The earliest payload from any of ``senders`` (see :meth:`mpcml.party.Inbox.get`); frees its budget."""
        sender, payload = self.inbox.get(senders, timeout)
        self.budget.release(sender, len(payload))
        return sender, payload


def _one(requests: Iterator[bytes], watch: Watch) -> bytes | None:
    """The client's next request (``None`` at the end of its stream), with the idle clock running.

    If a deadline cancelled the RPC meanwhile, the refusal says which (the client only sees CANCELLED).
    """
    watch.waiting()
    try:
        raw = next(requests, None)
    except grpc.RpcError:
        if watch.expired is None:
            raise  # the client cancelled
        raw = None
    finally:
        watch.received()
    if watch.expired is not None:
        raise _Refused(grpc.StatusCode.CANCELLED, f"cancelled an RPC whose client {watch.expired}")
    return raw


class _Servicer:
    """The RPC handlers. Requests arrive as raw bytes; chunks are split by :func:`framing.split_chunk`."""

    def __init__(
        self, owner: str, session: str, mailboxes: Mailboxes, peers: Iterable[str], secure: bool,
        on_refusal: Callable[[str], None] | None, *, state: RunState, deadlines: Deadlines, agreement: Agreement | None,
    ) -> None:
        self._owner, self._session, self._mailboxes = owner, session, mailboxes
        self._peers, self._secure, self._on_refusal = frozenset(peers), secure, on_refusal
        self._state, self._deadlines, self._agreement = state, deadlines, agreement

    def handler(self) -> grpc.GenericRpcHandler:
        def method(serve: Callable[..., Any], response: Any) -> grpc.RpcMethodHandler:
            return grpc.stream_unary_rpc_method_handler(
                lambda requests, context: self._serve(serve, requests, context), response_serializer=response.SerializeToString)

        return grpc.method_handlers_generic_handler(SERVICE, {
            "Deliver": method(self.deliver, wire_pb2.Ack),
            "Stream": method(self.stream, wire_pb2.Ack),
            "Hello": method(self.hello, wire_pb2.ConfigReply),
            "Abort": method(self.abort, wire_pb2.Ack),
            "Status": method(self.status, wire_pb2.PartyStatus),
        })

    def _serve(self, serve: Callable[..., Any], requests: Iterator[bytes], context: grpc.ServicerContext) -> Any:
        """Run one handler within the caller's RPC slot and the message deadlines; refusals become statuses."""
        with contextlib.ExitStack() as slots, self._deadlines.watch(context.cancel) as watch:
            try:
                # with TLS the caller is known before it sends anything; without, from its first request
                peer = self._certified_peer(context) if self._secure else None
                if peer is not None:
                    slots.enter_context(self._mailboxes.budget.rpc(peer))

                def caller(claimed: str) -> None:
                    self._check_sender(claimed, context)
                    if peer is None:
                        slots.enter_context(self._mailboxes.budget.rpc(claimed))

                return serve(requests, watch, caller)
            except LimitExceeded as exc:
                self._refuse(context, _Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message))
            except _Refused as refused:
                self._refuse(context, refused)

    def deliver(self, requests: Iterator[bytes], watch: Watch, caller: Callable[[str], None]) -> wire_pb2.Ack:
        header, data = self._first_chunk(requests, watch, caller)
        if header.count != 1 or header.index != 0 or header.total_size != len(data):
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "a single-chunk message must have index 0, count 1 and total_size = len(data)")
        with self._reserved(header.sender, len(data), watch):
            self._deliver(header.sender, header.seq, bytearray(data))
        return wire_pb2.Ack(seq=header.seq)

    def stream(self, requests: Iterator[bytes], watch: Watch, caller: Callable[[str], None]) -> wire_pb2.Ack:
        first, data = self._first_chunk(requests, watch, caller)
        sender, seq, total, count = first.sender, first.seq, first.total_size, first.count
        most = max(1, -(-total // MIN_CHUNK))
        if total > MAX_PAYLOAD or not 1 <= count <= most:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT,
                           f"message {seq} from {sender!r} declares {count} chunks for {total} bytes; allowed: at most "
                           f"{MAX_PAYLOAD} bytes in at most one chunk per {MIN_CHUNK // MIB} MiB ({most})")
        with self._reserved(sender, total, watch):
            payload, chunk, index = bytearray(), first, 0  # grows with what arrives: a stalled sender holds only what it sent
            while True:
                if (chunk.index, chunk.count, chunk.seq, chunk.total_size, chunk.sender, chunk.session) != (
                    index, count, seq, total, sender, first.session
                ):
                    raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"chunk {index} of message {seq} from {sender!r} has inconsistent headers")
                if len(payload) + len(data) > total:
                    raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"message {seq} from {sender!r} exceeds its declared {total} bytes")
                payload += data
                index += 1
                raw = _one(requests, watch)
                if raw is None:
                    break
                chunk, data = _split(raw)
            if index != count or len(payload) != total:
                raise _Refused(grpc.StatusCode.INVALID_ARGUMENT,
                               f"message {seq} from {sender!r} ended after {index}/{count} chunks, {len(payload)}/{total} bytes")
            self._deliver(sender, seq, payload)  # writable: the codec views arrays in place
        return wire_pb2.Ack(seq=seq)

    @contextlib.contextmanager
    def _reserved(self, sender: str, nbytes: int, watch: Watch) -> Iterator[None]:
        """Count ``nbytes`` against ``sender``'s buffer (waiting for room until the message deadline);
        given back if the message is not delivered, else when the protocol reads it."""
        budget = self._mailboxes.budget
        with watch.holding():
            budget.reserve(sender, nbytes, watch.started + self._deadlines.total)
        try:
            yield
        except BaseException:
            budget.release(sender, nbytes)
            raise

    def hello(self, requests: Iterator[bytes], watch: Watch, caller: Callable[[str], None]) -> wire_pb2.ConfigReply:
        hello = self._control(requests, watch, caller, wire_pb2.ConfigDigest)
        if self._agreement is None:
            raise _Refused(grpc.StatusCode.FAILED_PRECONDITION, f"{self._owner!r} has no configuration to compare")
        mine = self._agreement.digest
        self._state.greeted_by(hello.sender)
        return wire_pb2.ConfigReply(digest=mine, configuration="" if hello.digest == mine else self._agreement.text)

    def abort(self, requests: Iterator[bytes], watch: Watch, caller: Callable[[str], None]) -> wire_pb2.Ack:
        notice = self._control(requests, watch, caller, wire_pb2.AbortNotice)
        culprit = notice.culprit if notice.culprit in self._peers | {self._owner} else notice.sender
        self._state.fail(Failure(culprit, notice.reason[:MAX_REASON] or "no reason given", notice.sender))
        return wire_pb2.Ack()

    def status(self, requests: Iterator[bytes], watch: Watch, caller: Callable[[str], None]) -> wire_pb2.PartyStatus:
        self._control(requests, watch, caller, wire_pb2.Probe)
        failure = self._state.failure
        return wire_pb2.PartyStatus(waiting_for=self._state.waiting_for(), culprit=failure.culprit if failure else "",
                                    reason=failure.reason if failure else "")

    def _first_chunk(self, requests: Iterator[bytes], watch: Watch, caller: Callable[[str], None]) -> tuple[wire_pb2.Chunk, memoryview]:
        raw = _one(requests, watch)
        if raw is None:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "empty message stream")
        header, data = _split(raw)
        caller(header.sender)
        if header.session != self._session:
            raise _Refused(grpc.StatusCode.FAILED_PRECONDITION,
                           f"message from {header.sender!r} belongs to session {header.session!r}, not {self._session!r}")
        return header, data

    def _control(self, requests: Iterator[bytes], watch: Watch, caller: Callable[[str], None], kind: Any) -> Any:
        raw = _one(requests, watch)
        try:
            message = kind.FromString(raw if raw is not None else b"")
        except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"malformed {kind.__name__}: {exc}") from None
        caller(message.sender)
        if message.session != self._session:
            raise _Refused(grpc.StatusCode.FAILED_PRECONDITION,
                           f"{kind.__name__} from {message.sender!r} belongs to session {message.session!r}, not {self._session!r}")
        return message

    def _certified_peer(self, context: grpc.ServicerContext) -> str:
        names = [n.decode("utf-8", "replace") for n in context.auth_context().get("x509_common_name", [])]
        if len(names) != 1 or names[0] not in self._peers:
            raise _Refused(grpc.StatusCode.PERMISSION_DENIED, f"the client certificate {names} is not a peer of {self._owner!r}")
        return names[0]

    def _check_sender(self, claimed: str, context: grpc.ServicerContext) -> None:
        if self._secure:
            names = [n.decode("utf-8", "replace") for n in context.auth_context().get("x509_common_name", [])]
            if names != [claimed]:
                raise _Refused(grpc.StatusCode.PERMISSION_DENIED,
                               f"claimed sender {claimed!r} does not match the client certificate {names}")
        if claimed not in self._peers:
            raise _Refused(grpc.StatusCode.PERMISSION_DENIED, f"{claimed!r} is not a peer of {self._owner!r}")

    def _deliver(self, sender: str, seq: int, payload: bytearray) -> None:
        try:
            codec.validate(payload)
        except codec.CodecError as exc:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"malformed payload in message {seq} from {sender!r}: {exc}") from None
        self._mailboxes.put(sender, seq, payload)

    def _refuse(self, context: grpc.ServicerContext, refused: _Refused) -> NoReturn:
        """Report the refusal and end the RPC with its status (``context.abort`` raises)."""
        message = f"{self._owner!r} refused: {refused.message}"
        if self._on_refusal is not None:
            self._on_refusal(message)
        context.abort(refused.code, message)


class PartyServer:
    """The gRPC server of one party: receives its peers' messages into per-sender mailboxes.

    ``limits`` bound what each peer may make it hold (:class:`~parties.config.Limits`);
    ``agreement`` is the public configuration it answers ``Hello`` with. :attr:`state`
    (:class:`~parties.failures.RunState`) is shared with the :class:`GrpcParty` using it: a
    received ``Abort`` records the failure there, which wakes the party's receivers.
    """

    def __init__(
        self,
        party_id: str,
        address: str,
        peers: Iterable[str],
        session: str,
        *,
        tls: TlsMaterial | None,
        chunk_bytes: int = DEFAULT_CHUNK_MIB * MIB,
        on_refusal: Callable[[str], None] | None = None,
        limits: Limits = Limits(),
        timeout: float = DEFAULT_TIMEOUT,
        agreement: Agreement | None = None,
    ) -> None:
        peers = tuple(peers)
        chunk_bytes = check_chunk_bytes(chunk_bytes)
        if limits.buffer_bytes < chunk_bytes:
            raise ValueError(f"limits.buffer_mib ({limits.buffer_bytes / MIB:g}) must hold at least one chunk ({chunk_bytes // MIB} MiB)")
        self.state = RunState()
        self.mailboxes = Mailboxes(peers, PeerBudget(party_id, peers, limits), limits.streams)
        self.state.on_failure(lambda failure: self.mailboxes.inbox.abort(failure.describe()))
        self._deadlines = Deadlines(limits.idle_timeout, limits.message_timeout or timeout)
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=limits.streams * len(peers) + SPARE_WORKERS, thread_name_prefix=f"mpcml-{party_id}-server"),
            options=[*channel_options(chunk_bytes), ("grpc.so_reuseport", 0)],
        )
        self._server.add_generic_rpc_handlers([_Servicer(
            party_id, session, self.mailboxes, peers, tls is not None, on_refusal,
            state=self.state, deadlines=self._deadlines, agreement=agreement,
        ).handler()])
        try:
            if tls is None:
                self.port = self._server.add_insecure_port(address)
            else:
                credentials = grpc.ssl_server_credentials([(tls.key, tls.cert)], root_certificates=tls.ca, require_client_auth=True)
                self.port = self._server.add_secure_port(address, credentials)
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            self._deadlines.stop()
            raise TransportError(f"party {party_id!r} cannot listen on {address}: the port is in use or the address is not local"
                                 " (mpcml party --listen HOST:PORT binds elsewhere)")

    def start(self) -> "PartyServer":
        self._server.start()
        return self

    def stop(self, grace: float | None = None) -> None:
        self.mailboxes.budget.close()
        self._server.stop(grace).wait()
        self._deadlines.stop()


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
