"""The worker: makes the local runtime match the tasks assigned to this node.

One ``TaskRunner`` per assigned task drives that task forward through the
runtime's controller and reports each state it reaches; the state machine
lives in ``TaskRunner._drive`` and only ever moves forward:

    assigned -> accepted -> preparing -> ready -> starting -> running
             -> complete | failed (exit code N) | shutdown | rejected

- A task desired READY (a delayed restart) is accepted and held there until
  its delay is over and the manager sets it RUNNING.
- A desired state of SHUTDOWN or REMOVE stops the task (stop signal, then kill
  after the grace period) and reports shutdown.
- A task that leaves the assignment set is stopped and its files removed.

After an agent restart, ``inspect`` tells whether the task still runs; a
running task is adopted (no second start), one that ended meanwhile is
reported with its exit code. Anything the runtime holds that is not assigned
any more is discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from shoal import defaults
from shoal.agent.runtime.base import (
    ExitStatus,
    HealthReporting,
    Runtime,
    TaskContext,
    TaskController,
    TaskRejected,
)
from shoal.names import task_name
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

S = pb.TaskState
RUNNING = pb.TASK_STATE_RUNNING
SECOND = 1_000_000_000
# How often the worker looks at a task's health (the backend runs the checks).
HEALTH_POLL = 0.2

Report = Callable[[str, pb.TaskStatus], None]


def task_env(task: pb.Task, node_id: str) -> dict[str, str]:
    env = {
        "SHOAL_TASK_ID": task.meta.id,
        "SHOAL_TASK_SLOT": str(task.slot),
        "SHOAL_TASK_NAME": task_name(task),
        "SHOAL_SERVICE_ID": task.service_id,
        "SHOAL_SERVICE_NAME": task.service_name,
        "SHOAL_NODE_ID": node_id,
        "SHOAL_TASK_IMAGE": task.spec.container.image,
    }
    for item in task.spec.container.env:
        key, _, value = item.partition("=")
        env[key] = value
    return env


class TaskRunner:
    def __init__(self, task: pb.Task, controller: TaskController, report: Report) -> None:
        self.task = task
        self.controller = controller
        self._report = report
        self.observed = task.status.state
        self.changed = asyncio.Event()
        self.unassigned = False
        self.runner: asyncio.Task[None] | None = None
        self.last_status: pb.TaskStatus | None = None
        self.health: int = pb.HEALTH_NONE
        self.pid = 0

    def update(self, task: pb.Task) -> None:
        self.task = task
        if self.last_status is not None and task.status.state < self.observed:
            # The manager missed our last report (a session broke): resend.
            self._report(task.meta.id, self.last_status)
        self.changed.set()

    def unassign(self) -> None:
        self.unassigned = True
        self.changed.set()

    def report(
        self, state: int, message: str = "", err: str = "", exit_code: int = 0, pid: int = 0, health: int = -1
    ) -> None:
        if state < self.observed:
            return
        self.observed = state  # type: ignore[assignment]
        if health >= 0:
            self.health = health
        if pid:
            self.pid = pid
        status = pb.TaskStatus(
            state=state,  # type: ignore[arg-type]
            message=message,
            err=err,
            exit_code=exit_code,
            pid=self.pid,
            health=self.health,  # type: ignore[arg-type]
            timestamp=time.time_ns(),
        )
        self.last_status = status
        self._report(self.task.meta.id, status)

    def _stopping(self) -> bool:
        return self.unassigned or self.task.desired_state > RUNNING

    async def _wait_change(self) -> None:
        await self.changed.wait()
        self.changed.clear()

    def _report_exit(self, exit: ExitStatus) -> None:
        if exit.exit_code == 0:
            self.report(pb.TASK_STATE_COMPLETE, "finished", exit_code=0)
        else:
            err = f"exit code {exit.exit_code}" + (f" ({exit.message})" if exit.message else "")
            self.report(pb.TASK_STATE_FAILED, "failed", err=err, exit_code=exit.exit_code)

    async def run(self) -> None:
        try:
            await self._drive()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a backend bug must not take the agent down
            log.exception("task %s failed in the runtime", self.task.meta.id)
            self.report(pb.TASK_STATE_FAILED, "runtime error", err=str(err) or type(err).__name__)
            await self._finish()

    def _has_health_check(self) -> bool:
        test = list(self.task.spec.container.healthcheck.test)
        return bool(test) and test[0] != "NONE" and isinstance(self.controller, HealthReporting)

    def _report_started(self, pid: int) -> None:
        """Started: RUNNING at once, or STARTING until the health check passes."""
        if self._has_health_check():
            self.report(
                pb.TASK_STATE_STARTING,
                "starting (waiting for the health check)",
                pid=pid,
                health=pb.HEALTH_STARTING,
            )
        else:
            self.report(RUNNING, "started", pid=pid)

    async def _drive(self) -> None:
        ctl = self.controller
        state = await ctl.inspect()
        if state.running:
            if self.observed < RUNNING:
                self._report_started(state.pid)
        elif state.exists and state.exit is not None and pb.TASK_STATE_STARTING <= self.observed <= RUNNING:
            self._report_exit(state.exit)
        elif not state.exists and self.observed == RUNNING:
            self.report(
                pb.TASK_STATE_FAILED, "task is gone", err="the task's process or container disappeared"
            )

        while self.observed < pb.TASK_STATE_STARTING or (
            self.observed == pb.TASK_STATE_STARTING and not state.running and self.pid == 0
        ):
            if self._stopping():
                self.report(pb.TASK_STATE_SHUTDOWN, "shut down before it started")
                break
            if self.observed < pb.TASK_STATE_ACCEPTED:
                self.report(pb.TASK_STATE_ACCEPTED, "accepted")
            elif self.task.desired_state != RUNNING:
                # A delayed restart: prepare only once its delay is over, so a
                # task that cannot start is not rejected (and replaced) early.
                await self._wait_change()
            elif self.observed < pb.TASK_STATE_READY:
                self.report(pb.TASK_STATE_PREPARING, "preparing")
                try:
                    await ctl.prepare()
                except TaskRejected as err:
                    self.report(pb.TASK_STATE_REJECTED, "rejected", err=str(err))
                    break
                self.report(pb.TASK_STATE_READY, "ready")
            else:
                self.report(pb.TASK_STATE_STARTING, "starting")
                try:
                    await ctl.start()
                except TaskRejected as err:
                    self.report(pb.TASK_STATE_REJECTED, "rejected", err=str(err))
                    break
                # Even a process that already exited counts as started: wait()
                # then reports how it ended.
                started = await ctl.inspect()
                self._report_started(started.pid or 1)
                state = started

        if pb.TASK_STATE_STARTING <= self.observed <= RUNNING:
            await self._supervise_running()
        await self._finish()

    async def _supervise_running(self) -> None:
        ctl = self.controller
        waiter = asyncio.ensure_future(ctl.wait())
        try:
            while True:
                if self._stopping():
                    await ctl.shutdown(self._grace(), self.task.spec.container.stop_signal)
                    self.report(pb.TASK_STATE_SHUTDOWN, "shutdown")
                    return
                change = asyncio.ensure_future(self._wait_change())
                timeout = HEALTH_POLL if self._has_health_check() else None
                done, _ = await asyncio.wait(
                    {waiter, change}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if waiter in done:
                    change.cancel()
                    self._report_exit(waiter.result())
                    return
                if change not in done:
                    change.cancel()
                if self._has_health_check() and await self._check_health():
                    return
        finally:
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await waiter

    def _grace(self) -> float:
        return defaults.stop_grace_seconds(self.task.spec.container)

    async def _check_health(self) -> bool:
        """Report health changes; stop an unhealthy task. True when it ended."""
        ctl = self.controller
        assert isinstance(ctl, HealthReporting)
        checked = await ctl.health()
        health = int(checked.state)
        if health == pb.HEALTH_UNHEALTHY:
            why = checked.message or "health check failed"
            await ctl.shutdown(self._grace(), self.task.spec.container.stop_signal)
            self.report(
                pb.TASK_STATE_FAILED,
                "unhealthy",
                err=f"unhealthy: {why}",
                exit_code=0,
                health=pb.HEALTH_UNHEALTHY,
            )
            return True
        if health == pb.HEALTH_HEALTHY and self.observed < RUNNING:
            self.report(RUNNING, "started (healthy)", health=health)
        elif health != self.health:
            self.report(self.observed, self.last_status.message if self.last_status else "", health=health)
        return False

    async def _finish(self) -> None:
        """An ended task keeps its files (logs) until it is unassigned."""
        while not self.unassigned:
            await self._wait_change()
        await self.controller.remove()


class Worker:
    def __init__(self, runtime: Runtime, node_id: str, report: Report) -> None:
        self.runtime = runtime
        self.node_id = node_id
        self.report = report
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
            ctx = TaskContext(task=task, node_id=self.node_id, env=task_env(task, self.node_id))
            runner = TaskRunner(task, self.runtime.controller(ctx), self.report)
            self.runners[task.meta.id] = runner
            runner.runner = asyncio.create_task(self._run(runner), name=f"task-{task.meta.id}")
        for task_id in removed:
            r = self.runners.get(task_id)
            if r is not None:
                r.unassign()
        if full:
            known = await self.runtime.known_task_ids()
            for task_id in known - set(self.runners) - self._discarding:
                log.info("discarding task %s: no longer assigned to this node", task_id)
                self._discarding.add(task_id)
                self._discard_tasks.add(asyncio.create_task(self._discard(task_id)))

    async def _run(self, runner: TaskRunner) -> None:
        try:
            await runner.run()
        finally:
            if self.runners.get(runner.task.meta.id) is runner:
                del self.runners[runner.task.meta.id]

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
