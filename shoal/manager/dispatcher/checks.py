"""What an agent may say, checked before the dispatcher believes it.

A node's certificate names it; from then on it may speak only for itself
(as Kubernetes' NodeRestriction admits a kubelet): it reports status only
for tasks assigned to its own node, only in the states agents own
(``accepted`` … ``rejected``), and everything it sends is bounded. A
violation is not a bug to tolerate but a node misbehaving: the session is
ended with PERMISSION_DENIED (someone else's task) or INVALID_ARGUMENT
(a malformed message), and nothing it sent in that message is written.

Texts that are merely long (an error message, a log line) are cut, not
refused: a real agent may meet a verbose runtime error.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import objects_pb2 as pb
from shoal.rules import limits
from shoal.rules.errors import InvalidRequest

# The states an agent moves a task through (DESIGN.md: the agent moves
# everything from accepted onward); new/pending/assigned belong to the
# orchestrators and the scheduler, remove/orphaned to the managers.
AGENT_STATES = frozenset(
    {
        pb.TASK_STATE_ACCEPTED,
        pb.TASK_STATE_PREPARING,
        pb.TASK_STATE_READY,
        pb.TASK_STATE_STARTING,
        pb.TASK_STATE_RUNNING,
        pb.TASK_STATE_COMPLETE,
        pb.TASK_STATE_SHUTDOWN,
        pb.TASK_STATE_FAILED,
        pb.TASK_STATE_REJECTED,
    }
)
# A runtime backend's name: pluggable, so a shape rather than a list.
RUNTIME_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")


class NotYours(Exception):
    """A node spoke for something that is not its own."""


def cut(text: str, max_bytes: int) -> str:
    """text, cut to at most max_bytes of UTF-8 (never inside a character)."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    return data[: max_bytes - 3].decode(errors="ignore") + "..."


def check_registration(reg: dpb.Register) -> None:
    """InvalidRequest naming the field when a registration is malformed."""
    desc = reg.description
    limits.check_text("hostname", desc.hostname, limits.MAX_HOSTNAME, allow_empty=False)
    if any(c.isspace() or not c.isprintable() for c in desc.hostname):
        raise InvalidRequest("hostname: must not contain spaces or control characters")
    limits.check_text("platform os", desc.platform.os, limits.MAX_PLATFORM)
    limits.check_text("platform arch", desc.platform.arch, limits.MAX_PLATFORM)
    if not RUNTIME_NAME.fullmatch(desc.runtime):
        raise InvalidRequest("runtime: a name of lower-case letters, digits and '-', at most 32")
    limits.check_range("nano_cpus", desc.resources.nano_cpus, 0, limits.MAX_NANO_CPUS)
    limits.check_range("memory_bytes", desc.resources.memory_bytes, 0, limits.MAX_MEMORY)
    limits.check_labels("labels", desc.labels, limits.MAX_NODE_LABELS)
    if reg.addr:
        try:
            ipaddress.ip_address(reg.addr)
        except ValueError:
            raise InvalidRequest(f'addr "{reg.addr[:64]}": must be an IP address') from None
    limits.check_text("session_id", reg.session_id, 64)


def check_status(node_id: str, task: pb.Task, status: pb.TaskStatus) -> pb.TaskStatus:
    """The status to store for one of the node's tasks, texts cut to size.
    NotYours for a task of another node (or not yet handed to it),
    InvalidRequest for a state or health value an agent may not report."""
    if task.node_id != node_id or task.status.state < pb.TASK_STATE_ASSIGNED:
        raise NotYours(f"task {task.meta.id} is not assigned to node {node_id}")
    if status.state not in AGENT_STATES:
        raise InvalidRequest(
            f"task {task.meta.id}: state {status.state} is not one an agent reports (accepted ... rejected)"
        )
    limits.check_enum(f"task {task.meta.id} health", status.health, pb.Health)
    check_endpoints(task, status.endpoints)
    small = limits.MAX_STATUS_TEXT
    if len(status.message.encode()) <= small and len(status.err.encode()) <= small:
        return status
    capped = pb.TaskStatus()
    capped.CopyFrom(status)
    capped.message = cut(status.message, limits.MAX_STATUS_TEXT)
    capped.err = cut(status.err, limits.MAX_STATUS_TEXT)
    return capped


def check_endpoints(task: pb.Task, endpoints: Iterable[pb.TaskEndpoint]) -> None:
    """InvalidRequest unless each endpoint is one of the task's own ports
    (published or exposed), once, on a valid host port: a node
    cannot steer the mesh's traffic toward ports its task does not have."""
    ports = {((p.protocol or "tcp"), p.target_port) for p in [*task.ports, *task.expose]}
    seen: set[tuple[str, int]] = set()
    for e in endpoints:
        key = (e.protocol, e.target_port)
        if key not in ports:
            raise InvalidRequest(
                f"task {task.meta.id}: endpoint {e.target_port}/{e.protocol[:8]} is not one of its ports"
            )
        if key in seen:
            raise InvalidRequest(f"task {task.meta.id}: endpoint {e.target_port}/{e.protocol} given twice")
        seen.add(key)
        limits.check_range(f"task {task.meta.id} endpoint host port", e.host_port, 0, 65535)


MESH_PATHS = ("", "kernel", "userspace")


def check_mesh_report(report: dpb.MeshReport) -> pb.NodeMesh:
    """The node's mesh summary to store, texts cut; InvalidRequest when it
    is malformed (an unknown path, a port out of range, too many ports)."""
    mesh = report.mesh
    if len(mesh.ports) > limits.MAX_MESH_PORTS:
        raise InvalidRequest(f"mesh report: at most {limits.MAX_MESH_PORTS} ports, got {len(mesh.ports)}")
    if mesh.path not in MESH_PATHS:
        raise InvalidRequest(f'mesh report: path must be kernel or userspace, got "{mesh.path[:16]}"')
    out = pb.NodeMesh()
    out.CopyFrom(mesh)
    out.error = cut(mesh.error, limits.MAX_STATUS_TEXT)
    for port in out.ports:
        if port.path not in MESH_PATHS or port.protocol not in ("tcp", "udp") or not 0 < port.port < 65536:
            raise InvalidRequest(
                f"mesh report: port {port.port}/{port.protocol[:8]} ({port.path[:16]}) is malformed"
            )
        limits.check_text("mesh report service_id", port.service_id, 64)
        port.error = cut(port.error, limits.MAX_STATUS_TEXT)
    return out


def check_log_chunk(chunk: dpb.LogChunk) -> None:
    """Cut over-long lines in place; InvalidRequest for a chunk of too many."""
    if len(chunk.lines) > limits.MAX_LOG_LINES:
        raise InvalidRequest(f"log chunk: at most {limits.MAX_LOG_LINES} lines, got {len(chunk.lines)}")
    for line in chunk.lines:
        if len(line.data) > limits.MAX_LOG_LINE:
            line.data = line.data[: limits.MAX_LOG_LINE]
    chunk.error = cut(chunk.error, limits.MAX_STATUS_TEXT)
