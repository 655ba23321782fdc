"""Service specs: the checks every spec must pass (its defaults: ``shoal.specs``).

The ControlAPI runs these on every create and update: the client is never
trusted. Each error is a ``ValueError`` whose message names the field, says
what is wrong and what is allowed, e.g. ``replicas: must be >= 0, got -1``.
Every field has an upper bound too (``shoal.rules.limits``), so no spec
can make the manager build an unbounded number of tasks or store an
unbounded value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from shoal.protos import objects_pb2 as pb
from shoal.rules import limits
from shoal.rules.constraints import parse_constraint
from shoal.rules.errors import InvalidRequest
from shoal.signals import parse_signal

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
MAX_NAME = 63
SECOND = limits.SECOND


# An image reference, as Docker reads one: [domain[:port]/]path[:tag][@digest],
# path components in lower case.
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_RE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_PATH_PART}(?:/{_PATH_PART})*"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,})?$",
    re.ASCII,
)
_MOUNT_TYPES = ("bind", "volume", "tmpfs")
# Secret and config names, as Docker allows them.
_FILE_NAME_RE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9_.-]*[a-zA-Z0-9])?$")
# A container user: USER[:GROUP], each a name or a number.
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")


def validate_name(name: str) -> None:
    if not name:
        raise InvalidRequest("name: must not be empty")
    if len(name) > MAX_NAME or not NAME_RE.match(name):
        raise InvalidRequest(
            f'name "{name[: MAX_NAME + 1]}": invalid; use letters, digits, "_", "." and "-", '
            f"starting with a letter or digit, at most {MAX_NAME} characters"
        )


def validate_file_name(kind: str, name: str) -> None:
    """A secret's or config's name (kind: "secret" or "config")."""
    if not name:
        raise InvalidRequest(f"{kind} name: must not be empty")
    if len(name) > limits.MAX_FILE_NAME or not _FILE_NAME_RE.match(name):
        raise InvalidRequest(
            f'{kind} name "{name[: limits.MAX_FILE_NAME + 1]}": invalid; use letters, digits, "_", "." '
            f'and "-", starting and ending with a letter or digit, at most {limits.MAX_FILE_NAME} characters'
        )


def validate_file_data(kind: str, data: bytes) -> None:
    if len(data) > limits.MAX_FILE_DATA:
        raise InvalidRequest(
            f"{kind} data: at most {limits.MAX_FILE_DATA // 1024} KiB, got {len(data)} bytes "
            f"({len(data) / 1024:.0f} KiB)"
        )


def file_target(ref: pb.FileReference) -> str:
    """Where a reference puts its file: its target, else its name."""
    return ref.target or ref.name


def _validate_file_refs(kind: str, refs: Iterable[pb.FileReference]) -> None:
    items = list(refs)
    if len(items) > limits.MAX_FILE_REFS:
        raise InvalidRequest(f"{kind}: at most {limits.MAX_FILE_REFS} per service, got {len(items)}")
    targets: set[str] = set()
    for ref in items:
        validate_file_name(kind, ref.name)
        target = file_target(ref)
        where = f'{kind} "{ref.name}"'
        limits.check_text(f"{where} target", target, limits.MAX_PATH)
        parts = target.strip("/").split("/")
        if target.strip("/") == "" or any(p in ("", ".", "..") for p in parts):
            raise InvalidRequest(
                f'{where}: target "{target}" must be a file name or a path without empty, "." or ".." parts'
            )
        for which, value in (("uid", ref.uid), ("gid", ref.gid)):
            if value and (not value.isdigit() or len(value) > 10 or int(value) > 2**32 - 2):
                raise InvalidRequest(f'{where}: {which} must be a number, got "{value[:20]}"')
        if ref.HasField("mode") and ref.mode > 0o777:
            raise InvalidRequest(f"{where}: mode must be between 0 and 0777 (octal), got {ref.mode:o}")
        if target in targets:
            raise InvalidRequest(f'{kind}: two {kind}s have the target "{target}"')
        targets.add(target)


def validate_image(image: str) -> None:
    if not image:
        raise InvalidRequest("image: must not be empty")
    limits.check_text("image", image, limits.MAX_IMAGE)
    if any(c.isspace() for c in image):
        raise InvalidRequest(f'image "{image}": must not contain spaces')
    if not _IMAGE_RE.match(image):
        raise InvalidRequest(
            f'image "{image}": not a valid reference (expected [registry/]name[:tag][@digest], '
            "the name in lower case)"
        )


def _non_negative(field: str, value: float) -> None:
    if value < 0:
        raise InvalidRequest(f"{field}: must be >= 0, got {value}")


def replicas_limit(cluster: pb.Cluster | None) -> int:
    configured = cluster.spec.max_replicas if cluster is not None else 0
    return configured or limits.DEFAULT_MAX_REPLICAS


def check_replicas(field: str, value: int, max_replicas: int) -> None:
    _non_negative(field, value)
    if value > max_replicas:
        raise InvalidRequest(
            f"{field}: at most {max_replicas} per service (the cluster's max-replicas; "
            f"change it with `shoal cluster update --max-replicas N`), got {value}"
        )


def validate_service_spec(spec: pb.ServiceSpec, max_replicas: int = limits.DEFAULT_MAX_REPLICAS) -> None:
    size = spec.ByteSize()
    if size > limits.MAX_SPEC_BYTES:
        raise InvalidRequest(f"spec: at most {limits.MAX_SPEC_BYTES // 1024} KiB, got {size // 1024} KiB")
    validate_name(spec.name)
    limits.check_labels("label", spec.labels)
    limits.check_enum("mode", spec.mode, pb.ServiceMode)
    global_mode = spec.mode in (pb.SERVICE_MODE_GLOBAL, pb.SERVICE_MODE_GLOBAL_JOB)
    if global_mode and spec.HasField("replicas"):
        raise InvalidRequest("replicas: only replicated services have replicas (this service is global)")
    if spec.HasField("replicas"):
        check_replicas("replicas", spec.replicas, max_replicas)
    check_replicas("max_concurrent", spec.max_concurrent, max_replicas)
    _validate_container(spec.task.container)
    _validate_task(spec.task)
    for which, cfg in (("update", spec.update), ("rollback", spec.rollback)):
        _validate_update_config(which, cfg, max_replicas)
    if spec.rollback.failure_action == pb.FAILURE_ACTION_ROLLBACK:
        raise InvalidRequest("rollback_failure_action: must be pause or continue")
    _validate_ports(spec.ports)
    _validate_expose(spec.expose)


def _validate_container(container: pb.ContainerSpec) -> None:
    validate_image(container.image)
    limits.check_texts("command", container.command, limits.MAX_ITEMS, limits.MAX_ITEM_BYTES)
    limits.check_texts("args", container.args, limits.MAX_ITEMS, limits.MAX_ITEM_BYTES)
    limits.check_texts("env", container.env, limits.MAX_ITEMS, limits.MAX_ITEM_BYTES)
    for env in container.env:
        key, sep, _ = env.partition("=")
        if not sep or not key:
            raise InvalidRequest(f'env "{env[:80]}": expected KEY=VALUE')
        limits.check_text(f'env key "{key[:80]}"', key, limits.MAX_ENV_KEY)
    limits.check_text("workdir", container.workdir, limits.MAX_PATH)
    limits.check_duration("stop_grace_period", container.stop_grace_period)
    limits.check_text("stop_signal", container.stop_signal, limits.MAX_SIGNAL)
    if container.stop_signal:
        try:
            parse_signal(container.stop_signal)
        except ValueError:
            raise InvalidRequest(
                f'stop_signal "{container.stop_signal}": unknown signal (e.g. SIGTERM, TERM, 15)'
            ) from None
    limits.check_labels("container label", container.labels)
    limits.check_text("user", container.user, limits.MAX_USER)
    if container.user and not _USER_RE.match(container.user):
        raise InvalidRequest(f'user "{container.user}": expected USER or USER:GROUP (names or numeric IDs)')
    _validate_file_refs("secret", container.secrets)
    _validate_file_refs("config", container.configs)
    _validate_healthcheck(container.healthcheck)
    if len(container.mounts) > limits.MAX_MOUNTS:
        raise InvalidRequest(f"mount: at most {limits.MAX_MOUNTS} mounts, got {len(container.mounts)}")
    for mount in container.mounts:
        if mount.type not in _MOUNT_TYPES:
            raise InvalidRequest(f'mount type "{mount.type[:40]}": must be bind, volume or tmpfs')
        limits.check_text("mount source", mount.source, limits.MAX_PATH)
        limits.check_text("mount target", mount.target, limits.MAX_PATH, allow_empty=False)
        if not mount.target.startswith("/"):
            raise InvalidRequest(f'mount target "{mount.target}": must be an absolute path')
        _non_negative("mount tmpfs_size", mount.tmpfs_size)


def _validate_healthcheck(hc: pb.HealthCheck) -> None:
    limits.check_texts("healthcheck test", hc.test, limits.MAX_ITEMS, limits.MAX_ITEM_BYTES)
    if hc.test:
        kind = hc.test[0]
        if kind not in ("NONE", "CMD", "CMD-SHELL"):
            raise InvalidRequest("healthcheck: test must start with NONE, CMD or CMD-SHELL")
        if kind == "CMD" and len(hc.test) < 2:
            raise InvalidRequest("healthcheck: CMD needs a command after it")
        if kind == "CMD-SHELL" and len(hc.test) != 2:
            raise InvalidRequest("healthcheck: CMD-SHELL takes exactly one command string")
    limits.check_duration("health_interval", hc.interval, limits.MIN_HEALTH_INTERVAL)
    limits.check_duration("health_timeout", hc.timeout, limits.MIN_HEALTH_INTERVAL)
    limits.check_duration("health_start_period", hc.start_period)
    if hc.retries > limits.MAX_HEALTH_RETRIES:
        raise InvalidRequest(f"health_retries: at most {limits.MAX_HEALTH_RETRIES}, got {hc.retries}")


def _validate_task(task: pb.TaskSpec) -> None:
    restart = task.restart
    limits.check_enum("restart_condition", restart.condition, pb.RestartCondition)
    limits.check_duration("restart_delay", restart.delay)
    limits.check_range("restart_max_attempts", restart.max_attempts, 0, limits.MAX_RESTART_ATTEMPTS)
    limits.check_duration("restart_window", restart.window)
    placement = task.placement
    if len(placement.constraints) > limits.MAX_CONSTRAINTS:
        raise InvalidRequest(
            f"constraint: at most {limits.MAX_CONSTRAINTS}, got {len(placement.constraints)}"
        )
    for expr in placement.constraints:
        limits.check_text("constraint", expr, limits.MAX_CONSTRAINT)
        parse_constraint(expr)
    if len(placement.preferences) > limits.MAX_PREFERENCES:
        raise InvalidRequest(
            f"placement preference: at most {limits.MAX_PREFERENCES}, got {len(placement.preferences)}"
        )
    for pref in placement.preferences:
        limits.check_text("placement preference", pref.spread, limits.MAX_LABEL_KEY + 20)
        if not pref.spread.startswith("node.labels.") or pref.spread == "node.labels.":
            raise InvalidRequest(
                f'placement preference "spread={pref.spread}": expected spread=node.labels.KEY'
            )
    _non_negative("replicas_max_per_node", placement.max_replicas_per_node)
    res = task.resources
    for name, value, high in (
        ("reserve_cpu", res.reservations.nano_cpus, limits.MAX_NANO_CPUS),
        ("reserve_memory", res.reservations.memory_bytes, limits.MAX_MEMORY),
        ("limit_cpu", res.limits.nano_cpus, limits.MAX_NANO_CPUS),
        ("limit_memory", res.limits.memory_bytes, limits.MAX_MEMORY),
    ):
        _non_negative(name, value)
        if value > high:
            raise InvalidRequest(f"{name}: at most {high}, got {value}")
    if 0 < res.limits.memory_bytes < limits.MIN_MEMORY_LIMIT:
        raise InvalidRequest(
            f"limit_memory: must be at least 4MiB ({limits.MIN_MEMORY_LIMIT} bytes), "
            f"got {res.limits.memory_bytes}"
        )


def _validate_update_config(which: str, cfg: pb.UpdateConfig, max_replicas: int) -> None:
    check_replicas(f"{which}_parallelism", cfg.parallelism, max_replicas)
    limits.check_duration(f"{which}_delay", cfg.delay)
    limits.check_duration(f"{which}_monitor", cfg.monitor)
    limits.check_enum(f"{which}_failure_action", cfg.failure_action, pb.FailureAction)
    limits.check_enum(f"{which}_order", cfg.order, pb.UpdateOrder)
    ratio = cfg.max_failure_ratio
    if math.isnan(ratio) or not 0 <= ratio <= 1:
        raise InvalidRequest(f"{which}_max_failure_ratio: must be between 0 and 1, got {ratio}")


def _validate_expose(ports: Iterable[pb.PortConfig]) -> None:
    items = list(ports)
    if len(items) > limits.MAX_PORTS:
        raise InvalidRequest(f"expose: at most {limits.MAX_PORTS} ports, got {len(items)}")
    seen: set[tuple[str, int]] = set()
    for port in items:
        if not 0 < port.target_port < 65536:
            raise InvalidRequest(f"expose: port must be 1-65535, got {port.target_port}")
        if port.protocol not in ("tcp", "udp"):
            raise InvalidRequest(f'expose: protocol must be tcp or udp, got "{port.protocol[:20]}"')
        if port.published_port or port.publish_mode or port.proxy_protocol:
            raise InvalidRequest(
                f"expose: port {port.target_port} is reached by name only (no published port)"
            )
        if (port.protocol, port.target_port) in seen:
            raise InvalidRequest(f"expose: port {port.target_port}/{port.protocol} is exposed twice")
        seen.add((port.protocol, port.target_port))


def _validate_ports(ports: Iterable[pb.PortConfig]) -> None:
    items = list(ports)
    if len(items) > limits.MAX_PORTS:
        raise InvalidRequest(f"publish: at most {limits.MAX_PORTS} ports, got {len(items)}")
    seen: set[tuple[str, int]] = set()
    for port in items:
        if not 0 < port.target_port < 65536:
            raise InvalidRequest(f"publish: target port must be 1-65535, got {port.target_port}")
        if port.published_port >= 65536:
            raise InvalidRequest(f"publish: published port must be 1-65535, got {port.published_port}")
        if port.protocol not in ("tcp", "udp", "sctp"):
            raise InvalidRequest(f'publish: protocol must be tcp, udp or sctp, got "{port.protocol[:20]}"')
        if port.publish_mode not in ("host", "ingress"):
            raise InvalidRequest(f'publish: mode must be host or ingress, got "{port.publish_mode[:20]}"')
        if port.publish_mode == "ingress" and port.protocol == "sctp":
            raise InvalidRequest(
                "publish: sctp ports can only be published in host mode (the mesh forwards tcp and udp)"
            )
        if port.proxy_protocol not in ("", "v1", "v2"):
            raise InvalidRequest(
                f'publish: proxy-protocol must be v1 or v2, got "{port.proxy_protocol[:20]}"'
            )
        if port.proxy_protocol and (port.publish_mode != "ingress" or port.protocol != "tcp"):
            raise InvalidRequest(
                f"publish: proxy-protocol is for ingress tcp ports (the mesh sends it), "
                f"not {port.publish_mode} {port.protocol}"
            )
        key = (port.protocol, port.published_port)
        if port.published_port and key in seen:
            raise InvalidRequest(f"publish: port {port.published_port}/{port.protocol} is published twice")
        seen.add(key)
