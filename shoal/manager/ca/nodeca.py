"""NodeCA: turns a join token and a CSR into a node certificate.

Reached with a join certificate (see ``shoal.pki.join``), which carries no
identity: the token in the request is the credential, compared in constant
time with the cluster's current ones. The node ID is chosen here and written
into the certificate's CN; the Node object appears when the agent first
registers, except for a node that joined with the *manager* token: it is
recorded here, with role ``manager``, before the certificate is returned
(the role is for placement only: the certificate is a worker's, so the node
gets no ControlAPI access).

Each peer address may fail a few times at once and then once every few
seconds (``JoinRateLimit``); beyond that even its correct requests wait.
Successful joins cost nothing, so a rack of machines behind one address
joins at full speed. (Guessing tokens is hopeless anyway: without a current
token there is no TLS handshake to begin with.) Refusals are logged at most
once per ``REFUSAL_LOG_INTERVAL`` with a count, so a flood cannot fill the
log either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from shoal import defaults, pki
from shoal.ids import new_id
from shoal.manager.auth import ca_bundle
from shoal.manager.ca.authority import check_token
from shoal.manager.keyring import KeyRing, Locked
from shoal.manager.store import Store
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import dispatcher_pb2_grpc as dgrpc
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

MAX_CSR_BYTES = 8 * 1024
REFUSAL_LOG_INTERVAL = 10.0


class JoinRateLimit:
    """A token bucket of failures per peer address: ``burst`` at once, then
    one per ``1 / per_second`` seconds; a peer whose bucket is empty is
    refused until it refills."""

    MAX_PEERS = 10_000

    def __init__(self, burst: int = 10, per_second: float = 0.5, clock: Callable[[], float] = time.monotonic):
        self.burst = burst
        self.per_second = per_second
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # peer -> (tokens, at)

    def _tokens(self, peer: str, now: float) -> float:
        tokens, at = self._buckets.get(peer, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.per_second)

    def allow(self, peer: str) -> bool:
        """Whether this peer may try now (costs nothing)."""
        return self._tokens(peer, self.clock()) >= 1.0

    def failed(self, peer: str) -> None:
        """This peer's attempt was refused: it costs one token."""
        now = self.clock()
        self._buckets[peer] = (max(0.0, self._tokens(peer, now) - 1.0), now)
        if len(self._buckets) > self.MAX_PEERS:
            # Forget peers whose bucket has refilled: they lose nothing.
            full = self.burst / self.per_second
            self._buckets = {p: (t, a) for p, (t, a) in self._buckets.items() if now - a < full}


class _RefusalLog:
    def __init__(self) -> None:
        self._count = 0
        self._since = 0.0
        self._last_logged = -REFUSAL_LOG_INTERVAL

    def refused(self, peer: str, reason: str) -> None:
        now = time.monotonic()
        self._count += 1
        if now - self._last_logged >= REFUSAL_LOG_INTERVAL:
            extra = (
                f" ({self._count} refusals in the last {now - self._since:.0f}s)" if self._count > 1 else ""
            )
            log.warning("refused a join from %s: %s%s", peer, reason, extra)
            self._last_logged = self._since = now
            self._count = 0


class NodeCA(dgrpc.NodeCAServicer):
    def __init__(
        self,
        cluster: Callable[[], pb.Cluster | None],
        keyring: KeyRing,
        rate_limit: JoinRateLimit | None = None,
        store: Store | None = None,
    ) -> None:
        self._cluster = cluster
        self._keyring = keyring
        self._store = store
        self._limit = rate_limit or JoinRateLimit()
        self._refusals = _RefusalLog()

    async def _record_manager_node(self, node_id: str) -> None:
        """The node's object, role manager, before it ever registers (its
        first registration fills in the rest)."""
        assert self._store is not None
        node = pb.Node(role=pb.NODE_ROLE_MANAGER)
        node.meta.id = node_id
        node.status.state = pb.NODE_STATE_UNKNOWN
        node.status.message = "joined; waiting for its first session"
        await self._store.create(node)

    async def _refuse(self, context: Any, peer: str, code: grpc.StatusCode, message: str) -> None:
        self._limit.failed(peer)
        self._refusals.refused(peer, message)
        await context.abort(code, message)

    async def IssueNodeCertificate(
        self, request: dpb.IssueNodeCertificateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dpb.IssueNodeCertificateResponse:
        peer = pki.peer_address(context)
        if not self._limit.allow(peer):
            message = "too many refused join attempts from this address; wait and retry"
            self._refusals.refused(peer, message)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
        cluster = self._cluster()
        if cluster is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the cluster is not initialised yet")
            raise AssertionError("unreachable")
        if len(request.token) > 200 or len(request.csr_pem) > MAX_CSR_BYTES:
            await self._refuse(
                context, peer, grpc.StatusCode.INVALID_ARGUMENT, "join request too large (token or CSR)"
            )
        try:
            pki.parse_join_token(request.token)
        except pki.InvalidJoinToken as err:
            await self._refuse(context, peer, grpc.StatusCode.INVALID_ARGUMENT, str(err))
        token = request.token.strip()
        # Both compared, in constant time, whichever matches.
        as_manager = check_token(token, cluster.join_tokens.manager)
        as_worker = check_token(token, cluster.join_tokens.worker)
        if not (as_manager or as_worker):
            await self._refuse(
                context,
                peer,
                grpc.StatusCode.PERMISSION_DENIED,
                "invalid join token: it does not match this cluster's worker or manager token "
                "(get the current one with `shoal join-token worker` or `shoal join-token manager`)",
            )
        try:
            ca = self._keyring.ca()
        except Locked as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
            raise AssertionError("unreachable") from err
        node_id = new_id()
        expiry = defaults.cert_expiry(cluster.spec) // defaults.SECOND
        try:
            cert = ca.sign_csr(request.csr_pem, node_id, pki.ROLE_WORKER, cluster.meta.id, expiry)
        except ValueError as err:
            await self._refuse(
                context, peer, grpc.StatusCode.INVALID_ARGUMENT, f"certificate request refused: {err}"
            )
            raise AssertionError("unreachable") from err
        if as_manager:
            if self._store is None:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "this manager cannot record nodes")
            else:
                await self._record_manager_node(node_id)
            log.info("issued a worker certificate for new node %s (role manager)", node_id)
        else:
            log.info("issued a worker certificate for new node %s", node_id)
        return dpb.IssueNodeCertificateResponse(node_id=node_id, cert_pem=cert, ca_pem=ca_bundle(cluster))
