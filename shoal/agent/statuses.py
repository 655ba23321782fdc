"""Task statuses on their way to the manager: the newest per task, in batches.

The worker reports each step of each task (``report``); the outbox keeps
only the newest status per task, so a task that moved on while the session
was down, or within one batch, is sent once, as it is now. ``send`` runs
for the life of a session and puts the outbox into the session's queue:
everything reported within ``STATUS_BATCH_DELAY`` goes in one message, and
under load one message follows another no sooner than
``STATUS_MIN_INTERVAL``. What is queued while no session runs waits here
until the next one starts (``wake``).
"""

from __future__ import annotations

import asyncio
import time

from shoal.outbox import Outbox
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import objects_pb2 as pb

# Statuses reported within this long go in one message; and one message
# follows another no sooner than STATUS_MIN_INTERVAL: a node starting a
# hundred tasks sends a few large messages, not a hundred small ones (each
# costs both ends more than the statuses in it).
STATUS_BATCH_DELAY = 0.05
STATUS_MIN_INTERVAL = 0.2


class StatusOutbox:
    def __init__(self) -> None:
        self._pending: dict[str, pb.TaskStatus] = {}
        self._ready = asyncio.Event()

    def report(self, task_id: str, status: pb.TaskStatus) -> None:
        """Queue a task status for the manager (the newest per task wins)."""
        self._pending[task_id] = status
        self._ready.set()

    def wake(self) -> None:
        """A session started: what was queued meanwhile goes out now."""
        if self._pending:
            self._ready.set()

    async def send(self, queue: Outbox[dpb.AgentMessage]) -> None:
        """Put the statuses into a session's queue, batched, until cancelled."""
        sent = 0.0
        while True:
            await self._ready.wait()
            # A status alone goes after STATUS_BATCH_DELAY; under load, at
            # most one message per STATUS_MIN_INTERVAL, each with more in it.
            wait = max(STATUS_BATCH_DELAY, sent + STATUS_MIN_INTERVAL - time.monotonic())
            await asyncio.sleep(wait)
            sent = time.monotonic()
            self._ready.clear()
            batch, self._pending = self._pending, {}
            if not batch:
                continue
            msg = dpb.AgentMessage()
            for task_id, status in batch.items():
                msg.statuses.updates.add(task_id=task_id, status=status)
            await queue.put(msg)
