"""A simulated runtime for benchmarks: tasks "run" at once, in memory.

It implements the agent's Runtime seam (shoal.agent.runtime.base) with no
processes at all, so one machine can play a thousand nodes with the real
agent code (session, worker, status batching). A test tells a task to end
with ``exit(task_id, code)``; ``shutdown`` ends it as a stop would. Each
runtime counts how often every task was started, so a test can check that
no task ever ran twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from shoal.agent.runtime.base import ExitStatus, RuntimeState, TaskContext


@dataclass
class _SimTask:
    exists: bool = False
    running: bool = False
    exit: ExitStatus | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class SimController:
    def __init__(self, runtime: SimRuntime, task_id: str) -> None:
        self.runtime = runtime
        self.task_id = task_id

    @property
    def _t(self) -> _SimTask:
        return self.runtime.tasks.setdefault(self.task_id, _SimTask())

    async def inspect(self) -> RuntimeState:
        t = self.runtime.tasks.get(self.task_id)
        if t is None:
            return RuntimeState(exists=False, running=False)
        return RuntimeState(exists=t.exists, running=t.running, pid=1 if t.running else 0, exit=t.exit)

    async def prepare(self) -> None:
        self._t.exists = True

    async def start(self) -> None:
        t = self._t
        if not t.running and t.exit is None:
            t.running = True
            self.runtime.starts[self.task_id] += 1

    async def wait(self) -> ExitStatus:
        t = self._t
        await t.ended.wait()
        assert t.exit is not None
        return t.exit

    async def shutdown(self, grace_period: float, stop_signal: str) -> None:
        self.runtime.exit(self.task_id, 143)

    async def remove(self) -> None:
        self.runtime.tasks.pop(self.task_id, None)


class SimRuntime:
    name = "sim"

    def __init__(self) -> None:
        self.tasks: dict[str, _SimTask] = {}
        self.starts: Counter[str] = Counter()

    def controller(self, ctx: TaskContext) -> SimController:
        return SimController(self, ctx.task.meta.id)

    def exit(self, task_id: str, code: int) -> None:
        """End a running task as if its process exited with code."""
        t = self.tasks.get(task_id)
        if t is None or not t.running:
            return
        t.running = False
        t.exit = ExitStatus(code)
        t.ended.set()

    def running(self) -> list[str]:
        return [tid for tid, t in self.tasks.items() if t.running]

    async def known_task_ids(self) -> set[str]:
        return set(self.tasks)

    async def discard(self, task_id: str) -> None:
        self.exit(task_id, 137)
        self.tasks.pop(task_id, None)

    async def close(self) -> None:
        return None
