"""``shoal stack ...``: deploy (``stack_deploy``), ls, services, ps, rm.

A stack is what carries the label ``com.docker.stack.namespace=STACK``:
its services (named ``STACK_NAME``), secrets and configs. ``stack services``
and ``stack ps`` are ``service ls`` and ``service ps`` of the stack's
services: the same columns, ``--format`` fields, filters and JSON.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable

import click

from shoal.cli import listing, ps
from shoal.cli.client import Client, CLIError
from shoal.cli.filters import SERVICE_KEYS, service_matches
from shoal.cli.rows import SERVICES, STACKS, show_services, stack_row
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
@listing.format_option(STACKS)
@click.pass_obj
def ls(client_factory: Factory, fmt: str) -> None:
    """List stacks (with their number of services)."""
    output = listing.check_format(STACKS, fmt)
    services = client_factory().call("ListServices", cpb.ListServicesRequest(), retry=True).services
    counts = Counter(
        s.service.spec.labels[NAMESPACE_LABEL] for s in services if NAMESPACE_LABEL in s.service.spec.labels
    )
    names = sorted(counts, key=listing.natural_key)
    listing.emit(
        STACKS,
        output,
        [stack_row(name, counts[name]) for name in names],
        lambda: [{"name": name, "services": counts[name]} for name in names],
    )


def _summaries(client: Client, name: str) -> list[cpb.ServiceSummary]:
    services = client.call("ListServices", cpb.ListServicesRequest(), retry=True).services
    found = [s for s in services if in_stack(s.service.spec.labels, name)]
    return sorted(found, key=lambda s: listing.natural_key(s.service.spec.name))


@stack.command()
@listing.options(
    SERVICES,
    "service IDs",
    "Only services that match: id, name (a prefix of STACK_NAME), label=KEY[=VALUE], "
    "mode=replicated|global|replicated-job|global-job",
)
@click.argument("name", metavar="STACK")
@click.pass_obj
def services(
    client_factory: Factory, fmt: str, quiet: bool, no_trunc: bool, filters: tuple[str, ...], name: str
) -> None:
    """List the services of a stack (as service ls does)."""
    asked = listing.ask(SERVICES, SERVICE_KEYS, fmt, filters, quiet, no_trunc)
    found = _summaries(client_factory(), name)
    if not found:
        # As docker says it: on stderr, and not a failure (JSON: an empty array).
        click.echo(f"Nothing found in stack: {name}", err=True)
        if asked.quiet or asked.output.kind != "json":
            return
    show_services(asked, [s for s in found if service_matches(asked.filters, s.service)])


@stack.command(name="ps")
@ps.ps_options
@click.argument("name", metavar="STACK")
@click.pass_obj
def ps_(
    client_factory: Factory, fmt: str, quiet: bool, no_trunc: bool, filters: tuple[str, ...], name: str
) -> None:
    """List the tasks of a stack (current and history, as service ps does)."""
    asked = ps.check(fmt, filters, quiet, no_trunc)
    client = client_factory()
    requests = [cpb.ListTasksRequest(service=s.service.meta.id) for s in _summaries(client, name)]
    found = ps.fetch(client, requests)
    if not found.tasks:
        raise CLIError(f"nothing found in stack: {name}")
    ps.print_task_list(found, asked)


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
