"""Transport benchmark: mTLS party messages vs a bare gRPC byte stream, and small-message round trips.

Run: ``python -m benchmarks.bench_transport`` (``--quick`` for a small smoke run).

Throughput: one party sends a numpy array of the given size to another over loopback and the
receiver takes it out of its mailbox (``party.send`` + ``party.recv``: codec segments sent as 2
MiB chunks without copying the array first, server-side sender/certificate and codec checks,
reassembly into one buffer that the receiver's codec views). The reference is
a bare gRPC client stream of the same bytes in the same chunk size, without TLS, protobuf or
checks, to a server that joins the chunks, timed in the same run with the measurements
interleaved. Figures are medians over ``--repeats`` runs; the ratio is bare time / party time
(1.0 = as fast as bare gRPC). An insecure party column separates the cost of TLS from the
cost of the party layer. Round trip: a one-integer message there and back between two mTLS
parties (one ``send``+``recv`` each way), median over many pings, next to a bare unary gRPC
round trip. Sender and receiver run in one process, on threads (gRPC's TLS runs in C threads).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np

from benchmarks.timing import timed

from parties.certs import TlsMaterial, load_tls
from parties.config import MIB, Federation, load_federation
from parties.launcher import write_loopback_federation
from parties.server import PartyServer, channel_options
from parties.transport import GrpcParty, open_channel

CHUNK = 2 * MIB


class BareServer:
    """A bare gRPC server with a byte-stream method (chunks joined) and a byte echo; mTLS if ``tls`` is given."""

    def __init__(self, tls: tuple[TlsMaterial, TlsMaterial] | None = None) -> None:
        handlers = {
            "Stream": grpc.stream_unary_rpc_method_handler(lambda chunks, ctx: len(b"".join(chunks)).to_bytes(8, "little")),
            "Echo": grpc.unary_unary_rpc_method_handler(lambda data, ctx: data),
        }
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4), options=channel_options(CHUNK))
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bare.Bytes", handlers)])
        if tls is None:
            port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            server_tls, client_tls = tls
            port = self.server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
                [(server_tls.key, server_tls.cert)], root_certificates=server_tls.ca, require_client_auth=True))
        self.server.start()
        self.channel = open_channel(f"127.0.0.1:{port}", "alice", None if tls is None else client_tls, CHUNK)
        self.stream = self.channel.stream_unary("/bare.Bytes/Stream")
        self.echo = self.channel.unary_unary("/bare.Bytes/Echo")

    def send(self, payload: bytes) -> None:
        view = memoryview(payload)
        chunks = (bytes(view[i : i + CHUNK]) for i in range(0, len(payload), CHUNK))
        received = int.from_bytes(self.stream(chunks, wait_for_ready=True), "little")
        if received != len(payload):
            raise RuntimeError(f"bare stream delivered {received} of {len(payload)} bytes")

    def close(self) -> None:
        self.channel.close()
        self.server.stop(0).wait()


def make_federation(work: Path, secure: bool = True) -> Federation:
    """alice and bob on free loopback ports (with certificates if ``secure``)."""
    return load_federation(write_loopback_federation({"alice": "alice", "bob": "bob"}, work, timeout=120, with_certs=secure))


def party_pair(federation: Federation, secure: bool) -> tuple[GrpcParty, GrpcParty, list[PartyServer]]:
    parties, servers = [], []
    for pid, peer in (("alice", "bob"), ("bob", "alice")):
        tls = load_tls(federation, pid) if secure else None
        server = PartyServer(pid, federation.parties[pid].address, [peer], federation.session, tls=tls, chunk_bytes=CHUNK).start()
        parties.append(GrpcParty(pid, {peer: federation.parties[peer].address}, server, federation.session, tls=tls,
                                 timeout=120, chunk_bytes=CHUNK))
        servers.append(server)
    parties[0].connect()
    parties[1].connect()
    return parties[0], parties[1], servers


def throughput(
    size: int, repeats: int, bares: dict[str, BareServer], pairs: dict[str, tuple[GrpcParty, GrpcParty]]
) -> dict[str, float]:
    array = np.random.default_rng(0).integers(0, 2**63, size=size // 8, dtype=np.uint64)  # benchmark data only
    raw = array.tobytes()
    times: dict[str, list[float]] = {name: [] for name in [*bares, *pairs]}

    def via_party(a: GrpcParty, b: GrpcParty) -> None:
        a.send("bob", array)
        b.recv("alice")

    for _ in range(repeats):
        for name, bare in bares.items():
            times[name].append(timed(lambda: bare.send(raw)))
        for name, (a, b) in pairs.items():
            times[name].append(timed(lambda: via_party(a, b)))
    return {name: statistics.median(values) for name, values in times.items()}


def round_trip(pings: int, a: GrpcParty, b: GrpcParty, bare: BareServer) -> dict[str, float]:
    def echo() -> None:
        for _ in range(pings):
            b.send("alice", b.recv("alice"))

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    party_times = [timed(lambda: (a.send("bob", i), a.recv("bob"))) for i in range(pings)]
    thread.join()
    bare_times = [timed(lambda: bare.echo(b"\x00" * 9)) for _ in range(pings)]
    return {"party_mtls": statistics.median(party_times), "bare": statistics.median(bare_times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (1 and 8 MiB, few repeats)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per throughput figure (default 7; quick: 3)")
    args = parser.parse_args()
    sizes = [1 * MIB, 8 * MIB] if args.quick else [1 * MIB, 64 * MIB]
    repeats = args.repeats or (3 if args.quick else 7)
    pings = 50 if args.quick else 400
    with tempfile.TemporaryDirectory() as tmp:
        federation = make_federation(Path(tmp))
        tls = (load_tls(federation, "alice"), load_tls(federation, "bob"))
        bares = {"bare_plain": BareServer(), "bare_mtls": BareServer(tls)}
        secure, plain = party_pair(federation, secure=True), party_pair(make_federation(Path(tmp) / "plain", secure=False), secure=False)
        pairs = {"party_mtls": secure[:2], "party_plain": plain[:2]}
        try:
            print(f"loopback throughput in MB/s, {CHUNK // MIB} MiB chunks, median of {repeats} runs; ratio = bare time / party time")
            print(f"{'payload':>8} {'bare plain':>11} {'bare mTLS':>10} {'party mTLS':>11} {'/bare mTLS':>11} {'/bare plain':>12}"
                  f" {'party plain':>12} {'/bare plain':>12}")
            for size in sizes:
                t = throughput(size, repeats, bares, pairs)
                rate = {name: size / 1e6 / seconds for name, seconds in t.items()}
                print(f"{size // MIB:>4} MiB {rate['bare_plain']:>11.0f} {rate['bare_mtls']:>10.0f} {rate['party_mtls']:>11.0f}"
                      f" {t['bare_mtls'] / t['party_mtls']:>11.2f} {t['bare_plain'] / t['party_mtls']:>12.2f}"
                      f" {rate['party_plain']:>12.0f} {t['bare_plain'] / t['party_plain']:>12.2f}")
            rtt = round_trip(pings, *secure[:2], bares["bare_mtls"])
            print(f"small-message round trip (median of {pings}): party mTLS {rtt['party_mtls'] * 1e3:.3f} ms "
                  f"(two messages, one each way); bare mTLS unary echo {rtt['bare'] * 1e3:.3f} ms (ratio {rtt['party_mtls'] / rtt['bare']:.2f})")
        finally:
            for a, b, servers in (secure, plain):
                a.close()
                b.close()
                for server in servers:
                    server.stop(0)
            for bare in bares.values():
                bare.close()


if __name__ == "__main__":
    main()
