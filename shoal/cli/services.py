"""``shoal service ...``: create, update, rollback, scale, ls, ps, inspect,
rm, logs. The flags and how they become a ServiceSpec live in
``service_flags``.
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

from shoal.cli import network_flags
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
from shoal.cli.service_flags import (
    MODES,
    apply_flags,
    key_values,
    parse_mount,
    parse_publish,
    registry_auth_for,
    spec_options,
)
from shoal.durations import parse_duration
from shoal.ids import new_id
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb


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
@network_flags.create_options
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
    network_flags.apply_create(spec, o)
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
@network_flags.update_options
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
    spec.labels.update(key_values("--label-add", o["label_add"]))
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
    network_flags.apply_update(spec, o)
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
    out = []
    for ref in refs:
        svc = client.call("GetService", cpb.ObjectRef(ref=ref))
        tasks = client.call("ListTasks", cpb.ListTasksRequest(service=svc.meta.id, desired_state="running"))
        out.append(service_json(svc, tasks))
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
