"""History compaction (leader only).

etcd keeps every revision of every key until it is compacted; without
compaction a busy cluster fills etcd's quota and every write stops. Every
``interval`` the leader compacts etcd's history up to the revision it saw one
interval before, so a watcher (another manager's view) that falls up to one
interval behind still finds the history it needs; one that falls further
behind relists. This compacts the whole etcd keyspace, which is what etcd's
own ``--auto-compaction-retention`` would do too: give shoal an etcd of its
own (deploy/README.md).
"""

from __future__ import annotations

import asyncio
import logging

from shoal.manager.store import Etcd, StoreError

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 300.0


class Compactor:
    name = "compactor"

    def __init__(self, etcd: Etcd, interval: float = DEFAULT_INTERVAL) -> None:
        self.etcd = etcd
        self.interval = interval
        self.compacted = 0  # the revision compacted to last

    async def run(self) -> None:
        previous = await self.etcd.current_revision()
        while True:
            await asyncio.sleep(self.interval)
            now = await self.etcd.current_revision()
            if previous > self.compacted:
                try:
                    await self.etcd.compact(previous)
                    self.compacted = previous
                    log.info("compacted etcd history up to revision %d", previous)
                except StoreError as err:
                    # Already compacted further (another leader, or etcd itself).
                    if "compacted" not in str(err):
                        raise
            previous = now
