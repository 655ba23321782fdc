"""CA rotation: a new root, every node re-certified through its session, no
task disturbed.

1. ``start_rotation`` (any manager, from ``shoal cluster ca --rotate``) makes
   a new root and signs it with the old key (the *cross-signed* root). In one
   transaction the cluster's root becomes the new one, the old root stays
   trusted as ``previous_cert_pem``, the CA key in ClusterKeys becomes the new
   key, and new join tokens (naming the new root's digest) replace the old
   ones, which stop working at once.
2. Every manager then renews its server certificate from the new root and
   presents it with the cross-signed root, so clients that still trust only
   the old root accept it (``manager_certs.server_chain``). Every dispatcher
   tells its agents to trust both roots and to renew; an agent's new
   certificate comes from the new root over its open session.
3. ``RotationFinisher`` (the leader) ends the rotation once every node's
   certificate (``Node.certificate``, written by the dispatchers) is from the
   new root: the old root is no longer trusted, and servers stop presenting
   the cross-signed root. Nodes that are down hold the rotation open, as in
   swarm mode; remove them (``node rm``) to let it finish.
"""

from __future__ import annotations

import logging

from shoal import pki
from shoal.manager.ca.authority import new_root_ca
from shoal.manager.component import Component
from shoal.manager.keyring import KeyRing, wrap
from shoal.manager.store import Event, Store, View, clone, now_ns, update_with_retry
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb
from shoal.rules.errors import InvalidRequest

log = logging.getLogger(__name__)


def pending_nodes(view: View, cluster: pb.Cluster) -> dict[str, str]:
    """Nodes whose certificate is not from the current root: ID -> hostname."""
    digest = cluster.root_ca.cert_digest
    return {
        node.meta.id: node.description.hostname
        for node in view.nodes.values()
        if node.certificate.ca_digest != digest
    }


def ca_status(view: View, cluster: pb.Cluster) -> cpb.CAStatus:
    root = cluster.root_ca
    status = cpb.CAStatus(
        digest=root.cert_digest,
        not_after=int(pki.cert_info(root.cert_pem).not_after.timestamp() * 1e9),
        rotating=bool(root.previous_cert_pem),
        nodes=len(view.nodes),
        rotation_started_at=root.rotation_started_at,
    )
    if root.previous_cert_pem:
        status.previous_digest = pki.cert_digest(root.previous_cert_pem)
        status.nodes_pending.update(pending_nodes(view, cluster))
    return status


async def start_rotation(view: View, store: Store, keyring: KeyRing) -> pb.Cluster:
    cluster = view.cluster()
    keys = view.cluster_keys()
    if cluster is None or keys is None:
        raise InvalidRequest("the cluster is not initialised yet")
    if cluster.root_ca.previous_cert_pem:
        pending = pending_nodes(view, cluster)
        raise InvalidRequest(
            f"a CA rotation is already in progress ({len(pending)} of {len(view.nodes)} nodes not yet "
            "re-certified); wait for it (`shoal cluster ca`)"
        )
    if keys.autolock and keyring.unlock_key is None:
        raise InvalidRequest(
            "the cluster is autolocked and this manager does not hold the unlock key (autolock was "
            "turned on through another manager): unlock this manager with `shoal cluster unlock` first"
        )
    old_ca = keyring.ca()
    new = new_root_ca(cluster.meta.id)
    digest = pki.cert_digest(new.cert_pem)
    updated = clone(cluster)
    root = updated.root_ca
    root.previous_cert_pem = root.cert_pem
    root.cross_signed_pem = old_ca.cross_sign(new.cert_pem)
    root.cert_pem = new.cert_pem
    root.cert_digest = digest
    root.rotation_started_at = now_ns()
    updated.join_tokens.worker = pki.new_join_token(digest)
    if updated.join_tokens.manager:
        updated.join_tokens.manager = pki.new_join_token(digest)
    material = clone(keyring.material())
    material.ca_key_pem = new.key_pem
    new_keys = wrap(cluster.meta.id, material, keyring.unlock_key if keys.autolock else None)
    new_keys.meta.version = keys.meta.version
    new_keys.meta.created_at = keys.meta.created_at
    await store.batch().update(updated).update(new_keys).commit_all_or_nothing()
    log.info("CA rotation started: new root %s", digest[:12])
    return updated


class RotationFinisher(Component):
    """Leader only: ends a CA rotation once every node is on the new root."""

    name = "ca-rotation"
    kinds = ("clusters", "nodes")

    async def reconcile_all(self) -> None:
        await self._check()

    async def handle(self, events: list[Event]) -> None:
        await self._check()

    async def _check(self) -> None:
        cluster = self.view.cluster()
        if cluster is None or not cluster.root_ca.previous_cert_pem:
            return
        if pending_nodes(self.view, cluster):
            return
        digest = cluster.root_ca.cert_digest

        def finish(c: pb.Cluster) -> None:
            if c.root_ca.cert_digest == digest:
                c.root_ca.previous_cert_pem = b""
                c.root_ca.cross_signed_pem = b""
                c.root_ca.rotation_started_at = 0

        await update_with_retry(self.view, self.store, pb.Cluster, cluster.meta.id, finish)
        log.info("CA rotation complete: every node has a certificate from root %s", digest[:12])
