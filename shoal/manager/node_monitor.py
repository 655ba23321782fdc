"""Node monitor (leader only): nodes whose manager died.

A dispatcher judges the nodes whose sessions it holds. If that manager itself
dies, nobody would; so the leader gives every READY node whose session
manager is no longer registered a grace period (3 heartbeat periods, counted
from when the leader noticed, so a leader change never declares anyone down
early) to reconnect somewhere, and marks it DOWN otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from shoal.manager.nodes import marked_down
from shoal.manager.store import Store, StoreError, View
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)


class NodeMonitor:
    name = "node-monitor"

    def __init__(
        self,
        view: View,
        store: Store,
        live_managers: Callable[[], Awaitable[set[str]]],
        grace: Callable[[], float],
    ) -> None:
        self.view = view
        self.store = store
        self.live_managers = live_managers
        self.grace = grace
        self._orphaned_since: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(max(0.1, min(1.0, self.grace() / 6)))
            live = await self.live_managers()
            now = time.monotonic()
            seen: set[str] = set()
            for node in list(self.view.nodes.values()):
                if node.status.state != pb.NODE_STATE_READY or node.status.manager_id in live:
                    continue
                seen.add(node.meta.id)
                since = self._orphaned_since.setdefault(node.meta.id, now)
                # Twice the grace: the node's agent may still be backing off
                # before it tries another manager.
                if now - since >= 2 * self.grace():
                    await self._mark_down(node)
            for node_id in list(self._orphaned_since):
                if node_id not in seen:
                    del self._orphaned_since[node_id]

    async def _mark_down(self, node: pb.Node) -> None:
        node = marked_down(node, "heartbeat failure (its manager went away and it did not reconnect)")
        try:
            await self.store.update(node)
            log.info(
                "node %s (%s) is down: no session with any manager", node.meta.id, node.description.hostname
            )
        except StoreError as err:
            log.debug("marking node %s down: %s", node.meta.id, err)
