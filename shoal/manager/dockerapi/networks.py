"""``/networks``: list, inspect, create, remove, over shoal's networks.

Each handler is a ControlAPI call (CreateNetwork, GetNetwork, ListNetworks,
RemoveNetwork) and a translation (``netspecs``), so names are unique, a
network in use is not removed, and labels are bounded exactly as for
``shoal network``. Two things are the engine's: a name already taken is a
409 worded as the engine words it (the docker CLI's users and scripts know
that sentence), and ``ingress`` (the routing mesh; see ``netspecs``) is
listed and inspected as Swarm shows it, and cannot be made, removed or
shadowed.
"""

from __future__ import annotations

import logging

import grpc
from aiohttp import web

from shoal.manager.dockerapi import filters, netspecs
from shoal.manager.dockerapi.errors import CONFLICT, FORBIDDEN, NOT_FOUND, DockerError
from shoal.manager.dockerapi.handlers import Route, backend, call, empty_response, json_response, read_json
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

NO_CONTENT = 204


async def list_networks(request: web.Request) -> web.StreamResponse:
    wanted = filters.parse(request.query.get("filters"), netspecs.LIST_FILTERS)
    control = backend(request).control
    found = await call(request, control.ListNetworks, cpb.ListNetworksRequest())
    used: set[str] = set()
    if "dangling" in wanted:
        listing = await call(request, control.ListServices, cpb.ListServicesRequest())
        used = {name for s in listing.services for name in s.service.spec.networks}
    out = [netspecs.ingress()] if netspecs.listed(wanted, netspecs.ingress(), False) else []
    for n in found.networks:
        shown = netspecs.network(n)
        if netspecs.listed(wanted, shown, n.spec.name in used):
            out.append(shown)
    return json_response(out)


async def get_network(request: web.Request, ref: str) -> pb.Network | None:
    """The network a reference names (ID, name or unique ID prefix, as the
    ControlAPI resolves them); None for ingress."""
    if netspecs.is_ingress(ref):
        return None
    try:
        network: pb.Network = await call(request, backend(request).control.GetNetwork, cpb.ObjectRef(ref=ref))
    except DockerError as err:
        if err.status == NOT_FOUND and netspecs.INGRESS_ID.startswith(ref):
            return None
        raise
    return network


async def inspect_network(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    scope = request.query.get("scope", "")
    network = await get_network(request, ref)
    # Every network of shoal's spans the cluster: asked for another scope,
    # the engine finds none.
    if scope not in ("", netspecs.SCOPE):
        raise DockerError(NOT_FOUND, f"network {ref[:80]} not found (shoal's networks have scope swarm)")
    return json_response(netspecs.ingress() if network is None else netspecs.network(network))


async def create_network(request: web.Request) -> web.StreamResponse:
    spec, warnings = netspecs.create_request(await read_json(request))
    if spec.name == netspecs.INGRESS:
        raise DockerError(CONFLICT, f"network with name {spec.name} already exists")
    try:
        created = await call(
            request, backend(request).control.CreateNetwork, cpb.CreateNetworkRequest(spec=spec)
        )
    except DockerError as err:
        if err.code == grpc.StatusCode.ALREADY_EXISTS:
            raise DockerError(CONFLICT, f"network with name {spec.name} already exists", err.code) from None
        if spec.driver == netspecs.LOCAL_DRIVER:
            hint = "docker network create makes a bridge network on one host unless told --driver overlay"
            raise DockerError(err.status, f"{err.message} ({hint})", err.code) from None
        raise
    body: dict[str, str] = {"Id": created.meta.id}
    if warnings:
        # The docker CLI does not print this field (other clients return
        # it), so the manager's log says it too.
        body["Warning"] = "; ".join(warnings)
        log.info("network %s created with warnings: %s", spec.name, body["Warning"])
    return json_response(body, 201)


async def remove_network(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    network = await get_network(request, ref)
    if network is None:
        raise DockerError(
            FORBIDDEN,
            f"{netspecs.INGRESS} is shoal's routing mesh (a pre-defined network) and cannot be removed",
        )
    await call(request, backend(request).control.RemoveNetwork, cpb.ObjectRef(ref=network.meta.id))
    return empty_response(NO_CONTENT)


ROUTES: list[Route] = [
    ("GET", "/networks", list_networks),
    ("POST", "/networks/create", create_network),
    ("GET", "/networks/{id}", inspect_network),
    ("DELETE", "/networks/{id}", remove_network),
]
