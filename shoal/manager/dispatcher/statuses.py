"""Task statuses from every session, written in batches.

Agents report many small changes; writing each alone would cost a
transaction apiece. ``StatusWriter`` keeps the newest status per task and,
``FLUSH_INTERVAL`` after the first one arrives, writes them all in one batch.
A status never moves a task backwards; one that lost a race with another
writer (a desired-state change) is applied again to the stored version; an
etcd outage keeps them for the next flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from shoal.manager.store import Store, StoreError, VersionConflict, View, clone, on_conflict
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.1
# How often a batch that lost races is redone at once.
ATTEMPTS = 5
# After an etcd failure, before writing again.
RETRY_DELAY = 0.5


def moves_forward(current: pb.TaskStatus, new: pb.TaskStatus) -> bool:
    """Statuses never go backwards; the same state may carry news (health,
    a message)."""
    if new.state < current.state:
        return False
    return new.state > current.state or new.SerializeToString() != current.SerializeToString()


class StatusWriter:
    def __init__(self, view: View, store: Store) -> None:
        self.view = view
        self.store = store
        self._pending: dict[str, pb.TaskStatus] = {}
        self._wakeup = asyncio.Event()

    def add(self, statuses: dict[str, pb.TaskStatus]) -> None:
        self._pending.update(statuses)
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(FLUSH_INTERVAL)
            pending, self._pending = self._pending, {}
            try:
                left = await self._write(pending)
            except StoreError as err:
                log.warning("writing task statuses failed (%s); will retry", err)
                for task_id, status in pending.items():
                    self._pending.setdefault(task_id, status)
                self._wakeup.set()
                await asyncio.sleep(RETRY_DELAY)
                continue
            if left:
                # Still racing other writers: with the next flush. Agents
                # are not told their statuses back, so none may be lost here.
                for task_id, status in left.items():
                    self._pending.setdefault(task_id, status)
                self._wakeup.set()

    async def _write(self, pending: dict[str, pb.TaskStatus]) -> dict[str, pb.TaskStatus]:
        """Write the statuses; those still in conflict after ATTEMPTS tries."""
        with contextlib.suppress(VersionConflict):
            async for attempt in on_conflict(ATTEMPTS):
                with attempt:
                    batch = self.store.batch()
                    for task_id, status in pending.items():
                        task = self.view.tasks.get(task_id)
                        if task is None or not moves_forward(task.status, status):
                            continue
                        task = clone(task)
                        task.status.CopyFrom(status)
                        batch.update(task)
                    if not len(batch):
                        return {}
                    result = await batch.commit()
                    if not result.conflicts:
                        return {}
                    # Someone else wrote those tasks (desired state): apply
                    # the statuses to the versions now stored.
                    pending = {c.obj.meta.id: c.obj.status for c in result.conflicts if c.current is not None}
                    for c in result.conflicts:
                        if c.current is not None:
                            self.view.observe(c.current)
                    raise VersionConflict("task statuses raced other writers")
        return pending
