"""``shoal node ...``: ls, inspect, ps, update, rm."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from shoal.cli.client import Client, CLIError, for_each_ref
from shoal.cli.render import node_json, print_tasks, table
from shoal.protos import control_pb2 as cpb


@click.group()
def node() -> None:
    """Manage nodes."""


@node.command(name="ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--quiet", "-q", is_flag=True)
@click.pass_obj
def ls(client_factory: Callable[[], Client], fmt: str, quiet: bool) -> None:
    """List nodes."""
    nodes = client_factory().call("ListNodes", cpb.ListNodesRequest()).nodes
    if quiet:
        for n in nodes:
            click.echo(n.meta.id)
        return
    shown = [node_json(n) for n in nodes]
    if fmt == "json":
        click.echo(json.dumps(shown, indent=2))
        return
    rows = [
        [
            n["id"][:12],
            n["hostname"],
            n["status"].capitalize(),
            n["availability"].capitalize(),
            n["role"],
            n["address"],
            n["runtime"],
        ]
        for n in shown
    ]
    click.echo(table(rows, ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "ROLE", "ADDRESS", "RUNTIME"]))


@node.command()
@click.argument("refs", nargs=-1, required=True, metavar="NODE...")
@click.pass_obj
def inspect(client_factory: Callable[[], Client], refs: tuple[str, ...]) -> None:
    """Show nodes as JSON."""
    client = client_factory()
    click.echo(json.dumps([node_json(client.call("GetNode", cpb.ObjectRef(ref=r))) for r in refs], indent=2))


@node.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--quiet", "-q", is_flag=True)
@click.argument("ref", metavar="NODE")
@click.pass_obj
def ps(client_factory: Callable[[], Client], ref: str, fmt: str, quiet: bool) -> None:
    """List the tasks on a node."""
    print_tasks(client_factory().call("ListTasks", cpb.ListTasksRequest(node=ref)), fmt, quiet)


@node.command()
@click.option("--availability", type=click.Choice(["active", "pause", "drain"]))
@click.option("--label-add", multiple=True, help="KEY=VALUE")
@click.option("--label-rm", multiple=True, help="KEY")
@click.argument("ref", metavar="NODE")
@click.pass_obj
def update(
    client_factory: Callable[[], Client],
    ref: str,
    availability: str | None,
    label_add: tuple[str, ...],
    label_rm: tuple[str, ...],
) -> None:
    """Change a node's availability or labels."""
    labels: dict[str, Any] = {}
    for item in label_add:
        key, _, value = item.partition("=")
        if not key:
            raise CLIError(f'--label-add "{item}": expected KEY=VALUE')
        labels[key] = value
    req = cpb.UpdateNodeRequest(ref=ref, availability=availability or "", label_add=labels, label_rm=label_rm)
    click.echo(client_factory().call("UpdateNode", req).meta.id)


@node.command(name="rm")
@click.option("--force", "-f", is_flag=True, help="Remove a node that is not down; its tasks move elsewhere")
@click.argument("refs", nargs=-1, required=True, metavar="NODE...")
@click.pass_obj
def rm(client_factory: Callable[[], Client], refs: tuple[str, ...], force: bool) -> None:
    """Remove nodes from the cluster."""
    client = client_factory()
    for_each_ref(refs, lambda ref: client.call("RemoveNode", cpb.RemoveNodeRequest(ref=ref, force=force)))
