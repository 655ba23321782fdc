"""``/tasks``: list (filters ``service``, ``node``, ``desired-state``,
``name``, ``id``, ``label``, ``_up-to-date``) and inspect.

``service`` and ``node`` filters name objects as the engine's do (ID, name,
or unique prefix) and are resolved through the ControlAPI, which then lists
only their tasks from its indexes. ``_up-to-date`` (what ``docker service
create/update`` follows) keeps the tasks made from the service's current
spec version. ``desired-state`` matches the engine's way: the state itself
(ControlAPI's own filter groups states, for shoal's CLI). ``label`` matches
the task's service's labels, as Swarm's does.
"""

from __future__ import annotations

from aiohttp import web

from shoal.manager.dockerapi import filters, objects, words
from shoal.manager.dockerapi.errors import BAD_REQUEST, NOT_FOUND, DockerError
from shoal.manager.dockerapi.handlers import Route, backend, call, json_response
from shoal.names import task_name
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb

_LIST_FILTERS = ("name", "id", "label", "service", "node", "desired-state", "_up-to-date", "runtime")


async def list_tasks(request: web.Request) -> web.StreamResponse:
    control = backend(request).control
    wanted = filters.parse(request.query.get("filters"), _LIST_FILTERS)
    for word in wanted.get("desired-state", []):
        if word not in words.TASK_STATES_BY_WORD:
            raise DockerError(BAD_REQUEST, f"Invalid desired-state filter: '{word[:40]}'")
    named = [
        await call(request, control.GetService, cpb.ObjectRef(ref=ref)) for ref in wanted.get("service", [])
    ]
    service_ids = [s.meta.id for s in named]
    node_ids = [
        (await call(request, control.GetNode, cpb.ObjectRef(ref=ref))).meta.id
        for ref in wanted.get("node", [])
    ]
    # Let the ControlAPI narrow the listing by its indexes where it can.
    narrow = cpb.ListTasksRequest()
    if len(service_ids) == 1:
        narrow.service = service_ids[0]
    if len(node_ids) == 1:
        narrow.node = node_ids[0]
    listing = await call(request, control.ListTasks, narrow)
    # The services' spec versions and modes: those named, else all of them.
    if named:
        services = {s.meta.id: s for s in named}
    else:
        listed = await call(request, control.ListServices, cpb.ListServicesRequest())
        services = {s.service.meta.id: s.service for s in listed.services}
    up_to_date = "_up-to-date" in wanted
    out = []
    for t in listing.tasks:
        svc = services.get(t.service_id)
        job = svc is not None and svc.spec.mode in words.JOB_MODES
        if (
            (not service_ids or t.service_id in service_ids)
            and (not node_ids or t.node_id in node_ids)
            and filters.exact(wanted, "desired-state", objects.desired_state(t, job))
            and (not up_to_date or (svc is not None and t.spec_version == svc.spec_version))
            and filters.prefix(wanted, "id", t.meta.id)
            and filters.prefix(wanted, "name", task_name(t))
            # As Swarm's: a task's labels are its service's (what `docker
            # stack ps` filters on).
            and filters.labels(wanted, "label", svc.spec.labels if svc is not None else {})
            and filters.exact(wanted, "runtime", "container")
        ):
            out.append(objects.task(t, job=job))
    return json_response(out)


async def inspect_task(request: web.Request) -> web.StreamResponse:
    t = await find_task(request, request.match_info["id"])
    control = backend(request).control
    job = False
    try:
        svc = await call(request, control.GetService, cpb.ObjectRef(ref=t.service_id))
        job = svc.spec.mode in words.JOB_MODES
    except DockerError as err:
        if err.status != NOT_FOUND:  # a task may outlive its service briefly
            raise
    return json_response(objects.task(t, job=job))


async def find_task(request: web.Request, ref: str) -> pb.Task:
    """A task by ID or unique ID prefix, as the engine finds one."""
    if not ref:
        raise DockerError(BAD_REQUEST, "task: an ID is required")
    listing = await call(request, backend(request).control.ListTasks, cpb.ListTasksRequest())
    matches = [t for t in listing.tasks if t.meta.id == ref]
    if not matches:
        matches = [t for t in listing.tasks if t.meta.id.startswith(ref)]
    if not matches:
        raise DockerError(NOT_FOUND, f"task {ref[:80]} not found")
    if len(matches) > 1:
        raise DockerError(BAD_REQUEST, f"task {ref[:80]} is ambiguous ({len(matches)} matches found)")
    return matches[0]


ROUTES: list[Route] = [
    ("GET", "/tasks", list_tasks),
    ("GET", "/tasks/{id}", inspect_task),
]
