"""Certificates for a federation: one CA and one EC P-256 certificate per party.

Each party certificate has the party id as common name and as a DNS subject-alternative
name, plus the host of its address and any extra ``hosts`` from the federation file (IP
addresses as IP SANs). Extended key usage is server and client auth, so the same key pair
serves the party's server and its outgoing channels. Peers verify the party id they dial
(the channel's target name is the peer's id), so a party cannot stand in for another even on
the same host. The CA key is used once and never written to disk: to add a party, make a
new set.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .config import Federation, PartySpec, is_ip

VALID_DAYS = 365
logger = logging.getLogger(__name__)


class TlsError(ValueError):
    """A certificate or key file is missing, unreadable or not what the federation expects."""


@dataclass(frozen=True)
class TlsMaterial:
    """PEM bytes one party needs: the federation CA, its own certificate chain and key."""

    ca: bytes
    cert: bytes
    key: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mpcml federation"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca(common_name: str = "mpcml federation CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(_name(common_name), _name(common_name), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def party_names(spec: PartySpec) -> list[str]:
    """The party id, its address host and extra hosts, without duplicates."""
    return list(dict.fromkeys([spec.id, spec.host, *spec.hosts]))


def issue(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, party_id: str, names: list[str]
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A P-256 key and a certificate for ``party_id`` valid for ``names`` (DNS names or IP addresses)."""
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.IPAddress(ipaddress.ip_address(n)) if is_ip(n) else x509.DNSName(n) for n in names]
    cert = (
        _builder(_name(party_id), ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _write(path: Path, data: bytes, private: bool) -> None:
    """Write ``data`` to a new file in the same folder, then rename it over ``path``.

    The mode (0600 for keys, 0644 otherwise) is set before any byte is written, also when
    ``path`` existed with another mode, and a symbolic link at ``path`` is replaced, never
    followed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_federation_certs(federation: Federation, out_dir: Path | str | None = None) -> list[Path]:
    """Make a CA and a certificate per party; write them where the federation expects them.

    With ``out_dir`` every file goes there (``ca.pem``, ``<id>.pem``, ``<id>.key``) instead.
    Keys get mode 0600 and certificates 0644, also when the files existed; a symbolic link in
    their place is replaced, not followed (see :func:`_write`). Returns the written paths.
    """
    ca_key, ca_cert = make_ca()
    ca_path = federation.ca if out_dir is None else Path(out_dir) / "ca.pem"
    try:
        _write(ca_path, cert_pem(ca_cert), private=False)
        written = [ca_path]
        for pid, spec in federation.parties.items():
            key, cert = issue(ca_key, ca_cert, pid, party_names(spec))
            cert_path = spec.cert if out_dir is None else Path(out_dir) / f"{pid}.pem"
            key_path = spec.key if out_dir is None else Path(out_dir) / f"{pid}.key"
            _write(cert_path, cert_pem(cert), private=False)
            _write(key_path, key_pem(key), private=True)
            written += [cert_path, key_path]
    except OSError as exc:
        raise TlsError(f"cannot write certificates: {exc.strerror or exc}: {exc.filename}") from None
    return written


def _read(path: Path, what: str) -> tuple[bytes, int]:
    """The file's bytes and its mode (from the open file, so both describe the same file)."""
    try:
        with Path(path).open("rb") as handle:
            return handle.read(), os.fstat(handle.fileno()).st_mode
    except OSError as exc:
        raise TlsError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc} (make them with `mpcml certs`)") from None


def load_tls(federation: Federation, party_id: str) -> TlsMaterial:
    """Read and check one party's CA, certificate and key: parseable PEM, certificate named for the party and issued by the CA.

    Logs a warning when the key file is accessible to group or others.
    """
    spec = federation.party(party_id)
    (ca_pem, _), (party_cert_pem, _), (party_key_pem, key_mode) = (
        _read(federation.ca, "CA certificate"), _read(spec.cert, "certificate"), _read(spec.key, "private key")
    )
    if key_mode & 0o077:
        logger.warning("private key %s is accessible to group or others (mode %s); restrict it with chmod 600",
                       spec.key, oct(stat.S_IMODE(key_mode)))
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        raise TlsError(f"CA certificate {str(federation.ca)!r} is not a PEM certificate") from None
    try:
        cert = x509.load_pem_x509_certificate(party_cert_pem)
    except ValueError:
        raise TlsError(f"certificate {str(spec.cert)!r} is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(party_key_pem, password=None)
    except (ValueError, TypeError):
        raise TlsError(f"private key {str(spec.key)!r} is not an unencrypted PEM private key") from None
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [party_id]:
        raise TlsError(f"certificate {str(spec.cert)!r} is for {names}, not for party {party_id!r}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise TlsError(f"certificate {str(spec.cert)!r} was not issued by the CA in {str(federation.ca)!r}")
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        raise TlsError(f"private key {str(spec.key)!r} does not match certificate {str(spec.cert)!r}")
    return TlsMaterial(ca_pem, party_cert_pem, party_key_pem)
