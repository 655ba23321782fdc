"""Following a service until it converges, as ``docker service create`` does.

Polls every 200 ms, draws what each poll shows (``progress_frame``) with a
``Printer``, and decides when the wait is over. Once every slot runs, it
waits the service's monitor period (``verify: Waiting N seconds ...``); a
failure inside it starts the wait again. Piped, the verify countdown is
printed once.

Exit status: 0 converged; 1 when waiting cannot help, with an ``Error:`` line
and, since the service exists and the cluster keeps at it, a line saying how
to look at it or remove it (so nobody runs the same create again):

- a task of the current spec fits no node for STUCK_AFTER seconds;
- REJECT_LIMIT tasks of the current spec were rejected for the same reason;
- a task ended and its restart policy does not replace it;
- the update paused or was rolled back (no hint: the service is as it was);
- the service was removed meanwhile.

130 after Ctrl-C (the operation goes on in the cluster, and it says so).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from shoal.cli.client import Client, CLIError
from shoal.cli.printer import Printer
from shoal.cli.progress_frame import ENDED_BADLY, snapshot
from shoal.cli.render import JOBS
from shoal.defaults import SERVICE
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb

POLL = 0.2
# A scheduling error unchanged this long means waiting longer will not help.
STUCK_AFTER = 3.0
# Tasks of one spec rejected for one reason: the next one will be too (an
# image that cannot be pulled, a command that does not exist).
REJECT_LIMIT = 3


def exists_hint(name: str, trying: bool = True) -> str:
    """The line after a give-up: the service is there, and what to do about it."""
    state = "exists and keeps trying" if trying else "exists"
    return (
        f"The service {name} {state}: see why with `shoal service ps --no-trunc {name}`, "
        f"or remove it with `shoal service rm {name}`."
    )


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
    errors: Callable[[str], None] | None = None,
) -> int:
    """Follow until converged (0), or until the update pauses or rolls back,
    or nothing can converge (1). ``rollback``: this operation is a rollback,
    so rolling back is success, not failure. ``name``: the service's name,
    for messages (looked up when not given). ``errors``: where the lines
    that say why go (default: stderr)."""
    printer = Printer(out, errors=errors)
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
    frame = snapshot(svc, tasks, resp.node_hostnames, resp.node_down)
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
    if svc.spec.mode in JOBS:
        monitor = 0.0  # jobs skip the verify step, as in Docker
    failures = {
        t.meta.id for t in tasks if t.spec_version == svc.spec_version and t.status.state in ENDED_BADLY
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
            if svc.spec.mode not in JOBS:
                printer.say(f"verify: Service {svc.spec.name} converged")
            return 0
        lines = [*lines, verify_line(left, monitor, printer.tty)]
    else:
        if watch.verify_since is not None and new_failures:
            lines = [*lines, "verify: Detected task failure"]
        watch.verify_since = None
    printer.show(lines)
    return None
