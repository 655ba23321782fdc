"""The transport side of trust: channel options, server limits, and the two
handshakes a joining node makes before it trusts anything.

A joining node first reads the chain a manager presents without verifying
it (``fetch_remote_chain``) and keeps the certificate its token's digest
names; then it checks that the manager accepts its join certificate
(``join_accepted``), so that a rotated or mistyped token is reported as such
instead of as a dropped connection.

Errors: ``OSError`` (including ``ssl.SSLError``) when a manager cannot be reached.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shoal.pki.certs import SERVER_NAME

MIB = 1024 * 1024

CHANNEL_OPTIONS: list[tuple[str, str | int]] = [
    ("grpc.ssl_target_name_override", SERVER_NAME),
    # The agent's session carries a heartbeat and its answer every period
    # (5 s), and the agent leaves a manager silent for three (session.py):
    # that finds a dead or hung manager. Transport pings are only for what
    # does not (a NAT that forgot the connection): every 30 s is enough,
    # and at 5,000 nodes a ping every 10 s from each was 500 a second.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # No bandwidth-delay probes: they add a ping to streams that carry data,
    # and the session's messages are small (a manager at 5,000 nodes
    # answered hundreds of them a second for nothing).
    ("grpc.http2.bdp_probe", 0),
    # Listings of large services are big; the server caps what it sends.
    ("grpc.max_receive_message_length", 64 * MIB),
]


@dataclass(frozen=True)
class ServerLimits:
    """What one manager listener allows a peer, and why each default."""

    # A peer must finish TLS and HTTP/2 set-up within this: a slow or silent
    # peer costs a socket for at most this long.
    handshake_timeout: float = 10.0
    # A connection with no call open is closed after this. Agents always have
    # their session open and admin calls are short, so only idle peers (for
    # example joiners that stay after their one call) are cut.
    idle_timeout: float = 60.0
    # Calls at once on one connection: an agent needs one, a CLI a few, a
    # manager forwarding logs one per follower.
    max_streams: int = 128
    # What a peer may send in one message: the largest legitimate ones are
    # specs (capped lower, in the API) and a batch of task statuses.
    max_receive_bytes: int = 4 * MIB
    # What the server sends in one message: assignments are split well below
    # this, task listings of 100,000 tasks stay under it.
    max_send_bytes: int = 64 * MIB


def server_options(limits: ServerLimits) -> list[tuple[str, str | int]]:
    return [
        # Agents ping every 30 s (CHANNEL_OPTIONS): by default gRPC treats a
        # ping without data more often than every 5 minutes as abuse and
        # closes the connection ("too_many_pings"), cutting idle sessions.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.bdp_probe", 0),
        ("grpc.server_handshake_timeout_ms", int(limits.handshake_timeout * 1000)),
        ("grpc.max_connection_idle_ms", int(limits.idle_timeout * 1000)),
        ("grpc.max_concurrent_streams", limits.max_streams),
        ("grpc.max_receive_message_length", limits.max_receive_bytes),
        ("grpc.max_send_message_length", limits.max_send_bytes),
    ]


def channel_credentials(
    ca_pem: bytes, cert_pem: bytes | None = None, key_pem: bytes | None = None
) -> grpc.ChannelCredentials:
    if (cert_pem is None) != (key_pem is None):
        raise ValueError("a client certificate needs its private key, and vice versa")
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def peer_cert_pem(context: grpc.ServicerContext | grpc.aio.ServicerContext[Any, Any]) -> bytes | None:
    """The client certificate gRPC verified against the server's roots, if any.

    Verified against *some* root the server accepts (join roots included), so
    this says nothing about identity: see ``certs.verified_identity``.
    """
    auth: Mapping[str, Any] = context.auth_context()
    certs = auth.get("x509_pem_cert")
    return bytes(certs[0]) if certs else None


def peer_address(context: grpc.ServicerContext | grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller's IP: 'ipv4:127.0.0.1:5000' or 'ipv6:[::1]:5000' -> the address."""
    peer: str = context.peer()
    _, _, rest = peer.partition(":")
    return rest.rsplit(":", 1)[0].strip("[]")


@contextlib.contextmanager
def _tls_client(
    ca_pem: bytes | None, cert_pem: bytes | None, key_pem: bytes | None
) -> Iterator[ssl.SSLContext]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["h2"])  # gRPC servers refuse a handshake without it
    if ca_pem is None:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cadata=ca_pem.decode())
    if cert_pem is not None and key_pem is not None:
        load_cert_chain(ctx, cert_pem, key_pem)
    yield ctx


def load_cert_chain(ctx: ssl.SSLContext, chain_pem: bytes, key_pem: bytes) -> None:
    """Give ctx a certificate chain and its key held in memory."""
    # ssl loads keys only from files: a private folder, gone at once.
    with tempfile.TemporaryDirectory(prefix="shoal-tls-") as tmp:
        os.chmod(tmp, 0o700)
        cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        key_path.touch(mode=0o600)
        key_path.write_bytes(key_pem)
        cert_path.write_bytes(chain_pem)
        ctx.load_cert_chain(cert_path, key_path)


def fetch_remote_chain(host: str, port: int, timeout: float = 5.0) -> list[bytes]:
    """The certificates (PEM) the server at host:port presents, unverified.

    The caller must pick the one its token names (``tokens.ca_matching_token``).
    With TLS 1.3 the client's side of the handshake completes before a server
    that wants a client certificate gives up on it, so this works on a port
    that requires one.
    """
    with (
        _tls_client(None, None, None) as ctx,
        socket.create_connection((host, port), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as sock,
    ):
        # Python 3.13 made this public (returning DER bytes); 3.11 has it only
        # on the private _sslobj, returning _ssl.Certificate objects.
        getter = getattr(sock, "get_unverified_chain", None) or sock._sslobj.get_unverified_chain  # type: ignore[attr-defined]
        chain: list[Any] = getter() or []
    if not chain:
        raise ssl.SSLError(f"{host}:{port} presented no certificate")
    out = []
    for item in chain:
        der = item if isinstance(item, bytes) else item.public_bytes(ssl._ssl.ENCODING_DER)  # type: ignore[attr-defined]
        out.append(x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM))
    return out


# The client preface and an empty SETTINGS frame: what an HTTP/2 client sends
# first. A server that accepted our certificate answers with its SETTINGS; one
# that refused it closes the connection.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def join_accepted(
    host: str, port: int, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, timeout: float = 5.0
) -> bool:
    """Whether the manager (verified against ca_pem) accepts this client certificate."""
    with (
        _tls_client(ca_pem, cert_pem, key_pem) as ctx,
        socket.create_connection((host, port), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as sock,
    ):
        try:
            sock.sendall(_H2_PREFACE)
            return len(sock.recv(64)) > 0
        except (ssl.SSLError, ConnectionError):
            return False
