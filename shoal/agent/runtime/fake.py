"""A scripted backend that runs nothing, for tests and benchmarks (as Nomad's
mock driver).

A ``FakeRuntime`` keeps each task as a small record in memory (``FakeTask``)
whose life follows a ``TaskScript``: how long it runs and how it exits, whether
prepare rejects it or start fails, how its health goes, whether it ignores
the stop signal. It implements the same protocols as the real backends
(``Runtime``, ``TaskController``, ``HealthReporting``; not ``LogReading``: a
fake task writes no output), so the agent's worker drives it exactly as it
drives processes or containers, and one machine can play a thousand nodes.

Which script a task follows is decided when its controller is made
(``FakeRuntime.script_for``): ``scripts[task ID]``, else
``scripts[image reference]`` (so a cluster test scripts a service by the
image it names), else ``default``, which runs until stopped and exits 0
when told to end.

Data flow: the worker's calls move the record (prepare creates it, start
stamps its start time, shutdown sends it signals through the shared stop
protocol of ``common``, remove deletes it); time moves it too, but lazily:
a task whose ``run_for`` has passed is marked exited the next time anything
looks at it, and wait() sleeps until that moment. Tests move it from outside:
``exit`` ends a task now, ``adopt`` plants a task an earlier agent started,
``vanish`` loses every task as a host that lost power would. ``starts``
counts every start, so a test can check that no task ever ran twice, and
``calls`` lists the controller calls (the last 10,000), so it can check
what each step of the worker asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from shoal.agent.runtime.base import (
    ExitStatus,
    Health,
    HealthReport,
    RuntimeState,
    TaskContext,
    TaskFailed,
    TaskRejected,
)
from shoal.agent.runtime.common import DISCARD_GRACE, TaskLog, signal_plan, stop_task, task_log
from shoal.signals import signal_name

log = logging.getLogger(__name__)

# A look at a fake task costs nothing, but a stop that waits out a grace
# period (ignore_stop) should not spin: look this often at most.
_STOP_POLL = 0.05
# How many controller calls `calls` keeps: plenty for a test, and bounded
# for a benchmark whose thousand nodes run for hours.
_CALLS_KEPT = 10_000
# Fake pids start here, clear of the small numbers a reader takes for init.
_FIRST_PID = 1000


@dataclass(frozen=True)
class HealthStep:
    """From `after` seconds after start on, the task's health is `state`
    (until the next step), with `message` as its report's message."""

    after: float
    state: Health
    message: str = ""


@dataclass(frozen=True)
class TaskScript:
    """How a fake task behaves. The defaults: it starts, runs until stopped,
    and exits 128+N on signal N."""

    # Seconds from start until the task exits by itself; None: it runs until
    # stopped. 0: it exits at once (a start that "succeeds" and then ends).
    run_for: float | None = None
    # How it exits after run_for (or when a test calls exit() without a code).
    exit_code: int = 0
    exit_message: str = ""
    # prepare() raises TaskRejected with this message (start() too, as the
    # real backends check the same at start when prepare was skipped).
    reject: str = ""
    # start() raises start_error_type with this message: TaskRejected (it can
    # never start here, as with a port taken) or TaskFailed (it broke).
    start_error: str = ""
    start_error_type: type[TaskRejected] | type[TaskFailed] = TaskRejected
    # The health reports, by time since start. None given: NONE, unless the
    # spec has a health check; then STARTING until started, HEALTHY after.
    health: tuple[HealthStep, ...] = ()
    # The task ignores the stop signal: shutdown waits out the grace period
    # and then kills it (exit 137), as with a task that traps SIGTERM.
    ignore_stop: bool = False


@dataclass
class FakeTask:
    """One fake task's record: what a process's directory or a container is
    to the real backends."""

    task_id: str
    script: TaskScript
    started_at: float | None = None  # time.monotonic()
    exited_at: float | None = None
    exit: ExitStatus | None = None
    pid: int = 0
    # Every signal a stop sent it, in order (SIGKILL included).
    signals: list[int] = field(default_factory=list)
    # It vanished (FakeRuntime.vanish): waiters fail, lookups find nothing.
    gone: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def running(self) -> bool:
        """Whether it runs now (once its run_for is over, it does not)."""
        self.settle()
        return self.started_at is not None and self.exit is None and not self.gone

    def settle(self) -> None:
        """Mark the task exited if its run_for has passed."""
        left = self.seconds_left()
        if self.exit is None and left is not None and left <= 0:
            self.finish(ExitStatus(self.script.exit_code, self.script.exit_message))

    def finish(self, status: ExitStatus) -> None:
        if self.exit is None and self.started_at is not None:
            self.exit = status
            self.exited_at = time.monotonic()
            self.ended.set()

    def seconds_left(self) -> float | None:
        """How long until run_for ends it; None when only a stop will."""
        if self.started_at is None or self.script.run_for is None:
            return None
        return max(0.0, self.started_at + self.script.run_for - time.monotonic())

    def health(self, spec_has_check: bool) -> HealthReport:
        """The report for the task's age; without health steps, what a check
        that always passes would report (NONE when the spec has no check)."""
        if not self.script.health:
            if not spec_has_check:
                return HealthReport(Health.NONE)
            return HealthReport(Health.HEALTHY if self.started_at is not None else Health.STARTING)
        if self.started_at is None:
            return HealthReport(Health.STARTING)
        # As the real backends: the verdict stops moving when the task ends.
        self.settle()
        age = (self.exited_at or time.monotonic()) - self.started_at
        report = HealthReport(Health.STARTING)
        for step in sorted(self.script.health, key=lambda s: s.after):
            if step.after <= age:
                report = HealthReport(step.state, step.message)
        return report


class _FakeStop:
    """A fake task as the stop protocol sees it."""

    def __init__(self, task: FakeTask, sig: int) -> None:
        self._task = task
        self._signal = sig
        self.stop_signal_name = signal_name(sig)

    async def running(self) -> bool:
        return self._task.running

    async def send_stop_signal(self) -> None:
        self._task.signals.append(self._signal)
        if not self._task.script.ignore_stop:
            self._task.finish(ExitStatus(128 + self._signal))

    async def kill(self) -> None:
        self._task.signals.append(int(signal.SIGKILL))
        self._task.finish(ExitStatus(128 + signal.SIGKILL))

    def stuck_error(self, kill_timeout: float) -> str:
        return f"fake task {self._task.task_id} still runs {kill_timeout:.0f}s after SIGKILL"


async def _stop(task: FakeTask, grace_period: float, sig: int, tlog: TaskLog) -> None:
    if task.running:
        await stop_task(
            _FakeStop(task, sig), grace_period, tlog, poll_max=_STOP_POLL, kill_at_once=sig == signal.SIGKILL
        )


def _has_health_check(ctx: TaskContext) -> bool:
    test = list(ctx.task.spec.container.healthcheck.test)
    return bool(test) and test[0] != "NONE"


class FakeTaskController:
    """One fake task, driven as the worker drives any task."""

    def __init__(self, runtime: FakeRuntime, ctx: TaskContext, script: TaskScript) -> None:
        self.runtime = runtime
        self.ctx = ctx
        self.task_id = ctx.task.meta.id
        self.script = script
        self.log = task_log(log, self.task_id)

    def _called(self, method: str) -> None:
        self.runtime.calls.append((self.task_id, method))

    def _record(self) -> FakeTask | None:
        return self.runtime.tasks.get(self.task_id)

    def _create(self) -> FakeTask:
        record = self._record()
        if record is None:
            record = FakeTask(self.task_id, self.script)
            self.runtime.tasks[self.task_id] = record
        return record

    async def inspect(self) -> RuntimeState:
        """The record's state: absent, prepared, running, or how it exited."""
        self._called("inspect")
        record = self._record()
        if record is None:
            return RuntimeState(exists=False, running=False)
        if record.running:
            return RuntimeState(exists=True, running=True, pid=record.pid)
        if record.started_at is None:
            return RuntimeState(exists=True, running=False)
        return RuntimeState(exists=True, running=False, pid=record.pid, exit=record.exit)

    async def prepare(self) -> None:
        """Create the record; raise TaskRejected if the script rejects it."""
        self._called("prepare")
        if self.script.reject:
            raise TaskRejected(self.script.reject)
        self._create()

    async def start(self) -> int:
        """Start the task unless it was started before (adopted, or started
        by an earlier call) and return its fake pid; raise what the script
        says start raises."""
        self._called("start")
        record = self._record()
        if record is not None and record.started_at is not None:
            return record.pid
        if self.script.reject:
            raise TaskRejected(self.script.reject)
        if self.script.start_error:
            raise self.script.start_error_type(self.script.start_error)
        record = self._create()
        record.started_at = time.monotonic()
        record.pid = self.runtime.next_pid()
        self.runtime.starts[self.task_id] += 1
        self.log.debug("started (fake pid %d)", record.pid)
        return record.pid

    async def wait(self) -> ExitStatus:
        """Return once the task has exited: its run_for is over, a stop ended
        it, or a test called exit()."""
        self._called("wait")
        while True:
            record = self._record()
            if record is None or record.started_at is None:
                raise TaskFailed("task was never started")
            record.settle()
            if record.exit is not None:
                return record.exit
            if record.gone:
                raise TaskFailed("the fake task vanished")
            # A timeout means run_for is over: settle() then ends it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(record.ended.wait(), record.seconds_left())
            if record.gone:
                raise TaskFailed("the fake task vanished")

    async def shutdown(self, grace_period: float, stop_signal: str) -> None:
        """Send stop_signal (SIGTERM when empty or unknown) through the stop
        protocol; a script with ignore_stop is killed after grace_period."""
        self._called("shutdown")
        plan = signal_plan(stop_signal)
        if plan.unknown:
            self.log.warning("unknown stop signal %r; using SIGTERM", stop_signal)
        record = self._record()
        if record is not None:
            await _stop(record, grace_period, plan.signal, self.log)

    async def remove(self) -> None:
        """Kill the task if it runs and forget it. Idempotent."""
        self._called("remove")
        record = self._record()
        if record is not None:
            await _stop(record, 0.0, int(signal.SIGKILL), self.log)
            self.runtime.tasks.pop(self.task_id, None)

    async def health(self) -> HealthReport:
        """The script's health step for the task's age (see TaskScript.health)."""
        self._called("health")
        record = self._record()
        if record is None:
            return HealthReport(Health.NONE)
        return record.health(_has_health_check(self.ctx))


class FakeRuntime:
    """A backend whose tasks are records in memory, each following a script
    (see the module docstring for how a task's script is chosen)."""

    name = "fake"

    def __init__(
        self, scripts: Mapping[str, TaskScript] | None = None, default: TaskScript | None = None
    ) -> None:
        # By task ID or by image reference; tests may change it as they go.
        self.scripts: dict[str, TaskScript] = dict(scripts or {})
        self.default = default or TaskScript()
        self.tasks: dict[str, FakeTask] = {}
        self.starts: Counter[str] = Counter()
        # (task ID, method) of the controller calls, oldest first: what each
        # step of the worker asked of the runtime.
        self.calls: deque[tuple[str, str]] = deque(maxlen=_CALLS_KEPT)
        self._pids = itertools.count(_FIRST_PID)

    def script_for(self, ctx: TaskContext) -> TaskScript:
        """The task's script: by task ID, else by image, else the default."""
        by_id = self.scripts.get(ctx.task.meta.id)
        if by_id is not None:
            return by_id
        return self.scripts.get(ctx.task.spec.container.image, self.default)

    def controller(self, ctx: TaskContext) -> FakeTaskController:
        """Make the controller of one task (no I/O, as the real ones)."""
        return FakeTaskController(self, ctx, self.script_for(ctx))

    async def known_task_ids(self) -> set[str]:
        """Every task with a record, running or not."""
        return set(self.tasks)

    async def discard(self, task_id: str) -> None:
        """Stop (SIGTERM, SIGKILL after 2 s) and forget a task known only by
        its ID."""
        record = self.tasks.get(task_id)
        if record is not None:
            await _stop(record, DISCARD_GRACE, int(signal.SIGTERM), task_log(log, task_id))
            self.tasks.pop(task_id, None)

    async def close(self) -> None:
        """Nothing to release; the tasks "run" on, for a later agent to adopt."""

    # -- for tests and benchmarks: moving tasks from outside

    def next_pid(self) -> int:
        return next(self._pids)

    def adopt(self, task_id: str, script: TaskScript | None = None, *, started_ago: float = 0.0) -> FakeTask:
        """Plant a task that an earlier agent started `started_ago` seconds
        ago and that still runs (unless its run_for is over by then): a
        worker that is assigned it adopts it instead of starting it. It does
        not count in `starts`."""
        record = FakeTask(task_id, script or self.scripts.get(task_id, self.default))
        record.started_at = time.monotonic() - started_ago
        record.pid = self.next_pid()
        self.tasks[task_id] = record
        return record

    def exit(self, task_id: str, code: int, message: str = "") -> None:
        """End a running task now, as if its process exited with `code`."""
        record = self.tasks.get(task_id)
        if record is not None and record.running:
            record.finish(ExitStatus(code, message))

    def running(self) -> list[str]:
        """The IDs of the tasks that run now."""
        return [task_id for task_id, record in self.tasks.items() if record.running]

    def vanish(self) -> None:
        """Lose every task at once, as a host that lost power does: waiters
        fail and the runtime knows nothing any more."""
        for record in self.tasks.values():
            record.gone = True
            record.ended.set()
        self.tasks.clear()
