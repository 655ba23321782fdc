"""The global orchestrator: one task per eligible node (``--mode global``).

A node is eligible when it is ready, active and satisfies the service's
constraints. Each pass, for every global service that changed (or every one,
when a node changed):

- an eligible node without a task gets one, created with the node already
  chosen (the scheduler still checks resources and ports before assigning);
- a task on a node that is drained, down, gone or no longer matches the
  constraints is shut down, not moved (as Swarm does);
- a task that ended while desired running is replaced on the same node per
  the restart policy. A paused node keeps its task but gets no new one.
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


class GlobalOrchestrator(Orchestrator):
    name = "global-orchestrator"
    modes = (pb.SERVICE_MODE_GLOBAL,)
    node_events_touch_all = True

    def reconcile_service(self, service: pb.Service, tasks: list[pb.Task], batch: Batch) -> None:
        now = now_ns()
        by_node: dict[str, list[pb.Task]] = defaultdict(list)
        for task in tasks:
            by_node[task.node_id].append(task)
        for node_id, node_tasks in by_node.items():
            node = self.view.nodes.get(node_id)
            keep = node is not None and can_run_tasks(node) and node_satisfies(service.spec.task, node)
            for task in node_tasks:
                if not occupies_slot(task):
                    continue
                if not keep:
                    batch.update(with_desired(task, pb.TASK_STATE_SHUTDOWN))
                elif has_ended(task):
                    others = [t for t in node_tasks if t.meta.id != task.meta.id]
                    apply_restart(batch, service, task, others, now)
        for node_id, node in self.view.nodes.items():
            if any(occupies_slot(t) for t in by_node.get(node_id, ())):
                continue
            if takes_new_tasks(node) and node_satisfies(service.spec.task, node):
                batch.create(new_task(service, 0, node_id=node_id))
