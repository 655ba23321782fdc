"""Which of this manager's nodes are alive: heartbeat deadlines.

Every message from a node pushes its deadline to now + the grace (3
heartbeat periods). A node past its deadline has its session ended and is
marked down, by this manager only if it still holds the node (a node that
moved to another manager is not ours to judge); all the nodes found expired
at once go down in one batch (a rack that loses power is one write, not a
hundred). A manager that stalled (a paused process, a starved machine)
extends every deadline by the time it lost: heartbeats it could not read are
not the nodes' fault.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from shoal.manager.nodes import marked_down
from shoal.manager.store import Store, StoreError, View
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)


class Liveness:
    def __init__(
        self,
        view: View,
        store: Store,
        manager_id: str,
        period: Callable[[], float],
        grace: Callable[[], float],
        on_expired: Callable[[str], None],
    ) -> None:
        self.view = view
        self.store = store
        self.manager_id = manager_id
        self.period = period
        self.grace = grace
        self.on_expired = on_expired  # ends the node's session
        self.deadlines: dict[str, float] = {}

    def beat(self, node_id: str) -> None:
        self.deadlines[node_id] = time.monotonic() + self.grace()

    def forget(self, node_id: str) -> None:
        self.deadlines.pop(node_id, None)

    def expect_back(self, node_id: str) -> None:
        """A node this manager held before it restarted: twice the grace, as
        Swarm gives nodes of unknown state after a leader change (agents are
        still backing off)."""
        self.deadlines.setdefault(node_id, time.monotonic() + 2 * self.grace())

    async def run(self) -> None:
        while True:
            interval = max(0.05, min(1.0, self.period() / 4))
            before = time.monotonic()
            await asyncio.sleep(interval)
            now = time.monotonic()
            overslept = now - before - interval
            if overslept > self.period():
                log.warning("dispatcher stalled for %.1fs; extending node deadlines", overslept)
                for node_id in self.deadlines:
                    self.deadlines[node_id] += overslept
            expired = [n for n, d in self.deadlines.items() if d < now]
            for node_id in expired:
                self.on_expired(node_id)
            if expired and await self._mark_down(expired):
                for node_id in expired:
                    self.deadlines.pop(node_id, None)

    async def _mark_down(self, node_ids: list[str]) -> bool:
        """Mark these nodes down in one batch; False when it must be tried again."""
        batch = self.store.batch()
        for node_id in node_ids:
            node = self.view.nodes.get(node_id)
            if node is None or node.status.manager_id != self.manager_id:
                continue  # the node went to another manager: not ours to judge
            if node.status.state == pb.NODE_STATE_DOWN:
                continue
            batch.update(marked_down(node, "heartbeat failure"))
        if not len(batch):
            return True
        try:
            result = await batch.commit()
        except StoreError as err:
            log.warning("marking %d node(s) down failed: %s; retrying", len(batch), err)
            return False
        for conflict in result.conflicts:
            if conflict.current is not None:
                self.view.observe(conflict.current)
        for node in result.committed:
            log.info("node %s (%s) is down: heartbeat failure", node.meta.id, node.description.hostname)
        return not result.conflicts
