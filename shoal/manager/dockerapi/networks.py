"""``/networks``: the least that lets ``docker stack deploy`` work, while
shoal has no networks of its own (issue 15).

shoal has one flat cluster network: every task reaches every published
port through the routing mesh. The listing shows it as one network,
``ingress`` (scope swarm, driver overlay). A create of an overlay network
(what ``docker stack deploy`` does first, for ``STACK_default``) is answered
201 with the engine's ``Warning`` field saying that nothing was created:
nothing is stored, the network is not listed afterwards, and services that
name it get a warning that networks are ignored. Inspecting or removing
any other network answers 404, as for a network that does not exist; the
cluster network cannot be removed.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from shoal.manager.dockerapi import filters
from shoal.manager.dockerapi.errors import BAD_REQUEST, CONFLICT, FORBIDDEN, NOT_FOUND, DockerError
from shoal.manager.dockerapi.handlers import Route, json_response, read_json

CLUSTER_NETWORK = "ingress"
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def network_id(name: str) -> str:
    """A stable 25-character ID for a network name (shoal's ID length)."""
    number = int.from_bytes(hashlib.sha256(f"shoal network {name}".encode()).digest(), "big")
    out = []
    for _ in range(25):
        number, digit = divmod(number, 36)
        out.append(_ALPHABET[digit])
    return "".join(out)


def cluster_network() -> dict[str, Any]:
    return {
        "Name": CLUSTER_NETWORK,
        "Id": network_id(CLUSTER_NETWORK),
        "Created": "1970-01-01T00:00:00.000000000Z",
        "Scope": "swarm",
        "Driver": "overlay",
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Config": [], "Options": {}},
        "Internal": False,
        "Attachable": False,
        "Ingress": True,
        "Containers": {},
        "Options": {},
        "Labels": {},
    }


def _is_cluster_network(ref: str) -> bool:
    return ref == CLUSTER_NETWORK or (len(ref) >= 1 and network_id(CLUSTER_NETWORK).startswith(ref))


async def list_networks(request: web.Request) -> web.StreamResponse:
    wanted = filters.parse(
        request.query.get("filters"), ("name", "id", "label", "driver", "scope", "type", "dangling")
    )
    net = cluster_network()
    shown = (
        filters.prefix(wanted, "name", net["Name"])
        and filters.prefix(wanted, "id", net["Id"])
        and filters.labels(wanted, "label", net["Labels"])
        and filters.exact(wanted, "driver", "overlay")
        and filters.exact(wanted, "scope", "swarm")
        and filters.exact(wanted, "type", "builtin")
        and filters.exact(wanted, "dangling", "false")
    )
    return json_response([net] if shown else [])


async def inspect_network(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    if not _is_cluster_network(ref):
        raise DockerError(
            NOT_FOUND, f"network {ref[:80]} not found (shoal has no networks but {CLUSTER_NETWORK})"
        )
    return json_response(cluster_network())


async def create_network(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise DockerError(BAD_REQUEST, "body: expected a JSON object (a network's create options)")
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise DockerError(BAD_REQUEST, "Name: required")
    if name == CLUSTER_NETWORK:
        raise DockerError(CONFLICT, f"network with name {name} already exists")
    driver = body.get("Driver") or "overlay"
    if driver != "overlay":
        raise DockerError(
            BAD_REQUEST, f'Driver "{str(driver)[:40]}": shoal has cluster-wide (overlay) networks only'
        )
    return json_response(
        {
            "Id": network_id(name),
            "Warning": (
                f"shoal has no networks yet: {name[:80]} was not created; every task reaches every "
                "published port, and services that name a network are told it is ignored"
            ),
        },
        201,
    )


async def remove_network(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    if _is_cluster_network(ref):
        raise DockerError(FORBIDDEN, f"{CLUSTER_NETWORK} is the cluster's network and cannot be removed")
    raise DockerError(NOT_FOUND, f"network {ref[:80]} not found")


ROUTES: list[Route] = [
    ("GET", "/networks", list_networks),
    ("POST", "/networks/create", create_network),
    ("GET", "/networks/{id}", inspect_network),
    ("DELETE", "/networks/{id}", remove_network),
]
