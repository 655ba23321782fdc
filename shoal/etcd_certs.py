"""Certificates for talking to etcd over mutual TLS.

etcd is the cluster's whole state (and, without autolock, its keys): only
managers should reach it. ``make_etcd_certs`` writes a small CA of etcd's
own, a server certificate for the addresses etcd listens on and a client
certificate for the managers, so that etcd can be started with
``--client-cert-auth`` and managers with ``--etcd-ca/--etcd-cert/--etcd-key``.
``shoal up`` uses it for the etcd it starts; deploy/README.md shows the same
with openssl for hosts set up by hand.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = timedelta(days=5 * 365)


@dataclass(frozen=True)
class EtcdCerts:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.touch(mode=0o600 if private else 0o644)
    path.write_bytes(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    name: str,
    usage: list[x509.ObjectIdentifier],
    hosts: list[str],
) -> tuple[bytes, bytes]:
    key = _key()
    now = datetime.now(UTC)
    sans: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def make_etcd_certs(directory: Path, hosts: list[str]) -> EtcdCerts:
    """Write ca.pem, server.pem/server-key.pem (for hosts, plus 127.0.0.1 and
    localhost) and client.pem/client-key.pem into directory."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shoal etcd CA")])
    now = datetime.now(UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server = _leaf(
        ca_key,
        ca_name,
        "etcd",
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        sorted({*hosts, "127.0.0.1"}),
    )
    client = _leaf(ca_key, ca_name, "shoal-manager", [ExtendedKeyUsageOID.CLIENT_AUTH], [])
    certs = EtcdCerts(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )
    _write(certs.ca, ca.public_bytes(serialization.Encoding.PEM))
    _write(certs.server_cert, server[0])
    _write(certs.server_key, server[1], private=True)
    _write(certs.client_cert, client[0])
    _write(certs.client_key, client[1], private=True)
    return certs


def etcd_tls_args(certs: EtcdCerts) -> list[str]:
    """etcd's flags for serving clients over TLS, requiring client certificates."""
    return [
        "--cert-file",
        str(certs.server_cert),
        "--key-file",
        str(certs.server_key),
        "--trusted-ca-file",
        str(certs.ca),
        "--client-cert-auth",
    ]
