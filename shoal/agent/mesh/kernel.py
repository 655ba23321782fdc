"""The kernel data path: nftables DNAT where it can, the relay where not.

For each published port, the backends on this host (an address this host
holds: the node's own tasks, or every task when agents share a host as in
tests) are reached by DNAT in the agent's own nft table (``nft.py``): the
kernel forwards those connections, and the task sees the client's real
address. Backends on other hosts, and every backend of a port with the
PROXY protocol on, are served by the port's userspace relay (``relay.py``),
which also always listens on the port (it holds it). The DNAT map holds one
entry per local backend and one entry per remote backend pointing at the
relay itself, so each backend gets its share of new connections.

Why not DNAT to other hosts too: that traffic would be *forwarded*, and on a
host with Docker the filter table's FORWARD chain drops what Docker's own
rules do not accept (policy drop). Changing Docker's chains is not ours to
do, so remote backends go through the relay (see docs/architecture.md,
Networking).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from shoal.agent.mesh import nft
from shoal.agent.mesh.discovery import Key, Target, VipSet
from shoal.agent.mesh.paths import PortState, UserspacePath
from shoal.agent.mesh.relay import can_bind
from shoal.agent.mesh.table import PortKey, PortSet

log = logging.getLogger(__name__)


class KernelPath:
    name = "kernel"

    def __init__(
        self, addr: str, node_id: str, bridge: str = "", is_local: Callable[[str], bool] = can_bind
    ) -> None:
        if not addr or addr == "0.0.0.0":
            raise nft.NftError("the kernel path needs the node's address (--advertise-addr)")
        self.addr = addr
        self.bridge = bridge
        self.table = nft.table_name(node_id)
        self.vip_keys: set[Key] = set()
        self.task_keys: set[Key] = set()
        self.relays = UserspacePath(addr)
        self.kernel_ports: set[PortKey] = set()
        self._is_local = is_local
        self._local: dict[str, bool] = {}

    async def start(self) -> None:
        """Make the agent's table (replacing a leftover); NftError when nft
        is missing or refuses (then the caller uses the userspace path)."""
        await nft.run(nft.create_table(self.table, self.addr, self.bridge))

    def local(self, addr: str) -> bool:
        known = self._local.get(addr)
        if known is None:
            known = self._local[addr] = self._is_local(addr)
        return known

    async def apply(self, changes: Mapping[PortKey, PortSet | None]) -> dict[PortKey, PortState]:
        script: list[str] = []
        out: dict[PortKey, PortState] = {}
        kernel_now: dict[PortKey, PortSet] = {}
        for key, ps in changes.items():
            if ps is None:
                await self.relays.stop(key)
                if key in self.kernel_ports:
                    script.append(nft.drop_port(self.table, key))
                continue
            local = [] if ps.proxy_protocol else [b for b in ps.backends if self.local(b.addr)]
            remote = tuple(b for b in ps.backends if b not in local)
            problem = await self.relays.serve(ps, remote if local else ps.backends)
            if local:
                targets = [(b.addr, b.port) for b in local] + [(self.addr, ps.port)] * len(remote)
                script.append(nft.set_port(self.table, key, targets, key in self.kernel_ports))
                kernel_now[key] = ps
            elif key in self.kernel_ports:
                script.append(nft.drop_port(self.table, key))
            out[key] = PortState("kernel" if local else "userspace", len(local), problem)
        if not script:
            return out
        try:
            await nft.run("".join(script))
        except nft.NftError as err:
            log.error("nft refused the mesh's rules (%s); serving these ports from userspace", err)
            return await self._fall_back(changes, out, str(err))
        for key in changes:
            if key in kernel_now:
                self.kernel_ports.add(key)
            else:
                self.kernel_ports.discard(key)
        return out

    async def _fall_back(
        self, changes: Mapping[PortKey, PortSet | None], out: dict[PortKey, PortState], why: str
    ) -> dict[PortKey, PortState]:
        """The kernel refused a change: take these ports out of it (their
        old rules would send traffic to stale backends) and relay them."""
        stale = [key for key in changes if key in self.kernel_ports]
        if stale:
            try:
                await nft.run("".join(nft.drop_port(self.table, key) for key in stale))
            except nft.NftError as err:
                log.error("removing the mesh's rules failed too: %s", err)
            self.kernel_ports.difference_update(stale)
        for key, ps in changes.items():
            if ps is not None:
                problem = await self.relays.serve(ps, ps.backends)
                out[key] = PortState("userspace", 0, problem or f"kernel path refused: {why}")
        return out

    async def apply_discovery(
        self, vips: Mapping[Key, VipSet | None], tasks: Mapping[Key, Target | None]
    ) -> str:
        """Route virtual addresses and task addresses as discovery says
        (None, or no backend: no route); nft's words when it refused."""
        script: list[str] = []
        vip_now, task_now = set(self.vip_keys), set(self.task_keys)
        for key, vip in vips.items():
            targets = vip.targets if vip is not None else ()
            if targets:
                script.append(nft.set_vip(self.table, key, targets, key in vip_now))
                vip_now.add(key)
            elif key in vip_now:
                script.append(nft.drop_vip(self.table, key))
                vip_now.discard(key)
        for key, target in tasks.items():
            if target is not None:
                script.append(nft.set_task_route(self.table, key, target, key in task_now))
                task_now.add(key)
            elif key in task_now:
                script.append(nft.drop_task_route(self.table, key))
                task_now.discard(key)
        if not script:
            return ""
        try:
            await nft.run("".join(script))
        except nft.NftError as err:
            log.error("nft refused the discovery rules: %s", err)
            return f"service addresses: nft refused the rules: {err}"
        self.vip_keys, self.task_keys = vip_now, task_now
        return ""

    async def close(self) -> None:
        await self.relays.close()
        try:
            await nft.run(nft.delete_table(self.table))
        except nft.NftError as err:
            log.warning("removing nft table %s failed: %s", self.table, err)
