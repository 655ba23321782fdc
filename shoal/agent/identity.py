"""The agent's identity: join once with a token, then keep the certificate current.

First start: for each manager given, read the chain it presents without
trusting it yet and keep the root whose digest the token names; check that
the manager accepts the token's join certificate (``shoal.pki.join``), so a
rotated token is reported as such; then ask NodeCA to sign a fresh key's CSR.
The certificate (node ID in its CN), key and the roots to trust are kept in
STATE_DIR/node; later starts load them and never need the token again.

Later the session renews the certificate (``renewal_request`` /
``renewed``) and updates the roots (``with_roots``); each change is saved at
once, so a restart picks up the newest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509

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

    def expired(self, now: datetime | None = None) -> bool:
        return pki.cert_info(self.cert_pem).not_after <= (now or datetime.now(UTC))

    def expiry_problem(self, state_dir: Path) -> str:
        """The one line to log when this identity can no longer be used."""
        when = pki.cert_info(self.cert_pem).not_after.strftime("%Y-%m-%d %H:%M:%S UTC")
        return (
            f"this node's certificate expired at {when} (the agent was away longer than the "
            f"certificate lives); to rejoin, remove {state_dir / 'node'} and start the agent again "
            "with the current join token (`shoal join-token worker`): it gets a new node ID"
        )


def _dir(state_dir: Path) -> Path:
    return state_dir / "node"


def load_identity(state_dir: Path) -> NodeIdentity | None:
    """The node's identity; None before it joined. JoinError, naming the
    file and what to do, when the folder holds something unusable (a crash
    while it was written by an older shoal, a hand edit, a disk error)."""
    folder = _dir(state_dir)
    files = pki.read_tls_dir(folder)
    if files is None:
        present = [p.name for p in (folder / "ca.pem", folder / "cert.pem", folder / "key.pem") if p.exists()]
        if present:
            raise JoinError(
                f"{folder} is incomplete (only {', '.join(present)}): remove {folder} and start the agent "
                "with the join token to join again as a new node"
            )
        return None
    try:
        pki.check_tls_files(folder, files)
        node_id = pki.identity_from_cert(files.cert_pem).node_id
    except ValueError as err:
        raise JoinError(
            f"this node's identity is unusable: {err}; remove {folder} and start the agent with the "
            "join token to join again as a new node"
        ) from None
    return NodeIdentity(node_id, files.ca_pem, files.cert_pem, files.key_pem)


def save_identity(state_dir: Path, ident: NodeIdentity) -> None:
    pki.write_tls_dir(_dir(state_dir), pki.TLSFiles(ident.ca_pem, ident.cert_pem, ident.key_pem))


def with_roots(state_dir: Path, ident: NodeIdentity, ca_pem: bytes) -> NodeIdentity:
    """The identity trusting other roots (a CA rotation), saved."""
    if not ca_pem or ca_pem == ident.ca_pem:
        return ident
    updated = replace(ident, ca_pem=ca_pem)
    save_identity(state_dir, updated)
    return updated


def renewal_request() -> tuple[bytes, dpb.CertificateRequest]:
    """A fresh key (kept by the caller until the answer comes) and its CSR."""
    key_pem = pki.new_private_key_pem()
    return key_pem, dpb.CertificateRequest(csr_pem=pki.new_csr_pem(key_pem))


def renewed(
    state_dir: Path, ident: NodeIdentity, key_pem: bytes, issued: dpb.IssuedCertificate
) -> NodeIdentity:
    """The identity with its new certificate, saved. ValueError when the
    answer does not fit the request (another node ID, another key)."""
    cert_id = pki.identity_from_cert(issued.cert_pem).node_id
    if cert_id != ident.node_id:
        raise ValueError(f"the manager issued a certificate for node {cert_id}, not {ident.node_id}")
    public = pki.load_private_key(key_pem).public_key()
    if x509.load_pem_x509_certificate(issued.cert_pem).public_key() != public:
        raise ValueError("the manager issued a certificate for another key")
    updated = NodeIdentity(ident.node_id, issued.ca_pem or ident.ca_pem, issued.cert_pem, key_pem)
    save_identity(state_dir, updated)
    return updated


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
    token = token.strip()
    errors: list[str] = []
    for addr in managers:
        host, port = split_addr(addr)
        try:
            chain = await asyncio.to_thread(pki.fetch_remote_chain, host, port)
        except OSError as err:
            errors.append(f"{addr}: cannot reach the manager ({err})")
            continue
        try:
            ca_pem = pki.ca_matching_token(chain, parsed)
        except pki.InvalidJoinToken as err:
            raise JoinError(f"{addr}: {err}") from None
        join_cert, join_key = pki.join_client_bundle(token)
        try:
            accepted = await asyncio.to_thread(pki.join_accepted, host, port, ca_pem, join_cert, join_key)
        except OSError as err:
            errors.append(f"{addr}: cannot reach the manager ({err})")
            continue
        if not accepted:
            raise JoinError(
                f"join refused by {addr}: the manager does not accept this join token (it was rotated, "
                "or is not this cluster's); get the current one with `shoal join-token worker`"
            )
        key_pem = pki.new_private_key_pem()
        creds = pki.channel_credentials(ca_pem, join_cert, join_key)
        async with grpc.aio.secure_channel(addr, creds, options=pki.CHANNEL_OPTIONS) as channel:
            try:
                resp = await dgrpc.NodeCAStub(channel).IssueNodeCertificate(
                    dpb.IssueNodeCertificateRequest(csr_pem=pki.new_csr_pem(key_pem), token=token),
                    timeout=15,
                )
            except grpc.aio.AioRpcError as err:
                if err.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT):
                    raise JoinError(f"join refused by {addr}: {err.details()}") from None
                errors.append(f"{addr}: {err.details()}")
                continue
        ident = NodeIdentity(resp.node_id, resp.ca_pem, resp.cert_pem, key_pem)
        save_identity(state_dir, ident)
        return ident
    raise JoinError("could not join: " + "; ".join(errors))
