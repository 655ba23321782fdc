"""The tasks part of the ControlAPI: list tasks, and their output."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from shoal.manager.controlapi.common import ControlBase, Ctx, resolve, rpc, stream_rpc
from shoal.manager.controlapi.taskrefs import resolve_task
from shoal.manager.store import NotFound
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb
from shoal.rules import limits
from shoal.rules.errors import InvalidRequest


class TaskAPI(ControlBase):
    @rpc
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
                raise InvalidRequest(
                    f'filter desired-state "{wanted[:40]}": must be running, shutdown or accepted'
                )
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
                if node.status.state == pb.NODE_STATE_DOWN:
                    out.node_down[t.node_id] = node.status.message
                out.node_addrs[t.node_id] = node.status.addr
        return out

    @stream_rpc
    async def TaskLogs(self, request: cpb.TaskLogsRequest, context: Ctx) -> AsyncIterator[cpb.TaskLogMessage]:
        if request.tail < -1 or request.since < 0:
            raise InvalidRequest("logs: tail must be >= -1 and since >= 0")
        if len(request.task_ids) > limits.MAX_ITEMS:
            raise InvalidRequest(f"logs: at most {limits.MAX_ITEMS} task IDs")
        if self.logs is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "logs are not served here")
            return
        service_id = ""
        if request.task_only and not request.task_ids:
            async for msg in self.logs.gather_task(resolve_task(self.view, request.ref), request):
                yield msg
            return
        if request.task_ids:  # forwarded by another manager
            tasks = [t for tid in request.task_ids if (t := self.view.tasks.get(tid)) is not None]
        else:
            try:
                service = self.resolve_service(request.ref)
                service_id = service.meta.id
                tasks = list(self.view.tasks_by_service.get(service_id, {}).values())
            except (NotFound, ValueError):
                try:
                    tasks = [resolve(request.ref, self.view.tasks, lambda t: "", "task")]
                except (NotFound, ValueError):
                    await context.abort(grpc.StatusCode.NOT_FOUND, f"no such service or task: {request.ref}")
                    return
        async for msg in self.logs.gather(tasks, request, service_id):
            yield msg
