"""The mesh's data paths: how a published port's traffic reaches backends.

A ``DataPath`` takes the ports that changed (``PortSet``, or None for a port
no longer published) and says how each is served now (``PortState``).

- ``UserspacePath``: a relay per port (``relay.TcpRelay`` / ``UdpRelay``) on
  the node's address, balancing over every backend. Works anywhere.
- ``KernelPath`` (``kernel.py``): nftables DNAT for backends on this host, the
  relay for the rest and for PROXY-protocol ports.
- ``NullPath``: serves nothing (simulated nodes in benchmarks), so that the
  rest of the mesh costs what it costs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from shoal.agent.mesh.discovery import Key, Target, VipSet
from shoal.agent.mesh.relay import TcpRelay, UdpRelay
from shoal.agent.mesh.table import Backend, PortKey, PortSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PortState:
    """How a data path serves one port now."""

    path: str  # "kernel" or "userspace"
    local: int = 0  # backends reached by the kernel without a relay
    error: str = ""


class DataPath(Protocol):
    name: str

    async def apply(self, changes: Mapping[PortKey, PortSet | None]) -> dict[PortKey, PortState]:
        """Serve the changed ports as their sets say (None: stop serving)."""
        ...

    async def apply_discovery(
        self, vips: Mapping[Key, VipSet | None], tasks: Mapping[Key, Target | None]
    ) -> str:
        """Route service and task addresses (discovery); a problem, or ""."""
        ...

    async def close(self) -> None:
        """Stop serving every port and remove what the path set up."""
        ...


class NullPath:
    name = "none"

    async def apply(self, changes: Mapping[PortKey, PortSet | None]) -> dict[PortKey, PortState]:
        return {key: PortState("none") for key, ps in changes.items() if ps is not None}

    async def apply_discovery(
        self, vips: Mapping[Key, VipSet | None], tasks: Mapping[Key, Target | None]
    ) -> str:
        return ""

    async def close(self) -> None:
        return None


Relay = TcpRelay | UdpRelay


class UserspacePath:
    name = "userspace"

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.relays: dict[PortKey, Relay] = {}

    async def apply(self, changes: Mapping[PortKey, PortSet | None]) -> dict[PortKey, PortState]:
        out: dict[PortKey, PortState] = {}
        for key, ps in changes.items():
            if ps is None:
                await self.stop(key)
                continue
            problem = await self.serve(ps, ps.backends)
            out[key] = PortState("userspace", 0, problem)
        return out

    async def serve(self, ps: PortSet, backends: tuple[Backend, ...]) -> str:
        """Relay ps's port to `backends`; the problem, if it cannot listen."""
        key = (ps.protocol, ps.port)
        relay = self.relays.get(key)
        if relay is not None and isinstance(relay, TcpRelay) and relay.proxy_protocol != ps.proxy_protocol:
            await self.stop(key)
            relay = None
        if relay is None:
            name = f"{ps.service_name} {ps.port}/{ps.protocol}"
            relay = (
                TcpRelay(name, self.addr, ps.port, ps.proxy_protocol)
                if ps.protocol == "tcp"
                else UdpRelay(name, self.addr, ps.port)
            )
            try:
                await relay.start()
            except OSError as err:
                return f"cannot listen on {self.addr or '*'}:{ps.port}/{ps.protocol}: {err.strerror or err}"
            self.relays[key] = relay
        relay.rotation.set([(b.addr, b.port) for b in backends])
        return ""

    async def apply_discovery(
        self, vips: Mapping[Key, VipSet | None], tasks: Mapping[Key, Target | None]
    ) -> str:
        if any(v is not None and v.entries for v in vips.values()) or any(tasks.values()):
            return (
                "service addresses are routed by the kernel path only (nft): "
                "names resolve, but their addresses do not answer"
            )
        return ""

    async def stop(self, key: PortKey) -> None:
        relay = self.relays.pop(key, None)
        if relay is not None:
            with contextlib.suppress(Exception):
                await relay.close()

    async def close(self) -> None:
        for key in list(self.relays):
            await self.stop(key)
