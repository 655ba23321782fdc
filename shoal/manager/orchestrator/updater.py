"""Rolling updates and rollbacks (leader only): one updater per service.

A service needs updating when some of its occupied slots (replicated) or
nodes (global) run a task of an older ``spec_version``. The supervisor keeps
one ``ServiceUpdate`` coroutine per such service and restarts it when the
spec changes again. Each update:

1. takes ``parallelism`` out-of-date slots (0 = all) at a time;
2. replaces each: ``stop-first`` shuts the old task down and starts the new
   one once the old has stopped; ``start-first`` starts the new one and shuts
   the old down once the new one runs (healthy, if it has a health check);
3. watches the new tasks for ``monitor``: one that fails, is rejected or
   turns unhealthy is a failure; once failures exceed ``max_failure_ratio``
   of the slots it applies the failure action — ``pause`` (status paused, with
   the reason), ``continue``, or ``rollback`` (the previous spec becomes the
   spec again and is rolled out with the rollback settings);
4. waits ``delay`` before the next batch.

Progress lives in etcd: the tasks say which slots already run the new
version, and ``update_status`` says whether the update runs, paused or
finished. A new leader therefore carries on where the old one stopped and
never replaces a finished slot twice.

The updater writes tasks (new ones, and the old ones' desired state) and the
service's ``update_status`` (plus spec/previous_spec for an automatic
rollback); the ControlAPI starts updates by writing a new spec.

Why this module is a little over our ~400 lines: one update's steps above
(batches, replacing, monitoring, the failure action) read best in order in
one class; the rules it shares live elsewhere (spec versions in
``shoal.specs``, making tasks in ``tasks``, which nodes run tasks in
``manager.nodes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from shoal import specs
from shoal.manager.component import Component
from shoal.manager.nodes import can_run_tasks
from shoal.manager.orchestrator.tasks import (
    commit_desired,
    has_ended,
    new_task,
    occupies_slot,
    with_desired,
)
from shoal.manager.store import Event, NotFound, StoreError, Subscription, clone, now_ns, update_with_retry
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

# Slots prepared between two yields to the event loop.
YIELD_EVERY = 1000

RUNNING = pb.TASK_STATE_RUNNING
# How long stop-first waits for an old task to stop before starting the new
# one anyway (SwarmKit's old-task timeout).
OLD_TASK_TIMEOUT = 60.0
UPDATING_STATES = (pb.UPDATE_STATE_UPDATING, pb.UPDATE_STATE_ROLLBACK_STARTED)
PAUSED_STATES = (pb.UPDATE_STATE_PAUSED, pb.UPDATE_STATE_ROLLBACK_PAUSED)
UPDATABLE_MODES = (pb.SERVICE_MODE_REPLICATED, pb.SERVICE_MODE_GLOBAL)
FAILED_STATES = (pb.TASK_STATE_FAILED, pb.TASK_STATE_REJECTED, pb.TASK_STATE_COMPLETE)


def slot_key(task: pb.Task) -> str:
    return str(task.slot) if task.slot else task.node_id


def current_tasks(tasks: list[pb.Task]) -> dict[str, list[pb.Task]]:
    """Occupying tasks per slot (replicated) or node (global)."""
    out: dict[str, list[pb.Task]] = defaultdict(list)
    for t in tasks:
        if occupies_slot(t):
            out[slot_key(t)].append(t)
    return out


def out_of_date_slots(service: pb.Service, tasks: list[pb.Task]) -> list[str]:
    slots = []
    for key, slot_tasks in current_tasks(tasks).items():
        if not any(t.spec_version == service.spec_version for t in slot_tasks):
            slots.append(key)
    return sorted(slots, key=lambda k: (len(k), k))


class UpdateSupervisor(Component):
    """Starts, restarts and stops one ServiceUpdate per service."""

    name = "update-supervisor"
    # A service goes out of date only through a spec change (a service event).
    kinds = ("services",)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.updates: dict[str, tuple[int, asyncio.Task[None]]] = {}

    async def reconcile_all(self) -> None:
        for service_id in list(self.view.services):
            self._consider(service_id)

    async def handle(self, events: list[Event]) -> None:
        for service_id in {ev.id for ev in events}:
            self._consider(service_id)

    def _consider(self, service_id: str) -> None:
        service = self.view.services.get(service_id)
        running = self.updates.get(service_id)
        if running is not None:
            version, task = running
            unchanged = service is not None and version == service.spec_version and not task.done()
            if unchanged and service.update_status.state not in PAUSED_STATES:  # type: ignore[union-attr]
                return
            task.cancel()
            del self.updates[service_id]
        if service is None or service.spec.mode not in UPDATABLE_MODES:
            return
        if service.update_status.state in PAUSED_STATES:
            return
        tasks = list(self.view.tasks_by_service.get(service_id, {}).values())
        if not out_of_date_slots(service, tasks) and service.update_status.state not in UPDATING_STATES:
            return
        update = ServiceUpdate(self, service_id, service.spec_version)
        self.updates[service_id] = (
            service.spec_version,
            asyncio.create_task(update.run(), name=f"update-{service_id}"),
        )

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            for _, task in self.updates.values():
                task.cancel()
            for _, task in self.updates.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


class UpdateAborted(Exception):
    pass


class ServiceUpdate:
    def __init__(self, supervisor: UpdateSupervisor, service_id: str, spec_version: int) -> None:
        self.view = supervisor.view
        self.store = supervisor.store
        self.service_id = service_id
        self.spec_version = spec_version
        self.failures = 0
        self.failure_reason = ""
        self._sub: Subscription | None = None

    def service(self) -> pb.Service:
        svc = self.view.services.get(self.service_id)
        if svc is None or svc.spec_version != self.spec_version:
            raise UpdateAborted("the service changed")
        return svc

    def tasks(self) -> list[pb.Task]:
        return list(self.view.tasks_by_service.get(self.service_id, {}).values())

    async def _changes(self, timeout: float | None) -> None:
        """Until something the update waits on may have changed (a task, a
        node, the service), or timeout seconds."""
        assert self._sub is not None
        await self._sub.get_batch(None if timeout is None else max(0.0, timeout))

    async def run(self) -> None:
        self._sub = self.view.subscribe(["tasks", "nodes", "services"])
        try:
            await self._run()
        except (UpdateAborted, asyncio.CancelledError):
            return
        except StoreError as err:
            log.warning("update of service %s interrupted: %s", self.service_id, err)
        except Exception:
            log.exception("update of service %s crashed", self.service_id)
        finally:
            self._sub.close()

    def _config(self, svc: pb.Service) -> pb.UpdateConfig:
        if svc.update_status.state == pb.UPDATE_STATE_ROLLBACK_STARTED:
            return svc.spec.rollback
        return svc.spec.update

    async def _set_status(self, state: int, message: str, done: bool = False) -> None:
        if self.service().update_status.state == state and self.service().update_status.message == message:
            return

        def change(svc: pb.Service) -> None:
            if svc.spec_version != self.spec_version:
                raise UpdateAborted("the service changed")
            if svc.update_status.state != state and state in UPDATING_STATES:
                svc.update_status.started_at = now_ns()
            svc.update_status.state = state  # type: ignore[assignment]
            svc.update_status.message = message
            if done:
                svc.update_status.completed_at = now_ns()

        try:
            await update_with_retry(self.view, self.store, pb.Service, self.service_id, change)
        except NotFound:
            raise UpdateAborted("the service is gone") from None

    async def _resume_interrupted(self, svc: pb.Service) -> None:
        """Finish the slots a previous leader left half replaced: a stop-first
        replacement parked (desired READY) until the old task stops, or a
        start-first one whose old task still runs beside it. The slots count
        as up to date, so the loop below would never look at them again."""
        by_slot: dict[str, list[pb.Task]] = defaultdict(list)
        for t in self.tasks():
            by_slot[slot_key(t)].append(t)
        parked: list[pb.Task] = []
        stopping: list[pb.Task] = []
        overlap_new: list[str] = []
        overlap_old: list[pb.Task] = []
        for slot_tasks in by_slot.values():
            new = [t for t in slot_tasks if t.spec_version == svc.spec_version and occupies_slot(t)]
            if not new:
                continue
            old = [t for t in slot_tasks if t.spec_version != svc.spec_version and not has_ended(t)]
            waiting = [t for t in new if t.desired_state == pb.TASK_STATE_READY and not t.restart_at]
            if waiting:
                parked.extend(waiting)
                stopping.extend(old)
            elif any(occupies_slot(t) for t in old):
                overlap_new.extend(t.meta.id for t in new)
                overlap_old.extend(t for t in old if occupies_slot(t))
        if parked:
            log.info(
                "service %s: finishing %d replacements a previous leader began", svc.spec.name, len(parked)
            )
            shutdown = [with_desired(t, pb.TASK_STATE_SHUTDOWN) for t in stopping if occupies_slot(t)]
            if shutdown:
                await commit_desired(self.view, self.store, self.store.batch().extend("update", shutdown))
            await self._wait_stopped([t.meta.id for t in stopping])
            start = [
                with_desired(t, RUNNING) for t in self._live(parked) if t.desired_state == pb.TASK_STATE_READY
            ]
            await commit_desired(self.view, self.store, self.store.batch().extend("update", start))
        if overlap_old:
            await self._wait_running(overlap_new)
            shutdown = [
                with_desired(t, pb.TASK_STATE_SHUTDOWN) for t in self._live(overlap_old) if occupies_slot(t)
            ]
            await commit_desired(self.view, self.store, self.store.batch().extend("update", shutdown))

    async def _run(self) -> None:
        svc = self.service()
        await self._resume_interrupted(svc)
        rolling_back = svc.update_status.state == pb.UPDATE_STATE_ROLLBACK_STARTED
        total = len(current_tasks(self.tasks()))
        if out_of_date_slots(svc, self.tasks()) and svc.update_status.state not in UPDATING_STATES:
            await self._set_status(pb.UPDATE_STATE_UPDATING, "update in progress")
        while True:
            svc = self.service()
            cfg = self._config(svc)
            slots = out_of_date_slots(svc, self.tasks())
            if not slots:
                break
            batch = slots if cfg.parallelism <= 0 else slots[: cfg.parallelism]
            new_ids = await self._replace(svc, batch, cfg)
            failed = await self._monitor(new_ids, cfg)
            self.failures += failed
            if failed and self.failures > cfg.max_failure_ratio * max(1, total):
                await self._on_failure(cfg, rolling_back)
                return
            if cfg.delay > 0 and len(slots) > len(batch):
                await asyncio.sleep(cfg.delay / 1e9)
        svc = self.service()
        if svc.update_status.state == pb.UPDATE_STATE_ROLLBACK_STARTED:
            # Keep why an automatic rollback happened: that is what users ask.
            why = svc.update_status.message
            message = "rollback completed" if why.startswith("manually") else f"{why} (rollback completed)"
            await self._set_status(pb.UPDATE_STATE_ROLLBACK_COMPLETED, message, done=True)
        elif svc.update_status.state == pb.UPDATE_STATE_UPDATING:
            await self._set_status(pb.UPDATE_STATE_COMPLETED, "update completed", done=True)

    async def _on_failure(self, cfg: pb.UpdateConfig, rolling_back: bool) -> None:
        reason = self.failure_reason or "a task failed"
        if rolling_back:
            if cfg.failure_action == pb.FAILURE_ACTION_CONTINUE:
                return
            await self._set_status(
                pb.UPDATE_STATE_ROLLBACK_PAUSED, f"rollback paused due to failure: {reason}"
            )
            return
        if cfg.failure_action == pb.FAILURE_ACTION_CONTINUE:
            return
        if cfg.failure_action == pb.FAILURE_ACTION_PAUSE:
            await self._set_status(pb.UPDATE_STATE_PAUSED, f"update paused due to failure: {reason}")
            return
        # Roll back: the previous spec becomes the spec again, as a new version.
        svc = clone(self.service())
        if not svc.HasField("previous_spec"):
            await self._set_status(
                pb.UPDATE_STATE_PAUSED, f"update paused (nothing to roll back to): {reason}"
            )
            return
        failed_spec, failed_version = clone(svc.spec), svc.spec_version
        svc.spec.CopyFrom(svc.previous_spec)
        svc.previous_spec.CopyFrom(failed_spec)
        # Back to the previous version number: the tasks that still run it
        # are up to date, only those of the failed version are replaced.
        svc.spec_version = specs.rollback_version(svc)
        svc.previous_spec_version = failed_version
        svc.update_status.state = pb.UPDATE_STATE_ROLLBACK_STARTED
        svc.update_status.message = f"update rolled back due to failure: {reason}"
        svc.update_status.started_at = now_ns()
        await self.store.update(svc)
        log.info("service %s: update failed (%s); rolling back", svc.spec.name, reason)

    async def _replace(self, svc: pb.Service, keys: list[str], cfg: pb.UpdateConfig) -> list[str]:
        """Replace the tasks of these slots with ones of the current version,
        all in one batch; return the new tasks' IDs."""
        groups = current_tasks(self.tasks())
        old: list[pb.Task] = []
        fresh: list[pb.Task] = []
        for i, key in enumerate(keys):
            if i and i % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # parallelism 0 may mean 100,000 slots: let the loop breathe
            stale = [t for t in groups.get(key, []) if t.spec_version != svc.spec_version]
            if not stale:
                continue  # the slot went away or was replaced meanwhile
            sample = stale[0]
            fresh.append(new_task(svc, sample.slot, 0, node_id=sample.node_id if not sample.slot else ""))
            old.extend(stale)
        if not fresh:
            return []
        ids = [t.meta.id for t in fresh]
        if cfg.order == pb.UPDATE_ORDER_START_FIRST:
            await self.store.batch().extend("create", fresh).commit()
            await self._wait_running(ids)
            shutdown = (with_desired(t, pb.TASK_STATE_SHUTDOWN) for t in self._live(old))
            await commit_desired(self.view, self.store, self.store.batch().extend("update", shutdown))
        else:
            for t in fresh:
                t.desired_state = pb.TASK_STATE_READY
            batch = self.store.batch().extend(
                "update", (with_desired(t, pb.TASK_STATE_SHUTDOWN) for t in self._live(old))
            )
            await commit_desired(self.view, self.store, batch.extend("create", fresh))
            await self._wait_stopped([t.meta.id for t in old])
            waiting = [self.view.tasks.get(tid) for tid in ids]
            start = [
                with_desired(t, RUNNING)
                for t in waiting
                if t is not None and t.desired_state == pb.TASK_STATE_READY
            ]
            await commit_desired(self.view, self.store, self.store.batch().extend("update", start))
        return ids

    def _live(self, tasks: list[pb.Task]) -> list[pb.Task]:
        return [self.view.tasks[t.meta.id] for t in tasks if t.meta.id in self.view.tasks]

    async def _wait_stopped(self, task_ids: list[str]) -> None:
        deadline = asyncio.get_running_loop().time() + OLD_TASK_TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            self.service()
            pending = [
                t
                for tid in task_ids
                if (t := self.view.tasks.get(tid)) is not None
                and t.node_id
                and not has_ended(t)
                and t.status.state >= pb.TASK_STATE_ASSIGNED
                and can_run_tasks(self.view.nodes.get(t.node_id))
            ]
            if not pending:
                return
            await self._changes(deadline - asyncio.get_running_loop().time())

    async def _wait_running(self, task_ids: list[str]) -> None:
        """Until each task runs (healthy, if checked), ended, or was stopped."""
        waiting = list(task_ids)
        while waiting:
            self.service()
            still = []
            for task_id in waiting:
                t = self.view.tasks.get(task_id)
                if t is None or has_ended(t) or t.desired_state > RUNNING:
                    continue
                if t.status.state == RUNNING and t.status.health in (pb.HEALTH_NONE, pb.HEALTH_HEALTHY):
                    continue
                still.append(task_id)
            waiting = still
            if waiting:
                await self._changes(None)

    async def _monitor(self, task_ids: list[str], cfg: pb.UpdateConfig) -> int:
        """Wait for the new tasks to run, then watch them for the monitor
        window; return how many failed."""
        await self._wait_running(task_ids)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.monitor / 1e9
        failed: set[str] = set()
        while True:
            self.service()
            for task_id in task_ids:
                t = self.view.tasks.get(task_id)
                if t is None or task_id in failed:
                    continue
                if t.status.state in FAILED_STATES or t.status.health == pb.HEALTH_UNHEALTHY:
                    failed.add(task_id)
                    what = t.status.err or t.status.message or "task ended"
                    if t.status.health == pb.HEALTH_UNHEALTHY:
                        what = "task became unhealthy"
                    self.failure_reason = f"task {t.meta.id} ({t.service_name}.{slot_key(t)}): {what}"
            if loop.time() >= deadline:
                return len(failed)
            await self._changes(deadline - loop.time())
