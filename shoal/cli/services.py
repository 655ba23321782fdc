"""``shoal service ...``: create, update, scale, ls, ps, inspect, rm.

Flags become a ServiceSpec here; the manager applies Swarm's defaults and
validates everything (the client is never trusted, but it catches malformed
durations and sizes early so the message names the flag).
"""

from __future__ import annotations

import io
import json
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from shoal import specs
from shoal.cli.client import Client, CLIError, for_each_ref
from shoal.cli.progress import follow
from shoal.cli.render import (
    mode_word,
    ports_text,
    print_tasks,
    service_json,
    service_ls_json,
    table,
)
from shoal.durations import parse_duration, parse_size
from shoal.ids import new_id
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb

MODES = {
    "replicated": pb.SERVICE_MODE_REPLICATED,
    "global": pb.SERVICE_MODE_GLOBAL,
    "replicated-job": pb.SERVICE_MODE_REPLICATED_JOB,
    "global-job": pb.SERVICE_MODE_GLOBAL_JOB,
}
CONDITIONS = {
    "any": pb.RESTART_CONDITION_ANY,
    "on-failure": pb.RESTART_CONDITION_ON_FAILURE,
    "none": pb.RESTART_CONDITION_NONE,
}
FAILURE_ACTIONS = {
    "pause": pb.FAILURE_ACTION_PAUSE,
    "continue": pb.FAILURE_ACTION_CONTINUE,
    "rollback": pb.FAILURE_ACTION_ROLLBACK,
}
ORDERS = {"stop-first": pb.UPDATE_ORDER_STOP_FIRST, "start-first": pb.UPDATE_ORDER_START_FIRST}


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


def _key_values(flag: str, items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, _sep, value = item.partition("=")
        if not key:
            raise CLIError(f'{flag} "{item}": expected KEY=VALUE')
        out[key] = value
    return out


def parse_publish(value: str) -> pb.PortConfig:
    """``8080:80[/udp]`` or ``published=8080,target=80,protocol=tcp,mode=host``."""
    port = pb.PortConfig()
    try:
        if "=" in value:
            for part in value.split(","):
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
                else:
                    raise CLIError(
                        f'--publish "{value}": unknown key "{key}" (published, target, protocol, mode)'
                    )
        else:
            spec, _, proto = value.partition("/")
            published, sep, target = spec.partition(":")
            if not sep:
                raise CLIError(f'--publish "{value}": expected PUBLISHED:TARGET[/PROTOCOL]')
            port.published_port, port.target_port = int(published), int(target)
            port.protocol = proto
            # No routing mesh yet: the short form publishes on the task's node.
            port.publish_mode = "host"
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
    import base64
    import os
    from pathlib import Path

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
    options = [
        click.option("--name", help="Service name"),
        click.option("--mode", type=click.Choice(list(MODES)), help="Service mode (create only)"),
        click.option("--replicas", type=int, help="Number of tasks"),
        click.option("--max-concurrent", type=int, help="Jobs: tasks running at once"),
        click.option("--replicas-max-per-node", type=int, help="Maximum tasks per node (0 = unlimited)"),
        click.option("--workdir", "-w", help="Working directory"),
        click.option("--stop-grace-period", help="Time to wait before killing a task (e.g. 10s)"),
        click.option("--stop-signal", help="Signal to stop a task"),
        click.option("--restart-condition", type=click.Choice(list(CONDITIONS))),
        click.option("--restart-delay"),
        click.option("--restart-max-attempts", type=int),
        click.option("--restart-window"),
        click.option("--reserve-cpu"),
        click.option("--reserve-memory"),
        click.option("--limit-cpu"),
        click.option("--limit-memory"),
        click.option("--update-parallelism", type=int),
        click.option("--update-delay"),
        click.option("--update-failure-action", type=click.Choice(list(FAILURE_ACTIONS))),
        click.option("--update-monitor"),
        click.option("--update-max-failure-ratio", type=float),
        click.option("--update-order", type=click.Choice(list(ORDERS))),
        click.option("--rollback-parallelism", type=int),
        click.option("--rollback-delay"),
        click.option("--rollback-failure-action", type=click.Choice(["pause", "continue"])),
        click.option("--rollback-monitor"),
        click.option("--rollback-max-failure-ratio", type=float),
        click.option("--rollback-order", type=click.Choice(list(ORDERS))),
        click.option("--health-cmd"),
        click.option("--health-interval"),
        click.option("--health-timeout"),
        click.option("--health-retries", type=int),
        click.option("--health-start-period"),
        click.option("--no-healthcheck", is_flag=True),
        click.option("--with-registry-auth", is_flag=True, help="Send registry credentials to the agents"),
        click.option(
            "--detach", "-d", is_flag=True, help="Return at once instead of waiting for convergence"
        ),
        click.option("--quiet", "-q", is_flag=True, help="Print only the ID"),
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


def _emit(quiet: bool, service: pb.Service) -> None:
    click.echo(service.meta.id)


def _wait(client: Client, service: pb.Service, detach: bool, quiet: bool, rollback: bool = False) -> None:
    if detach:
        return
    # Quiet still waits, as Docker's does; it only hides the progress.
    out = io.StringIO() if quiet else sys.stdout
    code = follow(client, service.meta.id, out=out, rollback=rollback)
    if code:
        sys.exit(1 if code == 1 else code)


@click.group()
def service() -> None:
    """Manage services."""


@service.command(context_settings={"ignore_unknown_options": False, "allow_interspersed_args": False})
@spec_options
@click.option("--env", "-e", multiple=True, help="Environment variable KEY=VALUE")
@click.option("--label", "-l", multiple=True, help="Service label KEY=VALUE")
@click.option("--constraint", multiple=True, help="Placement constraint, e.g. node.labels.zone==a")
@click.option("--placement-pref", multiple=True, help="Placement preference spread=node.labels.KEY")
@click.option(
    "--publish", "-p", multiple=True, help="Publish a port: 8080:80 or published=8080,target=80,mode=host"
)
@click.option(
    "--mount", "mounts", multiple=True, help="type=bind|volume|tmpfs,source=...,target=...[,readonly]"
)
@click.option("--entrypoint", default=None, help="Override the image's entrypoint")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def create(client_factory: Callable[[], Client], /, image: str, command: tuple[str, ...], **o: Any) -> None:
    """Create a service running IMAGE [COMMAND [ARG...]]."""
    spec = pb.ServiceSpec(name=o.get("name") or "")
    spec.mode = MODES[o.get("mode") or "replicated"]
    spec.task.container.image = image
    if command:
        spec.task.container.args.extend(command)
    spec.task.container.env.extend(o["env"])
    spec.labels.update(_key_values("--label", o["label"]))
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
    apply_flags(spec, o, creating=True)
    auth = ""
    if o["with_registry_auth"]:
        auth = registry_auth_for(image)
        if not auth:
            click.echo(f"warning: no stored credentials for the registry of {image}", err=True)
    client = client_factory()
    # Our own ID: a create retried after a lost answer is the same create.
    request = cpb.CreateServiceRequest(spec=spec, registry_auth=auth, id=new_id())
    created: pb.Service = client.call("CreateService", request, retry=True)
    _emit(o["quiet"], created)
    _wait(client, created, o["detach"], o["quiet"])


@service.command()
@spec_options
@click.option("--image", "new_image", help="New image")
@click.option("--args", "new_args", help="New command arguments")
@click.option("--env-add", multiple=True)
@click.option("--env-rm", multiple=True)
@click.option("--label-add", multiple=True)
@click.option("--label-rm", multiple=True)
@click.option("--constraint-add", multiple=True)
@click.option("--constraint-rm", multiple=True)
@click.option("--placement-pref-add", multiple=True)
@click.option("--placement-pref-rm", multiple=True)
@click.option("--publish-add", multiple=True)
@click.option("--publish-rm", multiple=True)
@click.option("--mount-add", multiple=True)
@click.option("--mount-rm", multiple=True, help="Target path of a mount to remove")
@click.option("--force", is_flag=True, help="Replace every task even with no change")
@click.option("--rollback", "do_rollback", is_flag=True, help="Roll back to the previous spec")
@click.argument("ref", metavar="SERVICE")
@click.pass_obj
def update(client_factory: Callable[[], Client], /, ref: str, **o: Any) -> None:
    """Update a service."""
    client = client_factory()
    current: pb.Service = client.call("GetService", cpb.ObjectRef(ref=ref))
    if o.get("mode"):
        raise CLIError("--mode: cannot change the mode of an existing service")
    spec = pb.ServiceSpec()
    spec.CopyFrom(current.spec)
    if o.get("name"):
        spec.name = o["name"]
    container = spec.task.container
    if o["new_image"]:
        container.image = o["new_image"]
    if o["new_args"] is not None:
        del container.args[:]
        container.args.extend(shlex.split(o["new_args"]))
    env = [e for e in container.env if e.partition("=")[0] not in set(o["env_rm"])]
    added = {e.partition("=")[0] for e in o["env_add"]}
    env = [e for e in env if e.partition("=")[0] not in added] + list(o["env_add"])
    del container.env[:]
    container.env.extend(env)
    for key in o["label_rm"]:
        spec.labels.pop(key, None)
    spec.labels.update(_key_values("--label-add", o["label_add"]))
    constraints = [c for c in spec.task.placement.constraints if c not in set(o["constraint_rm"])]
    constraints += [c for c in o["constraint_add"] if c not in constraints]
    del spec.task.placement.constraints[:]
    spec.task.placement.constraints.extend(constraints)
    prefs = [p.spread for p in spec.task.placement.preferences]
    for pref in o["placement_pref_rm"]:
        target = pref.partition("=")[2] or pref
        prefs = [p for p in prefs if p != target]
    for pref in o["placement_pref_add"]:
        strategy, _, target = pref.partition("=")
        if strategy != "spread" or not target:
            raise CLIError(f'--placement-pref-add "{pref}": only spread=node.labels.KEY is supported')
        prefs.append(target)
    del spec.task.placement.preferences[:]
    for p in prefs:
        spec.task.placement.preferences.add(spread=p)
    removed_ports = set()
    for item in o["publish_rm"]:
        try:
            removed_ports.add(int(item.split(":")[-1].split("/")[0].split("=")[-1]))
        except ValueError:
            raise CLIError(f'--publish-rm "{item}": expected a target port') from None
    ports = [p for p in spec.ports if p.target_port not in removed_ports]
    ports += [parse_publish(p) for p in o["publish_add"]]
    del spec.ports[:]
    spec.ports.extend(ports)
    mounts = [m for m in container.mounts if m.target not in set(o["mount_rm"])]
    mounts += [parse_mount(m) for m in o["mount_add"]]
    del container.mounts[:]
    container.mounts.extend(mounts)
    apply_flags(spec, o, creating=False)
    auth = registry_auth_for(spec.task.container.image) if o["with_registry_auth"] else ""
    request = cpb.UpdateServiceRequest(
        ref=current.meta.id,
        version=current.meta.version,
        spec=spec,
        force=o["force"],
        rollback=o["do_rollback"],
        registry_auth=auth,
    )
    updated: pb.Service = client.call("UpdateService", request)
    _emit(o["quiet"], updated)
    _wait(client, updated, o["detach"], o["quiet"], rollback=o["do_rollback"])


@service.command()
@click.option("--detach", "-d", is_flag=True)
@click.option("--quiet", "-q", is_flag=True)
@click.argument("ref", metavar="SERVICE")
@click.pass_obj
def rollback(client_factory: Callable[[], Client], ref: str, detach: bool, quiet: bool) -> None:
    """Go back to the service's previous spec."""
    client = client_factory()
    current: pb.Service = client.call("GetService", cpb.ObjectRef(ref=ref))
    updated = client.call(
        "UpdateService",
        cpb.UpdateServiceRequest(ref=current.meta.id, version=current.meta.version, rollback=True),
    )
    _emit(quiet, updated)
    _wait(client, updated, detach, quiet, rollback=True)


@service.command()
@click.option("--detach", "-d", is_flag=True)
@click.argument("pairs", nargs=-1, required=True, metavar="SERVICE=REPLICAS...")
@click.pass_obj
def scale(client_factory: Callable[[], Client], pairs: tuple[str, ...], detach: bool) -> None:
    """Scale one or more replicated services."""
    parsed = []
    for pair in pairs:
        name, sep, count = pair.rpartition("=")
        if not sep or not name:
            raise CLIError(f'"{pair}": expected SERVICE=REPLICAS')
        try:
            replicas = int(count)
        except ValueError:
            raise CLIError(f'"{pair}": replicas must be a number, got "{count}"') from None
        parsed.append((name, replicas))
    client = client_factory()
    failed = False
    for name, replicas in parsed:
        try:
            svc = client.call("ScaleService", cpb.ScaleServiceRequest(ref=name, replicas=replicas))
        except CLIError as err:
            click.echo(f"Error: {err}", err=True)
            failed = True
            continue
        click.echo(f"{name} scaled to {replicas}")
        if not detach and follow(client, svc.meta.id) != 0:
            failed = True
    if failed:
        sys.exit(1)


@service.command(name="ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--quiet", "-q", is_flag=True)
@click.pass_obj
def ls(client_factory: Callable[[], Client], fmt: str, quiet: bool) -> None:
    """List services."""
    resp = client_factory().call("ListServices", cpb.ListServicesRequest())
    if quiet:
        for s in resp.services:
            click.echo(s.service.meta.id)
        return
    if fmt == "json":
        click.echo(json.dumps([service_ls_json(s) for s in resp.services], indent=2))
        return
    rows = []
    for s in resp.services:
        svc = s.service
        if svc.spec.mode in (pb.SERVICE_MODE_REPLICATED_JOB, pb.SERVICE_MODE_GLOBAL_JOB):
            replicas = (
                f"{s.replicas_running}/{s.replicas_desired} ({s.completed}/{s.replicas_desired} completed)"
            )
        else:
            replicas = f"{s.replicas_running}/{s.replicas_desired}"
        rows.append(
            [
                svc.meta.id[:12],
                svc.spec.name,
                mode_word(svc.spec.mode),
                replicas,
                svc.spec.task.container.image,
                ", ".join(ports_text(svc.spec.ports)),
            ]
        )
    click.echo(table(rows, ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]))


@service.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--quiet", "-q", is_flag=True)
@click.option("--filter", "-f", "filters", multiple=True, help="desired-state=running|shutdown|accepted")
@click.argument("ref", metavar="SERVICE")
@click.pass_obj
def ps(
    client_factory: Callable[[], Client], ref: str, fmt: str, quiet: bool, filters: tuple[str, ...]
) -> None:
    """List the tasks of a service (current and history)."""
    desired = ""
    for f in filters:
        key, _, value = f.partition("=")
        if key != "desired-state":
            raise CLIError(f'--filter "{f}": only desired-state=running|shutdown|accepted is supported')
        desired = value
    resp = client_factory().call("ListTasks", cpb.ListTasksRequest(service=ref, desired_state=desired))
    print_tasks(resp, fmt, quiet)


@service.command()
@click.argument("refs", nargs=-1, required=True, metavar="SERVICE...")
@click.pass_obj
def inspect(client_factory: Callable[[], Client], refs: tuple[str, ...]) -> None:
    """Show services as JSON."""
    client = client_factory()
    out = [service_json(client.call("GetService", cpb.ObjectRef(ref=r))) for r in refs]
    click.echo(json.dumps(out, indent=2))


@service.command(name="rm")
@click.argument("refs", nargs=-1, required=True, metavar="SERVICE...")
@click.pass_obj
def rm(client_factory: Callable[[], Client], refs: tuple[str, ...]) -> None:
    """Remove services (their tasks are stopped)."""
    client = client_factory()
    for_each_ref(refs, lambda ref: client.call("RemoveService", cpb.ObjectRef(ref=ref)))


@service.command()
@click.option("--follow", "-f", is_flag=True, help="Keep streaming new output (and new tasks)")
@click.option("--tail", "-n", default="all", help="Lines to show from the end of each task's output")
@click.option("--timestamps", "-t", is_flag=True, help="Show when each line was written")
@click.option("--since", default=None, help="Only lines newer than this duration (e.g. 10m) or RFC 3339 time")
@click.option("--no-task-ids", is_flag=True, help="Leave the task ID out of the prefix")
@click.option("--raw", is_flag=True, help="No prefix at all")
@click.argument("ref", metavar="SERVICE|TASK")
@click.pass_obj
def logs(
    client_factory: Callable[[], Client],
    ref: str,
    follow: bool,
    tail: str,
    timestamps: bool,
    since: str | None,
    no_task_ids: bool,
    raw: bool,
) -> None:
    """Show the output of a service's tasks (or of one task)."""
    import datetime

    if tail == "all":
        tail_n = -1
    else:
        try:
            tail_n = int(tail)
        except ValueError:
            raise CLIError(f'--tail "{tail}": expected a number of lines or "all"') from None
        if tail_n < 0:
            raise CLIError(f"--tail: must be >= 0, got {tail_n}")
    since_ns = 0
    if since:
        try:
            since_ns = time.time_ns() - parse_duration(since)
        except ValueError:
            try:
                when = datetime.datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                raise CLIError(f'--since "{since}": expected a duration (10m) or an RFC 3339 time') from None
            since_ns = int(when.timestamp() * 1e9)
    client = client_factory()
    if client.stub is None:
        client.connect()
    request = cpb.TaskLogsRequest(ref=ref, follow=follow, tail=tail_n, since=since_ns)
    import grpc

    try:
        for msg in client.stub.TaskLogs(request):
            if msg.warning:
                click.echo(f"warning: {msg.warning}", err=True)
                continue
            line = msg.data.decode(errors="replace")
            if not raw:
                name = msg.task_name if not no_task_ids else msg.task_name.rsplit(".", 1)[0]
                prefix = f"{name}@{msg.node}    | "
                if timestamps:
                    stamp = datetime.datetime.fromtimestamp(msg.timestamp / 1e9, tz=datetime.UTC)
                    prefix = stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ ") + prefix
                line = prefix + line
            click.echo(line, err=msg.stream == "stderr")
    except grpc.RpcError as err:
        raise CLIError(err.details() or err.code().name) from None
    except KeyboardInterrupt:
        sys.exit(130)
