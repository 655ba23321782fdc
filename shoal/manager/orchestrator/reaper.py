"""The task reaper: deletes tasks nobody needs to see any more (leader only).

- A task whose desired state is REMOVE (its service was removed, or its slot
  scaled away) is deleted once it has stopped, or at once when it never
  reached a node or its node is gone or down.
- History: per slot, ended tasks beyond the cluster's task history limit
  (default 5, as Swarm) are deleted, oldest first.

It looks only at the slots touched by each burst of events, never at every
task.
"""

from __future__ import annotations

from collections import defaultdict

from shoal.manager.component import Component
from shoal.manager.orchestrator.tasks import has_ended, occupies_slot
from shoal.manager.store import Event
from shoal.protos import objects_pb2 as pb

DEFAULT_HISTORY = 5


class TaskReaper(Component):
    name = "task-reaper"
    kinds = ("tasks", "nodes")

    async def reconcile_all(self) -> None:
        await self._reap(
            {sid: {slot_key(t) for t in tasks.values()} for sid, tasks in self.view.tasks_by_service.items()}
        )

    async def handle(self, events: list[Event]) -> None:
        dirty: dict[str, set[tuple[int, str]]] = defaultdict(set)
        for ev in events:
            if ev.kind == "tasks":
                task = ev.new or ev.old
                assert task is not None
                # Only tasks that stop occupying their slot or end can be reaped.
                if (
                    ev.new is None
                    or ev.new.desired_state > pb.TASK_STATE_RUNNING
                    or ev.new.status.state > pb.TASK_STATE_RUNNING
                ):
                    dirty[task.service_id].add(slot_key(task))
            elif ev.kind == "nodes":
                for task in self.view.tasks_by_node.get(ev.id, {}).values():
                    if task.desired_state == pb.TASK_STATE_REMOVE:
                        dirty[task.service_id].add(slot_key(task))
        await self._reap(dirty)

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
                        if has_ended(t) or not t.node_id or self._node_gone(t):
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
