"""NodeCA: turns a join token and a CSR into a node certificate.

Reached with a bootstrap certificate (anonymous, see ``shoal.pki``): the token
is the only credential. The node ID is chosen here and written into the
certificate's CN; the Node object appears when the agent first registers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc

from shoal import pki
from shoal.ids import new_id
from shoal.manager.ca.authority import CertificateAuthority, check_token
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import dispatcher_pb2_grpc as dgrpc
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

DEFAULT_CERT_EXPIRY_NS = 90 * 24 * 3600 * 1_000_000_000


class NodeCA(dgrpc.NodeCAServicer):
    def __init__(self, cluster: Callable[[], pb.Cluster | None]) -> None:
        self._cluster = cluster

    async def IssueNodeCertificate(
        self, request: dpb.IssueNodeCertificateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dpb.IssueNodeCertificateResponse:
        cluster = self._cluster()
        if cluster is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the cluster is not initialised yet")
            raise AssertionError("unreachable")
        try:
            pki.parse_join_token(request.token)
        except pki.InvalidJoinToken as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        if not check_token(request.token.strip(), cluster.join_tokens.worker):
            log.warning("refused a join with an invalid token from %s", context.peer())
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "invalid join token: it does not match this cluster's worker token "
                "(get the current one with `shoal join-token worker`)",
            )
        ca = CertificateAuthority(cluster.root_ca.cert_pem, cluster.root_ca.key_pem)
        node_id = new_id()
        expiry = (cluster.spec.cert_expiry or DEFAULT_CERT_EXPIRY_NS) // 1_000_000_000
        try:
            cert = ca.sign_csr(request.csr_pem, node_id, pki.ROLE_WORKER, cluster.meta.id, expiry)
        except ValueError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"certificate request refused: {err}")
            raise AssertionError("unreachable") from err
        log.info("issued a worker certificate for new node %s", node_id)
        return dpb.IssueNodeCertificateResponse(node_id=node_id, cert_pem=cert, ca_pem=ca.cert_pem)
