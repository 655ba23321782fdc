"""The nodes part of the ControlAPI: list, inspect, update, remove."""

from __future__ import annotations

from shoal.manager.controlapi.common import ControlBase, Ctx, rpc
from shoal.manager.store import clone, now_ns, update_with_retry
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb
from shoal.rules import limits
from shoal.rules.errors import InvalidRequest

AVAILABILITY = {
    "active": pb.NODE_AVAILABILITY_ACTIVE,
    "pause": pb.NODE_AVAILABILITY_PAUSE,
    "drain": pb.NODE_AVAILABILITY_DRAIN,
}


class NodeAPI(ControlBase):
    @rpc
    async def ListNodes(self, request: cpb.ListNodesRequest, context: Ctx) -> cpb.ListNodesResponse:
        nodes = sorted(self.view.nodes.values(), key=lambda n: n.description.hostname)
        return cpb.ListNodesResponse(nodes=nodes)

    @rpc
    async def GetNode(self, request: cpb.ObjectRef, context: Ctx) -> pb.Node:
        return self.resolve_node(request.ref)

    @rpc
    async def UpdateNode(self, request: cpb.UpdateNodeRequest, context: Ctx) -> pb.Node:
        node = clone(self.resolve_node(request.ref))
        if request.availability:
            if request.availability not in AVAILABILITY:
                raise InvalidRequest(
                    f'availability "{request.availability}": must be one of active, pause, drain'
                )
            node.spec.availability = AVAILABILITY[request.availability]
        for key in request.label_add:
            if not key:
                raise InvalidRequest("label-add: a label needs a key (KEY=VALUE)")
        limits.check_labels("label-add", request.label_add)
        node.spec.labels.update(request.label_add)
        for key in request.label_rm:
            if key not in node.spec.labels:
                raise InvalidRequest(f'label-rm: node has no label "{key[:80]}"')
            del node.spec.labels[key]
        limits.check_labels("node labels", node.spec.labels)
        return await self.store.update(node)

    @rpc
    async def RemoveNode(self, request: cpb.RemoveNodeRequest, context: Ctx) -> cpb.RemoveNodeResponse:
        node = self.resolve_node(request.ref)
        if node.status.state == pb.NODE_STATE_READY and not request.force:
            raise InvalidRequest(
                f"node {node.description.hostname} ({node.meta.id}) is not down and can't be removed "
                "(stop its agent first, or use --force)"
            )

        def revoke(cluster: pb.Cluster) -> None:
            if node.meta.id not in cluster.removed_nodes:
                cluster.removed_nodes.append(node.meta.id)

        # Revoked first: from this write on, its certificate is refused on
        # every call by every manager (auth.Authorizer).
        await update_with_retry(self.view, self.store, pb.Cluster, self.cluster().meta.id, revoke)
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
