"""ControlAPI: what the admin CLI calls, answered by any manager.

Reads come from the manager's view; writes go through the store with the
version the caller (or the view) saw, so concurrent writers get a conflict,
never a lost update. Every spec is defaulted and validated here
(``validate``). Store errors become gRPC status codes in ``_rpc``, the only
place that translation happens.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import grpc

from shoal import pki
from shoal.ids import new_id
from shoal.manager import seal
from shoal.manager.auth import Authorizer
from shoal.manager.ca.authority import CertificateAuthority
from shoal.manager.controlapi import validate
from shoal.manager.controlapi.logs import LogGatherer
from shoal.manager.store import (
    AlreadyExists,
    LeadershipLost,
    NotFound,
    Store,
    StoreUnavailable,
    VersionConflict,
    View,
    clone,
    now_ns,
)
from shoal.protos import control_pb2 as cpb
from shoal.protos import control_pb2_grpc as cgrpc
from shoal.protos import objects_pb2 as pb

Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
R = TypeVar("R")

_STATUS = [
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (VersionConflict, grpc.StatusCode.ABORTED),
    (LeadershipLost, grpc.StatusCode.UNAVAILABLE),
    (StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
]


def _rpc(fn: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """Authorize (admin or manager) and translate our errors to status codes."""

    @functools.wraps(fn)
    async def wrapper(self: Control, request: Any, context: Ctx) -> R:
        await self.auth.require(context, pki.ROLE_ADMIN, pki.ROLE_MANAGER)
        try:
            return await fn(self, request, context)
        except tuple(cls for cls, _ in _STATUS) as err:
            code = next(code for cls, code in _STATUS if isinstance(err, cls))
            await context.abort(code, str(err))
            raise AssertionError("unreachable") from err

    return wrapper


AVAILABILITY = {
    "active": pb.NODE_AVAILABILITY_ACTIVE,
    "pause": pb.NODE_AVAILABILITY_PAUSE,
    "drain": pb.NODE_AVAILABILITY_DRAIN,
}


class Control(cgrpc.ControlServicer):
    def __init__(
        self,
        view: View,
        store: Store,
        authorizer: Authorizer,
        managers: Callable[[], Awaitable[list[cpb.ManagerInfo]]],
        logs: LogGatherer | None = None,
        stats: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self.view = view
        self.store = store
        self.auth = authorizer
        self.managers = managers
        self.logs = logs
        self.stats = stats or dict

    # -------------------------------------------------------------- lookups

    def _cluster(self) -> pb.Cluster:
        cluster = self.view.cluster()
        if cluster is None:
            raise StoreUnavailable("the cluster is not initialised yet")
        return cluster

    def resolve_service(self, ref: str) -> pb.Service:
        service: pb.Service = _resolve(ref, self.view.services, lambda s: s.spec.name, "service")
        return service

    def resolve_node(self, ref: str) -> pb.Node:
        node: pb.Node = _resolve(ref, self.view.nodes, lambda n: n.description.hostname, "node")
        return node

    # -------------------------------------------------------------- cluster

    @_rpc
    async def GetClusterInfo(self, request: cpb.GetClusterInfoRequest, context: Ctx) -> cpb.ClusterInfo:
        cluster = self._cluster()
        return cpb.ClusterInfo(
            cluster_id=cluster.meta.id,
            managers=await self.managers(),
            spec=cluster.spec,
            nodes=len(self.view.nodes),
            nodes_ready=sum(1 for n in self.view.nodes.values() if n.status.state == pb.NODE_STATE_READY),
            services=len(self.view.services),
            tasks=len(self.view.tasks),
            tasks_running=sum(self.view.running_by_service.values()),
            created_at=cluster.meta.created_at,
            stats=self.stats(),
        )

    @_rpc
    async def UpdateCluster(self, request: cpb.UpdateClusterRequest, context: Ctx) -> cpb.ClusterInfo:
        cluster = clone(self._cluster())
        if request.heartbeat_period:
            if request.heartbeat_period < 100_000_000:
                raise ValueError("heartbeat_period: must be at least 100ms")
            cluster.spec.heartbeat_period = request.heartbeat_period
        if request.task_history_limit:
            if request.task_history_limit < 0:
                raise ValueError(f"task_history_limit: must be >= 0, got {request.task_history_limit}")
            cluster.spec.task_history_limit = request.task_history_limit
        if request.cert_expiry:
            if request.cert_expiry < 3600 * validate.SECOND:
                raise ValueError("cert_expiry: must be at least 1h")
            cluster.spec.cert_expiry = request.cert_expiry
        await self.store.update(cluster)
        return await self.GetClusterInfo.__wrapped__(self, cpb.GetClusterInfoRequest(), context)  # type: ignore[attr-defined,no-any-return]

    @_rpc
    async def GetJoinToken(self, request: cpb.GetJoinTokenRequest, context: Ctx) -> cpb.JoinTokenResponse:
        if request.role not in ("worker", ""):
            raise ValueError(f'role "{request.role}": only worker tokens exist (managers share etcd instead)')
        cluster = self._cluster()
        if request.rotate:
            cluster = clone(cluster)
            cluster.join_tokens.worker = pki.new_join_token(cluster.root_ca.cert_digest)
            await self.store.update(cluster)
        addrs = [m.addr for m in await self.managers()]
        return cpb.JoinTokenResponse(token=cluster.join_tokens.worker, manager_addrs=addrs)

    @_rpc
    async def IssueAdminBundle(self, request: cpb.IssueAdminBundleRequest, context: Ctx) -> cpb.AdminBundle:
        cluster = self._cluster()
        ca = CertificateAuthority(cluster.root_ca.cert_pem, cluster.root_ca.key_pem)
        expiry = (cluster.spec.cert_expiry or 90 * 24 * 3600 * validate.SECOND) // validate.SECOND
        cert, key = ca.issue("admin-" + new_id()[:12], pki.ROLE_ADMIN, cluster.meta.id, expiry)
        return cpb.AdminBundle(ca_pem=ca.cert_pem, cert_pem=cert, key_pem=key)

    # -------------------------------------------------------------- nodes

    @_rpc
    async def ListNodes(self, request: cpb.ListNodesRequest, context: Ctx) -> cpb.ListNodesResponse:
        nodes = sorted(self.view.nodes.values(), key=lambda n: n.description.hostname)
        return cpb.ListNodesResponse(nodes=nodes)

    @_rpc
    async def GetNode(self, request: cpb.ObjectRef, context: Ctx) -> pb.Node:
        return self.resolve_node(request.ref)

    @_rpc
    async def UpdateNode(self, request: cpb.UpdateNodeRequest, context: Ctx) -> pb.Node:
        node = clone(self.resolve_node(request.ref))
        if request.availability:
            if request.availability not in AVAILABILITY:
                raise ValueError(
                    f'availability "{request.availability}": must be one of active, pause, drain'
                )
            node.spec.availability = AVAILABILITY[request.availability]
        for key, value in request.label_add.items():
            if not key:
                raise ValueError("label-add: a label needs a key (KEY=VALUE)")
            node.spec.labels[key] = value
        for key in request.label_rm:
            if key not in node.spec.labels:
                raise ValueError(f'label-rm: node has no label "{key}"')
            del node.spec.labels[key]
        return await self.store.update(node)

    @_rpc
    async def RemoveNode(self, request: cpb.RemoveNodeRequest, context: Ctx) -> cpb.RemoveNodeResponse:
        node = self.resolve_node(request.ref)
        if node.status.state == pb.NODE_STATE_READY and not request.force:
            raise ValueError(
                f"node {node.description.hostname} ({node.meta.id}) is not down and can't be removed "
                "(stop its agent first, or use --force)"
            )
        for _ in range(10):
            cluster = clone(self._cluster())
            if node.meta.id not in cluster.removed_nodes:
                cluster.removed_nodes.append(node.meta.id)
            try:
                await self.store.update(cluster)
                break
            except VersionConflict:
                self.view.observe("clusters", await self.store.get("clusters", cluster.meta.id))
        await self.store.delete(node)
        # Its tasks will never report again: they are orphaned (the
        # orchestrators replace them, the node being gone).
        orphaned = []
        for task in self.view.tasks_by_node.get(node.meta.id, {}).values():
            if task.status.state <= pb.TASK_STATE_RUNNING:
                task = clone(task)
                task.status.state = pb.TASK_STATE_ORPHANED
                task.status.message = "node removed from the cluster"
                task.status.timestamp = now_ns()
                orphaned.append(task)
        if orphaned:
            await self.store.batch().extend("update", orphaned).commit()
        return cpb.RemoveNodeResponse(id=node.meta.id)

    # -------------------------------------------------------------- services

    @_rpc
    async def CreateService(self, request: cpb.CreateServiceRequest, context: Ctx) -> pb.Service:
        spec = clone(request.spec)
        if not spec.name:
            spec.name = _generated_name()
        validate.apply_defaults(spec)
        validate.validate_service_spec(spec)
        self._check_unique(spec)
        service = pb.Service(spec=spec, spec_version=1)
        service.meta.id = new_id()
        if request.registry_auth:
            service.registry_auth_sealed = await self._seal_auth(request.registry_auth, service.meta.id)
        return await self.store.create(service)

    async def _seal_auth(self, auth: str, service_id: str) -> bytes:
        """Check the credentials' shape and seal them with the cluster key
        (made on first use for clusters initialised without one)."""
        try:
            decoded = json.loads(base64.b64decode(auth, validate=True))
            if not isinstance(decoded, dict):
                raise ValueError
        except ValueError:
            raise ValueError("registry_auth: expected base64 of a JSON object (username, password)") from None
        for _ in range(10):
            cluster = self._cluster()
            if cluster.seal_key:
                return seal.seal(cluster.seal_key, auth.encode(), service_id.encode())
            cluster = clone(cluster)
            cluster.seal_key = seal.new_key()
            try:
                await self.store.update(cluster)
            except VersionConflict:
                self.view.observe("clusters", await self.store.get("clusters", cluster.meta.id))
        raise VersionConflict("the cluster is being changed by someone else; retry")

    def _check_unique(self, spec: pb.ServiceSpec, service_id: str = "") -> None:
        existing = self.view.service_by_name(spec.name)
        if existing is not None and existing.meta.id != service_id:
            raise AlreadyExists(f'service name "{spec.name}" is already in use by service {existing.meta.id}')
        mine = {(p.protocol, p.published_port) for p in spec.ports if p.published_port}
        if not mine:
            return
        for other in self.view.services.values():
            if other.meta.id == service_id:
                continue
            for p in other.spec.ports:
                if (p.protocol, p.published_port) in mine and (
                    p.publish_mode == "ingress"
                    or any(
                        q.publish_mode == "ingress"
                        for q in spec.ports
                        if q.published_port == p.published_port
                    )
                ):
                    raise AlreadyExists(
                        f"port {p.published_port}/{p.protocol} is already published "
                        f"by service {other.spec.name}"
                    )

    @_rpc
    async def GetService(self, request: cpb.ObjectRef, context: Ctx) -> pb.Service:
        return self.resolve_service(request.ref)

    @_rpc
    async def UpdateService(self, request: cpb.UpdateServiceRequest, context: Ctx) -> pb.Service:
        current = self.resolve_service(request.ref)
        if request.version and request.version != current.meta.version:
            raise VersionConflict(
                f"service {current.spec.name} was changed by someone else since you read it "
                "(version conflict); retry"
            )
        service = clone(current)
        if request.version:
            service.meta.version = request.version
        if request.rollback:
            if not current.HasField("previous_spec"):
                raise ValueError(f"service {current.spec.name} has no previous spec to roll back to")
            spec = clone(current.previous_spec)
        else:
            spec = clone(request.spec)
            if spec.mode != current.spec.mode:
                raise ValueError("mode: cannot change the mode of an existing service")
            validate.apply_defaults(spec)
            validate.validate_service_spec(spec)
        self._check_unique(spec, current.meta.id)
        if request.force:
            spec.task.force_update = current.spec.task.force_update + 1
        if request.registry_auth:
            service.registry_auth_sealed = await self._seal_auth(request.registry_auth, current.meta.id)
        template_changed = spec.task.SerializeToString(
            deterministic=True
        ) != current.spec.task.SerializeToString(deterministic=True) or list(spec.ports) != list(
            current.spec.ports
        )
        if template_changed:
            service.previous_spec.CopyFrom(current.spec)
            service.previous_spec_version = current.spec_version
            # A rollback goes back to the previous version *number* too, so
            # the tasks that still run it are up to date and stay (Swarm).
            if request.rollback and current.previous_spec_version:
                service.spec_version = current.previous_spec_version
            else:
                # Never reuse a number: after a rollback the failed version's
                # number is the previous one, and its tasks may still be about.
                service.spec_version = max(current.spec_version, current.previous_spec_version) + 1
            # The updater rolls the new version out; this is where it starts.
            if request.rollback:
                service.update_status.state = pb.UPDATE_STATE_ROLLBACK_STARTED
                service.update_status.message = "manually requested rollback"
            else:
                service.update_status.state = pb.UPDATE_STATE_UPDATING
                service.update_status.message = "update in progress"
            service.update_status.started_at = now_ns()
            service.update_status.completed_at = 0
        service.spec.CopyFrom(spec)
        return await self.store.update(service)

    @_rpc
    async def ScaleService(self, request: cpb.ScaleServiceRequest, context: Ctx) -> pb.Service:
        for _ in range(10):
            current = self.resolve_service(request.ref)
            if current.spec.mode not in (pb.SERVICE_MODE_REPLICATED, pb.SERVICE_MODE_REPLICATED_JOB):
                raise ValueError(f"scale can only be used with replicated mode (service {current.spec.name})")
            if request.replicas < 0:
                raise ValueError(f"replicas: must be >= 0, got {request.replicas}")
            service = clone(current)
            service.spec.replicas = request.replicas
            try:
                return await self.store.update(service)
            except VersionConflict:
                fresh = await self.store.get("services", current.meta.id)
                self.view.observe("services", fresh)
        raise VersionConflict("service is being changed by someone else; retry")

    @_rpc
    async def RemoveService(self, request: cpb.ObjectRef, context: Ctx) -> cpb.RemoveServiceResponse:
        service = self.resolve_service(request.ref)
        await self.store.delete(service)
        return cpb.RemoveServiceResponse(id=service.meta.id, name=service.spec.name)

    @_rpc
    async def ListServices(self, request: cpb.ListServicesRequest, context: Ctx) -> cpb.ListServicesResponse:
        out = cpb.ListServicesResponse()
        for service in sorted(self.view.services.values(), key=lambda s: s.spec.name):
            tasks = self.view.tasks_by_service.get(service.meta.id, {}).values()
            running = self.view.running_by_service[service.meta.id]
            completed = self.view.completed_by_service[service.meta.id]
            desired = service.spec.replicas
            if service.spec.mode in (pb.SERVICE_MODE_GLOBAL, pb.SERVICE_MODE_GLOBAL_JOB):
                desired = sum(1 for t in tasks if t.desired_state <= pb.TASK_STATE_RUNNING)
            out.services.add(
                service=service, replicas_desired=desired, replicas_running=running, completed=completed
            )
        return out

    @_rpc
    async def ListTasks(self, request: cpb.ListTasksRequest, context: Ctx) -> cpb.ListTasksResponse:
        if request.service:
            service = self.resolve_service(request.service)
            tasks = list(self.view.tasks_by_service.get(service.meta.id, {}).values())
            if request.node:
                node_id = self.resolve_node(request.node).meta.id
                tasks = [t for t in tasks if t.node_id == node_id]
        elif request.node:
            tasks = list(self.view.tasks_by_node.get(self.resolve_node(request.node).meta.id, {}).values())
        else:
            tasks = list(self.view.tasks.values())
        wanted = request.desired_state
        if wanted:
            if wanted not in ("running", "shutdown", "accepted"):
                raise ValueError(f'filter desired-state "{wanted}": must be running, shutdown or accepted')
            if wanted == "running":
                tasks = [t for t in tasks if t.desired_state <= pb.TASK_STATE_RUNNING]
            elif wanted == "shutdown":
                tasks = [t for t in tasks if t.desired_state >= pb.TASK_STATE_SHUTDOWN]
            else:
                tasks = [t for t in tasks if t.desired_state == pb.TASK_STATE_ACCEPTED]
        out = cpb.ListTasksResponse(tasks=tasks)
        for t in tasks:
            node = self.view.nodes.get(t.node_id) if t.node_id else None
            if node is not None:
                out.node_hostnames[t.node_id] = node.description.hostname
        return out

    async def TaskLogs(self, request: cpb.TaskLogsRequest, context: Ctx) -> AsyncIterator[cpb.TaskLogMessage]:
        await self.auth.require(context, pki.ROLE_ADMIN, pki.ROLE_MANAGER)
        if self.logs is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "logs are not served here")
            return
        service_id = ""
        if request.task_ids:  # forwarded by another manager
            tasks = [t for tid in request.task_ids if (t := self.view.tasks.get(tid)) is not None]
        else:
            try:
                service = self.resolve_service(request.ref)
                service_id = service.meta.id
                tasks = list(self.view.tasks_by_service.get(service_id, {}).values())
            except (NotFound, ValueError):
                try:
                    tasks = [_resolve(request.ref, self.view.tasks, lambda t: "", "task")]
                except (NotFound, ValueError):
                    await context.abort(grpc.StatusCode.NOT_FOUND, f"no such service or task: {request.ref}")
                    return
        async for msg in self.logs.gather(tasks, request, service_id):
            yield msg


def _resolve(ref: str, table: dict[str, Any], name_of: Callable[[Any], str], what: str) -> Any:
    if not ref:
        raise ValueError(f"{what}: a name or ID is required")
    if ref in table:
        return table[ref]
    by_name = [obj for obj in table.values() if name_of(obj) == ref]
    if len(by_name) == 1:
        return by_name[0]
    by_prefix = [obj for obj_id, obj in table.items() if obj_id.startswith(ref)]
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_prefix) > 1 or len(by_name) > 1:
        raise ValueError(f'{what} "{ref}" is ambiguous: it matches more than one {what}')
    raise NotFound(f"{what} {ref} not found")


_ADJECTIVES = ["brave", "calm", "eager", "fond", "keen", "lucid", "merry", "quiet", "swift", "wise"]
_NOUNS = ["perch", "trout", "pike", "carp", "bass", "eel", "smelt", "shad", "tench", "roach"]


def _generated_name() -> str:
    """A Docker-like name for a service created without --name."""
    import secrets

    return f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}{secrets.randbelow(100)}"
