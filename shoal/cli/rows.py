"""The rows of the listings (``service ls``/``ps``, ``node ls``/``ps``,
``stack ls``/``services``/``ps``, ``secret ls``, ``config ls``), with the
docker CLI's field names and default tables, for ``--format`` templates.

Each row is a dict of display strings; ``trunc`` (the default, turned off by
``--no-trunc``) shortens IDs to 12 characters and errors to ERROR_WIDTH with
``…``. A task on a node that is down shows why in Error when it has no error
of its own (``node node-2 is down: heartbeat failure``): its own status is the
last its agent reported, and nobody can say more about it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shoal.cli import listing
from shoal.cli.listing import Asked, Listing
from shoal.cli.render import (
    JOBS,
    ago,
    ellipsis,
    endpoints_text,
    enum_word,
    mode_word,
    node_down_text,
    ports_text,
    service_ls_json,
    state_word,
)
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb

ID_WIDTH = 12
ERROR_WIDTH = 60

SERVICES = Listing(
    {"ID": "ID", "Name": "NAME", "Mode": "MODE", "Replicas": "REPLICAS", "Image": "IMAGE", "Ports": "PORTS"},
    "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}",
)
TASKS = Listing(
    {
        "ID": "ID",
        "Name": "NAME",
        "Image": "IMAGE",
        "Node": "NODE",
        "DesiredState": "DESIRED STATE",
        "CurrentState": "CURRENT STATE",
        "Error": "ERROR",
        "Ports": "PORTS",
    },
    "table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}"
    "\t{{.Error}}\t{{.Ports}}",
)
NODES = Listing(
    {
        "ID": "ID",
        "Self": "",
        "Hostname": "HOSTNAME",
        "Status": "STATUS",
        "Availability": "AVAILABILITY",
        "ManagerStatus": "MANAGER STATUS",
        "EngineVersion": "ENGINE VERSION",
        "Address": "ADDRESS",
        "Runtime": "RUNTIME",
        "Role": "ROLE",
    },
    "table {{.ID}}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.Role}}\t{{.Address}}\t{{.Runtime}}",
)


STACKS = Listing(
    # Orchestrator is always "Swarm", as docker says of a swarm-mode stack:
    # scripts written for docker compare against it.
    {"Name": "NAME", "Services": "SERVICES", "Orchestrator": "ORCHESTRATOR"},
    "table {{.Name}}\t{{.Services}}",
)
SECRETS = Listing(
    {
        "ID": "ID",
        "Name": "NAME",
        "Driver": "DRIVER",
        "CreatedAt": "CREATED",
        "UpdatedAt": "UPDATED",
        "Labels": "LABELS",
    },
    "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.CreatedAt}}\t{{.UpdatedAt}}",
)
CONFIGS = Listing(
    {k: v for k, v in SECRETS.headers.items() if k != "Driver"},
    "table {{.ID}}\t{{.Name}}\t{{.CreatedAt}}\t{{.UpdatedAt}}",
)


def short_id(object_id: str, trunc: bool) -> str:
    return object_id[:ID_WIDTH] if trunc else object_id


def replicas_text(summary: cpb.ServiceSummary) -> str:
    running, desired = summary.replicas_running, summary.replicas_desired
    if summary.service.spec.mode in JOBS:
        return f"{running}/{desired} ({summary.completed}/{desired} completed)"
    return f"{running}/{desired}"


def service_row(summary: cpb.ServiceSummary, trunc: bool = True) -> dict[str, Any]:
    svc = summary.service
    return {
        "ID": short_id(svc.meta.id, trunc),
        "Name": svc.spec.name,
        "Mode": mode_word(svc.spec.mode),
        "Replicas": replicas_text(summary),
        "Image": svc.spec.task.container.image,
        "Ports": ", ".join(ports_text(svc.spec.ports)),
    }


def task_error(task: pb.Task, hostnames: Mapping[str, str], down: Mapping[str, str]) -> str:
    """The task's error, or why its node cannot say how it is."""
    if task.status.err:
        return task.status.err
    if task.status.state <= pb.TASK_STATE_RUNNING:
        return node_down_text(task, hostnames, down)
    return ""


def current_state_text(task: pb.Task, now_ns: int) -> str:
    state = state_word(task.status.state)
    if task.status.health == pb.HEALTH_UNHEALTHY:
        state += " (unhealthy)"
    elif task.status.health == pb.HEALTH_STARTING and task.status.state <= pb.TASK_STATE_RUNNING:
        state += " (health: starting)"
    return f"{state.capitalize()} {ago(task.status.timestamp or task.meta.created_at, now_ns)}"


def task_row(
    task: pb.Task,
    name: str,
    hostnames: Mapping[str, str],
    down: Mapping[str, str],
    now_ns: int,
    trunc: bool = True,
    addrs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    error = task_error(task, hostnames, down)
    host_ports = [p for p in task.ports if p.publish_mode == "host"]
    # A task's endpoints while it has not ended (where the mesh reaches it),
    # else its host-mode ports as docker shows them.
    live = task.status.endpoints and task.status.state <= pb.TASK_STATE_RUNNING
    ports = (
        endpoints_text(task, (addrs or {}).get(task.node_id, ""))
        if live
        else ", ".join(t.split(" ")[0] for t in ports_text(host_ports))
    )
    return {
        "ID": short_id(task.meta.id, trunc),
        "Name": name,
        "Image": task.spec.container.image,
        "Node": hostnames.get(task.node_id, ""),
        "DesiredState": state_word(task.desired_state).capitalize(),
        "CurrentState": current_state_text(task, now_ns),
        "Error": ellipsis(error, ERROR_WIDTH) if trunc else error,
        "Ports": ports,
    }


def node_row(node: pb.Node, trunc: bool = True) -> dict[str, Any]:
    return {
        "ID": short_id(node.meta.id, trunc),
        "Self": False,  # the CLI is not a node
        "Hostname": node.description.hostname,
        "Status": enum_word(pb.NodeState.DESCRIPTOR, node.status.state).capitalize(),
        "Availability": enum_word(pb.NodeAvailability.DESCRIPTOR, node.spec.availability).capitalize(),
        "ManagerStatus": "",  # managers are not nodes here (they share etcd)
        "EngineVersion": "",
        "Address": node.status.addr,
        "Runtime": node.description.runtime,
        "Role": "manager" if node.role == pb.NODE_ROLE_MANAGER else "worker",
    }


def stack_row(name: str, services: int) -> dict[str, Any]:
    return {"Name": name, "Services": str(services), "Orchestrator": "Swarm"}


def file_row(obj: pb.Secret | pb.Config, now_ns: int, trunc: bool = True) -> dict[str, Any]:
    """A secret's or a config's row (secrets have a Driver: always none here)."""
    row: dict[str, Any] = {
        "ID": short_id(obj.meta.id, trunc),
        "Name": obj.spec.name,
        "CreatedAt": ago(obj.meta.created_at, now_ns),
        "UpdatedAt": ago(obj.meta.updated_at or obj.meta.created_at, now_ns),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(obj.spec.labels.items())),
    }
    if isinstance(obj, pb.Secret):
        row["Driver"] = ""
    return row


def show_services(asked: Asked, summaries: Sequence[cpb.ServiceSummary]) -> None:
    """Services as ``service ls`` (and ``stack services``) print them."""
    listing.show(
        SERVICES,
        asked,
        summaries,
        lambda s: s.service.meta.id,
        lambda s: service_row(s, asked.trunc),
        service_ls_json,
    )
