"""The replicated orchestrator: exactly ``replicas`` occupied slots per service.

Leader only. For each replicated service that changed it compares the slots
with the spec:

- a task on a node that is down, drained, gone, or no longer satisfies the
  task's constraints (labels changed) is shut down and its slot refilled at
  once, elsewhere (Swarm's "invalid node" rule and constraint enforcer);
- a task that ended while desired running is replaced per the restart policy
  (``tasks.restart_replacement``);
- missing slots (scale up) are created with the lowest free slot numbers;
  surplus slots (scale down) are removed, those not running first, then the
  highest numbers;
- tasks of a deleted service (any mode) get desired state REMOVE; the reaper
  deletes them once they have stopped.

It writes only tasks' existence and desired state; the scheduler chooses
nodes and agents report status. Tasks of an older spec version are replaced
by the rolling updater, not here.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from shoal.manager.nodes import can_run_tasks
from shoal.manager.orchestrator.base import Orchestrator
from shoal.manager.orchestrator.tasks import (
    has_ended,
    new_task,
    node_satisfies,
    occupies_slot,
    restart_replacement,
    with_desired,
)
from shoal.manager.store import Batch, now_ns
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

RUNNING = pb.TASK_STATE_RUNNING


class ReplicatedOrchestrator(Orchestrator):
    name = "replicated-orchestrator"
    modes = (pb.SERVICE_MODE_REPLICATED,)

    def reconcile_deleted(self, service_id: str, tasks: list[pb.Task], batch: Batch) -> None:
        going = [t for t in tasks if t.desired_state < pb.TASK_STATE_REMOVE]
        room = self.room(batch, service_id, len(going))
        batch.extend("update", (with_desired(t, pb.TASK_STATE_REMOVE) for t in going[:room]))

    def node_changed(self, node_id: str, batch: Batch) -> set[str]:
        """Replace, at once and elsewhere, the tasks of a node that cannot run
        them any more; looks only at that node's tasks, not whole services."""
        moved = 0
        for task in list(self.view.tasks_by_node.get(node_id, {}).values()):
            service = self.view.services.get(task.service_id)
            if service is None or not self.owns(service) or not occupies_slot(task):
                continue
            if self.node_invalid(task):
                batch.update(with_desired(task, pb.TASK_STATE_SHUTDOWN))
                if task.desired_state == RUNNING or task.desired_state == pb.TASK_STATE_READY:
                    batch.create(new_task(service, task.slot, task.attempt))
                moved += 1
        if moved:
            log.info("node %s cannot run its tasks any more: replacing %d of them elsewhere", node_id, moved)
        return set()

    def node_invalid(self, task: pb.Task, seen: dict[tuple[str, int], bool] | None = None) -> bool:
        """Whether the task's node cannot run it any more. ``seen`` keeps the
        answers of one pass: tasks of one spec version on one node share it
        (a service of 10,000 tasks on 1,000 nodes asks 1,000 times, not
        10,000)."""
        if not task.node_id or task.node_id in self.held_nodes:
            return False
        key = (task.node_id, task.spec_version)
        if seen is not None and key in seen:
            return seen[key]
        node = self.view.nodes.get(task.node_id)
        invalid = not can_run_tasks(node) or not node_satisfies(task.spec, node)  # type: ignore[arg-type]
        if seen is not None:
            seen[key] = invalid
        return invalid

    def reconcile_service(self, service: pb.Service, tasks: list[pb.Task], batch: Batch) -> None:
        now = now_ns()
        history: dict[int, list[pb.Task]] = defaultdict(list)
        for task in tasks:
            history[task.slot].append(task)
        desired: dict[str, pb.Task] = {}  # task ID -> copy with its new desired state
        created: dict[int, pb.Task] = {}  # slot -> new task
        occupied: dict[int, pb.Task] = {}
        same_version: dict[int, list[pb.Task]] = defaultdict(list)
        seen: dict[tuple[str, int], bool] = {}
        for task in tasks:
            if not occupies_slot(task):
                continue
            if self.node_invalid(task, seen):
                desired[task.meta.id] = with_desired(task, pb.TASK_STATE_SHUTDOWN)
                created[task.slot] = occupied[task.slot] = new_task(service, task.slot, task.attempt)
                log.debug("task %s: node %s cannot run it any more; replacing", task.meta.id, task.node_id)
                continue
            if has_ended(task):
                others = [t for t in history[task.slot] if t.meta.id != task.meta.id]
                replacement = restart_replacement(service, task, others, now)
                if replacement is not None:
                    desired[task.meta.id] = with_desired(task, pb.TASK_STATE_SHUTDOWN)
                    created[task.slot] = occupied[task.slot] = replacement
                    continue
            if task.slot not in created:
                current = occupied.get(task.slot)
                if current is None or task.meta.created_at > current.meta.created_at:
                    occupied[task.slot] = task
                if task.spec_version == service.spec_version:
                    same_version[task.slot].append(task)

        # Two tasks of the current version in one slot is never meant (a
        # start-first update overlaps two *versions*): keep the one that runs,
        # else the newest, and remove the others.
        for slot, twins in same_version.items():
            if len(twins) > 1 and slot not in created:
                twins.sort(key=lambda t: (t.status.state == RUNNING, t.meta.created_at), reverse=True)
                occupied[slot] = twins[0]
                for extra in twins[1:]:
                    desired[extra.meta.id] = with_desired(extra, pb.TASK_STATE_REMOVE)

        want = max(0, service.spec.replicas)
        if len(occupied) > want:
            # Remove slots not running first, then the highest numbers.
            order = sorted(occupied.items(), key=lambda item: (item[1].status.state == RUNNING, -item[0]))
            already = len(desired) + len(created)
            allowed = max(0, self.room(batch, service.meta.id, already + len(occupied) - want) - already)
            for slot, _ in order[:allowed]:
                created.pop(slot, None)
                for t in history[slot]:
                    if occupies_slot(t):
                        desired[t.meta.id] = with_desired(t, pb.TASK_STATE_REMOVE)
                del occupied[slot]
        slot = 1
        already = len(desired) + len(created)
        allowed = max(0, self.room(batch, service.meta.id, already + max(0, want - len(occupied))) - already)
        while len(occupied) < want and allowed > 0:
            while slot in occupied:
                slot += 1
            created[slot] = occupied[slot] = new_task(service, slot)
            allowed -= 1
        batch.extend("update", desired.values())
        batch.extend("create", created.values())
