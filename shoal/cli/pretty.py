"""``service inspect --pretty`` and ``node inspect --pretty``: a service or a
node as readable text, laid out as docker lays out its own, with durations
(``1m30s``), sizes (``256MiB``) and times (``3 minutes ago``) in human units
and unset parts left out.
"""

from __future__ import annotations

import time

from shoal.cli.render import ago, enum_word, mode_word, rfc3339
from shoal.durations import format_duration
from shoal.protos import objects_pb2 as pb

# Where values start: keys are padded to this column.
VALUE_COLUMN = 24


def human_size(count: int) -> str:
    """Bytes in binary units, as docker prints them: 256MiB, 1.5GiB."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.4g}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def cpus(nano: int) -> str:
    return f"{nano / 1e9:g}"


class Text:
    """Lines of ``Key: value``, nested one space per level, as docker's."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def head(self, key: str, indent: int = 0) -> None:
        self.lines.append(" " * indent + key + ":")

    def kv(self, key: str, value: object, indent: int = 0) -> None:
        label = " " * indent + key + ":"
        self.lines.append(f"{label:<{VALUE_COLUMN}}{value}".rstrip())

    def items(self, key: str, values: list[str], indent: int = 0) -> None:
        if values:
            self.head(key, indent)
            for v in values:
                self.lines.append(" " * (indent + 1) + v)

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _update_config(out: Text, title: str, cfg: pb.UpdateConfig) -> None:
    out.head(title)
    out.kv("Parallelism", cfg.parallelism, 1)
    if cfg.delay:
        out.kv("Delay", format_duration(cfg.delay), 1)
    out.kv("On failure", enum_word(pb.FailureAction.DESCRIPTOR, cfg.failure_action), 1)
    out.kv("Monitoring Period", format_duration(cfg.monitor), 1)
    out.kv("Max failure ratio", f"{cfg.max_failure_ratio:g}", 1)
    out.kv("Order", enum_word(pb.UpdateOrder.DESCRIPTOR, cfg.order), 1)


def _resources(out: Text, res: pb.ResourceRequirements) -> None:
    parts = [("Reservations", res.reservations), ("Limits", res.limits)]
    if not any(r.nano_cpus or r.memory_bytes for _, r in parts):
        return
    out.head("Resources")
    for title, r in parts:
        if not (r.nano_cpus or r.memory_bytes):
            continue
        out.head(title, 1)
        if r.nano_cpus:
            out.kv("CPU", cpus(r.nano_cpus), 2)
        if r.memory_bytes:
            out.kv("Memory", human_size(r.memory_bytes), 2)


def service_pretty(svc: pb.Service, now_ns: int | None = None) -> str:
    now = now_ns or time.time_ns()
    spec = svc.spec
    task = spec.task
    container = task.container
    out = Text()
    out.kv("ID", svc.meta.id)
    out.kv("Name", spec.name)
    out.items("Labels", [f"{k}={v}" for k, v in sorted(spec.labels.items())])
    out.kv("Service Mode", mode_word(spec.mode).replace("-", " ").title())
    if spec.mode in (pb.SERVICE_MODE_REPLICATED, pb.SERVICE_MODE_REPLICATED_JOB):
        out.kv("Replicas", spec.replicas, 1)
    if spec.max_concurrent:
        out.kv("Max Concurrent", spec.max_concurrent, 1)
    if svc.HasField("update_status") and svc.update_status.state:
        status = svc.update_status
        out.head("UpdateStatus")
        out.kv("State", enum_word(pb.UpdateState.DESCRIPTOR, status.state), 1)
        if status.started_at:
            out.kv("Started", ago(status.started_at, now), 1)
        if status.completed_at:
            out.kv("Completed", ago(status.completed_at, now), 1)
        out.kv("Message", status.message, 1)
    placement = task.placement
    out.head("Placement")
    if placement.constraints:
        out.kv("Constraints", ", ".join(placement.constraints), 1)
    if placement.preferences:
        out.kv("Preferences", ", ".join(f"spread={p.spread}" for p in placement.preferences), 1)
    if placement.max_replicas_per_node:
        out.kv("Max Replicas Per Node", placement.max_replicas_per_node, 1)
    if spec.HasField("update"):
        _update_config(out, "UpdateConfig", spec.update)
    if spec.HasField("rollback"):
        _update_config(out, "RollbackConfig", spec.rollback)
    out.head("ContainerSpec")
    out.kv("Image", container.image, 1)
    if container.command:
        out.kv("Entrypoint", " ".join(container.command), 1)
    if container.args:
        out.kv("Args", " ".join(container.args), 1)
    if container.env:
        out.kv("Env", " ".join(container.env), 1)
    if container.workdir:
        out.kv("Dir", container.workdir, 1)
    if container.HasField("stop_grace_period"):
        out.kv("Stop Grace Period", format_duration(container.stop_grace_period), 1)
    if container.stop_signal:
        out.kv("Stop Signal", container.stop_signal, 1)
    if container.mounts:
        out.head("Mounts")
        for m in container.mounts:
            out.kv("Target", m.target, 1)
            out.kv("Source", m.source, 2)
            out.kv("ReadOnly", "true" if m.readonly else "false", 2)
            out.kv("Type", m.type, 2)
            if m.tmpfs_size:
                out.kv("Size", human_size(m.tmpfs_size), 2)
    _resources(out, task.resources)
    if task.HasField("restart"):
        r = task.restart
        out.head("Restart Policy")
        out.kv("Condition", enum_word(pb.RestartCondition.DESCRIPTOR, r.condition), 1)
        out.kv("Delay", format_duration(r.delay), 1)
        out.kv("Max Attempts", r.max_attempts or "unlimited", 1)
        out.kv("Window", format_duration(r.window) if r.window else "unbounded", 1)
    if spec.ports:
        out.head("Ports")
        for p in spec.ports:
            out.kv("PublishedPort", p.published_port or "(any)", 1)
            out.kv("Protocol", p.protocol, 2)
            out.kv("TargetPort", p.target_port, 2)
            out.kv("PublishMode", p.publish_mode, 2)
    hc = container.healthcheck
    if list(hc.test):
        out.head("Healthcheck")
        if list(hc.test) == ["NONE"]:
            out.kv("Test", "none (disabled)", 1)
        else:
            out.kv("Test", " ".join(hc.test[1:]) if hc.test[0] == "CMD-SHELL" else " ".join(hc.test), 1)
            for key, ns in (
                ("Interval", hc.interval),
                ("Timeout", hc.timeout),
                ("Start Period", hc.start_period),
            ):
                if ns:
                    out.kv(key, format_duration(ns), 1)
            if hc.retries:
                out.kv("Retries", hc.retries, 1)
    out.kv("Created", f"{ago(svc.meta.created_at, now)} ({rfc3339(svc.meta.created_at)})")
    out.kv("Updated", f"{ago(svc.meta.updated_at, now)} ({rfc3339(svc.meta.updated_at)})")
    return str(out)


def node_pretty(node: pb.Node, now_ns: int | None = None) -> str:
    now = now_ns or time.time_ns()
    out = Text()
    out.kv("ID", node.meta.id)
    out.items("Labels", [f"- {k}={v}" for k, v in sorted(node.spec.labels.items())])
    out.kv("Hostname", node.description.hostname)
    out.kv("Joined at", f"{ago(node.meta.created_at, now)} ({rfc3339(node.meta.created_at)})")
    out.kv("Role", "manager" if node.role == pb.NODE_ROLE_MANAGER else "worker")
    out.head("Status")
    out.kv("State", enum_word(pb.NodeState.DESCRIPTOR, node.status.state).capitalize(), 1)
    if node.status.message:
        out.kv("Message", node.status.message, 1)
    out.kv("Availability", enum_word(pb.NodeAvailability.DESCRIPTOR, node.spec.availability).capitalize(), 1)
    if node.status.addr:
        out.kv("Address", node.status.addr, 1)
    if node.status.manager_id:
        out.kv("Manager", node.status.manager_id, 1)
    out.head("Platform")
    out.kv("Operating System", node.description.platform.os, 1)
    out.kv("Architecture", node.description.platform.arch, 1)
    out.head("Resources")
    out.kv("CPUs", cpus(node.description.resources.nano_cpus), 1)
    out.kv("Memory", human_size(node.description.resources.memory_bytes), 1)
    out.kv("Runtime", node.description.runtime)
    if node.certificate.not_after:
        out.head("Certificate")
        out.kv("Expires", rfc3339(node.certificate.not_after), 1)
        out.kv("CA digest", node.certificate.ca_digest, 1)
    return str(out)
