"""shoal's services, tasks and nodes as the Engine API shows them.

Pure: protobuf in, JSON-ready dicts out, in the shapes of the Engine API's
swagger definitions (``Service``, ``Task``, ``Node``); the unit tests check
them. IDs and object versions are shoal's own (a version is the etcd
revision of the stored object, so ``version=`` on an update is exact).

Two translations need a word:
- **UpdateStatus.** Swarm clears it on every spec change; shoal keeps the
  last rollout's status. A finished rollout's status (completed, rollback
  completed) is therefore shown only until the service is written again,
  as in Swarm; otherwise ``docker service scale`` after an update would see
  "completed" and stop following at once. (A change that races the end of
  a rollout may still show it.)
- **Jobs.** The engine numbers job runs (``JobIteration``); shoal's spec
  version plays that part: a task belongs to the run of its spec version.
  A replicated job's slots count from 0 there, from 1 in shoal, and its
  tasks are meant to "complete" where shoal's say "running".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from shoal.defaults import MESH
from shoal.manager.dockerapi import netspecs, spec_out, words
from shoal.manager.dockerapi.wire import SECOND, meta, rfc3339, version
from shoal.names import task_name
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb

Json = dict[str, Any]

# The updater writes a finished rollout's completion time and the service's
# update time in one write, read from the clock a few microseconds apart (in
# the same synchronous step: store/view.update_with_retry); a later write of
# the service (a spec change) is what hides the status, as Swarm clears it.
# A spec change within this margin of a rollout's end (or racing it) still
# shows that rollout's status.
_SAME_WRITE = SECOND // 10
_FINISHED = (pb.UPDATE_STATE_COMPLETED, pb.UPDATE_STATE_ROLLBACK_COMPLETED)
# Virtual addresses are shown with the length of the range they come from,
# as the engine shows an address with its subnet's.
_VIP_PREFIX = ipaddress.ip_network(MESH.vip_net).prefixlen


def service(
    svc: pb.Service, summary: cpb.ServiceSummary | None = None, network_ids: Mapping[str, str] | None = None
) -> Json:
    """A service; with a summary (``status=true``) its ServiceStatus too;
    ``network_ids``: each network's ID by name (``spec_out.service_spec``)."""
    out = meta(svc.meta)
    out["Spec"] = spec_out.service_spec(svc.spec, network_ids)
    if svc.HasField("previous_spec") and svc.previous_spec.name:
        out["PreviousSpec"] = spec_out.service_spec(svc.previous_spec, network_ids)
    ports = [spec_out.port(p) for p in svc.spec.ports if p.published_port]
    out["Endpoint"] = {"Spec": {"Mode": "vip", "Ports": [spec_out.port(p) for p in svc.spec.ports]}}
    if ports:
        out["Endpoint"]["Ports"] = ports
    vips = virtual_ips(svc, network_ids or {})
    if vips:
        out["Endpoint"]["VirtualIPs"] = vips
    status = update_status(svc)
    if status is not None:
        out["UpdateStatus"] = status
    if svc.spec.mode in words.JOB_MODES:
        started = svc.update_status.started_at or svc.meta.created_at
        out["JobStatus"] = {"JobIteration": version(svc.spec_version), "LastExecution": rfc3339(started)}
    if summary is not None:
        out["ServiceStatus"] = service_status(svc, summary)
    return out


def virtual_ips(svc: pb.Service, network_ids: Mapping[str, str]) -> list[Json]:
    """The service's virtual address on each of its networks. shoal gives a
    service one address, resolved on every network it is on; a service on
    no network is in the cluster's default scope, shown as ingress."""
    if not svc.virtual_ip:
        return []
    addr = f"{svc.virtual_ip}/{_VIP_PREFIX}"
    if not svc.spec.networks:
        return [{"NetworkID": netspecs.INGRESS_ID, "Addr": addr}]
    return [{"NetworkID": network_ids.get(name, name), "Addr": addr} for name in svc.spec.networks]


def update_status(svc: pb.Service) -> Json | None:
    status = svc.update_status
    if status.state not in words.UPDATE_STATES:
        return None
    if status.state in _FINISHED and svc.meta.updated_at - status.completed_at > _SAME_WRITE:
        return None
    out: Json = {"State": words.UPDATE_STATES[status.state]}
    if status.started_at:
        out["StartedAt"] = rfc3339(status.started_at)
    if status.completed_at:
        out["CompletedAt"] = rfc3339(status.completed_at)
    out["Message"] = status.message
    return out


def service_status(svc: pb.Service, summary: cpb.ServiceSummary) -> Json:
    desired = summary.replicas_desired
    if svc.spec.mode == pb.SERVICE_MODE_REPLICATED_JOB:
        # The engine counts the tasks that should run now: at most
        # MaxConcurrent, and no more than the completions still missing.
        left = max(0, svc.spec.replicas - summary.completed)
        desired = min(left, svc.spec.max_concurrent or left)
    elif svc.spec.mode == pb.SERVICE_MODE_GLOBAL_JOB:
        # The tasks not completed yet (the docker CLI adds the completed ones
        # to show the total).
        desired = max(0, summary.replicas_desired - summary.completed)
    return {
        "RunningTasks": summary.replicas_running,
        "DesiredTasks": desired,
        "CompletedTasks": summary.completed,
    }


def task(t: pb.Task, job: bool = False) -> Json:
    """A task; ``job``: it belongs to a job service (it then names its run)."""
    out = meta(t.meta)
    out["Name"] = task_name(t)
    out["Labels"] = {}
    out["Spec"] = spec_out.task_spec(t.spec)
    out["ServiceID"] = t.service_id
    # Swarm numbers a replicated job's slots from 0 (the docker CLI's job
    # progress counts on it), shoal from 1.
    slot = t.slot - 1 if job and t.slot else t.slot
    if slot:
        out["Slot"] = slot
    if t.node_id:
        out["NodeID"] = t.node_id
    status: Json = {
        "Timestamp": rfc3339(t.status.timestamp or t.meta.updated_at or t.meta.created_at),
        "State": words.TASK_STATES.get(t.status.state, "unknown"),
        "Message": t.status.message,
    }
    if t.status.err:
        status["Err"] = t.status.err
    if t.status.pid or t.status.exit_code:
        status["ContainerStatus"] = {"ContainerID": "", "PID": t.status.pid, "ExitCode": t.status.exit_code}
    host_ports = [spec_out.port(p) for p in t.ports if p.publish_mode == "host" and p.published_port]
    status["PortStatus"] = {"Ports": host_ports} if host_ports else {}
    out["Status"] = status
    out["DesiredState"] = desired_state(t, job)
    if job:
        out["JobIteration"] = version(t.spec_version)
    return out


def desired_state(t: pb.Task, job: bool) -> str:
    """What the task is meant to reach: a job's task is meant to complete
    (Swarm's word), which shoal's orchestrator says as "running" to it."""
    if job and t.desired_state == pb.TASK_STATE_RUNNING:
        return "complete"
    return words.TASK_STATES.get(t.desired_state, "unknown")


def node(n: pb.Node, trust_root: str = "") -> Json:
    out = meta(n.meta)
    out["Spec"] = {
        "Labels": dict(n.spec.labels),
        "Role": words.ROLES.get(n.role, "worker"),
        "Availability": words.AVAILABILITY.get(n.spec.availability, "active"),
    }
    desc = n.description
    out["Description"] = {
        "Hostname": desc.hostname,
        "Platform": {"Architecture": desc.platform.arch, "OS": desc.platform.os},
        "Resources": {"NanoCPUs": desc.resources.nano_cpus, "MemoryBytes": desc.resources.memory_bytes},
        # What runs the node's tasks: shoal's agent and its runtime (there
        # is no Docker engine behind a process-runtime node).
        "Engine": {
            "EngineVersion": f"shoal ({desc.runtime or 'unknown'} runtime)",
            "Labels": dict(desc.labels),
        },
        "TLSInfo": {"TrustRoot": trust_root} if trust_root else {},
    }
    out["Status"] = {
        "State": words.NODE_STATES.get(n.status.state, "unknown"),
        "Message": n.status.message,
        "Addr": n.status.addr,
    }
    return out
