"""The process backend's TaskController: one task's life as a process group.

Each method is a few calls into the package's other rooms: ``launch`` plans
and spawns, ``taskdir`` reads the task's files back (state, exit status) and
stops and deletes, ``handle`` watches the wrapper exit (a pidfd), ``health``
runs the checks and ``logs`` reads the output. The controller holds no state
of its own beyond its health monitor: the task's directory is the truth, so
any controller of the same task, in this agent or a restarted one, sees the
same task.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from shoal.agent.runtime.base import (
    ExecSpec,
    ExitStatus,
    Health,
    HealthReport,
    LogLine,
    RuntimeState,
    TaskContext,
    TaskFailed,
)
from shoal.agent.runtime.common import signal_plan
from shoal.agent.runtime.process.execs import ProcessExec, start_exec
from shoal.agent.runtime.process.handle import reap, running, wait_exit
from shoal.agent.runtime.process.health import HealthConfig, HealthMonitor
from shoal.agent.runtime.process.launch import launch, plan_launch, process_env
from shoal.agent.runtime.process.logs import read_logs
from shoal.agent.runtime.process.taskdir import TaskDir


class ProcessTaskController:
    """Runs one task as a host process group (see the package docstring)."""

    def __init__(self, ctx: TaskContext, task_dir: Path) -> None:
        self.ctx = ctx
        self._dir = TaskDir(task_dir)
        config = HealthConfig.from_spec(ctx.task.spec.container.healthcheck)
        self._health = HealthMonitor(config, task_dir.name, self._dir.log) if config else None

    @property
    def task_dir(self) -> Path:
        return self._dir.path

    async def inspect(self) -> RuntimeState:
        """Report the task's state from its files and /proc."""
        state = self._dir.state()
        if state.running:
            self._watch_health()  # an adopted task: start checking it
        return state

    async def health(self) -> HealthReport:
        """The task's health by its last checks: NONE without a health check,
        STARTING until a check has passed (or failed `retries` times); the
        message is the last failed check, e.g. "health check exit code 1:
        <its output>"."""
        if self._health is None:
            return HealthReport(Health.NONE)
        self._watch_health()
        return self._health.report()

    async def stop_health_checks(self) -> None:
        """Stop the health check loop and any check it runs (the task runs on)."""
        if self._health is not None:
            await self._health.stop()

    async def prepare(self) -> None:
        """Create the task's directories and check that the command and the
        workdir exist; raise TaskRejected if not."""
        plan_launch(self.ctx, self.task_dir)

    async def start(self) -> int:
        """Spawn the wrapper and record its handle; return the task's pid.
        Does not spawn again if the task was started before (by this agent
        or an earlier one)."""
        if self._dir.handle() is None:
            await launch(plan_launch(self.ctx, self.task_dir), self._dir)
        self._watch_health()
        return self._dir.state().pid

    async def wait(self) -> ExitStatus:
        """Return once the wrapper has exited, with the task's exit code, or
        137 and a message if the wrapper was killed before it could record one."""
        handle = self._dir.handle()
        if handle is None:
            raise TaskFailed("task was never started")
        await wait_exit(handle)
        await self.stop_health_checks()
        reap(handle)
        status = self._dir.exit_status()
        self._dir.log.debug("exited with code %d", status.exit_code)
        return status

    async def shutdown(self, grace_period: float, stop_signal: str) -> None:
        """Send stop_signal (default SIGTERM) to the task's process group and
        SIGKILL it after grace_period; return once none of it runs."""
        plan = signal_plan(stop_signal)
        if plan.unknown:
            self._dir.log.warning("unknown stop signal %r; using SIGTERM", stop_signal)
        # No checks while the task goes down: they would only fail.
        await self.stop_health_checks()
        await self._dir.stop(grace_period, plan.signal)

    async def remove(self) -> None:
        """Kill whatever of the task still runs and delete its directory."""
        await self.stop_health_checks()
        await self._dir.stop(0.0, signal.SIGKILL)
        await self._dir.delete()

    def logs(self, follow: bool, tail: int | None) -> AsyncIterator[LogLine]:
        """The task's stdout.log and stderr.log (see ``logs.read_logs`` for
        the order and the times). Logs are not rotated."""
        return read_logs(self.task_dir, follow, tail)

    async def exec(self, spec: ExecSpec) -> ProcessExec:
        """Run a further command beside the task (see ``execs``)."""
        return await start_exec(self.ctx, self.task_dir, spec)

    def _watch_health(self) -> None:
        """Start the health check loop if the task has a check, runs, and has
        not been checked by this controller yet."""
        if self._health is None or self._health.active:
            return
        handle = self._dir.handle()
        if handle is None or not running(handle):
            return
        workdir = self.ctx.task.spec.container.workdir
        self._health.watch(
            handle,
            process_env(self.ctx.env, os.environ),
            Path(workdir) if workdir else self.task_dir / "work",
        )
