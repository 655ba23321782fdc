"""Service flags: the options ``service create`` and ``service update``
share, their parsers (durations, sizes, CPUs, ``--publish``, ``--mount``)
and the one function that writes the flags a user gave into a ServiceSpec.

The manager applies Swarm's defaults and validates everything (the client is
never trusted); the parsers here catch malformed values early so the message
names the flag.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from shoal import specs
from shoal.cli import network_flags
from shoal.cli.client import CLIError
from shoal.cli.file_flags import change_refs
from shoal.durations import parse_duration, parse_size
from shoal.protos import objects_pb2 as pb
from shoal.specs import CONDITIONS, FAILURE_ACTIONS, ORDERS
from shoal.specs import MODES as MODES  # services.py takes it from here


def _duration(flag: str, value: str) -> int:
    try:
        return parse_duration(value)
    except ValueError as err:
        raise CLIError(f"{flag}: {err}") from None


def _size(flag: str, value: str) -> int:
    try:
        return parse_size(value)
    except ValueError as err:
        raise CLIError(f"{flag}: {err}") from None


def _cpus(flag: str, value: str) -> int:
    try:
        cpus = float(value)
    except ValueError:
        raise CLIError(f'{flag}: invalid number "{value}" (e.g. 0.5 or 2)') from None
    if cpus < 0:
        raise CLIError(f"{flag}: must be >= 0, got {value}")
    return int(cpus * 1e9)


def key_values(flag: str, items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, _sep, value = item.partition("=")
        if not key:
            raise CLIError(f'{flag} "{item}": expected KEY=VALUE')
        out[key] = value
    return out


def parse_publish(value: str) -> pb.PortConfig:
    """``8080:80[/udp]`` or ``published=8080,target=80,protocol=tcp,mode=host``;
    either may end with ``,proxy-protocol=v1|v2`` (ingress, tcp). The mode
    is ingress (the routing mesh) unless it says host, as in Swarm."""
    port = pb.PortConfig()
    first, *options = value.split(",")
    keys = "published, target, protocol, mode, proxy-protocol"
    try:
        if "=" in first:
            options.insert(0, first)
        else:
            spec, _, proto = first.partition("/")
            published, sep, target = spec.partition(":")
            if not sep:
                raise CLIError(f'--publish "{value}": expected PUBLISHED:TARGET[/PROTOCOL]')
            port.published_port, port.target_port = int(published), int(target)
            port.protocol = proto
        for part in options:
            key, _, v = part.partition("=")
            key = key.strip()
            if key in ("published", "published_port"):
                port.published_port = int(v)
            elif key in ("target", "target_port"):
                port.target_port = int(v)
            elif key == "protocol":
                port.protocol = v
            elif key == "mode":
                port.publish_mode = v
            elif key in ("proxy-protocol", "proxy_protocol"):
                port.proxy_protocol = v
            else:
                raise CLIError(f'--publish "{value}": unknown key "{key}" ({keys})')
    except ValueError:
        raise CLIError(f'--publish "{value}": ports must be numbers') from None
    if not port.target_port:
        raise CLIError(f'--publish "{value}": a target port is required')
    return port


def parse_mount(value: str) -> pb.Mount:
    """``type=bind,source=/src,target=/dst[,readonly]``, also ``src``/``dst``/
    ``destination``/``ro``, and ``tmpfs-size``; type defaults to volume."""
    mount = pb.Mount(type="volume")
    for part in value.split(","):
        key, sep, v = part.partition("=")
        key = key.strip().lower()
        if key == "type":
            if v not in ("bind", "volume", "tmpfs"):
                raise CLIError(f'--mount "{value}": type must be bind, volume or tmpfs, got "{v}"')
            mount.type = v
        elif key in ("source", "src"):
            mount.source = v
        elif key in ("target", "dst", "destination"):
            mount.target = v
        elif key in ("readonly", "ro"):
            mount.readonly = not sep or v.lower() in ("1", "true", "yes")
        elif key == "tmpfs-size":
            mount.tmpfs_size = _size("--mount tmpfs-size", v)
        else:
            raise CLIError(
                f'--mount "{value}": unknown key "{key}" (type, source, target, readonly, tmpfs-size)'
            )
    if not mount.target:
        raise CLIError(f'--mount "{value}": a target is required')
    if mount.type == "bind" and not mount.source:
        raise CLIError(f'--mount "{value}": a bind mount needs a source')
    return mount


def registry_auth_for(image: str) -> str:
    """Credentials for the image's registry from the user's Docker config
    (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``), encoded as
    Docker's X-Registry-Auth (base64 JSON); empty when none are stored."""
    name = image.split("@")[0]
    first = name.split("/")[0]
    registry = (
        first if "/" in name and ("." in first or ":" in first or first == "localhost") else "docker.io"
    )
    config = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        auths = json.loads(config.read_text()).get("auths", {})
    except (OSError, ValueError):
        return ""
    candidates = [registry, f"https://{registry}", f"https://{registry}/v1/", f"https://{registry}/v2/"]
    if registry == "docker.io":
        candidates += ["https://index.docker.io/v1/", "index.docker.io"]
    for key in candidates:
        entry = auths.get(key)
        if entry and entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            payload = {"username": user, "password": password, "serveraddress": key}
            return base64.b64encode(json.dumps(payload).encode()).decode()
    return ""


def spec_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by create and update (CLI.md's table)."""
    d, size, n = "DURATION", "SIZE", "N"
    options = [
        click.option("--name", metavar="NAME", help="Service name (update: rename)"),
        click.option(
            "--mode",
            type=click.Choice(list(MODES)),
            help="replicated (default), global (one task per node), or a job of either kind (create only)",
        ),
        click.option("--replicas", type=int, metavar=n, help="Number of tasks (jobs: completions wanted)"),
        click.option(
            "--max-concurrent", type=int, metavar=n, help="Jobs: tasks running at once (default: replicas)"
        ),
        click.option(
            "--replicas-max-per-node", type=int, metavar=n, help="Most tasks on one node (0 = unlimited)"
        ),
        click.option("--workdir", "-w", metavar="DIR", help="Working directory of the task"),
        click.option(
            "--user",
            "-u",
            metavar="USER[:GROUP]",
            help="User the task runs as (process runtime: only the agent's own user)",
        ),
        click.option(
            "--stop-grace-period", metavar=d, help="Time between the stop signal and SIGKILL (default 10s)"
        ),
        click.option("--stop-signal", metavar="SIGNAL", help="Signal that stops a task (default SIGTERM)"),
        click.option(
            "--restart-condition",
            type=click.Choice(list(CONDITIONS)),
            help="When an ended task is replaced (default any; jobs on-failure)",
        ),
        click.option("--restart-delay", metavar=d, help="Wait before a replacement starts (default 5s)"),
        click.option(
            "--restart-max-attempts", type=int, metavar=n, help="Restarts before giving up (0 = unlimited)"
        ),
        click.option("--restart-window", metavar=d, help="Window in which restarts are counted (0 = ever)"),
        click.option(
            "--reserve-cpu", metavar="CPUS", help="CPUs the scheduler sets aside per task, e.g. 0.5"
        ),
        click.option(
            "--reserve-memory", metavar=size, help="Memory the scheduler sets aside per task, e.g. 256m"
        ),
        click.option("--limit-cpu", metavar="CPUS", help="CPUs a task may use (docker runtime), e.g. 1.5"),
        click.option("--limit-memory", metavar=size, help="Memory a task may use, e.g. 512m"),
        click.option(
            "--update-parallelism", type=int, metavar=n, help="Tasks updated at once (0 = all; default 1)"
        ),
        click.option("--update-delay", metavar=d, help="Pause between batches of an update (default 0s)"),
        click.option(
            "--update-failure-action",
            type=click.Choice(list(FAILURE_ACTIONS)),
            help="What a failing update does (default pause)",
        ),
        click.option(
            "--update-monitor", metavar=d, help="How long new tasks are watched for failure (default 5s)"
        ),
        click.option(
            "--update-max-failure-ratio",
            type=float,
            metavar="RATIO",
            help="Share of failed tasks an update tolerates, 0 to 1 (default 0)",
        ),
        click.option(
            "--update-order",
            type=click.Choice(list(ORDERS)),
            help="Stop the old task before starting the new one, or the reverse (default stop-first)",
        ),
        click.option(
            "--rollback-parallelism", type=int, metavar=n, help="Tasks rolled back at once (0 = all)"
        ),
        click.option("--rollback-delay", metavar=d, help="Pause between batches of a rollback"),
        click.option(
            "--rollback-failure-action",
            type=click.Choice(["pause", "continue"]),
            help="What a failing rollback does (default pause)",
        ),
        click.option(
            "--rollback-monitor", metavar=d, help="How long rolled-back tasks are watched for failure"
        ),
        click.option(
            "--rollback-max-failure-ratio",
            type=float,
            metavar="RATIO",
            help="Share of failed tasks a rollback tolerates, 0 to 1",
        ),
        click.option(
            "--rollback-order",
            type=click.Choice(list(ORDERS)),
            help="Order of stopping and starting in a rollback",
        ),
        click.option("--health-cmd", metavar="COMMAND", help="Health check, run with /bin/sh -c in the task"),
        click.option("--health-interval", metavar=d, help="Time between health checks (default 30s)"),
        click.option("--health-timeout", metavar=d, help="Time a health check may take (default 30s)"),
        click.option(
            "--health-retries", type=int, metavar=n, help="Failed checks in a row that make a task unhealthy"
        ),
        click.option(
            "--health-start-period", metavar=d, help="Start-up time in which failed checks do not count"
        ),
        click.option("--no-healthcheck", is_flag=True, help="No health check (also none of the image's)"),
        click.option(
            "--with-registry-auth",
            is_flag=True,
            help="Send your registry credentials for the image to the nodes that run its tasks",
        ),
        click.option(
            "--detach", "-d", is_flag=True, help="Return at once instead of waiting for convergence"
        ),
        click.option("--quiet", "-q", is_flag=True, help="Print only the ID (still waits unless -d)"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def apply_flags(spec: pb.ServiceSpec, o: dict[str, Any], creating: bool) -> None:
    """Write the flags the user gave into spec (unset flags change nothing)."""
    task, container = spec.task, spec.task.container
    if o.get("replicas") is not None:
        spec.replicas = o["replicas"]
    if o.get("max_concurrent") is not None:
        spec.max_concurrent = o["max_concurrent"]
    if o.get("replicas_max_per_node") is not None:
        task.placement.max_replicas_per_node = o["replicas_max_per_node"]
    if o.get("workdir") is not None:
        container.workdir = o["workdir"]
    if o.get("user") is not None:
        container.user = o["user"]
    if o.get("stop_grace_period") is not None:
        container.stop_grace_period = _duration("--stop-grace-period", o["stop_grace_period"])
    if o.get("stop_signal") is not None:
        container.stop_signal = o["stop_signal"]
    restart_flags = ("restart_condition", "restart_delay", "restart_max_attempts", "restart_window")
    if any(o.get(k) is not None for k in restart_flags):
        if not task.HasField("restart"):
            task.restart.CopyFrom(specs.default_restart_policy())
        r = task.restart
        if o.get("restart_condition") is not None:
            r.condition = CONDITIONS[o["restart_condition"]]
        if o.get("restart_delay") is not None:
            r.delay = _duration("--restart-delay", o["restart_delay"])
        if o.get("restart_max_attempts") is not None:
            r.max_attempts = o["restart_max_attempts"]
        if o.get("restart_window") is not None:
            r.window = _duration("--restart-window", o["restart_window"])
    res = task.resources
    if o.get("reserve_cpu") is not None:
        res.reservations.nano_cpus = _cpus("--reserve-cpu", o["reserve_cpu"])
    if o.get("reserve_memory") is not None:
        res.reservations.memory_bytes = _size("--reserve-memory", o["reserve_memory"])
    if o.get("limit_cpu") is not None:
        res.limits.nano_cpus = _cpus("--limit-cpu", o["limit_cpu"])
    if o.get("limit_memory") is not None:
        res.limits.memory_bytes = _size("--limit-memory", o["limit_memory"])
    for which in ("update", "rollback"):
        keys = [
            f"{which}_{k}"
            for k in ("parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order")
        ]
        if not any(o.get(k) is not None for k in keys):
            continue
        cfg = getattr(spec, which)
        if not spec.HasField(which):
            cfg.CopyFrom(specs.default_update_config())
        if o.get(f"{which}_parallelism") is not None:
            cfg.parallelism = o[f"{which}_parallelism"]
        if o.get(f"{which}_delay") is not None:
            cfg.delay = _duration(f"--{which}-delay", o[f"{which}_delay"])
        if o.get(f"{which}_failure_action") is not None:
            cfg.failure_action = FAILURE_ACTIONS[o[f"{which}_failure_action"]]
        if o.get(f"{which}_monitor") is not None:
            cfg.monitor = _duration(f"--{which}-monitor", o[f"{which}_monitor"])
        if o.get(f"{which}_max_failure_ratio") is not None:
            cfg.max_failure_ratio = o[f"{which}_max_failure_ratio"]
        if o.get(f"{which}_order") is not None:
            cfg.order = ORDERS[o[f"{which}_order"]]
    hc = container.healthcheck
    if o.get("no_healthcheck"):
        hc.Clear()
        hc.test.append("NONE")
    if o.get("health_cmd") is not None:
        del hc.test[:]
        hc.test.extend(["CMD-SHELL", o["health_cmd"]])
    if o.get("health_interval") is not None:
        hc.interval = _duration("--health-interval", o["health_interval"])
    if o.get("health_timeout") is not None:
        hc.timeout = _duration("--health-timeout", o["health_timeout"])
    if o.get("health_retries") is not None:
        hc.retries = o["health_retries"]
    if o.get("health_start_period") is not None:
        hc.start_period = _duration("--health-start-period", o["health_start_period"])


def base_spec(image: str, command: tuple[str, ...], o: dict[str, Any]) -> pb.ServiceSpec:
    """The spec that `service create`'s options describe (and `run`'s,
    which are the same), before apply_flags: image and command, env,
    labels, placement, ports, mounts, entrypoint."""
    spec = pb.ServiceSpec(name=o.get("name") or "")
    spec.mode = MODES[o.get("mode") or "replicated"]
    spec.task.container.image = image
    if command:
        spec.task.container.args.extend(command)
    spec.task.container.env.extend(o["env"])
    spec.labels.update(key_values("--label", o["label"]))
    spec.task.placement.constraints.extend(o["constraint"])
    for pref in o["placement_pref"]:
        strategy, _, target = pref.partition("=")
        if strategy != "spread" or not target:
            raise CLIError(f'--placement-pref "{pref}": only spread=node.labels.KEY is supported')
        spec.task.placement.preferences.add(spread=target)
    for p in o["publish"]:
        spec.ports.append(parse_publish(p))
    for m in o["mounts"]:
        spec.task.container.mounts.append(parse_mount(m))
    if o["entrypoint"]:
        spec.task.container.command.extend(shlex.split(o["entrypoint"]))
    change_refs(spec.task.container.secrets, "--secret", (), o.get("secrets", ()))
    change_refs(spec.task.container.configs, "--config", (), o.get("configs", ()))
    network_flags.apply_create(spec, o)
    return spec
