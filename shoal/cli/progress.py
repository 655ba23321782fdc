"""Following a service until it converges, as ``docker service create`` does.

Polls every 200 ms. Prints ``overall progress: N out of M tasks`` and one line
per slot (up to 20), redrawn in place on a terminal and as plain lines, only
when they change, otherwise. Once every slot runs, it watches for the
service's monitor window (``verify: Waiting N seconds ...``); a failure inside
the window starts the wait again. Exit status: 0 converged; 1 when nothing can
converge (a task that fits no node keeps the same scheduling error for a few
seconds, or ended tasks are not going to be restarted), with the reason.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from shoal.cli.client import Client
from shoal.cli.render import state_word
from shoal.defaults import SERVICE
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb

POLL = 0.2
MAX_BARS = 20
# A scheduling error unchanged this long means waiting longer will not help.
STUCK_AFTER = 3.0
BAR_WIDTH = 50
RUNNING = pb.TASK_STATE_RUNNING


class Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._drawn = 0
        self._last: list[str] = []

    def show(self, lines: list[str]) -> None:
        if self.tty:
            if self._drawn:
                self.out.write(f"\x1b[{self._drawn}A")
            for line in lines:
                self.out.write("\x1b[2K" + line + "\n")
            self._drawn = len(lines)
        else:
            for i, line in enumerate(lines):
                if i >= len(self._last) or self._last[i] != line:
                    self.out.write(line + "\n")
        self._last = lines
        self.out.flush()

    def error(self, line: str) -> None:
        """Errors go to stderr (CLI.md), whatever happens to progress."""
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()
        self._drawn = 0
        self._last = []


def _bar(state: int) -> str:
    filled = min(BAR_WIDTH, int(BAR_WIDTH * (state / RUNNING)))
    return "[" + "=" * max(0, filled - 1) + (">" if filled else "") + " " * (BAR_WIDTH - filled) + "]"


def follow(
    client: Client,
    service_id: str,
    out: TextIO = sys.stdout,
    clock: Callable[[], float] = time.monotonic,
    rollback: bool = False,
) -> int:
    """Follow until converged (0), or until the update pauses or rolls back,
    or nothing can converge (1). ``rollback``: this operation is a rollback,
    so rolling back is success, not failure."""
    printer = Printer(out)
    verify_since: float | None = None
    stuck_since: float | None = None
    stuck_reason = ""
    failed_ids: set[str] = set()
    # An update status that was already settled when we started (an earlier
    # update paused or rolled back) says nothing about this operation.
    first_status: tuple[int, int] | None = None
    try:
        while True:
            svc: pb.Service = client.call("GetService", cpb.ObjectRef(ref=service_id))
            tasks = list(client.call("ListTasks", cpb.ListTasksRequest(service=service_id)).tasks)
            lines, converged, reason = snapshot(svc, tasks)
            status = svc.update_status
            if first_status is None:
                first_status = (status.state, status.started_at)
            ours = status.started_at != first_status[1] or first_status[0] in (
                pb.UPDATE_STATE_UPDATING,
                pb.UPDATE_STATE_ROLLBACK_STARTED,
            )
            if not ours:
                status = pb.UpdateStatus()
            if status.state == pb.UPDATE_STATE_PAUSED:
                printer.show(lines)
                printer.error(f"Error: service update paused: {status.message}")
                return 1
            if status.state == pb.UPDATE_STATE_ROLLBACK_PAUSED:
                printer.show(lines)
                printer.error(f"Error: service rollback paused: {status.message}")
                return 1
            if status.state in (pb.UPDATE_STATE_ROLLBACK_STARTED, pb.UPDATE_STATE_ROLLBACK_COMPLETED):
                lines[0] = lines[0].replace("overall progress: ", "overall progress: rolling back update: ")
                if not rollback:
                    lines.append(f"rollback: {status.message}")
            if not rollback and status.state == pb.UPDATE_STATE_ROLLBACK_COMPLETED and converged:
                printer.show(lines)
                printer.error(f"Error: {status.message}")
                return 1
            if status.state in (pb.UPDATE_STATE_UPDATING, pb.UPDATE_STATE_ROLLBACK_STARTED):
                converged = False
            monitor = (
                svc.spec.update.monitor if svc.spec.HasField("update") else SERVICE.update_monitor
            ) / 1e9
            if svc.spec.mode in _JOBS:
                monitor = 0.0  # jobs skip the verify step, as in Docker
            failures = {
                t.meta.id for t in tasks if t.spec_version == svc.spec_version and t.status.state in _FAILED
            }
            now = clock()
            if status.state in (pb.UPDATE_STATE_UPDATING, pb.UPDATE_STATE_ROLLBACK_STARTED):
                # Mid-update a new task may wait for the old one to free its
                # port or resources: that is progress, not being stuck.
                reason = ""
            if reason and reason == stuck_reason:
                if stuck_since is not None and now - stuck_since >= STUCK_AFTER:
                    printer.show(lines)
                    printer.error(f"Error: {reason}")
                    return 1
            else:
                stuck_reason, stuck_since = reason, (now if reason else None)
            new_failures = failures - failed_ids
            failed_ids |= failures
            if converged:
                if verify_since is None or new_failures:
                    if verify_since is not None:
                        printer.say("verify: Detected task failure")
                    verify_since = now
                left = monitor - (now - verify_since)
                if left <= 0:
                    printer.show(lines)
                    if svc.spec.mode not in _JOBS:
                        printer.say(f"verify: Service {svc.spec.name} converged")
                    return 0
                lines = [
                    *lines,
                    f"verify: Waiting {max(1, round(left))} seconds to verify that tasks are stable...",
                ]
            else:
                if verify_since is not None and new_failures:
                    lines = [*lines, "verify: Detected task failure"]
                verify_since = None
            printer.show(lines)
            time.sleep(POLL)
    except KeyboardInterrupt:
        printer.say("Operation continuing in background.")
        printer.say(f"Use `shoal service ps {service_id}` to check progress.")
        return 130


_FAILED = {pb.TASK_STATE_FAILED, pb.TASK_STATE_REJECTED}
_JOBS = (pb.SERVICE_MODE_REPLICATED_JOB, pb.SERVICE_MODE_GLOBAL_JOB)


def snapshot(svc: pb.Service, tasks: list[pb.Task]) -> tuple[list[str], bool, str]:
    if svc.spec.mode in _JOBS:
        return _job_snapshot(svc, tasks)
    if svc.spec.mode == pb.SERVICE_MODE_GLOBAL:
        return _global_snapshot(svc, tasks)
    return _snapshot(svc, tasks)


def _pending_reason(tasks: list[pb.Task]) -> str:
    return "; ".join(
        sorted({t.status.err for t in tasks if t.status.state <= pb.TASK_STATE_PENDING and t.status.err})
    )


def _global_snapshot(svc: pb.Service, tasks: list[pb.Task]) -> tuple[list[str], bool, str]:
    current = [t for t in tasks if t.desired_state <= RUNNING]
    if not current:
        return ["overall progress: waiting for new tasks"], False, ""
    running = [t for t in current if t.status.state == RUNNING and t.spec_version == svc.spec_version]
    lines = [f"overall progress: {len(running)} out of {len(current)} tasks"]
    if len(current) <= MAX_BARS:
        for t in sorted(current, key=lambda t: t.node_id):
            lines.append(
                f"{t.node_id[:12]}: {state_word(t.status.state):<9} {_bar(min(t.status.state, RUNNING))}"
            )
    lingering = any(t.desired_state > RUNNING and t.status.state <= RUNNING and t.node_id for t in tasks)
    return lines, len(running) == len(current) and not lingering, _pending_reason(current)


def _job_snapshot(svc: pb.Service, tasks: list[pb.Task]) -> tuple[list[str], bool, str]:
    complete = {t.slot if t.slot else t.node_id for t in tasks if t.status.state == pb.TASK_STATE_COMPLETE}
    active = [t for t in tasks if t.desired_state <= RUNNING and t.status.state <= RUNNING]
    if svc.spec.mode == pb.SERVICE_MODE_REPLICATED_JOB:
        total = svc.spec.replicas
        limit = svc.spec.max_concurrent or total
    else:
        total = len({t.node_id for t in tasks if t.desired_state <= RUNNING})
        limit = total
    lines = [
        f"job progress: {len(complete)} out of {total} complete",
        f"active tasks: {len(active)} out of {min(limit, max(0, total - len(complete)))} tasks",
    ]
    ended = [
        t
        for t in tasks
        if t.desired_state <= RUNNING
        and t.status.state > RUNNING
        and t.status.state != pb.TASK_STATE_COMPLETE
    ]
    reason = _pending_reason(active)
    if ended and not active and len(complete) < total:
        t = ended[0]
        reason = f"task {t.service_name}.{t.slot or t.node_id} failed ({t.status.err}) and is not retried"
    return lines, total > 0 and len(complete) >= total, reason


def _snapshot(svc: pb.Service, tasks: list[pb.Task]) -> tuple[list[str], bool, str]:
    """(lines, converged, why it is not converging: a scheduling error, or
    ended tasks that nothing will restart). The caller gives up when the same
    reason holds for STUCK_AFTER seconds."""
    want = svc.spec.replicas
    current: dict[int, pb.Task] = {}
    for t in tasks:
        if t.desired_state > RUNNING:
            continue
        prev = current.get(t.slot)
        if prev is None or t.meta.created_at > prev.meta.created_at:
            current[t.slot] = t
    running = sum(
        1
        for t in current.values()
        if t.status.state == RUNNING
        and t.spec_version == svc.spec_version
        and t.status.health in (pb.HEALTH_NONE, pb.HEALTH_HEALTHY)
    )
    lingering = any(t.desired_state > RUNNING and t.status.state <= RUNNING and t.node_id for t in tasks)
    lines = [f"overall progress: {min(running, want)} out of {want} tasks"]
    reasons = set()
    ended = []
    for i, slot in enumerate(sorted(current)[: MAX_BARS if want <= MAX_BARS else 0]):
        t = current[slot]
        if t.status.err and t.status.state <= pb.TASK_STATE_PENDING:
            lines.append(f"{i + 1}/{want}: {t.status.err[:75]}")
        else:
            lines.append(
                f"{i + 1}/{want}: {state_word(t.status.state):<9} {_bar(min(t.status.state, RUNNING))}"
            )
    for t in current.values():
        if t.status.state <= pb.TASK_STATE_PENDING and t.status.err:
            reasons.add(t.status.err)
        if t.status.state > RUNNING and t.desired_state == RUNNING:
            ended.append(t)
    converged = running == want and len(current) == want and not lingering
    reason = "; ".join(sorted(reasons)) if reasons and running + len(ended) < want else ""
    if ended and not reason:
        # Still desired running after it ended: once that lasts, the restart
        # policy is not going to replace it (none, or attempts exhausted).
        t = min(ended, key=lambda t: t.slot)
        reason = (
            f"task {t.service_name}.{t.slot} ended ({state_word(t.status.state)}"
            + (f": {t.status.err}" if t.status.err else "")
            + ") and its restart policy does not replace it"
        )
    return lines, converged, reason
