"""``shoal service ...``: the commands that change services (create, update,
rollback, scale, rm) and wait for them to converge (``progress.follow``).
The flags and how they become a ServiceSpec live in ``service_flags``; the
commands that only look (ls, ps, inspect, logs) in ``service_views``.
"""

from __future__ import annotations

import io
import shlex
import sys
from collections.abc import Callable
from typing import Any

import click

from shoal.cli import network_flags, service_views
from shoal.cli.client import Client, CLIError, for_each_ref
from shoal.cli.file_flags import change_refs
from shoal.cli.progress import follow
from shoal.cli.service_flags import (
    apply_flags,
    base_spec,
    key_values,
    parse_mount,
    parse_publish,
    registry_auth_for,
    spec_options,
)
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
    code = follow(client, service.meta.id, out=out, rollback=rollback, name=service.spec.name)
    if code:
        sys.exit(1 if code == 1 else code)


@click.group()
def service() -> None:
    """Manage services."""


CREATE_EXAMPLES = """Examples:

\b
  shoal service create --name web --replicas 3 shoal-test:1 sleep 3600
  shoal service create --name agent --mode global --constraint node.labels.zone==a busybox:latest sleep 3600
  shoal service create --name api -p 8080:80 --reserve-memory 64m shoal-test:1 httpd -f -p 80
"""


@service.command(
    context_settings={"ignore_unknown_options": False, "allow_interspersed_args": False},
    epilog=CREATE_EXAMPLES,
)
@spec_options
@click.option("--env", "-e", multiple=True, metavar="KEY=VALUE", help="Environment variable (repeat)")
@click.option("--label", "-l", multiple=True, metavar="KEY=VALUE", help="Service label (repeat)")
@click.option(
    "--constraint",
    multiple=True,
    metavar="EXPR",
    help="Placement constraint, e.g. node.labels.zone==a (repeat: all must hold)",
)
@click.option(
    "--placement-pref",
    multiple=True,
    metavar="spread=node.labels.KEY",
    help="Spread tasks evenly over the values of a node label (repeat)",
)
@click.option(
    "--publish",
    "-p",
    multiple=True,
    metavar="PORT",
    help="Publish a port: 8080:80 (/udp for UDP), or published=8080,target=80 with optional "
    "protocol=tcp|udp and mode=host|ingress (repeat)",
)
@click.option(
    "--mount",
    "mounts",
    multiple=True,
    metavar="SPEC",
    help="A mount: type=bind|volume|tmpfs, source=SRC, target=DST, readonly, tmpfs-size=SIZE, "
    "joined by commas (repeat)",
)
@click.option("--entrypoint", default=None, metavar="COMMAND", help="Replace the image's entrypoint")
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="SECRET",
    help="A secret as a file in the task: NAME, or source=NAME,target=PATH,mode=0400,uid=U,gid=G (repeat)",
)
@click.option(
    "--config",
    "configs",
    multiple=True,
    metavar="CONFIG",
    help="A config as a file in the task: NAME, or source=NAME,target=PATH,mode=0444 (repeat)",
)
@network_flags.create_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[COMMAND [ARG...]]")
@click.pass_obj
def create(client_factory: Callable[[], Client], /, image: str, command: tuple[str, ...], **o: Any) -> None:
    """Create a service that runs tasks of IMAGE.

    Options go before IMAGE: everything after IMAGE is the task's command and
    its arguments (COMMAND [ARG...]), passed on as they are, as in docker (the
    process runtime runs COMMAND on the node). Unless -d is given, waits until
    the service converges, showing each task's progress, and exits 1 saying
    why when it cannot (the service then exists: shoal service rm removes it).
    """
    spec = base_spec(image, command, o)
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
@click.option("--image", "new_image", metavar="IMAGE", help="New image")
@click.option("--args", "new_args", metavar='"ARGS"', help="New command arguments, split as a shell would")
@click.option("--env-add", multiple=True, metavar="KEY=VALUE", help="Add or change an environment variable")
@click.option("--env-rm", multiple=True, metavar="KEY", help="Remove an environment variable")
@click.option("--label-add", multiple=True, metavar="KEY=VALUE", help="Add or change a service label")
@click.option("--label-rm", multiple=True, metavar="KEY", help="Remove a service label")
@click.option("--constraint-add", multiple=True, metavar="EXPR", help="Add a placement constraint")
@click.option("--constraint-rm", multiple=True, metavar="EXPR", help="Remove a placement constraint")
@click.option(
    "--placement-pref-add", multiple=True, metavar="spread=node.labels.KEY", help="Add a placement preference"
)
@click.option(
    "--placement-pref-rm",
    multiple=True,
    metavar="spread=node.labels.KEY",
    help="Remove a placement preference",
)
@click.option("--publish-add", multiple=True, metavar="PORT", help="Publish another port (as --publish)")
@click.option(
    "--publish-rm", multiple=True, metavar="TARGET", help="Stop publishing the port with this target"
)
@click.option("--mount-add", multiple=True, metavar="SPEC", help="Add a mount (as --mount)")
@click.option("--mount-rm", multiple=True, metavar="TARGET", help="Remove the mount at this target path")
@click.option("--secret-add", multiple=True, metavar="SECRET", help="Add a secret (as --secret; repeat)")
@click.option("--secret-rm", multiple=True, metavar="NAME", help="Remove the secret of this name (repeat)")
@click.option("--config-add", multiple=True, metavar="CONFIG", help="Add a config (as --config; repeat)")
@click.option("--config-rm", multiple=True, metavar="NAME", help="Remove the config of this name (repeat)")
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
    change_refs(container.secrets, "--secret", o["secret_rm"], o["secret_add"])
    change_refs(container.configs, "--config", o["config_rm"], o["config_add"])
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
@click.option("--detach", "-d", is_flag=True, help="Return at once instead of waiting for convergence")
@click.option("--quiet", "-q", is_flag=True, help="Print only the ID (still waits unless -d)")
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
@click.option("--detach", "-d", is_flag=True, help="Return at once instead of waiting for convergence")
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
        if not detach and follow(client, svc.meta.id, name=svc.spec.name) != 0:
            failed = True
    if failed:
        sys.exit(1)


@service.command(name="rm")
@click.argument("refs", nargs=-1, required=True, metavar="SERVICE...")
@click.pass_obj
def rm(client_factory: Callable[[], Client], refs: tuple[str, ...]) -> None:
    """Remove services (their tasks are stopped)."""
    client = client_factory()
    for_each_ref(refs, lambda ref: client.call("RemoveService", cpb.ObjectRef(ref=ref)))


service.add_command(service_views.ls)
service.add_command(service_views.ps_)
service.add_command(service_views.inspect)
service.add_command(service_views.logs)
