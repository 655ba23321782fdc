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

import asyncio
import logging
import time
from collections import defaultdict

from shoal.manager.component import Component
from shoal.manager.scheduler.filters import Claim, NodeInfo, Pipeline, published_host_ports
from shoal.manager.scheduler.placement import place
from shoal.manager.store import Event, Store, View, clone, now_ns
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

RUNNING = pb.TASK_STATE_RUNNING
# Tasks placed in one pass: bounds the time one pass holds the event loop
# (a few hundred milliseconds), whatever the number of pending tasks.
MAX_PLACEMENTS_PER_PASS = 2000
# Claims kept (one per service version): far more than a cluster has.
MAX_CLAIMS = 10_000


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


def _ports(task: pb.Task) -> list[tuple[str, int]]:
    return published_host_ports(list(task.ports)) if task.ports else []


class Scheduler(Component):
    name = "scheduler"

    def __init__(self, view: View, store: Store) -> None:
        super().__init__(view, store)
        self.pending: set[str] = set()
        # What each node holds, kept current from task events (never rebuilt
        # per pass): node ID -> NodeInfo, and task ID -> (node ID, task) for
        # every task counted on a node.
        self.infos: dict[str, NodeInfo] = {}
        self.counted: dict[str, tuple[str, Claim]] = {}
        # One Claim per service version (see Claim); cleared when large.
        self._claims: dict[tuple[str, int], Claim] = {}
        self._deferred: list[str] = []
        # Figures for benchmarks: placements made, seconds spent placing
        # (deciding, and committing the decisions), seconds spent deciding.
        self.stats = {"placed": 0, "seconds": 0.0, "decide_seconds": 0.0, "passes": 0}

    async def reconcile_all(self) -> None:
        self.infos = {node_id: NodeInfo(node) for node_id, node in self.view.nodes.items()}
        self.counted = {}
        for task in self.view.tasks.values():
            self._track(task.meta.id, task)
        self.pending = {t.meta.id for t in self.view.tasks.values() if is_pending(t)}
        await self._schedule()

    def claim_of(self, task: pb.Task) -> Claim:
        key = (task.service_id, task.spec_version)
        claim = self._claims.get(key)
        if claim is None:
            if len(self._claims) > MAX_CLAIMS:
                self._claims.clear()
            claim = self._claims[key] = Claim.of(task, _ports(task))
        return claim

    def _track(self, task_id: str, task: pb.Task | None) -> None:
        """Count a task against the node it holds, or stop counting it."""
        node_id = task.node_id if task is not None and holds_resources(task) else ""
        had = self.counted.get(task_id)
        if had is not None and had[0] == node_id:
            return
        if had is not None:
            info = self.infos.get(had[0])
            if info is not None:
                info.release(had[1])
            del self.counted[task_id]
        if node_id and task is not None:
            info = self.infos.get(node_id)
            if info is not None:
                claim = self.claim_of(task)
                info.claim(claim)
                self.counted[task_id] = (node_id, claim)

    def _track_node(self, node_id: str, node: pb.Node | None) -> None:
        if node is None:
            self.infos.pop(node_id, None)
        elif node_id in self.infos:
            self.infos[node_id].set_node(node)
        else:
            self.infos[node_id] = NodeInfo(node)
            for task in self.view.tasks_by_node.get(node_id, {}).values():
                self.counted.pop(task.meta.id, None)
                self._track(task.meta.id, task)

    async def handle(self, events: list[Event]) -> None:
        # Unplaceable tasks are tried again only when something that could
        # make room happened: a node changed, or a task released its node.
        worth_a_pass = False
        for ev in events:
            if ev.kind == "nodes":
                self._track_node(ev.id, ev.new)
                worth_a_pass = True
                continue
            if ev.kind != "tasks":
                worth_a_pass = True
                continue
            self._track(ev.id, ev.new)
            if ev.new is not None and is_pending(ev.new):
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
            await asyncio.sleep(0)

    async def _schedule(self) -> None:
        started = time.perf_counter()
        groups: dict[tuple[str, int], list[pb.Task]] = defaultdict(list)
        # Tasks left out of the last pass go first, so that a pass cut short
        # never starves them behind tasks that fit nowhere.
        deferred, self._deferred = self._deferred, []
        first = set(deferred)
        taken = 0
        for task_id in [*deferred, *(t for t in self.pending if t not in first)]:
            task = self.view.tasks.get(task_id)
            if task is None or not is_pending(task):
                self.pending.discard(task_id)
                continue
            if taken >= MAX_PLACEMENTS_PER_PASS:
                self._deferred.append(task_id)
                continue
            groups[(task.service_id, task.spec_version)].append(task)
            taken += 1
        if self._deferred:
            self.wake_at = time.monotonic()  # the rest in the next pass, the loop free in between
        if not groups:
            return
        infos = self.infos
        nodes = list(infos.values())
        batch = self.store.batch()
        now = now_ns()
        placed = 0
        for (service_id, _), tasks in groups.items():
            tasks.sort(key=lambda t: t.slot)
            ports = list(tasks[0].ports)
            spec = tasks[0].spec
            by_id = {t.meta.id: t for t in tasks}
            claim = self.claim_of(tasks[0])

            def land(info: NodeInfo, task_id: str, claim: Claim = claim) -> None:
                info.claim(claim)
                self.counted[task_id] = (info.id, claim)

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
        self.stats["decide_seconds"] += time.perf_counter() - started
        if len(batch):
            outcome = await batch.commit()
            for conflict in outcome.conflicts:
                # Not placed after all: count what is really there.
                self._track(conflict.obj.meta.id, conflict.current)
            if outcome.conflicts:
                # Someone changed those tasks meanwhile: look again shortly.
                self.wake_at = time.monotonic() + 0.1
        self.stats["placed"] += placed
        self.stats["seconds"] += time.perf_counter() - started
        self.stats["passes"] += 1
