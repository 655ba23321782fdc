"""``shoal stack ...``: deploy (``stack_deploy``), ls, services, ps, rm.

A stack is what carries the label ``com.docker.stack.namespace=STACK``:
its services (named ``STACK_NAME``), secrets and configs. The listings
take the shapes of ``service ls`` and ``service ps``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable

import click

from shoal.cli.client import Client, CLIError
from shoal.cli.render import print_tasks, service_ls_json, table
from shoal.cli.stack_deploy import deploy as deploy_stack
from shoal.cli.stack_deploy import in_stack, stack_now
from shoal.protos import control_pb2 as cpb
from shoal.stack import NAMESPACE_LABEL

Factory = Callable[[], Client]


@click.group()
def stack() -> None:
    """Manage stacks: applications described in Compose files."""


@stack.command()
@click.option(
    "--compose-file", "-c", "files", multiple=True, required=True, metavar="FILE",
    help="A Compose file (- for stdin); several are merged in order",
)  # fmt: skip
@click.option("--prune", is_flag=True, help="Remove services, secrets and configs no longer in the files")
@click.option("--detach", "-d", is_flag=True, help="Return once the changes are made, without waiting")
@click.option("--quiet", "-q", is_flag=True, help="No progress output (still waits unless -d)")
@click.argument("name", metavar="STACK")
@click.pass_obj
def deploy(
    client_factory: Factory, files: tuple[str, ...], prune: bool, detach: bool, quiet: bool, name: str
) -> None:
    """Deploy or update a stack from Compose files, and wait until every
    changed service converged (exit 1 naming those that did not)."""
    deploy_stack(client_factory, files, name, prune, detach, quiet)


@stack.command(name="ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def ls(client_factory: Factory, fmt: str) -> None:
    """List stacks (with their number of services)."""
    services = client_factory().call("ListServices", cpb.ListServicesRequest(), retry=True).services
    counts = Counter(
        s.service.spec.labels[NAMESPACE_LABEL] for s in services if NAMESPACE_LABEL in s.service.spec.labels
    )
    stacks = [{"name": name, "services": counts[name]} for name in sorted(counts)]
    if fmt == "json":
        click.echo(json.dumps(stacks, indent=2))
        return
    click.echo(table([[s["name"], str(s["services"])] for s in stacks], ["NAME", "SERVICES"]))


def _summaries(client: Client, name: str) -> list[cpb.ServiceSummary]:
    services = client.call("ListServices", cpb.ListServicesRequest(), retry=True).services
    found = [s for s in services if in_stack(s.service.spec.labels, name)]
    if not found:
        raise CLIError(f"nothing found in stack: {name}")
    return found


@stack.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--quiet", "-q", is_flag=True, help="Print only the IDs")
@click.argument("name", metavar="STACK")
@click.pass_obj
def services(client_factory: Factory, fmt: str, quiet: bool, name: str) -> None:
    """List the services of a stack."""
    found = _summaries(client_factory(), name)
    if quiet:
        for s in found:
            click.echo(s.service.meta.id)
        return
    shown = [service_ls_json(s) for s in found]
    if fmt == "json":
        click.echo(json.dumps(shown, indent=2))
        return
    rows = [
        [s["id"][:12], s["name"], s["mode"], f"{s['replicas_running']}/{s['replicas_desired']}", s["image"],
         ", ".join(s["ports"])]
        for s in shown
    ]  # fmt: skip
    click.echo(table(rows, ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]))


@stack.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--quiet", "-q", is_flag=True, help="Print only the task IDs")
@click.argument("name", metavar="STACK")
@click.pass_obj
def ps(client_factory: Factory, fmt: str, quiet: bool, name: str) -> None:
    """List the tasks of a stack (current and history)."""
    client = client_factory()
    merged = cpb.ListTasksResponse()
    for s in _summaries(client, name):
        resp = client.call("ListTasks", cpb.ListTasksRequest(service=s.service.meta.id), retry=True)
        merged.tasks.extend(resp.tasks)
        merged.node_hostnames.update(resp.node_hostnames)
    print_tasks(merged, fmt, quiet)


@stack.command(name="rm")
@click.argument("names", nargs=-1, required=True, metavar="STACK...")
@click.pass_obj
def rm(client_factory: Factory, names: tuple[str, ...]) -> None:
    """Remove stacks: their services, then their secrets, configs and networks."""
    client = client_factory()
    failed = False
    for name in names:
        now = stack_now(client, name)
        if not (now.services or now.secrets or now.configs or now.networks):
            click.echo(f"Nothing found in stack: {name}", err=True)
            continue
        for svc_name, svc in sorted(now.services.items()):
            click.echo(f"Removing service {svc_name}")
            try:
                client.call("RemoveService", cpb.ObjectRef(ref=svc.meta.id))
            except CLIError as err:
                click.echo(f"Error: service {svc_name}: {err}", err=True)
                failed = True
        for kind, held in (("secret", now.secrets), ("config", now.configs)):
            for obj_name in sorted(held):
                click.echo(f"Removing {kind} {obj_name}")
                try:
                    client.call(f"Remove{kind.capitalize()}", cpb.ObjectRef(ref=held[obj_name].meta.id))
                except CLIError as err:
                    click.echo(f"Error: {kind} {obj_name}: {err}", err=True)
                    failed = True
        for net_name in sorted(now.networks):
            click.echo(f"Removing network {net_name}")
            try:
                client.call("RemoveNetwork", cpb.ObjectRef(ref=now.networks[net_name].meta.id))
            except CLIError as err:
                click.echo(f"Error: network {net_name}: {err}", err=True)
                failed = True
    if failed:
        sys.exit(1)
