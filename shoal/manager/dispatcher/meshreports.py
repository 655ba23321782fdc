"""Nodes' mesh reports, written into their Node objects in batches.

An agent sends a summary of its routing mesh (ports served, data path,
backends per port) when it changed, at most once per heartbeat period; the
dispatcher keeps the newest per node and writes them every
``FLUSH_INTERVAL`` in one batch (``node inspect`` shows ``mesh``). A write
that lost a race with another writer of the node (a registration, `node
update`) is applied again to the version now stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from shoal.manager.store import Store, StoreError, VersionConflict, View, clone, on_conflict
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0
ATTEMPTS = 5


class MeshReportWriter:
    def __init__(self, view: View, store: Store) -> None:
        self.view = view
        self.store = store
        self._pending: dict[str, pb.NodeMesh] = {}
        self._wakeup = asyncio.Event()

    def add(self, node_id: str, mesh: pb.NodeMesh) -> None:
        self._pending[node_id] = mesh
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(FLUSH_INTERVAL)
            pending, self._pending = self._pending, {}
            try:
                await self._write(pending)
            except StoreError as err:
                log.warning("writing mesh reports failed (%s); will retry", err)
                for node_id, mesh in pending.items():
                    self._pending.setdefault(node_id, mesh)
                self._wakeup.set()

    async def _write(self, pending: dict[str, pb.NodeMesh]) -> None:
        with contextlib.suppress(VersionConflict):  # the rest goes with the next report
            async for attempt in on_conflict(ATTEMPTS):
                with attempt:
                    batch = self.store.batch()
                    for node_id, mesh in pending.items():
                        node = self.view.nodes.get(node_id)
                        if node is None or node.mesh == mesh:
                            continue
                        node = clone(node)
                        node.mesh.CopyFrom(mesh)
                        batch.update(node)
                    if not len(batch):
                        return
                    result = await batch.commit()
                    if not result.conflicts:
                        return
                    for c in result.conflicts:
                        if c.current is not None:
                            self.view.observe(c.current)
                    pending = {c.obj.meta.id: pending[c.obj.meta.id] for c in result.conflicts}
                    raise VersionConflict("mesh reports raced other writers")
