"""Keys, CSRs, and what a certificate says about its holder.

``verified_identity`` is the one way to learn who holds a certificate: it
checks that one of the given CA certificates signed it directly (with the
CA's public key) and that it is within its validity, then reads the subject.
Results are cached per certificate and CA set, because a long-lived session
and every unary call present the same certificate again.

``renewal_delay`` says when a holder should ask for a new certificate: at a
random point between 50 % and 80 % of its lifetime (swarm mode's window, so
that nodes which joined together do not all renew together).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROLE_WORKER = "shoal-worker"
ROLE_MANAGER = "shoal-manager"
ROLE_ADMIN = "shoal-admin"
ROLES = frozenset({ROLE_WORKER, ROLE_MANAGER, ROLE_ADMIN})

# Every manager server certificate carries this DNS SAN, and only manager
# certificates do (a node's SANs are its role), so a worker cannot pose as a
# manager; clients pin it with grpc.ssl_target_name_override.
SERVER_NAME = ROLE_MANAGER

# The CA backdates what it signs so that a holder whose clock is a little
# behind does not find its certificate not yet valid (swarm mode does too).
# Lifetimes are counted from not_before + ISSUE_BACKDATE, the real issue time.
ISSUE_BACKDATE = timedelta(hours=1)

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
DIGEST_LEN = 50  # 36**50 > 2**256


def _base36(value: int, width: int) -> str:
    digits = []
    while value:
        value, rem = divmod(value, 36)
        digits.append(_BASE36[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def _load(cert_pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert_pem)


@functools.lru_cache(maxsize=256)
def cert_digest(cert_pem: bytes) -> str:
    """sha256 of the certificate's DER, base36, zero-padded to 50 characters."""
    der = _load(cert_pem).public_bytes(serialization.Encoding.DER)
    return _base36(int.from_bytes(sha256(der).digest(), "big"), DIGEST_LEN)


def cert_subject(cert_pem: bytes) -> str:
    return _load(cert_pem).subject.rfc4514_string()


def split_pems(bundle: bytes) -> list[bytes]:
    """The certificates of a PEM bundle, each as its own PEM."""
    marker = b"-----END CERTIFICATE-----"
    out = []
    for part in bundle.split(marker):
        start = part.find(b"-----BEGIN CERTIFICATE-----")
        if start >= 0:
            out.append(part[start:] + marker + b"\n")
    return out


# ---------------------------------------------------------------- keys and CSRs


def new_private_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"expected an ECDSA private key, got {type(key).__name__}")
    return key


def self_signed(
    key: ec.EllipticCurvePrivateKey, name: x509.Name, serial: int, not_before: datetime, not_after: datetime
) -> x509.CertificateBuilder:
    """The builder of a root: subject and issuer are `name`, signed (by the
    caller, after its own extensions) with `key`."""
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def new_csr_pem(key_pem: bytes) -> bytes:
    # The subject is a placeholder: the CA writes the real identity into the
    # certificate, never trusting what a node claims about itself.
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shoal-node")]))
        .sign(load_private_key(key_pem), hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


# ---------------------------------------------------------------- identities


@dataclass(frozen=True)
class Identity:
    node_id: str  # subject CN
    role: str  # subject OU: one of ROLES
    cluster_id: str  # subject O


def _subject_value(name: x509.Name, oid: x509.ObjectIdentifier, what: str) -> str:
    attrs = name.get_attributes_for_oid(oid)
    if not attrs:
        raise ValueError(f"certificate subject has no {what}: {name.rfc4514_string()}")
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode()


def identity_from_cert(cert_pem: bytes) -> Identity:
    """What the subject says. Trust it only through ``verified_identity``."""
    subject = _load(cert_pem).subject
    return Identity(
        node_id=_subject_value(subject, NameOID.COMMON_NAME, "CN (node ID)"),
        role=_subject_value(subject, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU (role)"),
        cluster_id=_subject_value(subject, NameOID.ORGANIZATION_NAME, "O (cluster ID)"),
    )


@functools.lru_cache(maxsize=4096)
def issuer_of(cert_pem: bytes, ca_pems: tuple[bytes, ...]) -> bytes | None:
    """The CA certificate among ca_pems whose key signed cert_pem, if any."""
    try:
        leaf = _load(cert_pem)
    except ValueError:
        return None
    for ca_pem in ca_pems:
        ca = _load(ca_pem)
        try:
            leaf.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return ca_pem
    return None


@dataclass(frozen=True)
class CertInfo:
    serial: str  # hex
    not_before: datetime
    not_after: datetime

    @property
    def issued_at(self) -> datetime:
        return min(self.not_before + ISSUE_BACKDATE, self.not_after)


@functools.lru_cache(maxsize=4096)
def cert_info(cert_pem: bytes) -> CertInfo:
    cert = _load(cert_pem)
    return CertInfo(format(cert.serial_number, "x"), cert.not_valid_before_utc, cert.not_valid_after_utc)


@functools.lru_cache(maxsize=4096)
def _identity_or_none(cert_pem: bytes) -> Identity | None:
    try:
        ident = identity_from_cert(cert_pem)
    except ValueError:
        return None
    return ident if ident.role in ROLES else None


def verified_identity(
    cert_pem: bytes, ca_pems: Sequence[bytes], now: datetime | None = None
) -> Identity | None:
    """Who holds cert_pem, if one of ca_pems signed it and it is valid now."""
    if issuer_of(cert_pem, tuple(ca_pems)) is None:
        return None
    info = cert_info(cert_pem)
    moment = now or datetime.now(UTC)
    if not info.not_before <= moment <= info.not_after:
        return None
    return _identity_or_none(cert_pem)


def renewal_delay(cert_pem: bytes, rng: random.Random | None = None, now: datetime | None = None) -> float:
    """Seconds from now until the holder should renew (0: at once)."""
    info = cert_info(cert_pem)
    lifetime = info.not_after - info.issued_at
    fraction = (rng or random).uniform(0.5, 0.8)
    renew_at = info.issued_at + timedelta(seconds=lifetime.total_seconds() * fraction)
    return max(0.0, (renew_at - (now or datetime.now(UTC))).total_seconds())
