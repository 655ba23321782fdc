"""What one poll of a service shows and means: its progress lines and
whether it converged or is stuck (pure: made from the service and its tasks).

    snapshot(service, tasks, hostnames, down) -> Frame

``overall progress: N out of M tasks`` and one line per slot (up to MAX_BARS;
global services: per node; jobs: completions and active tasks). A slot's line
shows its task's state and a bar, or its task's error when it has one (``no
suitable node (...)``, ``rejected: pulling image ... failed: ...``), or, while
a replacement gets going, why the last attempt ended. ``Frame.stuck`` says
why nothing converges (a scheduling error, or ended tasks that nothing
restarts); ``Frame.rejected`` the rejections of the current spec, by reason.
The follow loop (``progress``) decides when that lasted long enough.

A task on a node that is down (``down``: node ID -> why, as ListTasks says)
neither runs nor stops as far as progress goes: its status is the last its
agent reported, and nobody will report on it again. So it never counts as
running (the orchestrator replaces it, and the replacement is what counts),
its slot's line says the node is down, and once it is to stop it is not
waited for (its agent stops it if the node ever comes back). As in Swarm,
the wait converges on the tasks that run on live nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from shoal.cli.render import JOBS, node_down_text, state_word
from shoal.protos import objects_pb2 as pb

MAX_BARS = 20
BAR_WIDTH = 50
RUNNING = pb.TASK_STATE_RUNNING
ENDED_BADLY = {pb.TASK_STATE_FAILED: "failed", pb.TASK_STATE_REJECTED: "rejected"}

K = TypeVar("K")


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


def slot_text(current: pb.Task, previous: pb.Task | None, node_down: str = "") -> str:
    """A slot's line after its label: the error of its task when it has one,
    why nobody can tell how it is (``node_down``: its node is down), else its
    state with a bar, or with why the slot's last attempt ended."""
    status = current.status
    if status.err and status.state <= pb.TASK_STATE_PENDING:
        return status.err
    if status.state in ENDED_BADLY:
        return f"{ENDED_BADLY[status.state]}: {status.err or 'no reason given'}"
    if node_down and status.state <= RUNNING:
        return node_down
    word = f"{state_word(status.state):<9}"
    if previous is not None and status.state < RUNNING:
        why = previous.status.err or f"exit code {previous.status.exit_code}"
        return f"{word} last attempt {ENDED_BADLY[previous.status.state]}: {why}"
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
        and t.status.state in ENDED_BADLY
        and t.spec_version == svc.spec_version
        and t.meta.created_at <= current.meta.created_at
    ]
    return current, _newest(earlier)


def snapshot(
    svc: pb.Service,
    tasks: list[pb.Task],
    hostnames: Mapping[str, str] | None = None,
    down: Mapping[str, str] | None = None,
) -> Frame:
    """What this poll shows; ``hostnames`` and ``down`` (node ID -> why it
    is down) as ListTasks gives them."""
    nodes = _Nodes(hostnames or {}, down or {})
    if svc.spec.mode in JOBS:
        frame = _job_snapshot(svc, tasks, nodes)
    elif svc.spec.mode == pb.SERVICE_MODE_GLOBAL:
        frame = _global_snapshot(svc, tasks, nodes)
    else:
        frame = _replicated_snapshot(svc, tasks, nodes)
    frame.rejected = _rejections(svc, tasks)
    return frame


def _pending_reason(tasks: list[pb.Task]) -> str:
    return "; ".join(
        sorted({t.status.err for t in tasks if t.status.state <= pb.TASK_STATE_PENDING and t.status.err})
    )


@dataclass(frozen=True)
class _Nodes:
    """What a poll knows of the tasks' nodes."""

    hostnames: Mapping[str, str]
    down: Mapping[str, str]  # node ID -> why it is down

    def runs(self, task: pb.Task) -> bool:
        """Reported running by a node that is still there to say so."""
        return task.status.state == RUNNING and task.node_id not in self.down

    def down_text(self, task: pb.Task) -> str:
        return node_down_text(task, self.hostnames, self.down)


def _lingering(tasks: list[pb.Task], nodes: _Nodes) -> bool:
    """Old tasks still running that are to stop (on a node that is down,
    nobody will report them stopped: not waited for)."""
    return any(
        t.desired_state > RUNNING and t.status.state <= RUNNING and t.node_id and t.node_id not in nodes.down
        for t in tasks
    )


def _global_snapshot(svc: pb.Service, tasks: list[pb.Task], nodes: _Nodes) -> Frame:
    by_node = _groups(tasks, lambda t: t.node_id)
    slots = {n: _current_and_previous(svc, g) for n, g in by_node.items()}
    current = {n: cp for n, cp in slots.items() if cp[0] is not None}
    if not current:
        return Frame(["overall progress: waiting for new tasks"], False)
    running = [
        cp[0]
        for cp in current.values()
        if cp[0] is not None and nodes.runs(cp[0]) and cp[0].spec_version == svc.spec_version
    ]
    lines = [f"overall progress: {len(running)} out of {len(current)} tasks"]
    if len(current) <= MAX_BARS:
        for node_id in sorted(current, key=lambda n: nodes.hostnames.get(n, n)):
            task, previous = current[node_id]
            assert task is not None
            label = nodes.hostnames.get(task.node_id) or task.node_id[:12]
            lines.append(f"{label}: {slot_text(task, previous, nodes.down_text(task))}")
    tasks_now = [cp[0] for cp in current.values() if cp[0] is not None]
    converged = len(running) == len(current) and not _lingering(tasks, nodes)
    return Frame(lines, converged, _pending_reason(tasks_now))


def _job_snapshot(svc: pb.Service, tasks: list[pb.Task], nodes: _Nodes) -> Frame:
    complete = {t.slot if t.slot else t.node_id for t in tasks if t.status.state == pb.TASK_STATE_COMPLETE}
    active = [
        t
        for t in tasks
        if t.desired_state <= RUNNING and t.status.state <= RUNNING and t.node_id not in nodes.down
    ]
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


def _replicated_snapshot(svc: pb.Service, tasks: list[pb.Task], nodes: _Nodes) -> Frame:
    want = svc.spec.replicas
    by_slot = _groups(tasks, lambda t: t.slot)
    slots = {s: _current_and_previous(svc, g) for s, g in by_slot.items()}
    current = {s: cp for s, cp in slots.items() if cp[0] is not None}
    running = sum(
        1
        for task, _ in current.values()
        if task is not None
        and nodes.runs(task)
        and task.spec_version == svc.spec_version
        and task.status.health in (pb.HEALTH_NONE, pb.HEALTH_HEALTHY)
    )
    lines = [f"overall progress: {min(running, want)} out of {want} tasks"]
    if want <= MAX_BARS:
        for i, slot in enumerate(sorted(current)[:MAX_BARS]):
            task, previous = current[slot]
            assert task is not None
            lines.append(f"{i + 1}/{want}: {slot_text(task, previous, nodes.down_text(task))}")
    tasks_now = [task for task, _ in current.values() if task is not None]
    reasons = {t.status.err for t in tasks_now if t.status.state <= pb.TASK_STATE_PENDING and t.status.err}
    # Still desired running after it ended: once that lasts, the restart
    # policy is not going to replace it (none, or attempts exhausted).
    ended = [t for t in tasks_now if t.status.state > RUNNING and t.desired_state == RUNNING]
    converged = running == want and len(current) == want and not _lingering(tasks, nodes)
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
