"""gRPC transport: a server per party holding per-sender mailboxes, and :class:`GrpcParty`.

Every message is one RPC on a channel kept open per peer: ``Deliver`` when the payload fits in
one chunk, ``Stream`` (client streaming, chunks in order) otherwise. Chunks are ``wire_pb2.Chunk``
messages on the wire; they are framed by :mod:`parties.framing` so the payload is copied once
per side (standard protobuf clients built from proto/ interoperate). The RPC returns once the
receiver's server has checked the message and put it in the mailbox of its sender, so a
returned ``send`` means delivered. The server refuses, with a gRPC status and one line of
explanation, and keeps serving:

- a client without a certificate from the federation CA (TLS handshake, ``require_client_auth``);
- a message whose claimed ``sender`` is not the common name of the client's certificate
  (``PERMISSION_DENIED``), or not a peer of this party;
- a message of another session, out of sequence, or with inconsistent chunk headers
  (``FAILED_PRECONDITION`` / ``INVALID_ARGUMENT``);
- a payload that :func:`mpcml.codec.decode` rejects (``INVALID_ARGUMENT``). Nothing is unpickled.

Client channels use ``wait_for_ready`` with the party's timeout as deadline, so parties may
start in any order; the target name of each channel is the peer's id, so TLS checks that the
server's certificate belongs to the peer dialled. Message-size limits are set explicitly on
both sides to one chunk plus 64 KiB of headroom.

:attr:`GrpcParty.stats` counts codec payload bytes exactly as :class:`mpcml.local.LocalParty`
does; :attr:`GrpcParty.transport` counts what the transport adds (RPCs, chunks, protobuf
envelope bytes; TLS and HTTP/2 framing are not visible from Python and not included).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from typing import Callable, Iterable, Iterator, Mapping, NoReturn, Sequence

import grpc

from mpcml import codec
from mpcml.party import DEFAULT_TIMEOUT, Inbox, Party

from . import framing, wire_pb2
from .certs import TlsMaterial
from .config import DEFAULT_CHUNK_MIB, MIB

HEADROOM = 64 * 1024
MAX_PAYLOAD = 1 << 32
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
    """An :class:`~mpcml.party.Inbox` that accepts message ``seq`` from a sender only right after ``seq - 1``."""

    def __init__(self, peers: Iterable[str]) -> None:
        peers = tuple(peers)
        self.inbox = Inbox(peers)
        self._next = dict.fromkeys(peers, 0)
        self._lock = threading.Lock()

    def put(self, sender: str, seq: int, payload: bytes) -> None:
        with self._lock:
            if seq != self._next[sender]:
                raise _Refused(grpc.StatusCode.FAILED_PRECONDITION,
                               f"message {seq} from {sender!r} is out of sequence (expected {self._next[sender]})")
            self._next[sender] = seq + 1
            self.inbox.put(sender, payload)


class _Servicer:
    """The two RPC handlers. Requests arrive as raw bytes and are split by :func:`framing.split_chunk`."""

    def __init__(
        self, owner: str, session: str, mailboxes: Mailboxes, peers: Iterable[str], secure: bool,
        on_refusal: Callable[[str], None] | None,
    ) -> None:
        self._owner, self._session, self._mailboxes = owner, session, mailboxes
        self._peers, self._secure, self._on_refusal = frozenset(peers), secure, on_refusal

    def handler(self) -> grpc.GenericRpcHandler:
        ack = wire_pb2.Ack.SerializeToString
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Deliver": grpc.unary_unary_rpc_method_handler(self.deliver, response_serializer=ack),
            "Stream": grpc.stream_unary_rpc_method_handler(self.stream, response_serializer=ack),
        })

    def deliver(self, raw: bytes, context: grpc.ServicerContext) -> wire_pb2.Ack:
        try:
            header, data = _split(raw)
            self._check_header(header, context)
            if header.count != 1 or header.index != 0 or header.total_size != len(data):
                raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "a single-chunk message must have index 0, count 1 and total_size = len(data)")
            self._deliver(header.sender, header.seq, bytearray(data))
            return wire_pb2.Ack(seq=header.seq)
        except _Refused as refused:
            self._refuse(context, refused)

    def stream(self, raw_chunks: Iterator[bytes], context: grpc.ServicerContext) -> wire_pb2.Ack:
        try:
            raw = next(raw_chunks, None)
            if raw is None:
                raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "empty message stream")
            first, data = _split(raw)
            self._check_header(first, context)
            if first.total_size > MAX_PAYLOAD or first.count < 1:
                raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"message of {first.total_size} bytes in {first.count} chunks is not allowed")
            parts, size = [], 0
            for index, (chunk, data) in enumerate(chain([(first, data)], map(_split, raw_chunks))):
                if (chunk.index, chunk.count, chunk.seq, chunk.total_size, chunk.sender, chunk.session) != (
                    index, first.count, first.seq, first.total_size, first.sender, first.session
                ):
                    raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"chunk {index} of message {first.seq} from {first.sender!r} has inconsistent headers")
                size += len(data)
                if size > first.total_size:
                    raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"message {first.seq} from {first.sender!r} exceeds its declared {first.total_size} bytes")
                parts.append(data)
            if len(parts) != first.count or size != first.total_size:
                raise _Refused(grpc.StatusCode.INVALID_ARGUMENT,
                               f"message {first.seq} from {first.sender!r} ended after {len(parts)}/{first.count} chunks, {size}/{first.total_size} bytes")
            self._deliver(first.sender, first.seq, bytearray().join(parts))  # writable: the codec views arrays in place
            return wire_pb2.Ack(seq=first.seq)
        except _Refused as refused:
            self._refuse(context, refused)

    def _check_header(self, chunk: wire_pb2.Chunk, context: grpc.ServicerContext) -> None:
        if self._secure:
            names = [n.decode("utf-8", "replace") for n in context.auth_context().get("x509_common_name", [])]
            if names != [chunk.sender]:
                raise _Refused(grpc.StatusCode.PERMISSION_DENIED,
                               f"claimed sender {chunk.sender!r} does not match the client certificate {names}")
        if chunk.sender not in self._peers:
            raise _Refused(grpc.StatusCode.PERMISSION_DENIED, f"{chunk.sender!r} is not a peer of {self._owner!r}")
        if chunk.session != self._session:
            raise _Refused(grpc.StatusCode.FAILED_PRECONDITION,
                           f"message from {chunk.sender!r} belongs to session {chunk.session!r}, not {self._session!r}")

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
    """The gRPC server of one party: receives its peers' messages into per-sender mailboxes."""

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
    ) -> None:
        peers = tuple(peers)
        self.mailboxes = Mailboxes(peers)
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=max(4, 2 * len(peers)), thread_name_prefix=f"mpcml-{party_id}-server"),
            options=[*channel_options(check_chunk_bytes(chunk_bytes)), ("grpc.so_reuseport", 0)],
        )
        self._server.add_generic_rpc_handlers(
            [_Servicer(party_id, session, self.mailboxes, peers, tls is not None, on_refusal).handler()]
        )
        try:
            if tls is None:
                self.port = self._server.add_insecure_port(address)
            else:
                credentials = grpc.ssl_server_credentials([(tls.key, tls.cert)], root_certificates=tls.ca, require_client_auth=True)
                self.port = self._server.add_secure_port(address, credentials)
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            raise TransportError(f"party {party_id!r} cannot listen on {address}: the port is in use or the address is not local"
                                 " (mpcml party --listen HOST:PORT binds elsewhere)")

    def start(self) -> "PartyServer":
        self._server.start()
        return self

    def stop(self, grace: float | None = None) -> None:
        self._server.stop(grace).wait()


def open_channel(address: str, peer: str, tls: TlsMaterial | None, chunk_bytes: int) -> grpc.Channel:
    """A channel to ``peer`` at ``address``; with TLS it presents our certificate and requires the peer's name."""
    options = [*channel_options(chunk_bytes), *RECONNECT_OPTIONS]
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    credentials = grpc.ssl_channel_credentials(root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert)
    return grpc.secure_channel(address, credentials, options=[*options, ("grpc.ssl_target_name_override", peer)])


class GrpcParty(Party):
    """A :class:`~mpcml.party.Party` whose peers are other processes reached over gRPC."""

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
    ) -> None:
        super().__init__(party_id, peers, timeout=timeout)
        self._server, self._session, self._chunk = server, session, check_chunk_bytes(chunk_bytes)
        self._seq = dict.fromkeys(peers, 0)
        self._send_locks = {peer: threading.Lock() for peer in peers}
        self._channels = {peer: open_channel(address, peer, tls, self._chunk) for peer, address in peers.items()}
        self._deliver = {peer: channel.unary_unary(f"/{SERVICE}/Deliver", response_deserializer=wire_pb2.Ack.FromString)
                         for peer, channel in self._channels.items()}
        self._stream = {peer: channel.stream_unary(f"/{SERVICE}/Stream", response_deserializer=wire_pb2.Ack.FromString)
                        for peer, channel in self._channels.items()}
        self.transport = TransportStats()

    def connect(self) -> None:
        """Wait until the channel to every peer is up (TLS handshake done), within the timeout.

        A start barrier, not a message: ``stats`` are unchanged. Raises :class:`PeerUnreachable`
        naming the first peer not reachable in time (not started, dead, or refusing our certificate).
        """
        deadline = time.monotonic() + self.timeout
        futures = {peer: grpc.channel_ready_future(channel) for peer, channel in self._channels.items()}
        for peer, future in futures.items():
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except grpc.FutureTimeoutError:
                for pending in futures.values():
                    pending.cancel()
                raise PeerUnreachable(self.id, peer, self.timeout, "no connection (not started, dead, or TLS refused)") from None

    def _chunks(self, to: str, segments: list[memoryview], size: int) -> Iterator[bytes]:
        """The serialised chunks of one message (each payload byte copied once)."""
        count = max(1, -(-size // self._chunk))
        pieces = _pieces(segments, self._chunk)
        for index in range(count):
            data = next(pieces, ())
            header = wire_pb2.Chunk(sender=self.id, session=self._session, seq=self._seq[to], index=index,
                                    count=count, total_size=size)
            raw = framing.join_chunk(header, *data)
            self.transport.record_chunk(len(raw) - sum(len(piece) for piece in data))
            yield raw

    def _send_bytes(self, to: str, segments: list[memoryview]) -> None:
        size = sum(len(s) for s in segments)
        with self._send_locks[to]:  # threads may send concurrently; messages to one peer keep their order
            try:
                if size <= self._chunk:
                    self._deliver[to](next(self._chunks(to, segments, size)), timeout=self.timeout, wait_for_ready=True)
                else:
                    self._stream[to](self._chunks(to, segments, size), timeout=self.timeout, wait_for_ready=True)
            except grpc.RpcError as err:
                raise self._send_error(to, err) from None
            self.transport.record_rpc()
            self._seq[to] += 1

    def _send_error(self, to: str, err: grpc.RpcError) -> Exception:
        code, detail = err.code(), err.details() or "no detail"
        if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
            return PeerUnreachable(self.id, to, self.timeout, detail)
        return PeerRefused(self.id, to, code.name, detail)

    def _recv_any(self, senders: Sequence[str], timeout: float) -> tuple[str, bytes]:
        return self._server.mailboxes.inbox.get(senders, timeout)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
