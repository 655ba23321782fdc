"""The scheduler: gives each pending task a node (leader only).

It keeps the set of pending tasks (no node yet, desired to run) from the
view's events, and after each debounced burst places them all: grouped by
service version, each group placed by ``placement.place`` over one snapshot
of the nodes, and every decision committed in one batch. A task that fits
nowhere stays ``pending`` with the pipeline's explanation as its error; it is
tried again whenever nodes or tasks change (a node joins, resources free up).

It writes ``node_id`` and the ASSIGNED status, nothing else.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

from shoal.manager.component import Component
from shoal.manager.scheduler.filters import NodeInfo, Pipeline, published_host_ports
from shoal.manager.scheduler.placement import place
from shoal.manager.store import Event, Store, View, clone, now_ns
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

RUNNING = pb.TASK_STATE_RUNNING


def is_pending(task: pb.Task) -> bool:
    """Waiting for the scheduler: no node yet, or (global services) a node
    chosen by the orchestrator that the scheduler has not confirmed."""
    return task.status.state <= pb.TASK_STATE_PENDING and task.desired_state <= RUNNING


def holds_resources(task: pb.Task) -> bool:
    """A task counts against its node once assigned there, while it may
    still be running."""
    return task.status.state > pb.TASK_STATE_PENDING and (
        task.desired_state <= RUNNING or task.status.state <= RUNNING
    )


class Scheduler(Component):
    name = "scheduler"

    def __init__(self, view: View, store: Store) -> None:
        super().__init__(view, store)
        self.pending: set[str] = set()
        # Figures for benchmarks: placements made and seconds spent placing.
        self.stats = {"placed": 0, "seconds": 0.0, "passes": 0}

    async def reconcile_all(self) -> None:
        self.pending = {t.meta.id for t in self.view.tasks.values() if is_pending(t)}
        await self._schedule()

    async def handle(self, events: list[Event]) -> None:
        # Unplaceable tasks are tried again only when something that could
        # make room happened: a node changed, or a task released its node.
        worth_a_pass = False
        for ev in events:
            if ev.kind != "tasks":
                worth_a_pass = True
            elif ev.new is not None and is_pending(ev.new):
                worth_a_pass = worth_a_pass or ev.id not in self.pending
                self.pending.add(ev.id)
            else:
                self.pending.discard(ev.id)
                released = (
                    ev.old is not None
                    and holds_resources(ev.old)
                    and (ev.new is None or not holds_resources(ev.new))
                )
                worth_a_pass = worth_a_pass or released
        if self.pending and worth_a_pass:
            await self._schedule()

    async def tick(self) -> None:
        if self.pending:
            await self._schedule()

    def _snapshot(self) -> dict[str, NodeInfo]:
        infos: dict[str, NodeInfo] = {}
        for node_id, node in self.view.nodes.items():
            info = NodeInfo(node)
            for task in self.view.tasks_by_node.get(node_id, {}).values():
                if holds_resources(task):
                    info.add(task, published_host_ports(list(task.ports)) if task.ports else [])
            infos[node_id] = info
        return infos

    async def _schedule(self) -> None:
        started = time.perf_counter()
        groups: dict[tuple[str, int], list[pb.Task]] = defaultdict(list)
        for task_id in list(self.pending):
            task = self.view.tasks.get(task_id)
            if task is None or not is_pending(task):
                self.pending.discard(task_id)
                continue
            groups[(task.service_id, task.spec_version)].append(task)
        if not groups:
            return
        infos = self._snapshot()
        nodes = list(infos.values())
        batch = self.store.batch()
        now = now_ns()
        placed = 0
        for (service_id, _), tasks in groups.items():
            tasks.sort(key=lambda t: t.slot)
            ports = list(tasks[0].ports)
            spec = tasks[0].spec
            by_id = {t.meta.id: t for t in tasks}
            claimed = published_host_ports(ports)

            def land(
                info: NodeInfo,
                task_id: str,
                by_id: dict[str, pb.Task] = by_id,
                claimed: list[tuple[str, int]] = claimed,
            ) -> None:
                info.add(by_id[task_id], claimed)

            pipeline = Pipeline(service_id, spec, ports)
            free = [t.meta.id for t in tasks if not t.node_id]
            prefs = [p.spread for p in spec.placement.preferences]
            result = place(service_id, free, nodes, pipeline, prefs, land)
            for task in tasks:
                if not task.node_id:
                    continue
                # Global tasks come with their node: only check that it fits.
                info = infos.get(task.node_id)
                if info is not None and pipeline.check(info):
                    land(info, task.meta.id)
                    result.assigned[task.meta.id] = task.node_id
                else:
                    result.unplaced.append(task.meta.id)
                    result.reason = pipeline.explain() if info is not None else "node not found"
            for task_id, node_id in result.assigned.items():
                task = clone(by_id[task_id])
                task.node_id = node_id
                task.status.state = pb.TASK_STATE_ASSIGNED
                task.status.timestamp = now
                task.status.message = "scheduler assigned task to node"
                task.status.err = ""
                batch.update(task)
                placed += 1
            for task_id in result.unplaced:
                task = by_id[task_id]
                if task.status.err != result.reason:
                    task = clone(task)
                    task.status.err = result.reason
                    task.status.timestamp = now
                    batch.update(task)
        if len(batch):
            outcome = await batch.commit()
            if outcome.conflicts:
                # Someone changed those tasks meanwhile: look again shortly.
                self.wake_at = time.monotonic() + 0.1
        self.stats["placed"] += placed
        self.stats["seconds"] += time.perf_counter() - started
        self.stats["passes"] += 1
