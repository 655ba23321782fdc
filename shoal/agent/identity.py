"""The agent's identity: join once with a token, then reuse the certificate.

First start: for each manager given, read its CA over TLS without trusting it
yet, accept it only if its digest is the token's, then ask NodeCA (with a
bootstrap certificate, see ``shoal.pki``) to sign a fresh key's CSR. The
certificate (node ID in its CN), key and CA are kept in STATE_DIR/node; later
starts load them and never need the token again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc

from shoal import pki
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import dispatcher_pb2_grpc as dgrpc


class JoinError(Exception):
    """Joining failed in a way the operator must fix (token, address)."""


@dataclass(frozen=True)
class NodeIdentity:
    node_id: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return pki.channel_credentials(self.ca_pem, self.cert_pem, self.key_pem)


def _paths(state_dir: Path) -> tuple[Path, Path, Path]:
    d = state_dir / "node"
    return d / "ca.pem", d / "cert.pem", d / "key.pem"


def load_identity(state_dir: Path) -> NodeIdentity | None:
    ca, cert, key = _paths(state_dir)
    if not (ca.exists() and cert.exists() and key.exists()):
        return None
    cert_pem = cert.read_bytes()
    return NodeIdentity(pki.identity_from_cert(cert_pem).node_id, ca.read_bytes(), cert_pem, key.read_bytes())


def _save(state_dir: Path, ident: NodeIdentity) -> None:
    ca, cert, key = _paths(state_dir)
    ca.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(ca.parent, 0o700)
    key.touch(mode=0o600)
    key.write_bytes(ident.key_pem)
    ca.write_bytes(ident.ca_pem)
    cert.write_bytes(ident.cert_pem)


def split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.strip().rpartition(":")
    if not sep or not port.isdigit():
        raise JoinError(f'manager address "{addr}": expected HOST:PORT')
    return host.strip("[]"), int(port)


async def join(state_dir: Path, managers: list[str], token: str) -> NodeIdentity:
    """Obtain a node certificate with the join token (first start only)."""
    try:
        parsed = pki.parse_join_token(token)
    except pki.InvalidJoinToken as err:
        raise JoinError(str(err)) from None
    errors: list[str] = []
    for addr in managers:
        host, port = split_addr(addr)
        try:
            ca_pem = pki.fetch_remote_ca(host, port)
        except OSError as err:
            errors.append(f"{addr}: cannot reach the manager ({err})")
            continue
        try:
            pki.verify_ca_against_token(ca_pem, parsed)
        except pki.InvalidJoinToken as err:
            raise JoinError(f"{addr}: {err}; is this token from this cluster?") from None
        boot_cert, boot_key = pki.bootstrap_client_bundle()
        key_pem = pki.new_private_key_pem()
        creds = pki.channel_credentials(ca_pem, boot_cert, boot_key)
        async with grpc.aio.secure_channel(addr, creds, options=pki.CHANNEL_OPTIONS) as channel:
            try:
                resp = await dgrpc.NodeCAStub(channel).IssueNodeCertificate(
                    dpb.IssueNodeCertificateRequest(csr_pem=pki.new_csr_pem(key_pem), token=token.strip()),
                    timeout=15,
                )
            except grpc.aio.AioRpcError as err:
                if err.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT):
                    raise JoinError(f"join refused by {addr}: {err.details()}") from None
                errors.append(f"{addr}: {err.details()}")
                continue
        ident = NodeIdentity(resp.node_id, resp.ca_pem, resp.cert_pem, key_pem)
        _save(state_dir, ident)
        return ident
    raise JoinError("could not join: " + "; ".join(errors))
