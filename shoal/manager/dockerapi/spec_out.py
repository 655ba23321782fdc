"""shoal's service spec as the Engine API's ``ServiceSpec`` (and a task's
``TaskSpec``): what ``docker service inspect`` shows and what the docker
CLI sends back, changed, on ``docker service update``.

Pure: protobuf in, JSON-ready dicts out. ``spec_in`` reads these shapes
back into the same spec (the unit tests check the round trip), so every
field written here is one shoal honours. Durations are nanoseconds, as Go's
``time.Duration``. shoal stores its defaults in the spec, so the output is
what the engine shows with ``insertDefaults``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shoal.manager.dockerapi import words
from shoal.protos import objects_pb2 as pb

Json = dict[str, Any]


def service_spec(spec: pb.ServiceSpec, network_ids: Mapping[str, str] | None = None) -> Json:
    """The spec; ``network_ids``: each network's ID by name (the engine names
    a service's networks by ID, and the docker CLI's ``--network-rm``
    compares IDs; a name not in it is shown as it is)."""
    out: Json = {
        "Name": spec.name,
        "Labels": dict(spec.labels),
        "TaskTemplate": task_spec(spec.task),
        "Mode": mode(spec),
    }
    if spec.networks:
        ids = network_ids or {}
        out["TaskTemplate"]["Networks"] = [{"Target": ids.get(name, name)} for name in spec.networks]
    if spec.HasField("update"):
        out["UpdateConfig"] = update_config(spec.update)
    if spec.HasField("rollback"):
        out["RollbackConfig"] = update_config(spec.rollback)
    # Every shoal service has a virtual address (its name resolves to it):
    # the engine's "vip" mode.
    out["EndpointSpec"] = {"Mode": "vip", "Ports": [port(p) for p in spec.ports]}
    return out


def mode(spec: pb.ServiceSpec) -> Json:
    key = words.MODE_KEYS[spec.mode]
    if spec.mode == pb.SERVICE_MODE_REPLICATED:
        return {key: {"Replicas": spec.replicas}}
    if spec.mode == pb.SERVICE_MODE_REPLICATED_JOB:
        return {key: {"MaxConcurrent": spec.max_concurrent, "TotalCompletions": spec.replicas}}
    return {key: {}}


def task_spec(task: pb.TaskSpec) -> Json:
    out: Json = {"ContainerSpec": container_spec(task.container)}
    res = task.resources
    out["Resources"] = {
        "Limits": _resources(res.limits),
        "Reservations": _resources(res.reservations),
    }
    if task.HasField("restart"):
        out["RestartPolicy"] = {
            "Condition": words.CONDITIONS[task.restart.condition],
            "Delay": task.restart.delay,
            "MaxAttempts": task.restart.max_attempts,
            "Window": task.restart.window,
        }
    placement: Json = {}
    if task.placement.constraints:
        placement["Constraints"] = list(task.placement.constraints)
    if task.placement.preferences:
        placement["Preferences"] = [
            {"Spread": {"SpreadDescriptor": p.spread}} for p in task.placement.preferences
        ]
    if task.placement.max_replicas_per_node:
        placement["MaxReplicas"] = task.placement.max_replicas_per_node
    out["Placement"] = placement
    out["ForceUpdate"] = task.force_update
    out["Runtime"] = "container"
    return out


def container_spec(c: pb.ContainerSpec) -> Json:
    out: Json = {"Image": c.image}
    if c.labels:
        out["Labels"] = dict(c.labels)
    if c.command:
        out["Command"] = list(c.command)
    if c.args:
        out["Args"] = list(c.args)
    if c.env:
        out["Env"] = list(c.env)
    if c.workdir:
        out["Dir"] = c.workdir
    if c.stop_signal:
        out["StopSignal"] = c.stop_signal
    if c.HasField("stop_grace_period"):
        out["StopGracePeriod"] = c.stop_grace_period
    if c.mounts:
        out["Mounts"] = [mount(m) for m in c.mounts]
    if c.user:
        out["User"] = c.user
    if c.secrets:
        out["Secrets"] = [file_ref(r, "Secret") for r in c.secrets]
    if c.configs:
        out["Configs"] = [file_ref(r, "Config") for r in c.configs]
    if c.healthcheck.ByteSize():
        hc = c.healthcheck
        health: Json = {"Test": list(hc.test)}
        for key, value in (
            ("Interval", hc.interval),
            ("Timeout", hc.timeout),
            ("StartPeriod", hc.start_period),
            ("Retries", hc.retries),
        ):
            if value:
                health[key] = value
        out["Healthcheck"] = health
    return out


def file_ref(ref: pb.FileReference, kind: str) -> Json:
    """A secret's or config's reference as the engine shows one: the file's
    name, owner and mode spelled out (the defaults where shoal's are unset)."""
    return {
        "File": {
            "Name": ref.target or ref.name,
            "UID": ref.uid or "0",
            "GID": ref.gid or "0",
            "Mode": ref.mode if ref.HasField("mode") else 0o444,
        },
        f"{kind}ID": ref.id,
        f"{kind}Name": ref.name,
    }


def mount(m: pb.Mount) -> Json:
    out: Json = {"Type": m.type, "Target": m.target}
    if m.source:
        out["Source"] = m.source
    if m.readonly:
        out["ReadOnly"] = True
    if m.tmpfs_size:
        out["TmpfsOptions"] = {"SizeBytes": m.tmpfs_size}
    return out


def port(p: pb.PortConfig) -> Json:
    out: Json = {"Protocol": p.protocol or "tcp", "TargetPort": p.target_port}
    if p.published_port:
        out["PublishedPort"] = p.published_port
    out["PublishMode"] = p.publish_mode or "ingress"
    return out


def update_config(cfg: pb.UpdateConfig) -> Json:
    return {
        "Parallelism": cfg.parallelism,
        "Delay": cfg.delay,
        "FailureAction": words.FAILURE_ACTIONS[cfg.failure_action],
        "Monitor": cfg.monitor,
        # A float32 in the spec: printed with the digits it holds (0.1, not
        # 0.10000000149011612).
        "MaxFailureRatio": float(f"{cfg.max_failure_ratio:.7g}"),
        "Order": words.ORDERS[cfg.order],
    }


def _resources(r: pb.Resources) -> Json:
    out: Json = {}
    if r.nano_cpus:
        out["NanoCPUs"] = r.nano_cpus
    if r.memory_bytes:
        out["MemoryBytes"] = r.memory_bytes
    return out
