"""The node's mesh component (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from shoal.agent.mesh import nft
from shoal.agent.mesh.discovery import Discovery
from shoal.agent.mesh.kernel import KernelPath
from shoal.agent.mesh.paths import DataPath, PortState, UserspacePath
from shoal.agent.mesh.table import Backend, MeshTable, PortKey, PortSet
from shoal.defaults import MESH
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

# A port that could not be served (its address:port taken) is tried again
# this often.
RETRY_FAILED = 5.0
# More rotation changes than this at once are logged as one line per port.
LOG_EACH_UP_TO = 10
MODES = ("auto", "kernel", "userspace")


async def make_path(mode: str, addr: str, node_id: str, bridge: str = "") -> tuple[DataPath, str]:
    """The data path for `mode`, and why it is not the one asked for (""
    when it is). auto: the kernel path where nft works, else userspace.
    `bridge`: the docker runtime's bridge, whose containers use discovery."""
    if mode not in MODES:
        raise ValueError(f"mesh mode {mode!r}: choose auto, kernel or userspace")
    if mode == "userspace":
        return UserspacePath(addr), ""
    try:
        path = KernelPath(addr, node_id, bridge)
        await path.start()
    except nft.NftError as err:
        why = f"kernel path unavailable ({err}); using the userspace relay"
        if mode == "kernel":
            log.error("mesh: %s", why)
            return UserspacePath(addr), why
        log.info("mesh: %s", why)
        return UserspacePath(addr), ""
    return path, ""


class Mesh:
    def __init__(self, path: DataPath, error: str = "") -> None:
        self.table = MeshTable()
        self.discovery = Discovery(self.table)
        self.path = path
        self.error = error
        self.discovery_error = ""
        self.sets: dict[PortKey, PortSet] = {}
        self.states: dict[PortKey, PortState] = {}
        # Bumped whenever the summary changes; `shape` only when more than
        # backend counts did (ports, paths, errors): the session reports a
        # new shape at once, new counts now and then (MESH.report_counts_every).
        self.version = 0
        self.shape = 0
        self._changed = asyncio.Event()

    def receive(self, update: dpb.MeshUpdate) -> None:
        self.table.apply(update)
        self._changed.set()

    async def run(self) -> None:
        while True:
            failed = any(s.error for s in self.states.values())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), RETRY_FAILED if failed else None)
            await asyncio.sleep(MESH.apply_delay)
            self._changed.clear()
            changes = self.table.take_changes()
            for key, state in self.states.items():
                if state.error and key not in changes and key in self.sets:
                    changes[key] = self.sets[key]
            try:
                if changes:
                    await self._apply(changes)
                await self._apply_discovery()
            except Exception:  # a bug must not end the mesh: the next change retries
                log.exception("mesh: applying %d port changes failed", len(changes))

    async def _apply(self, changes: dict[PortKey, PortSet | None]) -> None:
        for key, ps in changes.items():
            self._log(key, self.sets.get(key), ps)
            if ps is None:
                self.sets.pop(key, None)
            else:
                self.sets[key] = ps
        states = await self.path.apply(changes)
        for key, ps in changes.items():
            if ps is None:
                self.states.pop(key, None)
                self.shape += 1
                continue
            ps.reported()
            if key in states:
                before = self.states.get(key)
                self.states[key] = states[key]
                if before is None or (before.path, before.error) != (states[key].path, states[key].error):
                    self.shape += 1
                if states[key].error and (before is None or before.error != states[key].error):
                    log.warning("mesh: port %d/%s: %s", key[1], key[0], states[key].error)
        self.version += 1

    async def _apply_discovery(self) -> None:
        whole, members = self.table.take_services()
        vips, tasks = self.discovery.update(whole, members)
        if not vips and not tasks:
            return
        problem = await self.path.apply_discovery(vips, tasks)
        if problem != self.discovery_error:
            if problem:
                log.warning("mesh: %s", problem)
            self.discovery_error = problem
            self.version += 1
            self.shape += 1

    def resolver(self, who: Callable[[str], str | None]) -> Callable[[str, str], list[str] | None]:
        """What the node's DNS server asks: a name's addresses for the task
        at a source address (placed by `who`)."""
        return lambda name, source: self.discovery.resolve(name, who(source))

    def _log(self, key: PortKey, old: PortSet | None, new: PortSet | None) -> None:
        where = f"port {key[1]}/{key[0]}"
        if new is None:
            if old is not None:
                log.info("mesh: %s of service %s is no longer published here", where, old.service_name)
            return
        count = len(new.entries)
        if old is not new:
            log.info("mesh: serving %s for service %s (%d backends)", where, new.service_name, count)
            return
        joined, left = new.joined, new.left
        if len(joined) + len(left) > LOG_EACH_UP_TO:
            log.info(
                "mesh: %s: %d backends joined the rotation, %d left (%d in rotation)",
                where,
                len(joined),
                len(left),
                count,
            )
            return
        for b in joined:
            log.info("mesh: %s: %s joined the rotation (%d in rotation)", where, _name(b), count)
        for b in left:
            log.info("mesh: %s: %s left the rotation (%d in rotation)", where, _name(b), count)

    def report(self) -> pb.NodeMesh:
        """The summary the manager keeps in the Node (``node inspect``)."""
        path = self.path.name if self.path.name in ("kernel", "userspace") else ""
        error = "; ".join(e for e in (self.error, self.discovery_error) if e)
        out = pb.NodeMesh(path=path, updated_at=time.time_ns(), error=error)
        for key in sorted(self.sets):
            ps = self.sets[key]
            state = self.states.get(key, PortState(self.path.name))
            out.ports.add(
                protocol=key[0],
                port=key[1],
                service_id=ps.service_id,
                path=state.path if state.path in ("kernel", "userspace") else "",
                backends=len(ps.entries),
                local_backends=state.local,
                error=state.error,
            )
        return out

    async def close(self) -> None:
        """Stop serving; the data path removes what it set up (nft table)."""
        await self.path.close()


def _name(b: Backend) -> str:
    return f"{b.name} ({b.addr}:{b.port})"
