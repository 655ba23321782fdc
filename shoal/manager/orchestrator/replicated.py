"""The replicated orchestrator: exactly ``replicas`` occupied slots per service.

Leader only. For each service that changed (its spec, one of its tasks, or a
node its tasks run on) it compares the slots with the spec and writes the
difference in one batch:

- a task on a node that is down, drained or gone is shut down and its slot
  refilled at once, elsewhere (Swarm's "invalid node" rule);
- a task that ended while desired running is replaced per the restart policy
  (``restart.decide_restart``); a delayed replacement is created with desired
  state READY and moved to RUNNING when its delay has passed;
- missing slots (scale up) are created with the lowest free slot numbers;
  surplus slots (scale down) are removed, those not running first, then the
  highest numbers;
- tasks of a deleted service get desired state REMOVE (the reaper deletes
  them once they have stopped).

It writes only tasks' existence and desired state; the scheduler chooses
nodes and agents report status.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

from shoal.manager.component import Component
from shoal.manager.orchestrator.restart import decide_restart
from shoal.manager.orchestrator.tasks import (
    has_ended,
    new_task,
    node_can_run_tasks,
    occupies_slot,
    with_desired,
)
from shoal.manager.store import Batch, Event, now_ns
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

RUNNING = pb.TASK_STATE_RUNNING
# Retry services whose batch hit a version conflict after this long.
CONFLICT_RETRY = 0.1


class ReplicatedOrchestrator(Component):
    name = "replicated-orchestrator"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # task ID -> wall-clock ns at which its delayed restart may start
        self._delayed: dict[str, int] = {}
        self._retry: set[str] = set()

    # -------------------------------------------------------------- loop

    async def reconcile_all(self) -> None:
        for task in self.view.tasks.values():
            if task.desired_state == pb.TASK_STATE_READY and task.restart_at:
                self._delayed[task.meta.id] = task.restart_at
        await self._reconcile(set(self.view.services) | set(self.view.tasks_by_service))
        await self.tick()

    async def handle(self, events: list[Event]) -> None:
        dirty: set[str] = set(self._retry)
        self._retry.clear()
        for ev in events:
            if ev.kind == "services":
                dirty.add(ev.id)
            elif ev.kind == "tasks":
                task = ev.new or ev.old
                assert task is not None
                dirty.add(task.service_id)
            elif ev.kind == "nodes" and node_can_run_tasks(ev.old) != node_can_run_tasks(ev.new):
                for task in self.view.tasks_by_node.get(ev.id, {}).values():
                    dirty.add(task.service_id)
        await self._reconcile(dirty)

    async def tick(self) -> None:
        """Start delayed restarts whose time has come."""
        now = now_ns()
        batch = self.store.batch()
        for task_id, at in list(self._delayed.items()):
            task = self.view.tasks.get(task_id)
            if task is None or task.desired_state != pb.TASK_STATE_READY:
                del self._delayed[task_id]
            elif at <= now:
                del self._delayed[task_id]
                batch.update(with_desired(task, RUNNING))
        if len(batch):
            result = await batch.commit()
            for conflict in result.conflicts:
                self._delayed[conflict.obj.meta.id] = 0
        self._arm_timer()

    def _arm_timer(self) -> None:
        soonest = min(self._delayed.values(), default=None)
        if soonest is not None:
            self.wake_at = time.monotonic() + max(0.0, (soonest - now_ns()) / 1e9)
        if self._retry:
            retry_at = time.monotonic() + CONFLICT_RETRY
            self.wake_at = min(self.wake_at or retry_at, retry_at)

    # -------------------------------------------------------------- reconcile

    async def _reconcile(self, service_ids: set[str]) -> None:
        batch = self.store.batch()
        for service_id in service_ids:
            service = self.view.services.get(service_id)
            tasks = list(self.view.tasks_by_service.get(service_id, {}).values())
            if service is None:
                for task in tasks:
                    if task.desired_state < pb.TASK_STATE_REMOVE:
                        batch.update(with_desired(task, pb.TASK_STATE_REMOVE))
            elif service.spec.mode == pb.SERVICE_MODE_REPLICATED:
                self._reconcile_service(service, tasks, batch)
        if not len(batch):
            return
        result = await batch.commit()
        for conflict in result.conflicts:
            self._retry.add(conflict.obj.service_id)
        for task in result.committed:
            if task.desired_state == pb.TASK_STATE_READY and task.restart_at:
                self._delayed[task.meta.id] = task.restart_at
        self._arm_timer()

    def _reconcile_service(self, service: pb.Service, tasks: list[pb.Task], batch: Batch) -> None:
        now = now_ns()
        history: dict[int, list[pb.Task]] = defaultdict(list)
        for task in tasks:
            history[task.slot].append(task)
        desired: dict[str, pb.Task] = {}  # task ID -> copy with its new desired state
        created: dict[int, pb.Task] = {}  # slot -> new task
        occupied: dict[int, pb.Task] = {}
        for task in tasks:
            if not occupies_slot(task):
                continue
            node = self.view.nodes.get(task.node_id) if task.node_id else None
            if task.node_id and not node_can_run_tasks(node):
                desired[task.meta.id] = with_desired(task, pb.TASK_STATE_SHUTDOWN)
                created[task.slot] = occupied[task.slot] = new_task(service, task.slot, task.attempt)
                log.info("task %s: node %s cannot run it; replacing", task.meta.id, task.node_id)
                continue
            if has_ended(task) and task.desired_state <= RUNNING:
                others = [t for t in history[task.slot] if t.meta.id != task.meta.id]
                decision = decide_restart(task, service.spec.task.restart, others, now)
                if decision.restart:
                    desired[task.meta.id] = with_desired(task, pb.TASK_STATE_SHUTDOWN)
                    replacement = new_task(service, task.slot, task.attempt + 1)
                    if decision.delay_ns > 0:
                        replacement.desired_state = pb.TASK_STATE_READY
                        replacement.restart_at = now + decision.delay_ns
                    created[task.slot] = occupied[task.slot] = replacement
                    continue
            if task.slot not in created:
                current = occupied.get(task.slot)
                if current is None or task.meta.created_at > current.meta.created_at:
                    occupied[task.slot] = task

        want = max(0, service.spec.replicas)
        if len(occupied) > want:
            # Remove slots not running first, then the highest numbers.
            order = sorted(occupied.items(), key=lambda item: (item[1].status.state == RUNNING, -item[0]))
            for slot, _ in order[: len(occupied) - want]:
                created.pop(slot, None)
                for t in history[slot]:
                    if occupies_slot(t):
                        desired[t.meta.id] = with_desired(t, pb.TASK_STATE_REMOVE)
                del occupied[slot]
        slot = 1
        while len(occupied) < want:
            while slot in occupied:
                slot += 1
            created[slot] = occupied[slot] = new_task(service, slot)
        batch.extend("update", desired.values())
        batch.extend("create", created.values())
