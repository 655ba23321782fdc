"""What the orchestrators agree on about tasks: predicates and construction.

A slot is *occupied* by a task whose desired state is at most RUNNING (READY
counts: a replacement waiting out its restart delay). Replacing a task means
setting the old one's desired state to SHUTDOWN and creating a new one; the
old task stays as history until the reaper trims it.
"""

from __future__ import annotations

import contextlib
import functools

from shoal.ids import new_id
from shoal.manager.orchestrator.restart import decide_restart
from shoal.manager.store import Batch, BatchResult, Store, VersionConflict, View, clone, now_ns, on_conflict
from shoal.protos import objects_pb2 as pb
from shoal.rules.constraints import Constraint, parse_constraints

RUNNING = pb.TASK_STATE_RUNNING


# How often a desired state that lost a race is applied again.
REAPPLY_ATTEMPTS = 5


def occupies_slot(task: pb.Task) -> bool:
    return task.desired_state <= RUNNING


def has_ended(task: pb.Task) -> bool:
    return task.status.state > RUNNING


def new_task(service: pb.Service, slot: int, attempt: int = 0, node_id: str = "") -> pb.Task:
    task = pb.Task(
        service_id=service.meta.id,
        service_name=service.spec.name,
        slot=slot,
        node_id=node_id,
        spec_version=service.spec_version,
        desired_state=RUNNING,
        attempt=attempt,
    )
    task.meta.id = new_id()
    task.spec.CopyFrom(service.spec.task)
    task.ports.extend(service.spec.ports)
    task.expose.extend(service.spec.expose)
    task.status.state = pb.TASK_STATE_PENDING
    task.status.timestamp = now_ns()
    task.status.message = "pending task scheduling"
    return task


def with_desired(task: pb.Task, desired: int) -> pb.Task:
    """A copy of task with a new desired state (the orchestrator's field)."""
    copy = clone(task)
    copy.desired_state = desired  # type: ignore[assignment]
    return copy


def restart_replacement(
    service: pb.Service, task: pb.Task, slot_history: list[pb.Task], now: int
) -> pb.Task | None:
    """The task that replaces ``task`` (ended while desired running) under the
    service's restart policy, or None when the policy says not to. A delayed
    replacement is desired READY until its ``restart_at``."""
    decision = decide_restart(task, service.spec.task.restart, slot_history, now)
    if not decision.restart:
        return None
    replacement = new_task(
        service, task.slot, task.attempt + 1, node_id=task.node_id if not task.slot else ""
    )
    if decision.delay_ns > 0:
        replacement.desired_state = pb.TASK_STATE_READY
        replacement.restart_at = now + decision.delay_ns
    return replacement


def apply_restart(
    batch: Batch, service: pb.Service, task: pb.Task, slot_history: list[pb.Task], now: int
) -> pb.Task | None:
    """What every mode does with a task that ended while desired running:
    when the restart policy replaces it, shut it down and create the
    replacement (in batch); the replacement, or None."""
    replacement = restart_replacement(service, task, slot_history, now)
    if replacement is not None:
        batch.update(with_desired(task, pb.TASK_STATE_SHUTDOWN))
        batch.create(replacement)
    return replacement


def node_satisfies(task_spec: pb.TaskSpec, node: pb.Node) -> bool:
    """The task's own constraints hold on node (labels may have changed)."""
    if not task_spec.placement.constraints:
        return True
    return all(c.matches(node) for c in _parsed(tuple(task_spec.placement.constraints)))


@functools.lru_cache(maxsize=4096)
def _parsed(exprs: tuple[str, ...]) -> list[Constraint]:
    return parse_constraints(list(exprs))


async def commit_desired(view: View, store: Store, batch: Batch) -> BatchResult:
    """Commit a batch of an orchestrator's. A desired-state write that lost a
    race with another writer (an agent's status) is applied again to the
    current version: desired state belongs to the orchestrators alone and
    only ever moves forward, so re-applying it is always right."""
    result = await batch.commit()
    with contextlib.suppress(VersionConflict):
        async for attempt in on_conflict(REAPPLY_ATTEMPTS):
            with attempt:
                again = store.batch()
                for c in result.conflicts:
                    if c.action == "update" and isinstance(c.obj, pb.Task) and c.current is not None:
                        view.observe(c.current)
                        if c.current.desired_state < c.obj.desired_state:
                            again.update(with_desired(c.current, c.obj.desired_state))
                if not len(again):
                    break
                retried = await again.commit()
                result.committed.extend(retried.committed)
                result.conflicts = retried.conflicts
                if result.conflicts:
                    raise VersionConflict("desired states still racing")
    return result
