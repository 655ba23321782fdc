"""The cluster part of the ControlAPI: settings, join tokens, admin bundles,
the CA and its rotation, autolock."""

from __future__ import annotations

import logging

from shoal import pki
from shoal.manager.ca import rotation
from shoal.manager.ca.admin_bundles import DEFAULT_EXPIRY, issue_admin_bundle, revoke_admin_bundle
from shoal.manager.controlapi.common import ControlBase, Ctx, rpc
from shoal.manager.keyring import new_unlock_key, parse_unlock_key, wrap
from shoal.manager.nodes import running_on_down_nodes
from shoal.manager.store import StoreUnavailable, update_with_retry
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb
from shoal.rules import limits
from shoal.rules.errors import InvalidRequest
from shoal.version import shoal_version

log = logging.getLogger(__name__)


class ClusterAPI(ControlBase):
    @rpc
    async def GetClusterInfo(self, request: cpb.GetClusterInfoRequest, context: Ctx) -> cpb.ClusterInfo:
        cluster = self.cluster()
        keys = self.view.cluster_keys()
        try:
            managers = await self.managers()
        except StoreUnavailable:
            managers = []  # etcd is away; the rest is from this manager's view
        endpoints = [
            cpb.EtcdEndpoint(
                target=e.target,
                healthy=e.healthy,
                db_size=e.db_size,
                leader=e.leader,
                alarms=e.alarms,
                error=e.error,
            )
            for e in await self.store.etcd.endpoint_status()
        ]
        unseen = running_on_down_nodes(self.view.nodes, self.view.tasks_by_node)
        return cpb.ClusterInfo(
            cluster_id=cluster.meta.id,
            managers=managers,
            etcd=endpoints,
            stale_seconds=self.view.stale_for,
            spec=cluster.spec,
            nodes=len(self.view.nodes),
            nodes_ready=sum(1 for n in self.view.nodes.values() if n.status.state == pb.NODE_STATE_READY),
            services=len(self.view.services),
            tasks=len(self.view.tasks),
            tasks_running=sum(self.view.running_by_service.values()) - sum(unseen.values()),
            created_at=cluster.meta.created_at,
            stats=self.stats(),
            autolock=keys is not None and keys.autolock,
            locked=self.keyring.locked,
            version=shoal_version(),
        )

    @rpc
    async def UpdateCluster(self, request: cpb.UpdateClusterRequest, context: Ctx) -> cpb.ClusterInfo:
        # Check everything before changing anything: a refused request changes nothing.
        if request.heartbeat_period:
            limits.check_span(
                "heartbeat_period", request.heartbeat_period, limits.MIN_HEARTBEAT, limits.MAX_HEARTBEAT
            )
        if request.task_history_limit:
            limits.check_range("task_history_limit", request.task_history_limit, 1, limits.MAX_TASK_HISTORY)
        if request.cert_expiry:
            limits.check_span(
                "cert_expiry", request.cert_expiry, limits.MIN_CERT_EXPIRY, limits.MAX_CERT_EXPIRY
            )
        if request.max_replicas:
            limits.check_range("max_replicas", request.max_replicas, 1, limits.MAX_REPLICAS_CEILING)

        def change(cluster: pb.Cluster) -> None:
            if request.heartbeat_period:
                cluster.spec.heartbeat_period = request.heartbeat_period
            if request.task_history_limit:
                cluster.spec.task_history_limit = request.task_history_limit
            if request.cert_expiry:
                cluster.spec.cert_expiry = request.cert_expiry
            if request.max_replicas:
                cluster.spec.max_replicas = request.max_replicas

        await update_with_retry(self.view, self.store, pb.Cluster, self.cluster().meta.id, change)
        return await self.GetClusterInfo.__wrapped__(self, cpb.GetClusterInfoRequest(), context)  # type: ignore[attr-defined,no-any-return]

    @rpc
    async def GetJoinToken(self, request: cpb.GetJoinTokenRequest, context: Ctx) -> cpb.JoinTokenResponse:
        role = request.role or "worker"
        if role not in ("worker", "manager"):
            raise InvalidRequest(f'role "{request.role[:20]}": expected worker or manager')
        cluster = self.cluster()
        # A cluster made before manager tokens existed gets one on first ask.
        if request.rotate or not getattr(cluster.join_tokens, role):

            def rotate(c: pb.Cluster) -> None:
                if request.rotate or not getattr(c.join_tokens, role):
                    setattr(c.join_tokens, role, pki.new_join_token(c.root_ca.cert_digest))

            cluster = await update_with_retry(self.view, self.store, pb.Cluster, cluster.meta.id, rotate)
            if request.rotate:
                log.info("%s join token rotated", role)
        addrs = [m.addr for m in await self.managers()]
        return cpb.JoinTokenResponse(token=getattr(cluster.join_tokens, role), manager_addrs=addrs)

    # -------------------------------------------------------------- admin bundles

    @rpc
    async def IssueAdminBundle(self, request: cpb.IssueAdminBundleRequest, context: Ctx) -> cpb.AdminBundle:
        limits.check_text("issued_to", request.issued_to, 200)
        expiry = request.expiry // limits.SECOND if request.expiry else int(DEFAULT_EXPIRY.total_seconds())
        caller = self.auth.identity(context)
        note = request.issued_to or f"issued by {caller.node_id if caller else 'an admin'}"
        files, record = await issue_admin_bundle(self.view, self.store, self.keyring.ca(), expiry, note)
        return cpb.AdminBundle(
            ca_pem=files.ca_pem, cert_pem=files.cert_pem, key_pem=files.key_pem, record=record
        )

    @rpc
    async def ListAdminBundles(
        self, request: cpb.ListAdminBundlesRequest, context: Ctx
    ) -> cpb.ListAdminBundlesResponse:
        return cpb.ListAdminBundlesResponse(bundles=self.cluster().admin_bundles)

    @rpc
    async def RevokeAdminBundle(self, request: cpb.ObjectRef, context: Ctx) -> pb.AdminBundleRecord:
        record = await revoke_admin_bundle(self.view, self.store, request.ref)
        log.info("admin bundle %s revoked", record.id)
        return record

    # -------------------------------------------------------------- CA

    @rpc
    async def GetCAStatus(self, request: cpb.GetCAStatusRequest, context: Ctx) -> cpb.CAStatus:
        return rotation.ca_status(self.view, self.cluster())

    @rpc
    async def RotateCA(self, request: cpb.RotateCARequest, context: Ctx) -> cpb.CAStatus:
        cluster = await rotation.start_rotation(self.view, self.store, self.keyring)
        return rotation.ca_status(self.view, cluster)

    # -------------------------------------------------------------- autolock

    @rpc
    async def SetAutolock(self, request: cpb.SetAutolockRequest, context: Ctx) -> cpb.SetAutolockResponse:
        keys = self.view.cluster_keys()
        if keys is None:
            raise InvalidRequest("the cluster has no keys yet")
        if keys.autolock == request.enabled:
            return cpb.SetAutolockResponse(autolock=keys.autolock)
        material = self.keyring.material()
        unlock_key = new_unlock_key() if request.enabled else ""
        raw = parse_unlock_key(unlock_key) if unlock_key else None
        wrapped = wrap(keys.meta.id, material, raw)
        wrapped.meta.version = keys.meta.version
        wrapped.meta.created_at = keys.meta.created_at
        await self.store.update(wrapped)
        self.keyring.remember_unlock_key(raw)
        log.info("autolock turned %s", "on" if request.enabled else "off")
        return cpb.SetAutolockResponse(autolock=request.enabled, unlock_key=unlock_key)

    @rpc
    async def UnlockManager(
        self, request: cpb.UnlockManagerRequest, context: Ctx
    ) -> cpb.UnlockManagerResponse:
        raw = parse_unlock_key(request.unlock_key)
        was_locked = self.keyring.locked
        self.keyring.unlock(raw)  # ValueError: the wrong key
        if was_locked:
            log.info("unlocked with the unlock key")
            self.on_unlock()
        return cpb.UnlockManagerResponse()
