"""Who may call what: the one place RPCs are authorized.

Every manager port requires a client certificate (see ``shoal.pki``); a
certificate issued by the cluster CA names its holder (CN) and role (OU).
ControlAPI calls need the admin role (or manager); Dispatcher sessions need
the worker role and use the CN as the node ID; NodeCA calls need no identity
but a join token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from shoal import pki


class Authorizer:
    def __init__(self, cluster_ca_pem: Callable[[], bytes], cluster_id: Callable[[], str]) -> None:
        self._ca = cluster_ca_pem
        self._cluster_id = cluster_id
        self._subject: tuple[bytes, str] | None = None

    def _ca_subject(self) -> str:
        ca = self._ca()
        if self._subject is None or self._subject[0] != ca:
            self._subject = (ca, pki.cert_subject(ca))
        return self._subject[1]

    def identity(self, context: grpc.aio.ServicerContext[Any, Any]) -> pki.Identity | None:
        ident = pki.peer_identity(context, self._ca_subject())
        if ident is None or ident.cluster_id != self._cluster_id():
            return None
        return ident

    async def require(self, context: grpc.aio.ServicerContext[Any, Any], *roles: str) -> pki.Identity:
        ident = self.identity(context)
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
