"""The worker: makes the local runtime match the tasks assigned to this node.

One ``TaskRunner`` per assigned task decides *when* that task takes its next
step and reports each status the step leads to; *what* a step does (which
controller call, which state next) is ``progress.advance``, whose docstring
holds the state table. A runner:

1. takes the adoption step first (``progress.adopt``: is the task already
   running, after an agent restart?);
2. steps an unstarted task on until it has started or ended; a step that
   goes nowhere (a delayed restart, held in accepted) waits for the next
   assignment change;
3. watches a started task: it steps when the controller's wait() returns
   (the task's exit), when the assignment changes (a stop), and every
   ``HEALTH_POLL`` seconds with the task's health when it has a check;
4. once the task has ended, keeps its files (logs) until it is unassigned,
   then removes them.

A task that leaves the assignment set is stopped and removed. On a full
assignment set, anything the runtime holds that is not assigned any more is
discarded. A status the manager missed (it shows the task at an earlier
state) is sent again.

Before a task's first step the worker gives it its endpoints (host ports for
its ingress ports, ``agent/endpoints.py``): the backend maps them (docker) or
tells the task (process: ``SHOAL_PORT_<TARGET>``), and every status reported
carries them, so the manager knows where the routing mesh reaches the task.
The ports are released once the task is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from shoal.agent import progress
from shoal.agent.endpoints import EndpointAllocator, NoFreePort, env_for
from shoal.agent.runtime.base import (
    ExitStatus,
    HealthReporting,
    Runtime,
    RuntimeState,
    TaskContext,
    TaskController,
    TaskRejected,
)
from shoal.names import task_name
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

# How often the worker looks at a task's health (the backend runs the checks).
HEALTH_POLL = 0.2

Report = Callable[[str, pb.TaskStatus], None]


def task_env(
    task: pb.Task,
    node_id: str,
    endpoints: tuple[pb.TaskEndpoint, ...] = (),
    addr: str = "",
    node_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """SHOAL_* (the task's own, where its ports are, the node's: SHOAL_DNS),
    then the service's env: later wins."""
    env = {
        "SHOAL_TASK_ID": task.meta.id,
        "SHOAL_TASK_SLOT": str(task.slot),
        "SHOAL_TASK_NAME": task_name(task),
        "SHOAL_SERVICE_ID": task.service_id,
        "SHOAL_SERVICE_NAME": task.service_name,
        "SHOAL_NODE_ID": node_id,
        "SHOAL_TASK_IMAGE": task.spec.container.image,
    }
    env.update(env_for(endpoints, addr))
    env.update(node_env or {})
    for item in task.spec.container.env:
        key, _, value = item.partition("=")
        env[key] = value
    return env


class TaskRunner:
    """Takes one task's steps (see the module docstring) and reports them."""

    def __init__(
        self,
        task: pb.Task,
        controller: TaskController,
        report: Report,
        endpoints: tuple[pb.TaskEndpoint, ...] = (),
    ) -> None:
        self.task = task
        self.controller = controller
        self._report = report
        self.endpoints = list(endpoints)
        # What this agent knows of the task: the manager's state, but not its
        # pid or health (only a start or a check seen here sets those, so a
        # task that never started here is started, as it always was).
        self.status = self._stamp(pb.TaskStatus(state=task.status.state, message=task.status.message))
        # Whether the assignment changed since the runner last looked, and the
        # future a waiting runner sleeps on (one plain future per wait: a
        # node runs hundreds of tasks, each waiting for most of its life).
        self._changed = False
        self._change_waiter: asyncio.Future[None] | None = None
        self.unassigned = False
        self.runner: asyncio.Task[None] | None = None
        self.last_status: pb.TaskStatus | None = None

    def update(self, task: pb.Task) -> None:
        self.task = task
        if self.last_status is not None and task.status.state < self.status.state:
            # The manager missed our last report (a session broke): resend.
            self._report(task.meta.id, self.last_status)
        self._signal_change()

    def unassign(self) -> None:
        self.unassigned = True
        self._signal_change()

    def _signal_change(self) -> None:
        self._changed = True
        waiter = self._change_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _next_change(self) -> asyncio.Future[None]:
        """A future done at the next change, at once if one came since the
        runner last looked (``_saw_change``)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._changed:
            fut.set_result(None)
        else:
            self._change_waiter = fut
        return fut

    def _saw_change(self) -> None:
        self._changed = False
        self._change_waiter = None

    def _stamp(self, status: pb.TaskStatus) -> pb.TaskStatus:
        """The status with the task's endpoints (every report carries them)."""
        if list(status.endpoints) == self.endpoints:
            return status
        stamped = pb.TaskStatus()
        stamped.CopyFrom(status)
        del stamped.endpoints[:]
        stamped.endpoints.extend(self.endpoints)
        return stamped

    def _take(self, status: pb.TaskStatus) -> None:
        """Record and report a step's status (if it changed anything)."""
        status = self._stamp(status)
        if status == self.status or status.state < self.status.state:
            return
        self.status = status
        self.last_status = status
        self._report(self.task.meta.id, status)

    async def _step(self, seen: progress.Seen = None) -> None:
        self._take(
            await progress.advance(self.task, self.status, self.controller, seen, unassigned=self.unassigned)
        )

    def _stopping(self) -> bool:
        return progress.stopping(self.task, self.unassigned)

    async def _wait_change(self) -> None:
        await self._next_change()
        self._saw_change()

    async def run(self) -> None:
        try:
            await self._drive()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a backend bug must not take the agent down
            log.exception("task %s failed in the runtime", self.task.meta.id)
            self._take(progress.failed_in_runtime(self.status, err))
            await self._finish()

    async def _drive(self) -> None:
        self._take(await progress.adopt(self.task, self.status, self.controller))
        while not progress.started(self.status) and not progress.ended(self.status):
            before = self.status
            await self._step()
            if self.status is before:
                await self._wait_change()  # held (a delayed restart) until the manager says run
        if not progress.ended(self.status):
            await self._watch_started()
        await self._finish()

    async def _watch_started(self) -> None:
        """Step a started task whenever something may have moved it: its
        exit, an assignment change, the health poll."""
        waiter = asyncio.ensure_future(self.controller.wait())
        try:
            while not progress.ended(self.status):
                seen = None if self._stopping() else await self._watch(waiter)
                await self._step(seen)
        finally:
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await waiter

    async def _watch(self, waiter: asyncio.Task[ExitStatus]) -> progress.Seen:
        """Wait for the task's exit, an assignment change or (with a health
        check) the next health poll; what was seen of the task."""
        ctl = self.controller
        checked = progress.has_health_check(self.task, ctl)
        change = self._next_change()
        both: set[asyncio.Future[Any]] = {waiter, change}
        done, _ = await asyncio.wait(
            both, timeout=HEALTH_POLL if checked else None, return_when=asyncio.FIRST_COMPLETED
        )
        if change in done:
            self._saw_change()
        else:
            change.cancel()
            self._change_waiter = None
        if waiter in done:
            return waiter.result()
        if checked and isinstance(ctl, HealthReporting) and not self._stopping():
            return await ctl.health()
        return None

    async def _finish(self) -> None:
        """An ended task keeps its files (logs) until it is unassigned."""
        while not self.unassigned:
            await self._wait_change()
        await self.controller.remove()


class _NoEndpoints:
    """The controller of a task that got no host port: it is rejected at
    prepare (and never started), saying why; the rest is the real one's."""

    def __init__(self, controller: TaskController, problem: str) -> None:
        self._controller = controller
        self._problem = problem

    async def inspect(self) -> RuntimeState:
        return await self._controller.inspect()

    async def prepare(self) -> None:
        raise TaskRejected(self._problem)

    async def start(self) -> int:
        raise TaskRejected(self._problem)

    async def wait(self) -> ExitStatus:
        return await self._controller.wait()

    async def shutdown(self, grace_period: float, stop_signal: str) -> None:
        await self._controller.shutdown(grace_period, stop_signal)

    async def remove(self) -> None:
        await self._controller.remove()


class Worker:
    def __init__(
        self,
        runtime: Runtime,
        node_id: str,
        report: Report,
        endpoints: EndpointAllocator | None = None,
        addr: str = "",
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`endpoints`: where tasks' host ports come from (default: any
        port of the range, nothing saved: for simulated nodes); `addr`: the
        node's address, where tasks listen; `env`: what every task of the
        node is told (SHOAL_DNS)."""
        self.env = dict(env or {})
        self.runtime = runtime
        self.node_id = node_id
        self.report = report
        self.endpoints = endpoints if endpoints is not None else EndpointAllocator(None, None)
        self.addr = addr
        self.runners: dict[str, TaskRunner] = {}
        self._discarding: set[str] = set()
        self._discard_tasks: set[asyncio.Task[None]] = set()

    async def assign(self, tasks: list[pb.Task], removed: list[str], full: bool) -> None:
        if full:
            wanted = {t.meta.id for t in tasks}
            removed = [tid for tid in self.runners if tid not in wanted]
        for task in tasks:
            runner = self.runners.get(task.meta.id)
            if runner is not None:
                runner.update(task)
                continue
            runner = self._runner(task)
            self.runners[task.meta.id] = runner
            runner.runner = asyncio.create_task(self._run(runner), name=f"task-{task.meta.id}")
        for task_id in removed:
            r = self.runners.get(task_id)
            if r is not None:
                r.unassign()
        if full:
            self.endpoints.keep_only(wanted)
            known = await self.runtime.known_task_ids()
            for task_id in known - set(self.runners) - self._discarding:
                log.info("discarding task %s: no longer assigned to this node", task_id)
                self._discarding.add(task_id)
                self._discard_tasks.add(asyncio.create_task(self._discard(task_id)))

    def _runner(self, task: pb.Task) -> TaskRunner:
        problem = ""
        try:
            endpoints = tuple(self.endpoints.allocate(task))
        except NoFreePort as err:
            endpoints, problem = (), str(err)
        env = task_env(task, self.node_id, endpoints, self.addr, self.env)
        ctx = TaskContext(task=task, node_id=self.node_id, env=env, endpoints=endpoints)
        controller: TaskController = self.runtime.controller(ctx)
        if problem:
            controller = _NoEndpoints(controller, problem)
        return TaskRunner(task, controller, self.report, endpoints)

    async def _run(self, runner: TaskRunner) -> None:
        task_id = runner.task.meta.id
        try:
            await runner.run()
            # Removed (not cancelled by an agent that stops): its ports are free.
            self.endpoints.release(task_id)
        finally:
            if self.runners.get(task_id) is runner:
                del self.runners[task_id]

    async def _discard(self, task_id: str) -> None:
        try:
            await self.runtime.discard(task_id)
        except Exception:
            log.exception("discarding task %s failed", task_id)
        finally:
            self._discarding.discard(task_id)
            self._discard_tasks = {t for t in self._discard_tasks if not t.done()}

    async def discard_all(self) -> int:
        """Stop and remove every task this node holds (it was removed from
        the cluster: they are replaced elsewhere); how many there were."""
        task_ids = await self.runtime.known_task_ids()
        for task_id in task_ids:
            await self._discard(task_id)
        return len(task_ids)

    async def close(self) -> None:
        """Stop driving tasks (they keep running: adopted on restart)."""
        for runner in list(self.runners.values()):
            if runner.runner is not None:
                runner.runner.cancel()
        for runner in list(self.runners.values()):
            if runner.runner is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await runner.runner
        await self.runtime.close()
