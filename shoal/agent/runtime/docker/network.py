"""The docker agent's own bridge network: where its containers live.

Each docker agent makes (once; a restarted agent finds it again) a Docker
bridge network ``shoal-<node ID>`` on a free /24 of ``MESH.bridge_net``,
whose Linux bridge is called ``shl`` + the node ID's first 12 characters
(interface names hold 15). Its tasks' containers join it, with the
gateway as their DNS server: the node's resolver answers service names
there (``agent/mesh/dns.py``; Docker's embedded resolver forwards what it
does not know), and the mesh's nft rules route service and task addresses
for traffic that comes in from that bridge only. Several agents on one
host each have their own network and never touch another's.

The bridge gets ``route_localnet`` (its packets may be DNATed to node
addresses on the loopback, as on a machine that plays several nodes).
Networks whose subnet overlaps one Docker already has are skipped; a race
with another agent creating the same subnet is retried on the next /24.
``remove_network`` is for ``shoal down`` and the tests, once the node's
containers are gone.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types

from shoal.agent.runtime.base import NodeNetwork
from shoal.defaults import MESH

log = logging.getLogger(__name__)

LABEL_NODE = "shoal.node.id"


Bridge = NodeNetwork


def network_name(node_id: str) -> str:
    return f"shoal-{node_id}"


def interface_name(node_id: str) -> str:
    return f"shl{node_id[:12]}"


def _bridge(attrs: dict[str, Any], node_id: str) -> Bridge | None:
    config = (attrs.get("IPAM") or {}).get("Config") or []
    if not config or not config[0].get("Gateway"):
        return None
    return Bridge(network_name(node_id), interface_name(node_id), config[0]["Gateway"], config[0]["Subnet"])


def ensure_network(client: docker.DockerClient, node_id: str) -> Bridge:
    """The node's network, made if it is missing (blocking: SDK calls)."""
    name = network_name(node_id)
    for attrs in client.api.networks(names=[name]):
        if attrs.get("Name") == name:
            found = _bridge(client.api.inspect_network(attrs["Id"]), node_id)
            if found is not None:
                _route_localnet(found.interface)
                return found
    used = []
    for attrs in client.api.networks():
        for cfg in (attrs.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet"):
                used.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
    for subnet in ipaddress.ip_network(MESH.bridge_net).subnets(new_prefix=24):
        if any(subnet.overlaps(u) for u in used if u.version == 4):
            continue
        gateway = str(subnet[1])
        ipam = docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet=str(subnet), gateway=gateway)]
        )
        try:
            client.api.create_network(
                name,
                driver="bridge",
                ipam=ipam,
                options={"com.docker.network.bridge.name": interface_name(node_id)},
                labels={LABEL_NODE: node_id},
                check_duplicate=True,
            )
        except docker.errors.APIError as err:
            text = str(err).lower()
            if "overlap" in text or "in use" in text:
                continue  # another agent took it meanwhile
            if "already exists" in text:
                return ensure_network(client, node_id)
            raise
        log.info("created network %s (%s, bridge %s)", name, subnet, interface_name(node_id))
        _route_localnet(interface_name(node_id))
        return Bridge(name, interface_name(node_id), gateway, str(subnet))
    raise RuntimeError(f"no free /24 left in {MESH.bridge_net} for the network {name}")


def _route_localnet(interface: str) -> None:
    path = Path("/proc/sys/net/ipv4/conf") / interface / "route_localnet"
    try:
        path.write_text("1\n")
    except OSError as err:
        log.warning(
            "cannot set route_localnet on %s (%s): service addresses on loopback will not answer",
            interface,
            err,
        )


def remove_network(client: docker.DockerClient, node_id: str) -> bool:
    """Remove the node's network (its containers must be gone); whether
    there was one."""
    name = network_name(node_id)
    for attrs in client.api.networks(names=[name]):
        if attrs.get("Name") == name:
            try:
                client.api.remove_network(attrs["Id"])
            except docker.errors.NotFound:
                return False
            return True
    return False
