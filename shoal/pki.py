"""Crypto helpers shared by the manager and the agent: tokens, keys, identities, TLS.

Trust model (Swarm's): the cluster CA is the only thing trusted, not DNS. Every
certificate's subject carries the holder's identity (CN = node ID, OU = role,
O = cluster ID) and every manager server certificate carries the DNS name
``SERVER_NAME``, which clients pin with ``grpc.ssl_target_name_override``.

Joining, as data flows:

1. ``parse_join_token`` splits ``SHOAL-1-<CA digest>-<secret>``.
2. ``fetch_remote_ca`` reads the manager's CA certificate without verifying it;
   ``verify_ca_against_token`` accepts it only if its digest is the token's.
3. The agent makes a key and CSR (``new_private_key_pem``, ``new_csr_pem``) and
   sends them with the token over ``channel_credentials(ca)`` (no client cert).
4. With the signed certificate it reconnects with ``channel_credentials(ca, cert, key)``;
   servers read who is calling with ``peer_identity``.

grpcio cannot ask for a client certificate without requiring it (its Python API
maps ``require_client_auth=False`` to "don't request"), yet a joining node has
no certificate. So the manager's one port requires a client certificate, and
trusts two roots: the cluster CA, and a *bootstrap CA* whose key is public
(derived from a fixed seed, ``bootstrap_client_bundle``). A joining node signs
itself a throwaway bootstrap certificate and calls NodeCA with its token.
``peer_identity`` only accepts certificates issued by the cluster CA (checked
by issuer name against ``cluster_ca_subject``, and gRPC verified the signature
against the root of that name), so a bootstrap certificate is anonymous: it
reaches only token-authorized calls, exactly like Swarm's insecure NodeCA.

Errors: ``InvalidJoinToken`` (a ``ValueError``) for a malformed token or a CA that
does not match it; ``OSError`` (including ``ssl.SSLError``) from ``fetch_remote_ca``
when the manager cannot be reached.
"""

from __future__ import annotations

import functools
import secrets
import socket
import ssl
import string
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROLE_WORKER = "shoal-worker"
ROLE_MANAGER = "shoal-manager"
ROLE_ADMIN = "shoal-admin"
ROLES = frozenset({ROLE_WORKER, ROLE_MANAGER, ROLE_ADMIN})

# Every manager server certificate carries this DNS SAN, and only manager
# certificates do (a node's SANs are its role), so a worker cannot pose as a manager.
SERVER_NAME = ROLE_MANAGER

_BASE36 = string.digits + string.ascii_lowercase
DIGEST_LEN = 50  # 36**50 > 2**256
SECRET_LEN = 25  # 36**25 > 2**128
_TOKEN_PREFIX = "SHOAL"
_TOKEN_VERSION = "1"
_TOKEN_SHAPE = f"SHOAL-1-<{DIGEST_LEN}-char CA digest>-<{SECRET_LEN}-char secret>"

CHANNEL_OPTIONS: list[tuple[str, str | int]] = [
    ("grpc.ssl_target_name_override", SERVER_NAME),
    # The agent's session stream can sit idle between heartbeats; pinging every
    # 10 s finds a dead manager (or a NAT that forgot us) within 15 s.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]

# Servers must accept those pings: by default gRPC treats a ping without data
# more often than every 5 minutes as abuse and closes the connection (GOAWAY
# "too_many_pings"), which would cut every idle session.
SERVER_OPTIONS: list[tuple[str, str | int]] = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
]


class InvalidJoinToken(ValueError):
    """The join token is malformed, or the manager's CA does not match it."""


def _base36(value: int, width: int) -> str:
    digits = []
    while value:
        value, rem = divmod(value, 36)
        digits.append(_BASE36[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def _is_base36(text: str, width: int) -> bool:
    return len(text) == width and all(c in _BASE36 for c in text)


def cert_digest(cert_pem: bytes) -> str:
    """sha256 of the certificate's DER, base36, zero-padded to 50 characters."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return _base36(int.from_bytes(sha256(der).digest(), "big"), DIGEST_LEN)


# ---------------------------------------------------------------- join tokens


@dataclass(frozen=True)
class JoinToken:
    digest: str  # cert_digest() of the cluster's root CA
    secret: str


def new_join_token(digest: str) -> str:
    if not _is_base36(digest, DIGEST_LEN):
        raise ValueError(f"CA digest must be {DIGEST_LEN} base36 characters, got {digest!r}")
    secret = _base36(int.from_bytes(secrets.token_bytes(16), "big"), SECRET_LEN)
    return f"{_TOKEN_PREFIX}-{_TOKEN_VERSION}-{digest}-{secret}"


def parse_join_token(token: str) -> JoinToken:
    parts = token.strip().split("-")
    if len(parts) != 4 or parts[0] != _TOKEN_PREFIX:
        raise InvalidJoinToken(f"invalid join token: expected {_TOKEN_SHAPE}")
    _, version, digest, secret = parts
    if version != _TOKEN_VERSION:
        raise InvalidJoinToken(
            f"invalid join token: version {version!r} is not supported (expected {_TOKEN_SHAPE})"
        )
    if not _is_base36(digest, DIGEST_LEN):
        raise InvalidJoinToken(
            f"invalid join token: the CA digest must be {DIGEST_LEN} characters of 0-9a-z, "
            f"got {len(digest)} (expected {_TOKEN_SHAPE})"
        )
    if not _is_base36(secret, SECRET_LEN):
        raise InvalidJoinToken(
            f"invalid join token: the secret must be {SECRET_LEN} characters of 0-9a-z, "
            f"got {len(secret)} (expected {_TOKEN_SHAPE})"
        )
    return JoinToken(digest=digest, secret=secret)


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
    subject = x509.load_pem_x509_certificate(cert_pem).subject
    return Identity(
        node_id=_subject_value(subject, NameOID.COMMON_NAME, "CN (node ID)"),
        role=_subject_value(subject, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU (role)"),
        cluster_id=_subject_value(subject, NameOID.ORGANIZATION_NAME, "O (cluster ID)"),
    )


# A long-lived stream and every unary call re-present the same certificate, so
# parse each distinct one once.
_cached_identity = functools.lru_cache(maxsize=1024)(identity_from_cert)


def peer_identity(
    context: grpc.ServicerContext | grpc.aio.ServicerContext[Any, Any],
    cluster_ca_subject: str | None = None,
) -> Identity | None:
    """Who is calling, from the CA-verified client certificate; None if none was presented.

    gRPC only puts ``x509_pem_cert`` in the auth context after verifying the
    certificate against the server's root, so its subject can be trusted. (The
    context's ``peer_identity_key()`` is ``x509_subject_alternative_name``, i.e.
    our role/node-ID SANs, so we read the subject from the certificate instead.)
    """
    auth: Mapping[str, Any] = context.auth_context()
    certs = auth.get("x509_pem_cert")
    if not certs:
        return None
    pem = bytes(certs[0])
    if cluster_ca_subject is not None and _cached_issuer(pem) != cluster_ca_subject:
        return None  # a bootstrap (joining) certificate: anonymous
    return _cached_identity(pem)


def cert_issuer(cert_pem: bytes) -> str:
    return x509.load_pem_x509_certificate(cert_pem).issuer.rfc4514_string()


def cert_subject(cert_pem: bytes) -> str:
    return x509.load_pem_x509_certificate(cert_pem).subject.rfc4514_string()


_cached_issuer = functools.lru_cache(maxsize=1024)(cert_issuer)


# ---------------------------------------------------------------- bootstrap

# The bootstrap CA's key is derived from this public seed on purpose: anyone may
# hold a bootstrap certificate, and it grants nothing but the right to present
# a join token (see the module docstring).
_BOOTSTRAP_SEED = b"shoal bootstrap CA v1"
_BOOTSTRAP_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shoal-bootstrap-ca")])


@functools.lru_cache(maxsize=1)
def _bootstrap_key() -> ec.EllipticCurvePrivateKey:
    secret = int.from_bytes(sha256(_BOOTSTRAP_SEED).digest(), "big")
    return ec.derive_private_key(secret, ec.SECP256R1())


@functools.lru_cache(maxsize=1)
def bootstrap_ca_pem() -> bytes:
    """The bootstrap CA certificate (servers add it to their client roots)."""
    import datetime

    key = _bootstrap_key()
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_BOOTSTRAP_NAME)
        .issuer_name(_BOOTSTRAP_NAME)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365 * 100))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def bootstrap_client_bundle() -> tuple[bytes, bytes]:
    """A fresh (cert_pem, key_pem) signed by the bootstrap CA, for joining."""
    import datetime

    key_pem = new_private_key_pem()
    key = load_private_key(key_pem)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "joining-node")]))
        .issuer_name(_BOOTSTRAP_NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(_bootstrap_key(), hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


# ---------------------------------------------------------------- TLS


def fetch_remote_ca(host: str, port: int, timeout: float = 5.0) -> bytes:
    """Return the PEM of the last (root) certificate the server at host:port presents.

    Unverified by design: the caller must check it with ``verify_ca_against_token``.
    Works against either manager listener with TLS 1.3 (the client's side of the
    handshake completes before an mTLS server rejects it); the join port is the
    one meant for it.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])  # gRPC servers refuse a handshake without it
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as sock,
    ):
        # Python 3.13 made this public (returning DER bytes); 3.11 has it only
        # on the private _sslobj, returning _ssl.Certificate objects.
        getter = getattr(sock, "get_unverified_chain", None) or sock._sslobj.get_unverified_chain  # type: ignore[attr-defined]
        chain: list[Any] = getter() or []
    if not chain:
        raise ssl.SSLError(f"{host}:{port} presented no certificate")
    last = chain[-1]
    der = last if isinstance(last, bytes) else last.public_bytes(ssl._ssl.ENCODING_DER)  # type: ignore[attr-defined]
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def verify_ca_against_token(ca_pem: bytes, token: JoinToken | str) -> None:
    parsed = parse_join_token(token) if isinstance(token, str) else token
    if cert_digest(ca_pem) != parsed.digest:
        raise InvalidJoinToken("the manager's CA certificate does not match the join token's digest")


def server_credentials(
    ca_pem: bytes,
    cert_chain_pem: bytes,
    key_pem: bytes,
    *,
    require_client_auth: bool,
    accept_bootstrap: bool = False,
) -> grpc.ServerCredentials:
    """Credentials for one manager listener; see the module docstring for why there are two.

    True: clients must present a certificate from the cluster CA (``peer_identity``
    sees it). False: the server does not even ask for one (``peer_identity`` is None).
    """
    # The CA goes after the leaf so a joining node can read it from the
    # handshake (fetch_remote_ca) and check it against its token.
    if ca_pem.strip() not in cert_chain_pem:
        cert_chain_pem = cert_chain_pem.rstrip() + b"\n" + ca_pem
    return grpc.ssl_server_credentials(
        [(key_pem, cert_chain_pem)],
        root_certificates=ca_pem + (b"\n" + bootstrap_ca_pem() if accept_bootstrap else b""),
        require_client_auth=require_client_auth,
    )


def channel_credentials(
    ca_pem: bytes, cert_pem: bytes | None = None, key_pem: bytes | None = None
) -> grpc.ChannelCredentials:
    if (cert_pem is None) != (key_pem is None):
        raise ValueError("a client certificate needs its private key, and vice versa")
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )
