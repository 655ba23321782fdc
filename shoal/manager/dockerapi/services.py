"""``/services``: list, inspect, create, update (with ``version``,
``rollback=previous`` and ``ForceUpdate``), remove.

Each handler translates the request (``spec_in``; the secrets, configs and
networks it names by ID become the names shoal's spec holds), makes the
ControlAPI call that does the work, and translates the answer
(``objects``, with each network shown by ID as the engine shows it); the
ControlAPI's rules, conflicts and refusals are the only ones.
"""

from __future__ import annotations

import grpc
from aiohttp import web

from shoal.manager.dockerapi import filters, netspecs, networks, objects, spec_in, updates, versions, words
from shoal.manager.dockerapi.errors import BAD_REQUEST, CONFLICT, NOT_FOUND, DockerError
from shoal.manager.dockerapi.handlers import (
    Route,
    api_version,
    backend,
    call,
    empty_response,
    json_response,
    read_json,
    version_param,
)
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb
from shoal.rules import limits

_LIST_FILTERS = ("name", "id", "label", "mode", "runtime")


async def list_services(request: web.Request) -> web.StreamResponse:
    wanted = filters.parse(request.query.get("filters"), _LIST_FILTERS)
    # ServiceStatus came with API 1.41; older clients count tasks themselves.
    status = versions.at_least(api_version(request), "1.41") and _flag(request, "status")
    listing = await call(request, backend(request).control.ListServices, cpb.ListServicesRequest())
    ids = await _network_ids(request)
    out = []
    for summary in listing.services:
        svc = summary.service
        if not (
            filters.prefix(wanted, "id", svc.meta.id)
            and filters.prefix(wanted, "name", svc.spec.name)
            and filters.labels(wanted, "label", svc.spec.labels)
            and filters.exact(wanted, "mode", words.MODE_FILTER_WORDS[svc.spec.mode])
            and filters.exact(wanted, "runtime", "container")
        ):
            continue
        out.append(objects.service(svc, summary if status else None, ids))
    return json_response(out)


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "")
    if raw.lower() in ("", "0", "false", "f"):
        return False
    if raw.lower() in ("1", "true", "t"):
        return True
    raise DockerError(BAD_REQUEST, f"invalid value for {name}: {raw[:40]}")


async def inspect_service(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    svc = await call(request, backend(request).control.GetService, cpb.ObjectRef(ref=ref))
    return json_response(objects.service(svc, None, await _network_ids(request)))


async def _network_ids(request: web.Request) -> dict[str, str]:
    """Each network's ID by name (services name their networks by name)."""
    found = await call(request, backend(request).control.ListNetworks, cpb.ListNetworksRequest())
    return {n.spec.name: n.meta.id for n in found.networks}


async def _name_networks(request: web.Request, spec: pb.ServiceSpec) -> None:
    """The engine names a service's network by ID, name or unique ID prefix,
    shoal by name: each target becomes its network's name (the ControlAPI
    resolves it, as ``shoal network inspect`` does). ingress is the routing
    mesh, which no service joins by name (as in Swarm)."""
    if len(spec.networks) > limits.MAX_NETWORKS:
        raise DockerError(
            BAD_REQUEST, f"TaskTemplate.Networks: at most {limits.MAX_NETWORKS}, got {len(spec.networks)}"
        )
    names = []
    for target in spec.networks:
        network = await networks.get_network(request, target)
        if network is None:
            raise DockerError(
                BAD_REQUEST,
                f'service cannot be explicitly attached to the ingress network "{netspecs.INGRESS}": it is '
                "shoal's routing mesh, which serves every published port; services on no network "
                "share the cluster's default scope",
            )
        names.append(network.spec.name)
    del spec.networks[:]
    spec.networks.extend(names)


async def _name_files(request: web.Request, spec: pb.ServiceSpec) -> None:
    """The engine names a secret or config by ID, shoal by name (the
    ControlAPI resolves names): each reference that gives an ID gets its
    object's name, and one whose ID and name disagree is refused."""
    control = backend(request).control
    container = spec.task.container
    for kind, refs, get in (
        ("Secret", container.secrets, control.GetSecret),
        ("Config", container.configs, control.GetConfig),
    ):
        for i, ref in enumerate(refs):
            if not ref.id:
                continue
            obj: pb.Secret | pb.Config = await call(request, get, cpb.ObjectRef(ref=ref.id))
            if obj.meta.id != ref.id:
                raise DockerError(NOT_FOUND, f"{kind.lower()} {ref.id[:40]} not found")
            if ref.name and ref.name != obj.spec.name:
                raise DockerError(
                    BAD_REQUEST,
                    f"TaskTemplate.ContainerSpec.{kind}s[{i}]: {kind}ID {ref.id} is {kind.lower()} "
                    f"{obj.spec.name}, not {ref.name[:80]}",
                )
            ref.name = obj.spec.name


async def create_service(request: web.Request) -> web.StreamResponse:
    spec, warnings = spec_in.service_spec(await read_json(request))
    await _name_files(request, spec)
    await _name_networks(request, spec)
    auth = spec_in.registry_auth(request.headers.get("X-Registry-Auth", ""))
    svc = await call(
        request,
        backend(request).control.CreateService,
        cpb.CreateServiceRequest(spec=spec, registry_auth=auth),
    )
    return json_response(_with_warnings({"ID": svc.meta.id}, warnings), 201)


async def update_service(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    version = version_param(request, "service")
    rollback = request.query.get("rollback", "")
    if rollback not in ("", "none", "previous"):
        raise DockerError(BAD_REQUEST, f"unrecognized rollback option {rollback[:40]}")
    body = await read_json(request)
    update = cpb.UpdateServiceRequest(ref=ref, version=version)
    warnings: list[str] = []
    if rollback == "previous":
        # As the engine: the previous spec, whatever the body says.
        update.rollback = True
    else:
        spec, warnings = spec_in.service_spec(body)
        await _name_files(request, spec)
        await _name_networks(request, spec)
        current = await call(request, backend(request).control.GetService, cpb.ObjectRef(ref=ref))
        updates.keep_what_the_engine_cannot_say(spec, current.spec)
        updates.keep_unchanged_template(spec, current.spec)
        update.spec.CopyFrom(spec)
        update.registry_auth = spec_in.registry_auth(request.headers.get("X-Registry-Auth", ""))
    try:
        await call(request, backend(request).control.UpdateService, update)
    except DockerError as err:
        if err.code == grpc.StatusCode.ABORTED:
            raise DockerError(CONFLICT, f"update out of sequence: {err.message}", err.code) from None
        raise
    return json_response(_with_warnings({}, warnings))


async def remove_service(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    await call(request, backend(request).control.RemoveService, cpb.ObjectRef(ref=ref))
    return empty_response()


def _with_warnings(body: dict[str, object], warnings: list[str]) -> dict[str, object]:
    if warnings:
        body["Warnings"] = warnings
    return body


ROUTES: list[Route] = [
    ("GET", "/services", list_services),
    ("POST", "/services/create", create_service),
    ("GET", "/services/{id}", inspect_service),
    ("POST", "/services/{id}/update", update_service),
    ("DELETE", "/services/{id}", remove_service),
]
