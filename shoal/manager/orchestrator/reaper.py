"""The task reaper: deletes tasks nobody needs to see any more (leader only).

- A task whose desired state is REMOVE (its service was removed, or its slot
  scaled away) is deleted once it has stopped, or at once when it never
  reached a node or its node is gone or down.
- History: per slot, ended tasks beyond the cluster's task history limit
  (default 5, as Swarm) are deleted, oldest first.

A task marked for removal is judged from its own event (or its node's). The
history of the slots touched is trimmed at most once per HISTORY_INTERVAL
(Swarm's reaper batches the same way): finding a slot's tasks means a look
over its service's tasks, and a node loss or a rolling update touches slots
in a burst every few milliseconds. It never looks at every task.
"""

from __future__ import annotations

import time
from collections import defaultdict

from shoal.manager.component import Component
from shoal.manager.orchestrator.tasks import has_ended, occupies_slot
from shoal.manager.store import Event, Store, View
from shoal.protos import objects_pb2 as pb

DEFAULT_HISTORY = 5
# Seconds between trims of the touched slots' history (Swarm: 250 ms).
HISTORY_INTERVAL = 0.5


class TaskReaper(Component):
    name = "task-reaper"
    kinds = ("tasks", "nodes")

    def __init__(self, view: View, store: Store) -> None:
        super().__init__(view, store)
        # Slots whose history is to be trimmed at the next tick, per service.
        self._dirty: dict[str, set[tuple[int, str]]] = defaultdict(set)

    async def reconcile_all(self) -> None:
        self._dirty.clear()
        for sid, tasks in self.view.tasks_by_service.items():
            self._dirty[sid].update(slot_key(t) for t in tasks.values())
        await self.tick()

    async def handle(self, events: list[Event]) -> None:
        doomed: dict[str, pb.Task] = {}
        for ev in events:
            if ev.kind == "tasks":
                task = self.view.tasks.get(ev.id)  # the newest, if the burst holds several
                if task is None:
                    continue
                if task.desired_state == pb.TASK_STATE_REMOVE:
                    if self._removable(task):
                        doomed[task.meta.id] = task
                # Only tasks that stop occupying their slot or end add history.
                elif task.desired_state > pb.TASK_STATE_RUNNING or task.status.state > pb.TASK_STATE_RUNNING:
                    self._dirty[task.service_id].add(slot_key(task))
            elif ev.kind == "nodes":
                for task in self.view.tasks_by_node.get(ev.id, {}).values():
                    if task.desired_state == pb.TASK_STATE_REMOVE and self._removable(task):
                        doomed[task.meta.id] = task
        if doomed:
            await self.store.batch().extend("delete", doomed.values()).commit()
        if self._dirty and self.wake_at is None:
            self.wake_at = time.monotonic() + HISTORY_INTERVAL

    async def tick(self) -> None:
        dirty, self._dirty = self._dirty, defaultdict(set)
        await self._reap(dirty)

    def _removable(self, task: pb.Task) -> bool:
        """A task marked for removal goes once it stopped, or at once when it
        never reached a node or its node is gone or down."""
        return has_ended(task) or not task.node_id or self._node_gone(task)

    def _history_limit(self) -> int:
        cluster = self.view.cluster()
        if cluster is None or cluster.spec.task_history_limit == 0:
            return DEFAULT_HISTORY
        return cluster.spec.task_history_limit

    def _node_gone(self, task: pb.Task) -> bool:
        node = self.view.nodes.get(task.node_id)
        return node is None or node.status.state == pb.NODE_STATE_DOWN

    async def _reap(self, dirty: dict[str, set[tuple[int, str]]]) -> None:
        limit = self._history_limit()
        doomed: list[pb.Task] = []
        for service_id, keys in dirty.items():
            slots: dict[tuple[int, str], list[pb.Task]] = defaultdict(list)
            # Cheap tests first: most of a large service's tasks are in
            # slots nobody touched.
            numbers = {slot for slot, _ in keys if slot}
            nodes = {node for slot, node in keys if not slot}
            for t in self.view.tasks_by_service.get(service_id, {}).values():
                slot = t.slot
                if slot:
                    if slot in numbers:
                        slots[(slot, "")].append(t)
                elif t.node_id in nodes:
                    slots[(0, t.node_id)].append(t)
            for tasks in slots.values():
                history = []
                for t in tasks:
                    if t.desired_state == pb.TASK_STATE_REMOVE:
                        if self._removable(t):
                            doomed.append(t)
                    elif not occupies_slot(t) and (has_ended(t) or self._node_gone(t)):
                        history.append(t)
                history.sort(key=lambda t: t.meta.created_at, reverse=True)
                doomed.extend(history[limit:])
        if doomed:
            await self.store.batch().extend("delete", doomed).commit()


def slot_key(task: pb.Task) -> tuple[int, str]:
    """Replicated tasks share history by slot; global ones by node."""
    return (task.slot, "" if task.slot else task.node_id)
