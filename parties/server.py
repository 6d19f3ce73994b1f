"""The server half of the gRPC transport: a party's per-sender mailboxes and the RPC handlers that fill them.

Every message is one RPC on a channel kept open per peer: ``Deliver`` when the payload fits in
one chunk, ``Stream`` (client streaming, chunks in order) otherwise. Chunks are ``wire_pb2.Chunk``
messages on the wire; they are framed by :mod:`parties.framing` so the payload is copied once
per side (standard protobuf clients built from proto/ interoperate). The RPC returns once the
receiver's server has checked the message and put it in the mailbox of its sender; pipelined
messages that overtook each other are put back in order (:class:`Mailboxes`). The server
refuses, with a gRPC status and one line of explanation, and keeps serving:

- a client without a certificate from the federation CA (TLS handshake, ``require_client_auth``);
- a message whose claimed ``sender`` is not the common name of the client's certificate
  (``PERMISSION_DENIED``), or not a peer of this party;
- a message of another session, out of sequence, or with inconsistent chunk headers, or
  declaring more chunks than its size needs (``FAILED_PRECONDITION`` / ``INVALID_ARGUMENT``);
- a payload that :func:`mpcml.codec.decode` rejects (``INVALID_ARGUMENT``). Nothing is unpickled;
- more than :class:`~parties.config.Limits` allows one peer: RPCs open at once, bytes received
  and not yet read (``RESOURCE_EXHAUSTED``; a message larger than the whole buffer
  ``INVALID_ARGUMENT``: it can never fit), time between chunks or per message (cancelled);
  see :mod:`parties.limits`.

Every handler reads its requests as a stream, so the limits apply before the first byte of a
request arrives (a unary handler would hold a worker thread while waiting for it). Besides
messages, three control calls (:mod:`parties.failures`, :mod:`parties.agreement`): ``Hello``
compares the public configuration at session start, ``Abort`` tells that a party failed,
``Status`` tells a peer what this party is waiting for. Message-size limits are set explicitly
on both sides to one chunk plus 64 KiB of headroom (:func:`channel_options`).
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, NoReturn, Sequence

import grpc

from mpcml import codec
from mpcml.party import DEFAULT_TIMEOUT, Inbox

from . import framing, wire_pb2
from .agreement import Agreement
from .certs import TlsMaterial
from .config import DEFAULT_CHUNK_MIB, MIB, Limits
from .failures import MAX_REASON, Failure, RunState
from .limits import Deadlines, LimitExceeded, MessageTooLarge, PeerBudget, Watch

HEADROOM = 64 * 1024
MAX_PAYLOAD = 1 << 32
MIN_CHUNK = MIB  # the smallest chunk size a sender may use: a message of n bytes has at most ceil(n / MIN_CHUNK) chunks
SPARE_WORKERS = 4  # server threads beyond every peer's limits.streams (refusals, control calls)
SERVICE = wire_pb2.DESCRIPTOR.services_by_name["PartyService"].full_name


class TransportError(RuntimeError):
    """The transport cannot start (e.g. the port is in use)."""


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
            except MessageTooLarge as exc:  # the sender's message, not this party's reading, is the problem
                self._refuse(context, _Refused(grpc.StatusCode.INVALID_ARGUMENT, exc.message))
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
