"""Service specs: Swarm's defaults, and the checks every spec must pass.

The ControlAPI runs these on every create and update: the client is never
trusted. Each error is a ``ValueError`` whose message names the field, says
what is wrong and what is allowed, e.g. ``replicas: must be >= 0, got -1``.
"""

from __future__ import annotations

import re

from shoal.manager.constraints import parse_constraint
from shoal.protos import objects_pb2 as pb

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
MAX_NAME = 63
SECOND = 1_000_000_000

# Swarm's defaults (api/defaults/service.go).
DEFAULT_STOP_GRACE = 10 * SECOND
DEFAULT_RESTART_DELAY = 5 * SECOND
DEFAULT_MONITOR = 5 * SECOND


def default_restart_policy() -> pb.RestartPolicy:
    return pb.RestartPolicy(condition=pb.RESTART_CONDITION_ANY, delay=DEFAULT_RESTART_DELAY)


def default_update_config() -> pb.UpdateConfig:
    return pb.UpdateConfig(
        parallelism=1,
        delay=0,
        failure_action=pb.FAILURE_ACTION_PAUSE,
        monitor=DEFAULT_MONITOR,
        max_failure_ratio=0.0,
        order=pb.UPDATE_ORDER_STOP_FIRST,
    )


def apply_defaults(spec: pb.ServiceSpec) -> None:
    """Fill what the client left unset with Swarm's defaults."""
    if not spec.HasField("replicas") and spec.mode in (
        pb.SERVICE_MODE_REPLICATED,
        pb.SERVICE_MODE_REPLICATED_JOB,
    ):
        spec.replicas = 1
    if spec.mode in (pb.SERVICE_MODE_REPLICATED_JOB,) and spec.max_concurrent == 0:
        spec.max_concurrent = spec.replicas
    container = spec.task.container
    if not container.HasField("stop_grace_period"):
        container.stop_grace_period = DEFAULT_STOP_GRACE
    if not spec.task.HasField("restart"):
        spec.task.restart.CopyFrom(default_restart_policy())
        if spec.mode in (pb.SERVICE_MODE_REPLICATED_JOB, pb.SERVICE_MODE_GLOBAL_JOB):
            # A job that succeeded is done; only failures are retried.
            spec.task.restart.condition = pb.RESTART_CONDITION_ON_FAILURE
    if not spec.HasField("update"):
        spec.update.CopyFrom(default_update_config())
    if not spec.HasField("rollback"):
        spec.rollback.CopyFrom(default_update_config())
    if container.image and ":" not in container.image.rsplit("/", 1)[-1] and "@" not in container.image:
        container.image += ":latest"
    for port in spec.ports:
        port.protocol = port.protocol or "tcp"
        port.publish_mode = port.publish_mode or "ingress"


def validate_name(name: str) -> None:
    if not name:
        raise ValueError("name: must not be empty")
    if len(name) > MAX_NAME or not NAME_RE.match(name):
        raise ValueError(
            f'name "{name}": invalid; use letters, digits, "_", "." and "-", '
            f"starting with a letter or digit, at most {MAX_NAME} characters"
        )


def _non_negative(field: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"{field}: must be >= 0, got {value}")


def validate_service_spec(spec: pb.ServiceSpec) -> None:
    validate_name(spec.name)
    global_mode = spec.mode in (pb.SERVICE_MODE_GLOBAL, pb.SERVICE_MODE_GLOBAL_JOB)
    if global_mode and spec.HasField("replicas"):
        raise ValueError("replicas: only replicated services have replicas (this service is global)")
    if spec.HasField("replicas"):
        _non_negative("replicas", spec.replicas)
    _non_negative("max_concurrent", spec.max_concurrent)
    container = spec.task.container
    if not container.image:
        raise ValueError("image: must not be empty")
    if any(c.isspace() for c in container.image):
        raise ValueError(f'image "{container.image}": must not contain spaces')
    for env in container.env:
        if "=" not in env or env.startswith("="):
            raise ValueError(f'env "{env}": expected KEY=VALUE')
    _non_negative("stop_grace_period", container.stop_grace_period)
    restart = spec.task.restart
    _non_negative("restart_delay", restart.delay)
    _non_negative("restart_max_attempts", restart.max_attempts)
    _non_negative("restart_window", restart.window)
    placement = spec.task.placement
    _non_negative("replicas_max_per_node", placement.max_replicas_per_node)
    for expr in placement.constraints:
        parse_constraint(expr)
    for pref in placement.preferences:
        if not pref.spread.startswith("node.labels.") or pref.spread == "node.labels.":
            raise ValueError(f'placement preference "spread={pref.spread}": expected spread=node.labels.KEY')
    res = spec.task.resources
    for name, value in (
        ("reserve_cpu", res.reservations.nano_cpus),
        ("reserve_memory", res.reservations.memory_bytes),
        ("limit_cpu", res.limits.nano_cpus),
        ("limit_memory", res.limits.memory_bytes),
    ):
        _non_negative(name, value)
    for which, cfg in (("update", spec.update), ("rollback", spec.rollback)):
        _non_negative(f"{which}_parallelism", cfg.parallelism)
        _non_negative(f"{which}_delay", cfg.delay)
        _non_negative(f"{which}_monitor", cfg.monitor)
        if not 0 <= cfg.max_failure_ratio <= 1:
            raise ValueError(
                f"{which}_max_failure_ratio: must be between 0 and 1, got {cfg.max_failure_ratio}"
            )
    if spec.rollback.failure_action == pb.FAILURE_ACTION_ROLLBACK:
        raise ValueError("rollback_failure_action: must be pause or continue")
    seen: set[tuple[str, int]] = set()
    for port in spec.ports:
        if not 0 < port.target_port < 65536:
            raise ValueError(f"publish: target port must be 1-65535, got {port.target_port}")
        if port.published_port >= 65536:
            raise ValueError(f"publish: published port must be 1-65535, got {port.published_port}")
        if port.protocol not in ("tcp", "udp", "sctp"):
            raise ValueError(f'publish: protocol must be tcp, udp or sctp, got "{port.protocol}"')
        if port.publish_mode not in ("host", "ingress"):
            raise ValueError(f'publish: mode must be host or ingress, got "{port.publish_mode}"')
        key = (port.protocol, port.published_port)
        if port.published_port and key in seen:
            raise ValueError(f"publish: port {port.published_port}/{port.protocol} is published twice")
        seen.add(key)
    hc = container.healthcheck
    if hc.test and hc.test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise ValueError("healthcheck: test must start with NONE, CMD or CMD-SHELL")
