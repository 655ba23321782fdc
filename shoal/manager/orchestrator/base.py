"""What every orchestrator shares: which services to look at, delayed
restarts, and committing one batch per pass.

An orchestrator owns the services of its modes. After each burst of events it
reconciles the services that changed (their spec, one of their tasks, or a
node they run on or could run on) and commits the difference in one batch.
Replacements that wait out a restart delay are created desired READY; the
orchestrator that made them moves them to RUNNING when the delay has passed,
and a new leader picks such pending restarts up from the view.

When more than half of the nodes are down at once (a rack, a zone, a
network split seen from one side), the tasks of down nodes are not all moved
at once onto the few survivors: one node's tasks every
``MASS_FAILURE_INTERVAL`` (as Kubernetes' node controller slows evictions in
a disrupted zone), so that nodes that come back within minutes find their
tasks still theirs, and the survivors are not stampeded.

A pass changes at most ``MAX_CHANGES_PER_PASS`` tasks: a service that needs
more (created with 100,000 replicas, or scaled to 0 from there) gets them
over several passes, with the event loop free in between, so the leader's
lease keep-alive and every other loop keep running whatever was asked.
"""

from __future__ import annotations

import logging
import time

from shoal.manager.component import Component
from shoal.manager.orchestrator.tasks import commit_desired, with_desired
from shoal.manager.store import Batch, BatchResult, Event, Store, View, now_ns
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

RUNNING = pb.TASK_STATE_RUNNING
# Look again at services whose batch hit a version conflict (or that were cut
# short by the budget below) after this long.
CONFLICT_RETRY = 0.1
# Task creations and desired-state changes in one pass: a few hundred
# milliseconds of work on a small machine.
MAX_CHANGES_PER_PASS = 2000
# A mass failure: more than this share of the nodes down, with at least
# MASS_FAILURE_MIN_NODES nodes in the cluster.
MASS_FAILURE_SHARE = 0.5
MASS_FAILURE_MIN_NODES = 3
MASS_FAILURE_INTERVAL = 10.0


def task_event_matters(ev: Event) -> bool:
    """Only some task changes can change what an orchestrator wants: a task
    appearing or going, ending while it occupies its slot, or starting or
    ceasing to occupy it (its desired state). Progress (assigned ->
    running) does not, nor does the end of a task already replaced (desired
    shutdown or remove: a rolling update's old tasks, a lost node's) unless
    it completed; skipping them keeps a busy cluster's passes small."""
    old, new = ev.old, ev.new
    if new is None:
        return True
    if old is None:
        # Tasks appear because an orchestrator or the updater made them: the
        # maker already accounted for them.
        return False
    if new.desired_state != old.desired_state:
        # Only when the task starts or stops occupying its slot: a
        # replacement let go (READY -> RUNNING, the updater's and delayed
        # restarts') or a replaced task marked for removal changes nothing.
        return bool((old.desired_state <= RUNNING) != (new.desired_state <= RUNNING))
    ended_changed = (new.status.state > RUNNING) != (old.status.state > RUNNING)
    # A job's slot is done by any completed task in it, replaced or not.
    counts = new.desired_state <= RUNNING or new.status.state == pb.TASK_STATE_COMPLETE
    return bool(ended_changed and counts)


def node_event_matters(ev: Event) -> bool:
    """Availability, state, labels (in the spec) and existence matter;
    heartbeat-time details (address, description) do not."""
    old, new = ev.old, ev.new
    if old is None or new is None:
        return True
    same_spec = old.spec.SerializeToString(deterministic=True) == new.spec.SerializeToString(
        deterministic=True
    )
    return bool(old.status.state != new.status.state or not same_spec)


class Orchestrator(Component):
    modes: tuple[int, ...] = ()
    # Whether node changes concern every service of these modes (global
    # services: a node that joins gets a task) or only those with tasks there.
    node_events_touch_all = False

    def __init__(self, view: View, store: Store) -> None:
        super().__init__(view, store)
        self._delayed: dict[str, int] = {}  # task ID -> wall-clock ns of its restart
        self._retry: set[str] = set()
        # Tasks this orchestrator created (or tried to), whose creation event
        # is still to come. A creation it did not make (the updater's, or one
        # of its own that it thought had failed) gets the service looked at.
        self._made: set[str] = set()
        # Tasks whose desired state this orchestrator changed (replaced or
        # removed them), whose change event is still to come: it accounted
        # for them when it made the change, so that event asks for no pass
        # over the service (a lost node's 10,000 tasks would ask for one
        # pass per burst over every task of their services).
        self._changed: set[str] = set()
        # Down nodes whose tasks wait to be moved during a mass failure, in
        # the order they went down; when a down node's tasks last moved.
        self.held_nodes: list[str] = []
        self._last_moved = 0.0

    def owns(self, service: pb.Service) -> bool:
        return service.spec.mode in self.modes

    def reconcile_service(self, service: pb.Service, tasks: list[pb.Task], batch: Batch) -> None:
        raise NotImplementedError

    def room(self, batch: Batch, service_id: str, wanted: int) -> int:
        """How many of `wanted` changes this pass may still make for a
        service; the service is looked at again soon if that is fewer."""
        left = max(0, MAX_CHANGES_PER_PASS - len(batch))
        if wanted > left:
            self._retry.add(service_id)
        return min(wanted, left)

    def reconcile_deleted(self, service_id: str, tasks: list[pb.Task], batch: Batch) -> None:
        """Tasks of a removed service; only one orchestrator handles these."""

    def node_changed(self, node_id: str, batch: Batch) -> set[str]:
        """React to a change of one node (down, drained, labels). Default:
        the services with tasks there need a full look (returned)."""
        return {t.service_id for t in self.view.tasks_by_node.get(node_id, {}).values()}

    # -------------------------------------------------------------- loop

    async def reconcile_all(self) -> None:
        self._made.clear()
        self._changed.clear()
        for task in self.view.tasks.values():
            if task.desired_state == pb.TASK_STATE_READY and task.restart_at:
                service = self.view.services.get(task.service_id)
                if service is not None and self.owns(service):
                    self._delayed[task.meta.id] = task.restart_at
        await self._reconcile(set(self.view.services) | set(self.view.tasks_by_service))
        await self.tick()

    async def handle(self, events: list[Event]) -> None:
        dirty: set[str] = set(self._retry)
        self._retry.clear()
        # Node changes are committed first, so that the services reconciled
        # below already see the replacements in the view.
        batch = self.store.batch()
        for ev in events:
            if ev.kind == "services":
                dirty.add(ev.id)
            elif ev.kind == "tasks":
                if ev.old is None and ev.new is not None:
                    if ev.id in self._made:
                        self._made.discard(ev.id)
                    else:
                        dirty.add(ev.new.service_id)  # not ours: a twin in some slot?
                elif self._own_change(ev):
                    continue
                elif task_event_matters(ev):
                    task = ev.new or ev.old
                    assert task is not None
                    dirty.add(task.service_id)
            elif ev.kind == "nodes":
                if not node_event_matters(ev) or self._hold(ev):
                    continue
                if self.node_events_touch_all:
                    dirty.update(s.meta.id for s in self.view.services.values() if self.owns(s))
                else:
                    dirty.update(self.node_changed(ev.id, batch))
        if len(batch):
            await self.commit(batch)
        await self._reconcile(dirty)

    def _own_change(self, ev: Event) -> bool:
        """Whether this is the event of a desired-state change this
        orchestrator made (the first such event of the task after its commit:
        a later writer's change comes after it)."""
        if ev.id not in self._changed or ev.old is None or ev.new is None:
            return False
        if ev.old.desired_state == ev.new.desired_state:
            return False
        self._changed.discard(ev.id)
        return True

    def mass_failure(self) -> bool:
        nodes = self.view.nodes
        down = sum(1 for n in nodes.values() if n.status.state == pb.NODE_STATE_DOWN)
        return len(nodes) >= MASS_FAILURE_MIN_NODES and down > MASS_FAILURE_SHARE * len(nodes)

    def _hold(self, ev: Event) -> bool:
        """During a mass failure, keep a node that went down for later."""
        node = ev.new
        if node is None or node.status.state != pb.NODE_STATE_DOWN:
            if ev.id in self.held_nodes:
                self.held_nodes.remove(ev.id)  # back, or gone: nothing to hold
            return False
        if ev.id in self.held_nodes:
            return True
        if not self.mass_failure():
            self._last_moved = time.monotonic()
            return False
        if not self.held_nodes:
            down = sum(1 for n in self.view.nodes.values() if n.status.state == pb.NODE_STATE_DOWN)
            log.warning(
                "%s: %d of %d nodes are down: moving their tasks one node every %.0fs",
                self.name,
                down,
                len(self.view.nodes),
                MASS_FAILURE_INTERVAL,
            )
        self.held_nodes.append(ev.id)
        self._arm_timer()
        return True

    async def _release_held(self) -> None:
        if not self.held_nodes:
            return
        now = time.monotonic()
        if self.mass_failure() and now - self._last_moved < MASS_FAILURE_INTERVAL:
            return
        # Once the failure is no longer massive, the rest go at once.
        release = self.held_nodes[:1] if self.mass_failure() else list(self.held_nodes)
        del self.held_nodes[: len(release)]
        self._last_moved = now
        batch = self.store.batch()
        dirty: set[str] = set()
        for node_id in release:
            dirty |= self.node_changed(node_id, batch)
        if len(batch):
            await self.commit(batch)
        await self._reconcile(dirty)

    async def commit(self, batch: Batch) -> BatchResult:
        self._made.update(batch.ids("create"))
        self._changed.update(batch.ids("update"))
        result = await commit_desired(self.view, self.store, batch)
        for conflict in result.conflicts:
            self._made.discard(conflict.obj.meta.id)
            self._changed.discard(conflict.obj.meta.id)
        return result

    async def tick(self) -> None:
        """Start delayed restarts whose time has come; look again at services
        left for later."""
        await self._release_held()
        if self._retry:
            dirty, self._retry = set(self._retry), set()
            await self._reconcile(dirty)
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
        self.wake_at = None
        if soonest is not None:
            self.wake_at = time.monotonic() + max(0.0, (soonest - now_ns()) / 1e9)
        if self._retry:
            retry_at = time.monotonic() + CONFLICT_RETRY
            self.wake_at = min(self.wake_at or retry_at, retry_at)
        if self.held_nodes:
            release_at = self._last_moved + MASS_FAILURE_INTERVAL
            self.wake_at = min(self.wake_at or release_at, release_at)

    async def _reconcile(self, service_ids: set[str]) -> None:
        batch = self.store.batch()
        for service_id in service_ids:
            if len(batch) >= MAX_CHANGES_PER_PASS:
                self._retry.add(service_id)  # the next pass, with the loop free in between
                continue
            service = self.view.services.get(service_id)
            tasks = list(self.view.tasks_by_service.get(service_id, {}).values())
            if service is None:
                self.reconcile_deleted(service_id, tasks, batch)
            elif self.owns(service):
                self.reconcile_service(service, tasks, batch)
        if not len(batch):
            return
        result = await self.commit(batch)
        for conflict in result.conflicts:
            self._retry.add(conflict.obj.service_id)
        for task in result.committed:
            if isinstance(task, pb.Task) and task.desired_state == pb.TASK_STATE_READY and task.restart_at:
                self._delayed[task.meta.id] = task.restart_at
        self._arm_timer()
