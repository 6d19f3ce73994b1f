"""The federation file: who the parties are, where they listen, their roles and their certificates.

TOML (``.toml``, read with :mod:`tomllib`) or JSON (``.json``), same structure::

    session = "2026-11-22-run1"   # optional run id, the same at every party (default "mpcml")
    timeout = 60                  # optional per-receive deadline in seconds (default 60)
    chunk_mib = 2                 # optional chunk size for large messages, 1-4 MiB (default 2)

    [tls]
    dir = "certs"                 # where `mpcml certs` wrote ca.pem, <id>.pem, <id>.key (default "certs")

    [limits]                      # optional: what one authenticated peer may make this party's server hold
    buffer_mib = 512              # bytes received from one peer and not yet read (a larger message is refused)
    streams = 4                   # RPCs one peer may have open at once (at least 4)
    idle_timeout = 30             # seconds a message may wait for its next chunk
    message_timeout = 60          # seconds one message may take in all (default: timeout)

    [parties.alice]
    address = "10.0.0.5:50051"    # host:port this party listens on and its peers dial
    role = "left"                 # the app role (default: the party id)
    hosts = ["alice.example.org"] # optional extra certificate names (the address host is always included)
    cert = "certs/alice.pem"      # optional, default <tls.dir>/<id>.pem
    key = "certs/alice.key"       # optional, default <tls.dir>/<id>.key

Relative paths are relative to the federation file. Party ids are lower-case letters, digits
and ``-`` (at most 32, starting with a letter): each becomes the common name and a DNS name
of the party's certificate, and peers verify the name they dial. Any error is a
:class:`ConfigError` with one line naming the file and the key.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from mpcml.party import DEFAULT_TIMEOUT

PARTY_ID = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
MIB = 1 << 20
DEFAULT_CHUNK_MIB = 2
_TOP_KEYS = {"session", "timeout", "chunk_mib", "tls", "limits", "parties"}
_LIMIT_KEYS = {"buffer_mib", "streams", "idle_timeout", "message_timeout"}
DEFAULT_BUFFER_MIB = 512
DEFAULT_STREAMS = 4
MIN_STREAMS = 4  # a sender pipelines up to MIN_STREAMS - 1 messages (parties.transport.SEND_WINDOW) and keeps a slot for a control call
DEFAULT_IDLE_TIMEOUT = 30.0
_PARTY_KEYS = {"address", "role", "hosts", "cert", "key"}


class ConfigError(ValueError):
    """The federation file is missing, unreadable or invalid."""


@dataclass(frozen=True)
class PartySpec:
    id: str
    address: str
    role: str
    hosts: tuple[str, ...]
    cert: Path
    key: Path

    @property
    def host(self) -> str:
        return split_address(self.address)[0]

    @property
    def port(self) -> int:
        return split_address(self.address)[1]


@dataclass(frozen=True)
class Limits:
    """What one authenticated peer may make this party's server hold (docs/parties.md, "Limits").

    ``buffer_bytes``: payload bytes received from one peer and not yet read by the protocol,
    counting messages still arriving; a message larger than this is refused, a message that
    does not fit yet waits (back-pressure) until the protocol reads or ``message_timeout``.
    ``streams``: RPCs one peer may have open at once (more are refused at once); at least
    :data:`MIN_STREAMS`, so a peer's pipelined messages and a control call always fit.
    ``idle_timeout``: seconds a message may wait for its next chunk; ``message_timeout``:
    seconds one message may take from its first byte to its acknowledgement (``None``: the
    federation timeout). A message past either is cancelled.
    """

    buffer_bytes: int = DEFAULT_BUFFER_MIB * MIB
    streams: int = DEFAULT_STREAMS
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    message_timeout: float | None = None


@dataclass(frozen=True)
class Federation:
    parties: dict[str, PartySpec]
    ca: Path
    session: str = "mpcml"
    timeout: float = DEFAULT_TIMEOUT
    chunk_bytes: int = DEFAULT_CHUNK_MIB * MIB
    limits: Limits = Limits()

    def roles(self) -> dict[str, str]:
        """Party id -> role, for :class:`parties.apps.AppContext`."""
        return {pid: spec.role for pid, spec in self.parties.items()}

    def party(self, party_id: str) -> PartySpec:
        if party_id not in self.parties:
            raise ConfigError(f"party {party_id!r} is not in the federation (parties: {', '.join(sorted(self.parties))})")
        return self.parties[party_id]


def check_party_id(party_id: Any) -> str:
    if not isinstance(party_id, str) or not PARTY_ID.match(party_id):
        raise ConfigError(
            f"party id {party_id!r} is invalid: use 1-32 lower-case letters, digits or '-', starting with a letter"
        )
    return party_id


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (IPv6 as ``"[::1]:port"``) -> ``(host, port)``; ``ConfigError`` if malformed."""
    host, sep, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"address {address!r} must be host:port with a port in 1-65535")
    return host.strip("[]"), int(port)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def certificate_name(name: str) -> str:
    """A DNS name as TLS compares it: case-insensitive, without a trailing dot."""
    return name.lower().rstrip(".")


def check_certificate_names(specs: Mapping[str, PartySpec]) -> None:
    """Refuse certificate names that would let one party's certificate pass for another party.

    Peers dial each party by its id and TLS accepts any certificate that carries the dialled
    name, so no party's address host or ``hosts`` may be another party's id, and a ``hosts``
    entry may not be any name of another party (its id, address host or hosts). Parties may
    share an address host (several parties on one machine): peers never dial by host.
    Wildcards are refused.
    """
    ids = {certificate_name(pid): pid for pid in specs}
    carried: dict[str, set[str]] = {}
    for pid, spec in specs.items():
        for name in (spec.id, spec.host, *spec.hosts):
            carried.setdefault(certificate_name(name), set()).add(pid)
    for pid, spec in specs.items():
        for key, names in (("address", (spec.host,)), ("hosts", spec.hosts)):
            for name in names:
                if "*" in name:
                    raise ConfigError(f"parties.{pid}.{key}: wildcard name {name!r} is not allowed in a certificate")
                owner = ids.get(certificate_name(name))
                if owner is not None and owner != pid:
                    raise ConfigError(
                        f"parties.{pid}.{key}: {name!r} is the id of party {owner!r}; a certificate of {pid!r} with that "
                        f"name would be accepted by peers dialling {owner!r}")
                others = sorted(carried[certificate_name(name)] - {pid})
                if key == "hosts" and others:
                    raise ConfigError(
                        f"parties.{pid}.hosts: {name!r} is also a certificate name of party {others[0]!r}; "
                        "each extra host name must belong to one party")


def load_federation(path: Path | str) -> Federation:
    """Read and validate a federation file (``.toml`` or ``.json``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read federation file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"federation file {str(path)!r} is not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}") from None
    try:
        return federation_from_dict(data, path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _number(data: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{key!r} must be a number in [{low:g}, {high:g}], got {value!r}")
    return value


def federation_from_dict(data: Any, base_dir: Path | str = ".") -> Federation:
    """Validate the parsed structure; relative paths are resolved against ``base_dir``."""
    base_dir = Path(base_dir)
    if not isinstance(data, dict):
        raise ConfigError("the federation must be a table/object")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    session = data.get("session", "mpcml")
    if not isinstance(session, str) or not 0 < len(session) <= 128:
        raise ConfigError(f"'session' must be a non-empty string of at most 128 characters, got {session!r}")
    timeout = float(_number(data, "timeout", DEFAULT_TIMEOUT, 0.001, 86400))
    chunk_mib = _number(data, "chunk_mib", DEFAULT_CHUNK_MIB, 1, 4)
    tls = data.get("tls", {})
    if not isinstance(tls, dict) or set(tls) - {"dir"} or not isinstance(tls.get("dir", ""), str):
        raise ConfigError("[tls] may only hold dir = \"<folder>\"")
    tls_dir = base_dir / tls.get("dir", "certs")
    limits = _limits(data.get("limits", {}), timeout, chunk_mib)
    parties = data.get("parties")
    if not isinstance(parties, dict) or len(parties) < 2:
        raise ConfigError("[parties] must define at least two parties")
    specs: dict[str, PartySpec] = {}
    for pid, entry in parties.items():
        check_party_id(pid)
        if not isinstance(entry, dict):
            raise ConfigError(f"parties.{pid} must be a table")
        unknown = set(entry) - _PARTY_KEYS
        if unknown:
            raise ConfigError(f"parties.{pid}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_PARTY_KEYS)}")
        if "address" not in entry:
            raise ConfigError(f"parties.{pid}: 'address' (host:port) is required")
        split_address(entry["address"])
        hosts = entry.get("hosts", [])
        if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
            raise ConfigError(f"parties.{pid}.hosts must be a list of host names")
        role = entry.get("role", pid)
        if not isinstance(role, str) or not role:
            raise ConfigError(f"parties.{pid}.role must be a non-empty string")
        for key in ("cert", "key"):
            if not isinstance(entry.get(key, ""), str):
                raise ConfigError(f"parties.{pid}.{key} must be a path string")
        specs[pid] = PartySpec(
            pid, entry["address"], role, tuple(hosts),
            base_dir / entry["cert"] if "cert" in entry else tls_dir / f"{pid}.pem",
            base_dir / entry["key"] if "key" in entry else tls_dir / f"{pid}.key",
        )
    addresses = [s.address for s in specs.values()]
    if len(set(addresses)) != len(addresses):
        raise ConfigError(f"two parties share an address: {addresses}")
    check_certificate_names(specs)
    return Federation(specs, tls_dir / "ca.pem", session, timeout, int(chunk_mib * MIB), limits)


def _limits(data: Any, timeout: float, chunk_mib: float) -> Limits:
    if not isinstance(data, dict):
        raise ConfigError("[limits] must be a table")
    unknown = set(data) - _LIMIT_KEYS
    if unknown:
        raise ConfigError(f"limits: unknown key(s) {sorted(unknown)}; allowed: {sorted(_LIMIT_KEYS)}")
    try:
        buffer_mib = _number(data, "buffer_mib", DEFAULT_BUFFER_MIB, chunk_mib, 1 << 20)
        streams = _number(data, "streams", DEFAULT_STREAMS, MIN_STREAMS, 64)
        idle = float(_number(data, "idle_timeout", DEFAULT_IDLE_TIMEOUT, 0.001, 86400))
        message = float(_number(data, "message_timeout", timeout, 0.001, 86400))
    except ConfigError as exc:
        raise ConfigError(f"limits: {exc}") from None
    if not isinstance(streams, int):
        raise ConfigError(f"limits: 'streams' must be a whole number, got {streams!r}")
    return Limits(int(buffer_mib * MIB), streams, idle, message)


def federation_toml(parties: Mapping[str, tuple[str, str]], *, session: str, timeout: float, tls_dir: str = "certs",
                    buffer_mib: int | None = None) -> str:
    """A federation file for ``{party_id: (address, role)}`` (used by the demo launcher); ``buffer_mib``: ``[limits]``'s, if given."""
    lines = [f"session = {json.dumps(session)}", f"timeout = {float(timeout)!r}", "", "[tls]", f"dir = {json.dumps(tls_dir)}"]
    if buffer_mib is not None:
        lines += ["", "[limits]", f"buffer_mib = {int(buffer_mib)}"]
    for pid, (address, role) in parties.items():
        lines += ["", f"[parties.{check_party_id(pid)}]", f"address = {json.dumps(address)}", f"role = {json.dumps(role)}"]
    return "\n".join(lines) + "\n"
