"""Nodes' certificates, as their sessions see them.

- ``trust_update``: the roots a node should trust now, and whether it must
  renew (its certificate is not from the current root: a CA rotation);
- ``CertificateDesk.renew``: sign a node's CSR for its own node ID with the
  cluster CA (at most once a second per session: each signs and writes);
- ``record``: what the Node object says about its certificate (serial,
  expiry, which root signed it), which ends a CA rotation once every node's
  is from the new root.
"""

from __future__ import annotations

import logging
import time

from shoal import defaults, pki
from shoal.manager.auth import ca_bundle, trusted_roots
from shoal.manager.dispatcher.session import NodeSession
from shoal.manager.keyring import KeyRing, Locked
from shoal.manager.store import Store, StoreError, View, now_ns, update_with_retry
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

MIN_RENEWAL_INTERVAL = 1.0
MAX_CSR_BYTES = 8 * 1024


def trust_update(cluster: pb.Cluster | None, session: NodeSession) -> dpb.ManagerMessage:
    msg = dpb.ManagerMessage()
    if cluster is None:
        return msg
    msg.trust.ca_pem = ca_bundle(cluster)
    msg.trust.renew = pki.issuer_of(session.cert_pem, (cluster.root_ca.cert_pem,)) is None
    return msg


def record(cluster: pb.Cluster | None, cert_pem: bytes, issued: bool) -> pb.NodeCertificate:
    out = pb.NodeCertificate()
    if not cert_pem or cluster is None:
        return out
    info = pki.cert_info(cert_pem)
    issuer = pki.issuer_of(cert_pem, trusted_roots(cluster))
    out.serial = info.serial
    out.not_after = int(info.not_after.timestamp() * 1e9)
    out.ca_digest = pki.cert_digest(issuer) if issuer else ""
    out.issued_at = now_ns() if issued else 0
    return out


class CertificateDesk:
    def __init__(self, view: View, store: Store, keyring: KeyRing) -> None:
        self.view = view
        self.store = store
        self.keyring = keyring
        self.renewals = 0

    async def renew(self, session: NodeSession, request: dpb.CertificateRequest) -> dpb.ManagerMessage:
        reply = dpb.ManagerMessage()
        now = time.monotonic()
        cluster = self.view.cluster()
        if now - session.last_renewal < MIN_RENEWAL_INTERVAL:
            reply.certificate.error = "certificate requests too frequent; retry in a second"
            return reply
        if len(request.csr_pem) > MAX_CSR_BYTES or cluster is None:
            reply.certificate.error = "certificate request refused: too large"
            return reply
        session.last_renewal = now
        expiry = defaults.cert_expiry(cluster.spec) // defaults.SECOND
        try:
            cert = self.keyring.ca().sign_csr(
                request.csr_pem, session.node_id, pki.ROLE_WORKER, cluster.meta.id, expiry
            )
        except (Locked, ValueError) as err:
            reply.certificate.error = f"certificate request refused: {err}"
            return reply
        reply.certificate.cert_pem = cert
        reply.certificate.ca_pem = ca_bundle(cluster)
        session.cert_pem = cert
        self.renewals += 1
        try:
            await self.write_record(session.node_id, cert, issued=True)
        except StoreError as err:
            log.warning("recording node %s's new certificate: %s", session.node_id, err)
        log.info("renewed the certificate of node %s", session.node_id)
        return reply

    async def write_record(self, node_id: str, cert_pem: bytes, issued: bool) -> None:
        certificate = record(self.view.cluster(), cert_pem, issued)

        def change(node: pb.Node) -> None:
            node.certificate.CopyFrom(certificate)

        await update_with_retry(self.view, self.store, pb.Node, node_id, change)
