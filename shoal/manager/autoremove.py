"""Removing finished ``shoal run --rm`` jobs (leader only).

``shoal run --rm`` removes its service itself once the task has ended, but
with ``-d`` (or when the client is killed) nobody is left to do it. So the
service carries ``specs.AUTOREMOVE_LABEL``, and the leader removes a
replicated job so labelled once it has finished: every slot has a task that
completed, or one that ended and that the restart policy does not replace.
The label's value says when: ``true`` at once (``run -d --rm``), or a
duration after the job finished (an attached ``run --rm`` gives its client
that long to read the task's output and remove the service itself).
The removal is the ControlAPI's (the service with its name and port claims,
``unique``, in one transaction); its tasks are then stopped and reaped as for
``service rm``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from shoal import specs
from shoal.durations import parse_duration
from shoal.manager.component import Component
from shoal.manager.controlapi import unique
from shoal.manager.orchestrator.restart import decide_restart
from shoal.manager.orchestrator.tasks import has_ended, occupies_slot
from shoal.manager.store import Event, NotFound, StoreError, VersionConflict, now_ns
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)


def removal_delay(service: pb.Service) -> int | None:
    """How long after its job finished the service goes (ns); None: never."""
    if service.spec.mode != pb.SERVICE_MODE_REPLICATED_JOB:
        return None
    value = service.spec.labels.get(specs.AUTOREMOVE_LABEL, "").strip().lower()
    if value == "true":
        return 0
    try:
        return parse_duration(value) if value else None
    except ValueError:
        return None


def job_finished(service: pb.Service, tasks: list[pb.Task], now: int) -> bool:
    """Whether a replicated job will run nothing more: each slot has a
    completed task, or its current task ended and is not to be restarted."""
    by_slot: dict[int, list[pb.Task]] = defaultdict(list)
    for task in tasks:
        by_slot[task.slot].append(task)
    for slot in range(1, max(0, service.spec.replicas) + 1):
        slot_tasks = by_slot.get(slot, [])
        if any(t.status.state == pb.TASK_STATE_COMPLETE for t in slot_tasks):
            continue
        live = [t for t in slot_tasks if occupies_slot(t)]
        if not slot_tasks or any(not has_ended(t) for t in live):
            return False
        for task in live:
            others = [t for t in slot_tasks if t.meta.id != task.meta.id]
            if decide_restart(task, service.spec.task.restart, others, now).restart:
                return False
    return True


class AutoRemover(Component):
    name = "autoremover"
    kinds = ("services", "tasks")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Finished jobs whose delay runs: service ID -> when (monotonic).
        self._due: dict[str, float] = {}

    async def reconcile_all(self) -> None:
        for service in list(self.view.services.values()):
            await self._check(service.meta.id)

    async def tick(self) -> None:
        now = time.monotonic()
        for service_id in [sid for sid, due in self._due.items() if due <= now]:
            del self._due[service_id]
            await self._check(service_id)
        self.wake_at = min(self._due.values(), default=None)

    async def handle(self, events: list[Event]) -> None:
        touched: set[str] = set()
        for ev in events:
            obj = ev.new or ev.old
            if ev.kind == "services":
                touched.add(ev.id)
            elif isinstance(obj, pb.Task) and (ev.new is None or has_ended(ev.new)):
                touched.add(obj.service_id)
        for service_id in touched:
            await self._check(service_id)

    async def _check(self, service_id: str) -> None:
        service = self.view.services.get(service_id)
        delay = removal_delay(service) if service is not None else None
        if service is None or delay is None:
            return
        tasks = list(self.view.tasks_by_service.get(service_id, {}).values())
        now = now_ns()
        if not job_finished(service, tasks, now):
            return
        finished_at = max((t.status.timestamp for t in tasks if has_ended(t)), default=now)
        wait = (finished_at + delay - now) / 1e9
        if wait > 0:
            self._due[service_id] = time.monotonic() + wait
            self.wake_at = min(self._due.values())
            return
        try:
            writes = await unique.plan(self.view, self.store, service_id, service.spec, None)
            batch = self.store.batch().delete(service)
            for w in writes:
                w.add_to(batch)
            await batch.commit_all_or_nothing()
        except (VersionConflict, NotFound):
            return  # changed or gone meanwhile: the next event looks again
        except StoreError as err:
            log.warning("removing finished job %s: %s", service.spec.name, err)
            return
        log.info(
            "removed service %s: its job has finished and it asked to be removed (--rm)", service.spec.name
        )
