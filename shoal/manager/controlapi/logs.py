"""Gathering task output for ``shoal service logs``.

The tasks' output lives on their nodes. For each node, the manager asks the
agent through its session (``Dispatcher.request_logs``) when the session is
held here, or forwards the request to the manager that holds it (managers dial
each other with their own certificates). A node that is down is reported as a
warning rather than waited for. With ``follow``, tasks of the service that
start later are added as soon as they run; one task (``shoal logs -f
TASK``) is waited for until it starts, and followed until it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable

from shoal.manager.controlapi.taskrefs import has_started
from shoal.manager.logsource import LogSource, NodeNotConnected
from shoal.manager.store import View
from shoal.names import slot_name, task_name
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

# Forward a request to the manager at an address: yields its messages.
Forward = Callable[[str, cpb.TaskLogsRequest], AsyncIterator[cpb.TaskLogMessage]]
ManagerAddr = Callable[[str], Awaitable[str | None]]


class LogGatherer:
    def __init__(
        self, view: View, dispatcher: LogSource, forward: Forward, manager_addr: ManagerAddr
    ) -> None:
        self.view = view
        self.dispatcher = dispatcher
        self.forward = forward
        self.manager_addr = manager_addr

    async def gather(
        self, tasks: list[pb.Task], request: cpb.TaskLogsRequest, service_id: str = ""
    ) -> AsyncIterator[cpb.TaskLogMessage]:
        out: asyncio.Queue[cpb.TaskLogMessage | None] = asyncio.Queue(maxsize=10_000)
        pumps: set[asyncio.Task[None]] = set()
        started: set[str] = set()

        def launch(group: list[pb.Task]) -> None:
            by_node: dict[str, list[pb.Task]] = defaultdict(list)
            for t in group:
                if t.meta.id not in started and t.node_id:
                    started.add(t.meta.id)
                    by_node[t.node_id].append(t)
            for node_id, node_tasks in by_node.items():
                pumps.add(asyncio.create_task(self._pump(node_id, node_tasks, request, out)))

        launch([t for t in tasks if t.status.state >= pb.TASK_STATE_STARTING])
        watcher = None
        if request.follow and service_id:
            watcher = asyncio.create_task(self._follow_new(service_id, launch))

        async def closer() -> None:
            # Without follow, the stream ends when every node is done.
            while True:
                await asyncio.sleep(0.05)
                pumps.difference_update({p for p in pumps if p.done()})
                if not pumps and watcher is None:
                    await out.put(None)
                    return

        ender = asyncio.create_task(closer())
        try:
            while True:
                msg = await out.get()
                if msg is None:
                    return
                yield msg
        finally:
            for task in [*pumps, ender, *([watcher] if watcher else [])]:
                task.cancel()
            for task in [*pumps, ender, *([watcher] if watcher else [])]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def gather_task(
        self, task: pb.Task, request: cpb.TaskLogsRequest
    ) -> AsyncIterator[cpb.TaskLogMessage]:
        """The output of one task (``shoal logs TASK``). Following, a task
        not started yet is waited for; the stream ends once the task has
        ended and its node sent everything it wrote."""
        if not has_started(task):
            if request.follow:
                started = await self._wait_start(task.meta.id)
            else:
                started = None
            if started is None:
                current = self.view.tasks.get(task.meta.id) or task
                why = current.status.err or current.status.message or "it never started"
                yield cpb.TaskLogMessage(warning=f"task {slot_name(current)} has no output: {why}")
                return
            task = started
        async for msg in self.gather([task], request):
            yield msg

    async def _wait_start(self, task_id: str) -> pb.Task | None:
        """The task once it has started; None when it ends first or goes."""
        sub = self.view.subscribe(["tasks"])
        try:
            while True:
                task = self.view.tasks.get(task_id)
                if task is None:
                    return None
                if has_started(task):
                    return task
                if task.status.state > pb.TASK_STATE_RUNNING:
                    return None
                await sub.get_batch()
        finally:
            sub.close()

    async def _follow_new(self, service_id: str, launch: Callable[[list[pb.Task]], None]) -> None:
        sub = self.view.subscribe(["tasks"])
        try:
            # Tasks that were not started yet when we began.
            launch(
                [
                    t
                    for t in self.view.tasks_by_service.get(service_id, {}).values()
                    if t.status.state >= pb.TASK_STATE_STARTING
                ]
            )
            while True:
                events = await sub.get_batch()
                fresh = [
                    ev.new
                    for ev in events
                    if ev.new is not None
                    and ev.new.service_id == service_id
                    and ev.new.status.state >= pb.TASK_STATE_STARTING
                ]
                if fresh:
                    launch(fresh)
        finally:
            sub.close()

    async def _pump(
        self,
        node_id: str,
        tasks: list[pb.Task],
        request: cpb.TaskLogsRequest,
        out: asyncio.Queue[cpb.TaskLogMessage | None],
    ) -> None:
        node = self.view.nodes.get(node_id)
        hostname = node.description.hostname if node else node_id
        names = {t.meta.id: task_name(t) for t in tasks}
        ids = list(names)

        def warn(text: str) -> cpb.TaskLogMessage:
            return cpb.TaskLogMessage(node_id=node_id, node=hostname, warning=text)

        if node is None or node.status.state == pb.NODE_STATE_DOWN:
            await out.put(warn(f"node {hostname} is down: logs of {len(ids)} task(s) are unavailable"))
            return
        try:
            if self.dispatcher.has_session(node_id):
                async for chunk in self.dispatcher.request_logs(
                    node_id, ids, request.follow, request.tail, request.since
                ):
                    if chunk.error:
                        await out.put(warn(f"{names.get(chunk.task_id, chunk.task_id)}: {chunk.error}"))
                    for line in chunk.lines:
                        await out.put(
                            cpb.TaskLogMessage(
                                task_id=chunk.task_id,
                                task_name=names.get(chunk.task_id, ""),
                                node_id=node_id,
                                node=hostname,
                                stream=line.stream,
                                data=line.data,
                                timestamp=line.timestamp,
                            )
                        )
                return
            addr = await self.manager_addr(node.status.manager_id)
            if addr is None:
                await out.put(warn(f"node {hostname} is not connected to any manager"))
                return
            forwarded = cpb.TaskLogsRequest(
                follow=request.follow, tail=request.tail, since=request.since, task_ids=ids
            )
            async for msg in self.forward(addr, forwarded):
                await out.put(msg)
        except NodeNotConnected:
            await out.put(warn(f"node {hostname} disconnected while sending logs"))
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning("logs from node %s failed: %s", node_id, err)
            await out.put(warn(f"logs from node {hostname} failed: {err}"))
