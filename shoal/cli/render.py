"""Objects as the CLI shows them: the JSON shapes of CLI.md, and the words
and times of its tables.

Field names are snake_case, times RFC 3339 UTC, states and enums lower case
(``TASK_STATE_RUNNING`` -> ``running``, ``RESTART_CONDITION_ON_FAILURE`` ->
``on-failure``).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from shoal.protos import objects_pb2 as pb

# The modes whose tasks run to completion instead of being kept running.
JOBS = (pb.SERVICE_MODE_REPLICATED_JOB, pb.SERVICE_MODE_GLOBAL_JOB)
_TIME_FIELDS = {"created_at", "updated_at", "timestamp", "started_at", "completed_at", "restart_at"}


def rfc3339(ns: int) -> str:
    if not ns:
        return ""
    dt = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}Z"


def enum_word(enum_type: Any, value: int) -> str:
    """The short lower-case name: TASK_STATE_RUNNING -> running."""
    name = enum_type.values_by_number[value].name if value in enum_type.values_by_number else str(value)
    prefix = "".join("_" + c if c.isupper() else c for c in enum_type.name).lstrip("_").upper() + "_"
    if name.startswith(prefix):
        name = name[len(prefix) :]
    # CLI words use hyphens (on-failure, start-first, replicated-job), but
    # CLI.md spells update states with underscores (rollback_completed).
    return name.lower() if enum_type.name == "UpdateState" else name.lower().replace("_", "-")


def state_word(state: int) -> str:
    return enum_word(pb.TaskState.DESCRIPTOR, state)


def to_dict(msg: Message) -> dict[str, Any]:
    """Every field of msg (defaults included), with friendly enums and times."""
    out: dict[str, Any] = {}
    fd: Any
    for fd in msg.DESCRIPTOR.fields:
        value = getattr(msg, fd.name)
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            out[fd.name] = dict(value)
        elif fd.is_repeated:
            out[fd.name] = [_value(fd, v) for v in value]
        elif fd.message_type is not None and not msg.HasField(fd.name):
            out[fd.name] = None
        else:
            out[fd.name] = _value(fd, value)
    return out


def _value(fd: Any, value: Any) -> Any:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return to_dict(value)
    if fd.type == FieldDescriptor.TYPE_ENUM:
        return enum_word(fd.enum_type, value)
    if fd.name in _TIME_FIELDS:
        return rfc3339(value)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return value.decode(errors="replace")
    return value


def mesh_json(mesh: pb.NodeMesh) -> dict[str, Any]:
    """A node's routing mesh: its data path and each published port it serves."""
    return {
        "path": mesh.path,
        "error": mesh.error,
        "ports": [
            {
                "port": p.port,
                "protocol": p.protocol,
                "service_id": p.service_id,
                "path": p.path,
                "backends": p.backends,
                "local_backends": p.local_backends,
                "error": p.error,
            }
            for p in mesh.ports
        ],
        "reported_at": rfc3339(mesh.updated_at),
    }


def node_json(node: pb.Node) -> dict[str, Any]:
    labels = dict(node.spec.labels)
    return {
        "id": node.meta.id,
        "hostname": node.description.hostname,
        "role": "manager" if node.role == pb.NODE_ROLE_MANAGER else "worker",
        "status": enum_word(pb.NodeState.DESCRIPTOR, node.status.state),
        "availability": enum_word(pb.NodeAvailability.DESCRIPTOR, node.spec.availability),
        "address": node.status.addr,
        "labels": labels,
        "platform": {"os": node.description.platform.os, "arch": node.description.platform.arch},
        "resources": {
            "nano_cpus": node.description.resources.nano_cpus,
            "memory_bytes": node.description.resources.memory_bytes,
        },
        "runtime": node.description.runtime,
        "status_message": node.status.message,
        # The manager holding the node's session (the last one, when down).
        "manager_id": node.status.manager_id,
        # The routing mesh as the node last reported it.
        "mesh": mesh_json(node.mesh),
        "created_at": rfc3339(node.meta.created_at),
        "updated_at": rfc3339(node.meta.updated_at),
    }


def network_json(network: pb.Network) -> dict[str, Any]:
    return {
        "id": network.meta.id,
        "name": network.spec.name,
        "driver": network.spec.driver,
        "labels": dict(network.spec.labels),
        "created_at": rfc3339(network.meta.created_at),
        "updated_at": rfc3339(network.meta.updated_at),
    }


def mode_word(mode: int) -> str:
    return enum_word(pb.ServiceMode.DESCRIPTOR, mode)


def ports_text(ports: Any) -> list[str]:
    return [
        f"*:{p.published_port}->{p.target_port}/{p.protocol}"
        + (" (host)" if p.publish_mode == "host" else "")
        for p in ports
    ]


def service_ls_json(summary: Any) -> dict[str, Any]:
    svc = summary.service
    out = {
        "id": svc.meta.id,
        "name": svc.spec.name,
        "mode": mode_word(svc.spec.mode),
        "replicas_desired": summary.replicas_desired,
        "replicas_running": summary.replicas_running,
        "image": svc.spec.task.container.image,
        "ports": ports_text(svc.spec.ports),
    }
    if svc.spec.mode in JOBS:
        out["completed"] = summary.completed
    return out


def task_display_name(task: pb.Task) -> str:
    return f"{task.service_name}.{task.slot}" if task.slot else f"{task.service_name}.{task.node_id}"


def node_down_text(task: pb.Task, hostnames: Mapping[str, str], down: Mapping[str, str]) -> str:
    """Why nobody can say how a task is, when its node is down (``node
    node-2 is down: heartbeat failure``); "" when its node is not down."""
    if task.node_id not in down:
        return ""
    node = hostnames.get(task.node_id) or task.node_id
    return f"node {node} is down: {down[task.node_id] or 'no heartbeat'}"


def endpoints_json(task: pb.Task, addr: str) -> list[dict[str, Any]]:
    """Where the task's ports are reached: its node's address and host ports."""
    return [
        {"protocol": e.protocol, "target_port": e.target_port, "host_port": e.host_port, "addr": addr}
        for e in task.status.endpoints
    ]


def endpoints_text(task: pb.Task, addr: str) -> str:
    """``127.0.0.12:20001->80/tcp``, comma separated (the PORTS column)."""
    return ",".join(
        f"{addr or '*'}:{e.host_port or '?'}->{e.target_port}/{e.protocol}" for e in task.status.endpoints
    )


def task_json(
    task: pb.Task, hostnames: dict[str, str], addrs: dict[str, str] | None = None
) -> dict[str, Any]:
    addr = (addrs or {}).get(task.node_id, "")
    return {
        "id": task.meta.id,
        "name": task_display_name(task),
        "service": task.service_name,
        "service_id": task.service_id,
        "slot": task.slot,
        "node_id": task.node_id,
        "node": hostnames.get(task.node_id, ""),
        "image": task.spec.container.image,
        "desired_state": state_word(task.desired_state),
        "current_state": state_word(task.status.state),
        "message": task.status.message,
        "error": task.status.err,
        "exit_code": task.status.exit_code,
        "pid": task.status.pid,
        "health": enum_word(pb.Health.DESCRIPTOR, task.status.health),
        "spec_version": task.spec_version,
        "endpoints": endpoints_json(task, addr),
        "created_at": rfc3339(task.meta.created_at),
        "updated_at": rfc3339(task.status.timestamp or task.meta.updated_at),
    }


def sort_tasks_for_ps(tasks: list[pb.Task]) -> list[pb.Task]:
    """Docker's order: by slot (or node), newest first within a slot."""
    return sorted(
        tasks, key=lambda t: (t.service_name, t.slot, t.node_id if not t.slot else "", -t.meta.created_at)
    )


def endpoint_json(svc: pb.Service, tasks: Any = None) -> dict[str, Any]:
    """How the service is reached: its published ports (the mesh answers on
    ingress ones on every node) and, given its ListTasks answer, the
    endpoints of its running tasks (the backends)."""
    out: dict[str, Any] = {
        "virtual_ip": svc.virtual_ip,
        "networks": list(svc.spec.networks),
        "expose": [f"{p.target_port}/{p.protocol}" for p in svc.spec.expose],
        "ports": [
            {
                "protocol": p.protocol,
                "published_port": p.published_port,
                "target_port": p.target_port,
                "publish_mode": p.publish_mode,
                "proxy_protocol": p.proxy_protocol,
            }
            for p in svc.spec.ports
        ],
    }
    if tasks is not None:
        addrs = dict(tasks.node_addrs)
        out["tasks"] = [
            {
                "id": t.meta.id,
                "name": task_display_name(t),
                "node_id": t.node_id,
                "endpoints": endpoints_json(t, addrs.get(t.node_id, "")),
            }
            for t in sort_tasks_for_ps(list(tasks.tasks))
            if t.status.state == pb.TASK_STATE_RUNNING and t.desired_state == pb.TASK_STATE_RUNNING
        ]
    return out


def service_json(svc: pb.Service, tasks: Any = None) -> dict[str, Any]:
    return {
        "id": svc.meta.id,
        "version": svc.meta.version,
        "created_at": rfc3339(svc.meta.created_at),
        "updated_at": rfc3339(svc.meta.updated_at),
        "spec": to_dict(svc.spec),
        "spec_version": svc.spec_version,
        "previous_spec": to_dict(svc.previous_spec) if svc.HasField("previous_spec") else None,
        "update_status": to_dict(svc.update_status) if svc.HasField("update_status") else None,
        "endpoint": endpoint_json(svc, tasks),
    }


def ellipsis(text: str, width: int) -> str:
    """text cut to width characters, the last one ``…`` when cut."""
    if width <= 0 or len(text) <= width:
        return text
    return text[: width - 1] + "…"


def ago(ns: int, now_ns: int) -> str:
    """How long ago, in the words of docker's HumanDuration: "2 minutes ago"."""
    secs = max(0, (now_ns - ns) // 1_000_000_000)
    if secs < 60:
        return "less than a minute ago" if secs < 2 else f"{secs} seconds ago"
    minutes, hours = secs // 60, secs // 3600
    if minutes == 1:
        return "about a minute ago"
    if minutes < 60:
        return f"{minutes} minutes ago"
    if hours == 1:
        return "about an hour ago"
    if hours < 48:
        return f"{hours} hours ago"
    days = hours // 24
    if days < 14:
        return f"{days} days ago"
    if days < 60:
        return f"{days // 7} weeks ago"
    if days < 365 * 2:
        return f"{days // 30} months ago"
    return f"{days // 365} years ago"
