"""The cluster's certificate authority: the root CA and the certificates it signs.

Data flow: at cluster init ``new_root_ca`` makes the root; its certificate is
stored in ``Cluster.root_ca`` and its key, apart, in ``ClusterKeys`` (see
``shoal.manager.keyring``). Every manager builds a ``CertificateAuthority`` from
the two and uses it to

- sign a joining node's CSR (``sign_csr``) once the NodeCA service has checked
  the join token with ``check_token``; the CA, not the node, picks the subject;
- issue its own server certificate and admin bundles (``issue``), generating
  the key itself because nothing outside the manager needs to hold it first;
- during a CA rotation, sign the new root with the old key (``cross_sign``),
  so clients that trust only the old root accept servers with new certificates.

Each root has a subject of its own (``shoal-ca-<random>``): certificate paths
are built by name, and two roots of one name would be confused.

Subjects carry identity (CN = node ID, OU = role, O = cluster ID, read back by
``shoal.pki.identity_from_cert``); SANs carry the role as a DNS name, so only
manager certificates match ``shoal.pki.SERVER_NAME``. A bad CSR or a role we do
not know raises ``ValueError``.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shoal.pki import ISSUE_BACKDATE, ROLES, load_private_key, new_private_key_pem, self_signed
from shoal.rules.errors import InvalidRequest

CA_COMMON_NAME = "shoal-ca"
ROOT_VALIDITY = timedelta(days=20 * 365)  # Swarm's root lifetime
BACKDATE = ISSUE_BACKDATE

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class RootCAMaterial:
    cert_pem: bytes
    key_pem: bytes


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def new_root_ca(cluster_id: str) -> RootCAMaterial:
    key_pem = new_private_key_pem()
    key = load_private_key(key_pem)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{CA_COMMON_NAME}-{secrets.token_hex(4)}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
        ]
    )
    now = datetime.now(UTC)
    cert = (
        self_signed(key, name, x509.random_serial_number(), now - BACKDATE, now + ROOT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return RootCAMaterial(cert_pem=_pem(cert), key_pem=key_pem)


def check_token(presented: str, expected: str) -> bool:
    """Whether a presented join token is the expected one, in constant time."""
    # An unset token (empty) must never match an empty presentation.
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


class CertificateAuthority:
    def __init__(self, cert_pem: bytes, key_pem: bytes) -> None:
        self._cert = x509.load_pem_x509_certificate(cert_pem)
        self._key = load_private_key(key_pem)
        if self._key.public_key() != self._cert.public_key():
            raise InvalidRequest("the CA private key does not belong to the CA certificate")
        self._cert_pem = cert_pem

    @property
    def cert_pem(self) -> bytes:
        return self._cert_pem

    def cross_sign(self, new_root_pem: bytes) -> bytes:
        """The new root's certificate (same subject, key and extensions) signed
        by this CA: an intermediate that chains the new root to this one."""
        new = x509.load_pem_x509_certificate(new_root_pem)
        builder = (
            x509.CertificateBuilder()
            .subject_name(new.subject)
            .issuer_name(self._cert.subject)
            .public_key(new.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(new.not_valid_before_utc)
            .not_valid_after(min(new.not_valid_after_utc, self._cert.not_valid_after_utc))
        )
        for ext in new.extensions:
            builder = builder.add_extension(ext.value, critical=ext.critical)
        return _pem(builder.sign(self._key, hashes.SHA256()))

    def sign_csr(
        self, csr_pem: bytes, node_id: str, role: str, cluster_id: str, expiry_seconds: int
    ) -> bytes:
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as err:
            raise InvalidRequest(f"certificate signing request is not a valid PEM CSR: {err}") from err
        if not csr.is_signature_valid:
            # The CSR was not signed by the key it carries: whoever sent it does
            # not hold that key.
            raise InvalidRequest("certificate signing request signature is invalid")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise InvalidRequest(
                f"certificate signing request must carry an ECDSA key, got {type(public_key).__name__}"
            )
        return _pem(self._build(public_key, node_id, role, cluster_id, expiry_seconds, (), ()))

    def issue(
        self,
        common_name: str,
        role: str,
        cluster_id: str,
        expiry_seconds: int,
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[str | IPAddress] = (),
    ) -> tuple[bytes, bytes]:
        """A fresh (cert_pem, key_pem), also valid for localhost and 127.0.0.1."""
        key_pem = new_private_key_pem()
        ips = [ipaddress.ip_address(ip) for ip in (*ip_addresses, "127.0.0.1")]
        cert = self._build(
            load_private_key(key_pem).public_key(),
            common_name,
            role,
            cluster_id,
            expiry_seconds,
            (*dns_names, "localhost"),
            ips,
        )
        return _pem(cert), key_pem

    def _build(
        self,
        public_key: ec.EllipticCurvePublicKey,
        common_name: str,
        role: str,
        cluster_id: str,
        expiry_seconds: int,
        dns_names: Iterable[str],
        ip_addresses: Iterable[IPAddress],
    ) -> x509.Certificate:
        if role not in ROLES:
            raise InvalidRequest(f"role: must be one of {sorted(ROLES)}, got {role!r}")
        if expiry_seconds <= 0:
            raise InvalidRequest(f"expiry_seconds: must be > 0, got {expiry_seconds}")
        if not common_name:
            raise InvalidRequest("common_name: must not be empty")
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
            ]
        )
        # Swarm's SANs: the role first (so a manager certificate, and only that,
        # matches SERVER_NAME), then the node ID; dict.fromkeys drops duplicates.
        names = dict.fromkeys([role, common_name, *dns_names])
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        sans += [x509.IPAddress(ip) for ip in dict.fromkeys(ip_addresses)]
        now = datetime.now(UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + timedelta(seconds=expiry_seconds))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
