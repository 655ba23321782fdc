"""How one task moves on its node: a step function (SwarmKit's ``exec.Do``).

``advance(task, status, controller, seen)`` takes the task as the manager
last sent it (desired state, spec), the status the agent last reported, and
what the worker saw of the started task since the last step (its exit, or a
health report); it makes **at most one controller call** and returns the
status the task has now. The worker (``agent/worker.py``) decides *when* to
take a step and reports what it returns; this module decides *what* each
step does. States are ordered (``TaskState`` values grow along a task's
life), and no step returns an earlier state than the one it was given.

"Stopping" means the manager wants the task gone: desired state above
RUNNING (SHUTDOWN, REMOVE), or the task left the node's assignments.
"Started" means start() has returned: RUNNING, or STARTING with a pid.

| observed             | when                     | call       | next                             |
| -------------------- | ------------------------ | ---------- | -------------------------------- |
| NEW .. ASSIGNED      | stopping                 | -          | SHUTDOWN "shut down before it    |
|                      |                          |            | started"                         |
| NEW .. ASSIGNED      |                          | -          | ACCEPTED "accepted"              |
| ACCEPTED .. STARTING | stopping                 | -          | SHUTDOWN "shut down before it    |
| not started          |                          |            | started"                         |
| ACCEPTED .. STARTING | desired READY (a delayed | -          | unchanged: held until the        |
| not started          | restart, a stop-first    |            | desired state is RUNNING         |
|                      | update's new task)       |            |                                  |
| ACCEPTED             |                          | -          | PREPARING "preparing"            |
| PREPARING            |                          | prepare()  | READY "ready"; REJECTED          |
|                      |                          |            | (TaskRejected)                   |
| READY                |                          | -          | STARTING "starting"              |
| STARTING not started |                          | start()    | RUNNING "started" with the pid;  |
|                      |                          |            | with a health check: STARTING,   |
|                      |                          |            | health starting, with the pid;   |
|                      |                          |            | REJECTED (TaskRejected)          |
| started              | seen: its exit           | -          | COMPLETE "finished" (exit 0);    |
|                      |                          |            | FAILED "exit code N"             |
| started              | stopping                 | shutdown() | SHUTDOWN "shutdown"              |
| started              | seen: health unhealthy   | shutdown() | FAILED "unhealthy: <message>"    |
| STARTING started     | seen: health healthy     | -          | RUNNING "started (healthy)"      |
| started              | seen: another health     | -          | the same state, the new health   |
| started              | nothing seen             | -          | unchanged                        |
| COMPLETE and later   |                          | -          | unchanged (the task has ended)   |

A controller call that raises ``TaskFailed`` (the task broke in the
runtime, as a start whose process vanished) ends the step in FAILED
"runtime error" with the error's words; anything else a backend raises is a
bug, left to the worker.

``adopt(task, status, controller)`` is the step an agent takes first for
each task, after a restart too: one ``inspect()``. A task that runs is
adopted (reported started if it was not yet: never a second start); one
that ended meanwhile reports its exit; one the runtime no longer has at all
while reported RUNNING is FAILED "task is gone".
"""

from __future__ import annotations

import logging
import time

from shoal import defaults
from shoal.agent.runtime.base import (
    ExitStatus,
    Health,
    HealthReport,
    HealthReporting,
    TaskController,
    TaskFailed,
    TaskRejected,
)
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

ACCEPTED = pb.TASK_STATE_ACCEPTED
PREPARING = pb.TASK_STATE_PREPARING
READY = pb.TASK_STATE_READY
STARTING = pb.TASK_STATE_STARTING
RUNNING = pb.TASK_STATE_RUNNING

# What the worker saw of a started task since its last step: how it exited
# (wait() returned) or how its health check went (the health poll).
Seen = ExitStatus | HealthReport | None


def stopping(task: pb.Task, unassigned: bool) -> bool:
    """Whether the manager wants the task gone (it is then never started)."""
    return unassigned or task.desired_state > RUNNING


def started(status: pb.TaskStatus) -> bool:
    """Whether start() has returned for the task (see the module docstring)."""
    return status.state == RUNNING or (status.state == STARTING and status.pid != 0)


def ended(status: pb.TaskStatus) -> bool:
    """Whether the task has reached a final state (nothing moves it on)."""
    return status.state > RUNNING


def has_health_check(task: pb.Task, controller: TaskController) -> bool:
    """Whether the task is held STARTING until a health check passes: its
    spec has a check and its backend reports health."""
    container = task.spec.container
    if not container.HasField("healthcheck"):
        return False  # most tasks: no look at the controller's Protocol (a slow isinstance)
    test = container.healthcheck.test
    return bool(test) and test[0] != "NONE" and isinstance(controller, HealthReporting)


def _next(
    prev: pb.TaskStatus,
    state: int,
    message: str,
    *,
    err: str = "",
    exit_code: int = 0,
    pid: int = 0,
    health: int | None = None,
) -> pb.TaskStatus:
    """A new status; the pid and the health carry over from `prev` unless
    given (a status keeps saying which process it was and how it fared)."""
    return pb.TaskStatus(
        state=state,  # type: ignore[arg-type]
        message=message,
        err=err,
        exit_code=exit_code,
        pid=pid or prev.pid,
        health=prev.health if health is None else health,  # type: ignore[arg-type]
        timestamp=time.time_ns(),
    )


def _started(task: pb.Task, status: pb.TaskStatus, controller: TaskController, pid: int) -> pb.TaskStatus:
    """Started: RUNNING at once, or STARTING until the health check passes.
    Even a task that already exited counts as started (pid 1 when none is
    known): the worker's wait() then tells how it ended."""
    pid = pid or 1
    if has_health_check(task, controller):
        return _next(
            status, STARTING, "starting (waiting for the health check)", pid=pid, health=pb.HEALTH_STARTING
        )
    return _next(status, RUNNING, "started", pid=pid)


def _exited(status: pb.TaskStatus, exit: ExitStatus) -> pb.TaskStatus:
    if exit.exit_code == 0:
        return _next(status, pb.TASK_STATE_COMPLETE, "finished")
    err = f"exit code {exit.exit_code}" + (f" ({exit.message})" if exit.message else "")
    return _next(status, pb.TASK_STATE_FAILED, "failed", err=err, exit_code=exit.exit_code)


def _stop_args(task: pb.Task) -> tuple[float, str]:
    return defaults.stop_grace_seconds(task.spec.container), task.spec.container.stop_signal


async def adopt(task: pb.Task, status: pb.TaskStatus, controller: TaskController) -> pb.TaskStatus:
    """The first step for a task: what the runtime already holds of it
    (one inspect()). See the module docstring."""
    state = await controller.inspect()
    if state.running:
        if status.state < RUNNING:
            return _started(task, status, controller, state.pid)
        return status
    if state.exists and state.exit is not None and STARTING <= status.state <= RUNNING:
        return _exited(status, state.exit)
    if not state.exists and status.state == RUNNING:
        return _next(
            status, pb.TASK_STATE_FAILED, "task is gone", err="the task's process or container disappeared"
        )
    return status


async def advance(
    task: pb.Task,
    status: pb.TaskStatus,
    controller: TaskController,
    seen: Seen = None,
    *,
    unassigned: bool = False,
) -> pb.TaskStatus:
    """One step of the task's life: at most one controller call; the status
    it leads to, never an earlier state (the table in the module docstring).
    `unassigned`: the task left this node's assignments (stop it)."""
    try:
        if ended(status):
            return status
        if started(status):
            return await _advance_started(task, status, controller, seen, unassigned)
        return await _advance_unstarted(task, status, controller, unassigned)
    except TaskFailed as err:
        log.warning("task %s failed in the runtime: %s", task.meta.id, err)
        return failed_in_runtime(status, err)


def failed_in_runtime(status: pb.TaskStatus, err: Exception) -> pb.TaskStatus:
    """FAILED "runtime error" with the error's words: the task broke in the
    runtime (TaskFailed), or the backend has a bug (anything else)."""
    return _next(status, pb.TASK_STATE_FAILED, "runtime error", err=str(err) or type(err).__name__)


async def _advance_unstarted(
    task: pb.Task, status: pb.TaskStatus, controller: TaskController, unassigned: bool
) -> pb.TaskStatus:
    if stopping(task, unassigned):
        return _next(status, pb.TASK_STATE_SHUTDOWN, "shut down before it started")
    if status.state < ACCEPTED:
        return _next(status, ACCEPTED, "accepted")
    if task.desired_state != RUNNING:
        # A delayed restart (or a stop-first update's new task): prepare only
        # once the manager says run, so a task that cannot start is not
        # rejected (and replaced) before its time.
        return status
    if status.state < PREPARING:
        return _next(status, PREPARING, "preparing")
    if status.state < READY:
        try:
            await controller.prepare()
        except TaskRejected as err:
            return _next(status, pb.TASK_STATE_REJECTED, "rejected", err=str(err))
        return _next(status, READY, "ready")
    if status.state < STARTING:
        return _next(status, STARTING, "starting")
    try:
        pid = await controller.start()
    except TaskRejected as err:
        return _next(status, pb.TASK_STATE_REJECTED, "rejected", err=str(err))
    return _started(task, status, controller, pid)


async def _advance_started(
    task: pb.Task, status: pb.TaskStatus, controller: TaskController, seen: Seen, unassigned: bool
) -> pb.TaskStatus:
    if isinstance(seen, ExitStatus):
        return _exited(status, seen)
    if stopping(task, unassigned):
        await controller.shutdown(*_stop_args(task))
        return _next(status, pb.TASK_STATE_SHUTDOWN, "shutdown")
    if not isinstance(seen, HealthReport):
        return status
    if seen.state == Health.UNHEALTHY:
        why = seen.message or "health check failed"
        await controller.shutdown(*_stop_args(task))
        return _next(
            status, pb.TASK_STATE_FAILED, "unhealthy", err=f"unhealthy: {why}", health=pb.HEALTH_UNHEALTHY
        )
    if seen.state == Health.HEALTHY and status.state < RUNNING:
        return _next(status, RUNNING, "started (healthy)", health=pb.HEALTH_HEALTHY)
    if int(seen.state) != status.health:
        return _next(status, status.state, status.message, health=int(seen.state))
    return status
