"""A task's spec as Docker create options: pure functions, no engine.

``container_options(ctx, node_id, advertise_addr)`` turns the task the agent
was given into a ``ContainerOptions``, the arguments ``engine.create`` hands
the SDK. It follows ``docker service create``: ``command`` overrides the
image's Entrypoint and ``args`` is the Cmd; env is the agent's
``TaskContext.env`` (SHOAL_* and the service's env) on top of the image's;
limits become the cgroup limits (``NanoCpus``, ``Memory``; reservations become
``MemoryReservation``); the health check is Docker's own (the engine runs it);
mounts are bind, volume or tmpfs, and the task's secrets and configs are
read-only bind mounts of the files the agent wrote; the container runs as
the spec's ``user``; a host-mode port is published on ``advertise_addr`` at
its published port, and an ingress or exposed port's target on the host port
the agent allocated for it (the task's endpoint, where the routing mesh
forwards); with the agent's own network, the container joins it and uses its
resolver. The labels say which task a container runs and which node owns it:
they are how every later call finds it.

What the engine would not explain clearly is rejected here, with the field
at fault (``TaskRejected``); everything else the engine checks itself, in its
own words.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import docker.types

from shoal.agent.runtime.base import FileMount, TaskContext, TaskRejected
from shoal.protos import objects_pb2 as pb

# Labels on every container this backend creates; the node label scopes
# every list, adopt and remove to this agent's own containers.
LABEL_TASK_ID = "shoal.task.id"
LABEL_SERVICE_ID = "shoal.service.id"
LABEL_SERVICE_NAME = "shoal.service.name"
LABEL_NODE_ID = "shoal.node.id"
LABEL_SLOT = "shoal.task.slot"

# What Docker accepts as a container name.
_CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_MOUNT_TYPES = ("bind", "volume", "tmpfs")
_PROTOCOLS = ("tcp", "udp", "sctp")
_SECOND_NS = 1_000_000_000


@dataclass(frozen=True)
class ImageRef:
    """An image reference as Docker reads it."""

    repository: str  # "registry:5000/team/app", "busybox"
    tag: str = ""  # "latest" when the reference names neither tag nor digest
    digest: str = ""  # "sha256:..."

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Read a reference as Docker does: "busybox" is busybox:latest;
        "host:5000/app" is a repository with a registry port, not a tag;
        "app:1@sha256:..." pulls by the digest (the tag is then only a
        comment)."""
        text = text.strip()
        if not text:
            raise TaskRejected("container.image: no image given")
        name, at, digest = text.partition("@")
        slash, colon = name.rfind("/"), name.rfind(":")
        repository, tag = (name[:colon], name[colon + 1 :]) if colon > slash else (name, "")
        # The rest (case, characters) the engine checks, in its own words.
        if not repository or (at and not digest) or (colon > slash and not tag):
            raise TaskRejected(f"container.image: invalid reference format: {text!r}")
        if digest:
            return cls(repository, digest=digest)
        return cls(repository, tag=tag or "latest")

    @property
    def pull_tag(self) -> str:
        """The `tag` parameter of the engine's pull: a tag or a digest."""
        return self.digest or self.tag

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class ContainerOptions:
    """A task's container, resolved from its spec; what create() sends."""

    name: str
    image: ImageRef
    entrypoint: list[str] | None
    command: list[str] | None
    environment: list[str]
    working_dir: str | None
    labels: dict[str, str]
    stop_signal: str | None
    stop_timeout: int | None  # seconds
    healthcheck: dict[str, Any] | None
    mounts: list[dict[str, Any]] = field(default_factory=list)
    # "80/tcp" -> [(host ip, host port or None for any free one)]
    port_bindings: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)
    nano_cpus: int | None = None
    mem_limit: int | None = None
    mem_reservation: int | None = None
    user: str | None = None
    # The agent's own network (service discovery), and its resolver.
    network: str | None = None
    dns: list[str] = field(default_factory=list)


def container_name(ctx: TaskContext, node_id: str) -> str:
    """Docker's task name, service.slot.taskid (global: service.node.taskid),
    as the agent put it in SHOAL_TASK_NAME; made a valid container name."""
    task = ctx.task
    name = ctx.env.get("SHOAL_TASK_NAME") or (
        f"{task.service_name}.{task.slot if task.slot else task.node_id or node_id}.{task.meta.id}"
    )
    if not _CONTAINER_NAME.fullmatch(name):
        name = re.sub(r"[^a-zA-Z0-9_.-]", "_", name).lstrip("_.-")
        if not _CONTAINER_NAME.fullmatch(name):
            name = f"shoal.{task.meta.id}"
    return name


def container_options(
    ctx: TaskContext, node_id: str, advertise_addr: str = "", network: str = "", dns: str = ""
) -> ContainerOptions:
    """The container for a task, in Docker's terms (see the module docstring).
    Raises TaskRejected for what the engine would not get a clear message
    for; everything else the engine checks itself."""
    task = ctx.task
    spec = task.spec.container
    labels = dict(spec.labels)
    # Ours last: a service label must not disown the container.
    labels.update(
        {
            LABEL_TASK_ID: task.meta.id,
            LABEL_SERVICE_ID: task.service_id,
            LABEL_SERVICE_NAME: task.service_name,
            LABEL_NODE_ID: node_id,
            LABEL_SLOT: str(task.slot),
        }
    )
    limits, reservations = task.spec.resources.limits, task.spec.resources.reservations
    return ContainerOptions(
        name=container_name(ctx, node_id),
        image=ImageRef.parse(spec.image),
        entrypoint=list(spec.command) or None,
        command=list(spec.args) or None,
        environment=[f"{key}={value}" for key, value in ctx.env.items()],
        working_dir=spec.workdir or None,
        labels=labels,
        # Empty: the image's STOPSIGNAL, else SIGTERM (the engine decides).
        stop_signal=spec.stop_signal or None,
        stop_timeout=(
            math.ceil(spec.stop_grace_period / _SECOND_NS) if spec.HasField("stop_grace_period") else None
        ),
        healthcheck=_healthcheck(spec.healthcheck),
        mounts=[_mount(i, m) for i, m in enumerate(spec.mounts)] + [_file_mount(f) for f in ctx.files],
        port_bindings=_port_bindings([*task.ports, *task.expose], advertise_addr or "0.0.0.0", ctx.endpoints),
        nano_cpus=limits.nano_cpus or None,
        mem_limit=limits.memory_bytes or None,
        mem_reservation=reservations.memory_bytes or None,
        user=spec.user or None,
        network=network or None,
        dns=[dns] if dns else [],
    )


def _healthcheck(hc: pb.HealthCheck) -> dict[str, Any] | None:
    """Docker's HealthConfig: the same fields, in nanoseconds; zeros mean the
    image's values or Docker's defaults. ["NONE"] disables the image's check;
    no test and no field set leaves the image's check as it is."""
    test = list(hc.test)
    if not test and not (hc.interval or hc.timeout or hc.retries or hc.start_period):
        return None
    check: dict[str, Any] = docker.types.Healthcheck(
        test=test,
        interval=hc.interval,
        timeout=hc.timeout,
        retries=hc.retries,
        start_period=hc.start_period,
    )
    return check


def _mount(index: int, m: pb.Mount) -> dict[str, Any]:
    where = f"container.mounts[{index}]"
    kind = m.type or "volume"
    if kind not in _MOUNT_TYPES:
        raise TaskRejected(f"{where}.type: must be bind, volume or tmpfs, got {m.type!r}")
    if m.tmpfs_size and kind != "tmpfs":
        raise TaskRejected(f"{where}.tmpfs_size: only a tmpfs mount has a size, this one is {kind}")
    if kind == "tmpfs" and m.source:
        raise TaskRejected(f"{where}.source: a tmpfs mount has no source, got {m.source!r}")
    mount: dict[str, Any] = docker.types.Mount(
        target=m.target,
        # Empty for a volume: an anonymous one, removed with the container.
        source=m.source or None,
        type=kind,
        read_only=m.readonly,
        tmpfs_size=m.tmpfs_size or None,
    )
    return mount


def _file_mount(f: FileMount) -> dict[str, Any]:
    """A secret or config: the file the agent wrote on tmpfs, read-only."""
    mount: dict[str, Any] = docker.types.Mount(target=f.target, source=f.source, type="bind", read_only=True)
    return mount


def _port_bindings(
    ports: Iterable[pb.PortConfig], host_ip: str, endpoints: Iterable[pb.TaskEndpoint] = ()
) -> dict[str, list[tuple[str, int | None]]]:
    allocated = {(e.protocol, e.target_port): e.host_port for e in endpoints}
    bindings: dict[str, list[tuple[str, int | None]]] = {}
    for index, port in enumerate(ports):
        protocol = (port.protocol or "tcp").lower()
        if protocol not in _PROTOCOLS:
            raise TaskRejected(f"ports[{index}].protocol: must be tcp, udp or sctp, got {port.protocol!r}")
        if not port.target_port:
            raise TaskRejected(f"ports[{index}].target_port: must be set")
        key = f"{port.target_port}/{protocol}"
        if port.publish_mode == "host":
            # Published 0: the engine picks a free host port.
            binding = (host_ip, port.published_port or None)
        else:
            # Ingress: the mesh forwards to the endpoint the agent chose; a
            # task given none (a runtime used alone) gets any free port.
            binding = (host_ip, allocated.get((protocol, port.target_port)) or None)
        if binding not in bindings.setdefault(key, []):
            bindings[key].append(binding)
    return bindings


def registry_auth(task: pb.Task) -> dict[str, str] | None:
    """The credentials the manager sent with the task (base64 JSON, as
    Docker's X-Registry-Auth), as the SDK's auth_config."""
    if not task.registry_auth:
        return None
    try:
        decoded = json.loads(base64.b64decode(task.registry_auth))
    except ValueError:
        return None
    return {str(k): str(v) for k, v in decoded.items()} if isinstance(decoded, dict) else None
