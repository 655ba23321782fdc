"""``/nodes``: list, inspect, update (availability and labels, with
``version``), remove (with ``force``).

The engine takes a node's whole spec on update; the ControlAPI takes the
changes (availability, labels to add and to remove), so the handler turns
one into the other against the node as it is now. A node's role and name
are not the operator's to change in shoal (the join token sets the role;
the hostname is the name): a spec that changes them is refused.
"""

from __future__ import annotations

from aiohttp import web

from shoal.manager.dockerapi import filters, objects, words
from shoal.manager.dockerapi.errors import BAD_REQUEST, CONFLICT, DockerError
from shoal.manager.dockerapi.handlers import (
    Route,
    backend,
    call,
    empty_response,
    json_response,
    read_json,
    version_param,
)
from shoal.protos import control_pb2 as cpb

_LIST_FILTERS = ("name", "id", "label", "role", "membership", "node.label")
_MEMBERSHIPS = ("accepted", "pending")


async def list_nodes(request: web.Request) -> web.StreamResponse:
    wanted = filters.parse(request.query.get("filters"), _LIST_FILTERS)
    for role in wanted.get("role", []):
        if role and role not in words.ROLES.values():
            raise DockerError(BAD_REQUEST, f"Invalid role filter: '{role[:40]}'")
    for membership in wanted.get("membership", []):
        if membership and membership not in _MEMBERSHIPS:
            raise DockerError(BAD_REQUEST, f"Invalid membership filter: '{membership[:40]}'")
    listing = await call(request, backend(request).control.ListNodes, cpb.ListNodesRequest())
    out = []
    for n in listing.nodes:
        # Every shoal node has been accepted (joined with a token).
        if (
            filters.prefix(wanted, "id", n.meta.id)
            and filters.prefix(wanted, "name", n.description.hostname)
            and filters.exact(wanted, "role", words.ROLES.get(n.role, "worker"))
            and filters.exact(wanted, "membership", "accepted")
            and filters.labels(wanted, "label", n.description.labels)
            and filters.labels(wanted, "node.label", n.spec.labels)
        ):
            out.append(objects.node(n))
    return json_response(out)


async def inspect_node(request: web.Request) -> web.StreamResponse:
    n = await call(request, backend(request).control.GetNode, cpb.ObjectRef(ref=request.match_info["id"]))
    return json_response(objects.node(n))


async def update_node(request: web.Request) -> web.StreamResponse:
    control = backend(request).control
    version = version_param(request, "node")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise DockerError(BAD_REQUEST, "body: expected a JSON object (a NodeSpec)")
    current = await call(request, control.GetNode, cpb.ObjectRef(ref=request.match_info["id"]))
    name = current.description.hostname
    # Checked against the node as this manager holds it; the ControlAPI's
    # write below is conditional on that same version in etcd.
    if version != current.meta.version:
        raise DockerError(
            CONFLICT,
            f"update out of sequence: node {name} was changed since version {version} was read "
            f"(it is at {current.meta.version}); inspect it again and retry",
        )
    role = body.get("Role") or words.ROLES.get(current.role, "worker")
    if role != words.ROLES.get(current.role, "worker"):
        raise DockerError(
            BAD_REQUEST,
            f"Role: node {name} is a {words.ROLES.get(current.role)}; shoal sets a node's role "
            "when it joins (its join token) and cannot change it",
        )
    if body.get("Name"):
        raise DockerError(BAD_REQUEST, f"Name: a shoal node is named by its hostname ({name})")
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise DockerError(BAD_REQUEST, "Labels: expected an object of strings")
    availability = body.get("Availability") or ""
    if not isinstance(availability, str):
        raise DockerError(BAD_REQUEST, "Availability: expected active, pause or drain")
    extra = [k for k, v in body.items() if k not in ("Role", "Name", "Labels", "Availability") and v]
    if extra:
        raise DockerError(BAD_REQUEST, f"{extra[0][:40]}: not a field of a node's spec shoal knows")
    update = cpb.UpdateNodeRequest(ref=current.meta.id, availability=availability)
    for key, value in labels.items():
        if current.spec.labels.get(key) != value:
            update.label_add[key] = value
    update.label_rm.extend(k for k in current.spec.labels if k not in labels)
    await call(request, control.UpdateNode, update)
    return empty_response()


async def remove_node(request: web.Request) -> web.StreamResponse:
    force = request.query.get("force", "").lower() in ("1", "true", "t")
    ref = request.match_info["id"]
    await call(request, backend(request).control.RemoveNode, cpb.RemoveNodeRequest(ref=ref, force=force))
    return empty_response()


ROUTES: list[Route] = [
    ("GET", "/nodes", list_nodes),
    ("GET", "/nodes/{id}", inspect_node),
    ("POST", "/nodes/{id}/update", update_node),
    ("DELETE", "/nodes/{id}", remove_node),
]
