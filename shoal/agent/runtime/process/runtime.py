"""The process backend as the agent sees it: one ``ProcessRuntime`` per agent.

It maps task IDs to directories under ``<state_dir>/tasks``, makes a
``ProcessTaskController`` per task, and lists and discards tasks by their
directories alone, so that a restarted agent finds what an earlier one left.
"""

from __future__ import annotations

import re
import signal
import weakref
from pathlib import Path

from shoal.agent.runtime.base import TaskContext
from shoal.agent.runtime.common import DISCARD_GRACE
from shoal.agent.runtime.process.controller import ProcessTaskController
from shoal.agent.runtime.process.taskdir import TaskDir

# Task IDs become directory names: no separators, no "." or "..".
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class ProcessRuntime:
    """The ``process`` backend: tasks are host process groups whose state
    lives under ``state_dir/tasks``."""

    name = "process"

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.tasks_dir = state_dir / "tasks"
        # Only so that close() can stop their health checks.
        self._controllers: weakref.WeakSet[ProcessTaskController] = weakref.WeakSet()

    def controller(self, ctx: TaskContext) -> ProcessTaskController:
        """Make the controller of one task (no I/O)."""
        ctl = ProcessTaskController(ctx, self._task_dir(ctx.task.meta.id))
        self._controllers.add(ctl)
        return ctl

    async def known_task_ids(self) -> set[str]:
        """The IDs of all task directories, running or not."""
        try:
            return {p.name for p in self.tasks_dir.iterdir() if p.is_dir()}
        except FileNotFoundError:
            return set()

    async def discard(self, task_id: str) -> None:
        """Stop (SIGTERM, then SIGKILL after 2 s) and delete a task known
        only by its ID."""
        task = TaskDir(self._task_dir(task_id))
        await task.stop(DISCARD_GRACE, signal.SIGTERM)
        await task.delete()

    async def close(self) -> None:
        """Stop the health checks; the tasks keep running and need no agent
        (a later agent adopts them and checks them again)."""
        for ctl in list(self._controllers):
            await ctl.stop_health_checks()

    def _task_dir(self, task_id: str) -> Path:
        if not _TASK_ID.fullmatch(task_id):
            # IDs come from the manager; one that is not a plain name is a bug.
            raise ValueError(f"task id {task_id!r} is not usable as a directory name")
        return self.tasks_dir / task_id
