"""Following a service until it converges, as ``docker service create`` does.

Polls every 200 ms and draws ``overall progress: N out of M tasks`` and one
line per slot (up to 20; global services: per node). A slot's line shows its
task's state and a bar, or its task's error when it has one (``no suitable
node (...)``, ``rejected: pulling image ... failed: ...``), or, while a
replacement gets going, why the last attempt ended. Once every slot runs, it
waits the service's monitor period (``verify: Waiting N seconds ...``); a
failure inside it starts the wait again.

On a terminal the lines are redrawn in place, each cut to the terminal's
width with ``…``, and whatever an earlier, longer drawing left is cleared.
Piped, a line is printed (whole) only when it changed, so the verify
countdown is printed once.

Exit status: 0 converged; 1 when waiting cannot help, with an ``Error:`` line
and, since the service exists and the cluster keeps at it, a line saying how
to look at it or remove it (so nobody runs the same create again):

- a task of the current spec fits no node for STUCK_AFTER seconds;
- REJECT_LIMIT tasks of the current spec were rejected for the same reason;
- a task ended and its restart policy does not replace it;
- the update paused or was rolled back (no hint: the service is as it was);
- the service was removed meanwhile.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO, TypeVar

from shoal.cli.client import Client, CLIError
from shoal.cli.render import ellipsis, state_word
from shoal.defaults import SERVICE
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb

POLL = 0.2
MAX_BARS = 20
# A scheduling error unchanged this long means waiting longer will not help.
STUCK_AFTER = 3.0
# Tasks of one spec rejected for one reason: the next one will be too (an
# image that cannot be pulled, a command that does not exist).
REJECT_LIMIT = 3
BAR_WIDTH = 50
RUNNING = pb.TASK_STATE_RUNNING
_ENDED_BADLY = {pb.TASK_STATE_FAILED: "failed", pb.TASK_STATE_REJECTED: "rejected"}
_JOBS = (pb.SERVICE_MODE_REPLICATED_JOB, pb.SERVICE_MODE_GLOBAL_JOB)
# Clear the line / everything below the cursor; move the cursor up N lines.
CLEAR_LINE = "\x1b[2K"
CLEAR_BELOW = "\x1b[J"


K = TypeVar("K")


def _up(n: int) -> str:
    return f"\x1b[{n}A"


class Printer:
    """Draws the progress block: in place on a terminal, as changed lines
    otherwise. Errors go to stderr (CLI.md), whatever happens to progress."""

    def __init__(self, out: TextIO, width: int | None = None, height: int | None = None) -> None:
        self.out = out
        self.tty = out.isatty()
        self._width = width
        self._height = height
        self._drawn = 0
        self._last: list[str] = []

    def _size(self) -> os.terminal_size:
        try:
            return os.get_terminal_size(self.out.fileno())
        except (OSError, ValueError, AttributeError):
            return shutil.get_terminal_size()

    def width(self) -> int:
        return self._width if self._width is not None else self._size().columns

    def height(self) -> int:
        return self._height if self._height is not None else self._size().lines

    def _fit_height(self, lines: list[str]) -> list[str]:
        """A block no taller than the terminal (the cursor cannot go back
        above its top): the first lines, how many are left out, the last."""
        room = self.height() - 1
        if len(lines) <= room or room < 3:
            return lines
        kept = lines[: room - 2]
        return [*kept, f"... {len(lines) - len(kept) - 1} more lines", lines[-1]]

    def _fit(self, line: str) -> str:
        # One column spare: a line that fills the terminal exactly leaves some
        # terminals' cursor on the next line, and the redraw would drift.
        return ellipsis(line, self.width() - 1)

    def show(self, lines: list[str]) -> None:
        if self.tty:
            text = _up(self._drawn) if self._drawn else ""
            lines = self._fit_height(lines)
            text += "".join(CLEAR_LINE + self._fit(line) + "\n" for line in lines)
            self.out.write(text + CLEAR_BELOW)
            self._drawn = len(lines)
        else:
            for i, line in enumerate(lines):
                if i >= len(self._last) or self._last[i] != line:
                    self.out.write(line + "\n")
        self._last = lines
        self.out.flush()

    def say(self, line: str) -> None:
        """A line that stays, below what is drawn."""
        self.out.write((CLEAR_LINE + self._fit(line) if self.tty else line) + "\n")
        self.out.flush()
        self._drawn = 0
        self._last = []

    def error(self, line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def exists_hint(name: str, trying: bool = True) -> str:
    """The line after a give-up: the service is there, and what to do about it."""
    state = "exists and keeps trying" if trying else "exists"
    return (
        f"The service {name} {state}: see why with `shoal service ps --no-trunc {name}`, "
        f"or remove it with `shoal service rm {name}`."
    )


# ------------------------------------------------------------------ one picture


@dataclass
class Frame:
    """What one poll shows and means (pure: made from the service and its tasks)."""

    lines: list[str]
    converged: bool
    # Why nothing converges: a scheduling error, or ended tasks nothing
    # restarts ("" while there is hope); given up once it lasts.
    stuck: str = ""
    # Tasks of the current spec that were rejected: reason -> task IDs.
    rejected: dict[str, set[str]] = field(default_factory=dict)
    # Whether the cluster keeps trying when stuck (False: nothing restarts).
    trying: bool = True


def _bar(state: int) -> str:
    filled = min(BAR_WIDTH, int(BAR_WIDTH * (state / RUNNING)))
    return "[" + "=" * max(0, filled - 1) + (">" if filled else "") + " " * (BAR_WIDTH - filled) + "]"


def slot_text(current: pb.Task, previous: pb.Task | None) -> str:
    """A slot's line after its label: the error of its task when it has one,
    else its state with a bar, or with why the slot's last attempt ended."""
    status = current.status
    if status.err and status.state <= pb.TASK_STATE_PENDING:
        return status.err
    if status.state in _ENDED_BADLY:
        return f"{_ENDED_BADLY[status.state]}: {status.err or 'no reason given'}"
    word = f"{state_word(status.state):<9}"
    if previous is not None and status.state < RUNNING:
        why = previous.status.err or f"exit code {previous.status.exit_code}"
        return f"{word} last attempt {_ENDED_BADLY[previous.status.state]}: {why}"
    return f"{word} {_bar(min(status.state, RUNNING))}"


def _rejections(svc: pb.Service, tasks: list[pb.Task]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for t in tasks:
        if t.spec_version == svc.spec_version and t.status.state == pb.TASK_STATE_REJECTED:
            found.setdefault(t.status.err, set()).add(t.meta.id)
    return found


def _newest(tasks: list[pb.Task]) -> pb.Task | None:
    return max(tasks, key=lambda t: t.meta.created_at, default=None)


def _groups(tasks: list[pb.Task], key: Callable[[pb.Task], K]) -> dict[K, list[pb.Task]]:
    out: dict[K, list[pb.Task]] = {}
    for t in tasks:
        out.setdefault(key(t), []).append(t)
    return out


def _current_and_previous(svc: pb.Service, group: list[pb.Task]) -> tuple[pb.Task | None, pb.Task | None]:
    """A slot's (or node's) current task, and its last attempt of the
    current spec that failed or was rejected before it."""
    current = _newest([t for t in group if t.desired_state <= RUNNING])
    if current is None:
        return None, None
    earlier = [
        t
        for t in group
        if t is not current
        and t.status.state in _ENDED_BADLY
        and t.spec_version == svc.spec_version
        and t.meta.created_at <= current.meta.created_at
    ]
    return current, _newest(earlier)


def snapshot(svc: pb.Service, tasks: list[pb.Task], hostnames: dict[str, str] | None = None) -> Frame:
    if svc.spec.mode in _JOBS:
        frame = _job_snapshot(svc, tasks)
    elif svc.spec.mode == pb.SERVICE_MODE_GLOBAL:
        frame = _global_snapshot(svc, tasks, hostnames or {})
    else:
        frame = _replicated_snapshot(svc, tasks)
    frame.rejected = _rejections(svc, tasks)
    return frame


def _pending_reason(tasks: list[pb.Task]) -> str:
    return "; ".join(
        sorted({t.status.err for t in tasks if t.status.state <= pb.TASK_STATE_PENDING and t.status.err})
    )


def _lingering(tasks: list[pb.Task]) -> bool:
    """Old tasks still running that are to stop."""
    return any(t.desired_state > RUNNING and t.status.state <= RUNNING and t.node_id for t in tasks)


def _global_snapshot(svc: pb.Service, tasks: list[pb.Task], hostnames: dict[str, str]) -> Frame:
    by_node = _groups(tasks, lambda t: t.node_id)
    slots = {n: _current_and_previous(svc, g) for n, g in by_node.items()}
    current = {n: cp for n, cp in slots.items() if cp[0] is not None}
    if not current:
        return Frame(["overall progress: waiting for new tasks"], False)
    running = [
        cp[0]
        for cp in current.values()
        if cp[0] is not None and cp[0].status.state == RUNNING and cp[0].spec_version == svc.spec_version
    ]
    lines = [f"overall progress: {len(running)} out of {len(current)} tasks"]
    if len(current) <= MAX_BARS:
        for node_id in sorted(current, key=lambda n: hostnames.get(n, n)):
            task, previous = current[node_id]
            assert task is not None
            label = hostnames.get(task.node_id) or task.node_id[:12]
            lines.append(f"{label}: {slot_text(task, previous)}")
    tasks_now = [cp[0] for cp in current.values() if cp[0] is not None]
    converged = len(running) == len(current) and not _lingering(tasks)
    return Frame(lines, converged, _pending_reason(tasks_now))


def _job_snapshot(svc: pb.Service, tasks: list[pb.Task]) -> Frame:
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
    trying = True
    if ended and not active and len(complete) < total:
        t = ended[0]
        reason = f"task {t.service_name}.{t.slot or t.node_id} failed ({t.status.err}) and is not retried"
        trying = False
    return Frame(lines, total > 0 and len(complete) >= total, reason, trying=trying)


def _replicated_snapshot(svc: pb.Service, tasks: list[pb.Task]) -> Frame:
    want = svc.spec.replicas
    by_slot = _groups(tasks, lambda t: t.slot)
    slots = {s: _current_and_previous(svc, g) for s, g in by_slot.items()}
    current = {s: cp for s, cp in slots.items() if cp[0] is not None}
    running = sum(
        1
        for task, _ in current.values()
        if task is not None
        and task.status.state == RUNNING
        and task.spec_version == svc.spec_version
        and task.status.health in (pb.HEALTH_NONE, pb.HEALTH_HEALTHY)
    )
    lines = [f"overall progress: {min(running, want)} out of {want} tasks"]
    if want <= MAX_BARS:
        for i, slot in enumerate(sorted(current)[:MAX_BARS]):
            task, previous = current[slot]
            assert task is not None
            lines.append(f"{i + 1}/{want}: {slot_text(task, previous)}")
    tasks_now = [task for task, _ in current.values() if task is not None]
    reasons = {t.status.err for t in tasks_now if t.status.state <= pb.TASK_STATE_PENDING and t.status.err}
    # Still desired running after it ended: once that lasts, the restart
    # policy is not going to replace it (none, or attempts exhausted).
    ended = [t for t in tasks_now if t.status.state > RUNNING and t.desired_state == RUNNING]
    converged = running == want and len(current) == want and not _lingering(tasks)
    reason = "; ".join(sorted(reasons)) if reasons and running + len(ended) < want else ""
    if ended and not reason:
        t = min(ended, key=lambda t: t.slot)
        reason = (
            f"task {t.service_name}.{t.slot} ended ({state_word(t.status.state)}"
            + (f": {t.status.err}" if t.status.err else "")
            + ") and its restart policy does not replace it"
        )
        return Frame(lines, converged, reason, trying=False)
    return Frame(lines, converged, reason)


# ------------------------------------------------------------------ following


def verify_line(seconds_left: float, monitor: float, tty: bool) -> str:
    # Piped, the line must not change every second: it says the whole period.
    shown = max(1, round(seconds_left)) if tty else max(1, round(monitor))
    return f"verify: Waiting {shown} seconds to verify that tasks are stable..."


@dataclass
class _Watch:
    """What the follow loop remembers between polls."""

    name: str
    rollback: bool
    verify_since: float | None = None
    stuck_since: float | None = None
    stuck_reason: str = ""
    failed_ids: set[str] = field(default_factory=set)
    rejected: dict[str, set[str]] = field(default_factory=dict)
    # An update status that was already settled when we started (an earlier
    # update paused or rolled back) says nothing about this operation.
    first_status: tuple[int, int] | None = None


def follow(
    client: Client,
    service_id: str,
    out: TextIO = sys.stdout,
    clock: Callable[[], float] = time.monotonic,
    rollback: bool = False,
    name: str = "",
) -> int:
    """Follow until converged (0), or until the update pauses or rolls back,
    or nothing can converge (1). ``rollback``: this operation is a rollback,
    so rolling back is success, not failure. ``name``: the service's name,
    for messages (looked up when not given)."""
    printer = Printer(out)
    watch = _Watch(name or service_id, rollback)
    try:
        while True:
            try:
                svc: pb.Service = client.call("GetService", cpb.ObjectRef(ref=service_id))
                watch.name = svc.spec.name
                resp = client.call("ListTasks", cpb.ListTasksRequest(service=service_id))
            except CLIError as err:
                if err.code == "NOT_FOUND":
                    printer.error(f"Error: service {watch.name} was removed while waiting for it")
                    return 1
                raise
            code = _step(printer, watch, svc, resp, clock())
            if code is not None:
                return code
            time.sleep(POLL)
    except KeyboardInterrupt:
        printer.say("Operation continuing in background.")
        printer.say(f"Use `shoal service ps {watch.name}` to check progress.")
        return 130


def _step(
    printer: Printer, watch: _Watch, svc: pb.Service, resp: cpb.ListTasksResponse, now: float
) -> int | None:
    """One poll: draw, and the exit status once the wait is over (else None)."""
    tasks = list(resp.tasks)
    frame = snapshot(svc, tasks, dict(resp.node_hostnames))
    lines, converged = frame.lines, frame.converged
    status = svc.update_status
    if watch.first_status is None:
        watch.first_status = (status.state, status.started_at)
    ours = status.started_at != watch.first_status[1] or watch.first_status[0] in (
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
        if not watch.rollback:
            lines.append(f"rollback: {status.message}")
    if not watch.rollback and status.state == pb.UPDATE_STATE_ROLLBACK_COMPLETED and converged:
        printer.show(lines)
        printer.error(f"Error: {status.message}")
        return 1
    updating = status.state in (pb.UPDATE_STATE_UPDATING, pb.UPDATE_STATE_ROLLBACK_STARTED)
    reason = frame.stuck
    if updating:
        # Mid-update a new task may wait for the old one to free its port or
        # resources: that is progress, not being stuck; and the updater
        # judges failures (it pauses or rolls back).
        converged, reason = False, ""
    else:
        for why, ids in frame.rejected.items():
            seen = watch.rejected.setdefault(why, set())
            seen |= ids
            if len(seen) >= REJECT_LIMIT:
                printer.show(lines)
                printer.error(f"Error: {len(seen)} tasks of service {watch.name} were rejected: {why}")
                printer.error(exists_hint(watch.name))
                return 1
    if reason and reason == watch.stuck_reason:
        if watch.stuck_since is not None and now - watch.stuck_since >= STUCK_AFTER:
            printer.show(lines)
            printer.error(f"Error: {reason}")
            printer.error(exists_hint(watch.name, frame.trying))
            return 1
    else:
        watch.stuck_reason, watch.stuck_since = reason, (now if reason else None)
    monitor = (svc.spec.update.monitor if svc.spec.HasField("update") else SERVICE.update_monitor) / 1e9
    if svc.spec.mode in _JOBS:
        monitor = 0.0  # jobs skip the verify step, as in Docker
    failures = {
        t.meta.id for t in tasks if t.spec_version == svc.spec_version and t.status.state in _ENDED_BADLY
    }
    new_failures = failures - watch.failed_ids
    watch.failed_ids |= failures
    if converged:
        if watch.verify_since is None or new_failures:
            if watch.verify_since is not None:
                printer.say("verify: Detected task failure")
            watch.verify_since = now
        left = monitor - (now - watch.verify_since)
        if left <= 0:
            printer.show(lines)
            if svc.spec.mode not in _JOBS:
                printer.say(f"verify: Service {svc.spec.name} converged")
            return 0
        lines = [*lines, verify_line(left, monitor, printer.tty)]
    else:
        if watch.verify_since is not None and new_failures:
            lines = [*lines, "verify: Detected task failure"]
        watch.verify_since = None
    printer.show(lines)
    return None
