"""What the node tells its manager about its mesh (``MeshReport``): the
summary when its shape changed (ports, data paths, errors: within a
heartbeat period), and when only its backend counts did, once in
``MESH.report_counts_periods`` (a thousand nodes whose counts change while
a large service starts would otherwise write a Node each per period)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from shoal.agent.mesh.mesh import Mesh
from shoal.defaults import MESH
from shoal.protos import dispatcher_pb2 as dpb


async def report_mesh(
    mesh: Mesh, send: Callable[[dpb.AgentMessage], Awaitable[None]], period: Callable[[], float]
) -> None:
    """Send the summary as it is now, then whenever it changed (see above)."""
    version, shape, at = -1, -1, 0.0
    while True:
        now = time.monotonic()
        counts_due = now - at >= MESH.report_counts_periods * period()
        if mesh.shape != shape or (mesh.version != version and counts_due):
            version, shape, at = mesh.version, mesh.shape, now
            await send(dpb.AgentMessage(mesh_report=dpb.MeshReport(mesh=mesh.report())))
        await asyncio.sleep(period())
