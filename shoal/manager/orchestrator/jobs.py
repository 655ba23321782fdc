"""The jobs orchestrator: tasks that run to completion.

- ``replicated-job``: ``replicas`` completions are wanted, one per slot
  (1..replicas), with at most ``max_concurrent`` tasks active at once. A slot
  is done once one of its tasks completed; a failed task is replaced per the
  restart policy (jobs default to ``on-failure``), so success is never
  restarted.
- ``global-job``: one completion per eligible node, including nodes that join
  later.

Tasks on a node that goes down or is drained are replaced elsewhere
(replicated jobs) or shut down (global jobs), as for services.
"""

from __future__ import annotations

from collections import defaultdict

from shoal.manager.nodes import can_run_tasks, takes_new_tasks
from shoal.manager.orchestrator.base import Orchestrator
from shoal.manager.orchestrator.tasks import (
    apply_restart,
    has_ended,
    new_task,
    node_satisfies,
    occupies_slot,
    with_desired,
)
from shoal.manager.store import Batch, now_ns
from shoal.protos import objects_pb2 as pb

COMPLETE = pb.TASK_STATE_COMPLETE


class JobsOrchestrator(Orchestrator):
    name = "jobs-orchestrator"
    modes = (pb.SERVICE_MODE_REPLICATED_JOB, pb.SERVICE_MODE_GLOBAL_JOB)
    node_events_touch_all = True

    def reconcile_service(self, service: pb.Service, tasks: list[pb.Task], batch: Batch) -> None:
        if service.spec.mode == pb.SERVICE_MODE_REPLICATED_JOB:
            self._replicated_job(service, tasks, batch)
        else:
            self._global_job(service, tasks, batch)

    def _node_ok(self, task: pb.Task) -> bool:
        if task.node_id in self.held_nodes:
            return True  # a mass failure: its turn to move comes
        node = self.view.nodes.get(task.node_id) if task.node_id else None
        return not task.node_id or (
            node is not None and can_run_tasks(node) and node_satisfies(task.spec, node)
        )

    def _replicated_job(self, service: pb.Service, tasks: list[pb.Task], batch: Batch) -> None:
        now = now_ns()
        total = max(0, service.spec.replicas)
        limit = service.spec.max_concurrent or total
        by_slot: dict[int, list[pb.Task]] = defaultdict(list)
        for t in tasks:
            by_slot[t.slot].append(t)
        active = 0
        idle_slots = []
        for slot in range(1, total + 1):
            slot_tasks = by_slot.get(slot, [])
            if any(t.status.state == COMPLETE for t in slot_tasks):
                continue
            live = [t for t in slot_tasks if occupies_slot(t)]
            if not live:
                idle_slots.append(slot)
                continue
            for task in live:
                if not self._node_ok(task):
                    batch.update(with_desired(task, pb.TASK_STATE_SHUTDOWN))
                    batch.create(new_task(service, slot, task.attempt))
                    active += 1
                elif has_ended(task):
                    others = [t for t in slot_tasks if t.meta.id != task.meta.id]
                    if apply_restart(batch, service, task, others, now) is not None:
                        active += 1
                else:
                    active += 1
        starts = self.room(batch, service.meta.id, max(0, min(len(idle_slots), limit - active)))
        for slot in idle_slots[:starts]:
            batch.create(new_task(service, slot))
        # Slots beyond a lowered replica count are not wanted any more.
        for slot, slot_tasks in by_slot.items():
            if slot > total:
                for t in slot_tasks:
                    if occupies_slot(t) and not has_ended(t):
                        batch.update(with_desired(t, pb.TASK_STATE_REMOVE))

    def _global_job(self, service: pb.Service, tasks: list[pb.Task], batch: Batch) -> None:
        now = now_ns()
        by_node: dict[str, list[pb.Task]] = defaultdict(list)
        for t in tasks:
            by_node[t.node_id].append(t)
        for node_id, node in self.view.nodes.items():
            node_tasks = by_node.get(node_id, [])
            if any(t.status.state == COMPLETE for t in node_tasks):
                continue
            live = [t for t in node_tasks if occupies_slot(t)]
            if not live:
                if takes_new_tasks(node) and node_satisfies(service.spec.task, node):
                    batch.create(new_task(service, 0, node_id=node_id))
                continue
            for task in live:
                if not self._node_ok(task):
                    batch.update(with_desired(task, pb.TASK_STATE_SHUTDOWN))
                elif has_ended(task):
                    others = [t for t in node_tasks if t.meta.id != task.meta.id]
                    apply_restart(batch, service, task, others, now)
