"""Secrets and configs around any runtime: a Runtime that wraps another.

``WithFiles(runtime, store)`` gives each task that has secrets or configs a
controller that writes them (``FileStore.write``) just before the wrapped
controller's ``prepare`` and removes them as soon as the task has ended:
when ``wait`` returns, after ``shutdown``, on ``remove``, when a start is
refused, and when ``inspect`` finds an ended task. ``watch_reports`` covers
the paths where the worker ends a task without calling the controller (shut
down before it started): a terminal status removes the files too. The
task's context carries the file paths (``TaskContext.files``) and, for the
process runtime, ``$SHOAL_SECRETS_DIR`` and ``$SHOAL_CONFIGS_DIR``.

``known_task_ids`` includes the tasks that still have files, so the worker's
start-up clean-up (discarding what is no longer assigned) removes those of
tasks this node no longer has.

The wrapped controller's other abilities (health, logs, ...) stay visible:
the wrapper copies its public methods onto itself, so the worker's
``isinstance(ctl, HealthReporting)`` checks see what the backend has.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from shoal.agent.runtime.base import (
    ExitStatus,
    Runtime,
    RuntimeState,
    TaskContext,
    TaskController,
    TaskRejected,
)
from shoal.agent.taskfiles.plan import FilePlan, plan_files
from shoal.agent.taskfiles.tmpfs import FileStore
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

# Backends whose tasks are containers (Docker's targets and owners apply).
CONTAINER_RUNTIMES = frozenset({"docker"})

Report = Callable[[str, pb.TaskStatus], None]


class FilesController:
    """One task's controller, with its files written before prepare and
    removed once it ended."""

    def __init__(
        self,
        inner: TaskController,
        store: FileStore,
        task: pb.Task,
        plan: FilePlan | None,
        refused: TaskRejected | None,
    ) -> None:
        self._inner = inner
        self._store = store
        self._task = task
        self._plan = plan
        self._refused = refused
        # The backend's other abilities, visible to isinstance checks.
        for name in dir(inner):
            if name.startswith("_") or hasattr(FilesController, name):
                continue
            value = getattr(inner, name, None)
            if callable(value):
                setattr(self, name, value)

    def _forget(self) -> None:
        self._store.remove(self._task.meta.id)

    async def inspect(self) -> RuntimeState:
        state = await self._inner.inspect()
        ended = state.exit is not None or self._task.status.state > pb.TASK_STATE_RUNNING
        if not state.running and ended:
            self._forget()
        return state

    async def prepare(self) -> None:
        if self._refused is not None:
            raise self._refused
        if self._plan is not None:
            self._store.write(self._plan, dict(self._task.files))
        try:
            await self._inner.prepare()
        except BaseException:
            self._forget()
            raise

    async def start(self) -> int:
        try:
            return await self._inner.start()
        except TaskRejected:
            self._forget()
            raise

    async def wait(self) -> ExitStatus:
        status = await self._inner.wait()
        self._forget()
        return status

    async def shutdown(self, grace_period: float, stop_signal: str) -> None:
        await self._inner.shutdown(grace_period, stop_signal)
        self._forget()

    async def remove(self) -> None:
        await self._inner.remove()
        self._forget()


class WithFiles:
    """A runtime whose tasks get their secrets and configs (see the module
    docstring)."""

    def __init__(self, inner: Runtime, store: FileStore) -> None:
        self._inner = inner
        self._store = store
        self.name = inner.name

    @property
    def inner(self) -> Runtime:
        return self._inner

    def controller(self, ctx: TaskContext) -> TaskController:
        """The wrapped runtime's controller; for a task with files, given
        their paths and wrapped (no I/O: the files are written in prepare)."""
        task = ctx.task
        if not task.spec.container.secrets and not task.spec.container.configs:
            return self._inner.controller(ctx)
        plan: FilePlan | None = None
        refused: TaskRejected | None = None
        try:
            plan = plan_files(task, self._store.root(task.meta.id), self.name in CONTAINER_RUNTIMES)
        except TaskRejected as err:
            refused = err
        if plan is not None:
            ctx = dataclasses.replace(ctx, env={**ctx.env, **plan.env}, files=plan.mounts)
        return FilesController(self._inner.controller(ctx), self._store, task, plan, refused)

    async def known_task_ids(self) -> set[str]:
        return await self._inner.known_task_ids() | self._store.known()

    async def discard(self, task_id: str) -> None:
        try:
            await self._inner.discard(task_id)
        finally:
            self._store.remove(task_id)

    async def close(self) -> None:
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:
        # Anything else the backend offers (tests and tools look at it).
        return getattr(self._inner, name)


def watch_reports(report: Report, store: FileStore) -> Report:
    """`report`, removing a task's files as soon as it reports an end
    (complete, shutdown, failed, rejected)."""

    def reporting(task_id: str, status: pb.TaskStatus) -> None:
        if status.state >= pb.TASK_STATE_COMPLETE:
            try:
                store.remove(task_id)
            except OSError as err:
                log.warning("removing the secrets and configs of task %s: %s", task_id, err)
        report(task_id, status)

    return reporting
