"""Who may call what: the one place RPCs are authorized.

Every manager port requires a client certificate. A caller has an identity
only when the cluster CA itself signed its certificate: checked with the CA's
public key (``pki.verified_identity``), against the current root and, while a
CA rotation runs, the root being retired. A join certificate (``pki.join``)
passes the handshake but carries no identity.

Then revocation, on every call, not only when a session opens: a node removed
with ``node rm`` and an admin bundle revoked with ``cluster admin-bundle
revoke`` are refused from the next call on.

Roles: ControlAPI calls need the admin role (or manager: managers forward logs
to each other); Dispatcher sessions need the worker role and use the CN as
the node ID; NodeCA calls need no identity but a join token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from shoal import pki
from shoal.manager.store import View
from shoal.protos import objects_pb2 as pb

ADMIN_CN_PREFIX = "admin-"


@dataclass(frozen=True)
class _Revocations:
    version: int
    removed_nodes: frozenset[str]
    revoked_admins: frozenset[str]


def trusted_roots(cluster: pb.Cluster) -> tuple[bytes, ...]:
    """The roots whose signature makes an identity: the current one, and the
    retiring one while a rotation runs."""
    roots = [cluster.root_ca.cert_pem]
    if cluster.root_ca.previous_cert_pem:
        roots.append(cluster.root_ca.previous_cert_pem)
    return tuple(roots)


def ca_bundle(cluster: pb.Cluster) -> bytes:
    """The roots a client should trust now, as one PEM bundle (servers
    present chains to both while a rotation runs)."""
    return b"".join(root.rstrip() + b"\n" for root in trusted_roots(cluster))


class Authorizer:
    def __init__(self, view: View) -> None:
        self._view = view
        self._revocations = _Revocations(-1, frozenset(), frozenset())

    def _revoked(self, cluster: pb.Cluster) -> _Revocations:
        if self._revocations.version != cluster.meta.version:
            self._revocations = _Revocations(
                cluster.meta.version,
                frozenset(cluster.removed_nodes),
                frozenset(b.id for b in cluster.admin_bundles if b.revoked_at),
            )
        return self._revocations

    def check(self, context: grpc.aio.ServicerContext[Any, Any]) -> tuple[pki.Identity | None, str]:
        """(identity, "") for a caller the cluster vouches for, else (None, why)."""
        cluster = self._view.cluster()
        pem = pki.peer_cert_pem(context)
        if cluster is None or pem is None:
            return None, ""
        ident = pki.verified_identity(pem, trusted_roots(cluster))
        if ident is None or ident.cluster_id != cluster.meta.id:
            return None, ""
        revoked = self._revoked(cluster)
        if ident.role in (pki.ROLE_WORKER, pki.ROLE_MANAGER) and ident.node_id in revoked.removed_nodes:
            return (
                None,
                f"node {ident.node_id} was removed from the cluster; join again with a fresh state dir",
            )
        if (
            ident.role == pki.ROLE_ADMIN
            and ident.node_id.removeprefix(ADMIN_CN_PREFIX) in revoked.revoked_admins
        ):
            return None, f"this admin bundle ({ident.node_id.removeprefix(ADMIN_CN_PREFIX)}) was revoked"
        return ident, ""

    def identity(self, context: grpc.aio.ServicerContext[Any, Any]) -> pki.Identity | None:
        return self.check(context)[0]

    async def require(self, context: grpc.aio.ServicerContext[Any, Any], *roles: str) -> pki.Identity:
        ident, revoked = self.check(context)
        if revoked:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, revoked)
        if ident is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "a certificate issued by this cluster is required (admin: use the bundle in "
                "STATE_DIR/admin; agent: join with a token)",
            )
            raise AssertionError("unreachable")
        if ident.role not in roles:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"role {ident.role} may not call this (needs {' or '.join(roles)})",
            )
        return ident
