"""``shoal node ...``: ls, inspect, ps, update, rm."""

from __future__ import annotations

import json
from collections.abc import Callable

import click

from shoal.cli import listing, ps
from shoal.cli.client import Client, for_each_ref
from shoal.cli.filters import NODE_KEYS, node_matches
from shoal.cli.pretty import node_pretty
from shoal.cli.render import node_json
from shoal.cli.rows import NODES, node_row
from shoal.cli.service_flags import key_values
from shoal.protos import control_pb2 as cpb


@click.group()
def node() -> None:
    """Manage nodes."""


@node.command(name="ls")
@listing.options(
    NODES,
    "node IDs",
    "Only nodes that match: id, name (a hostname prefix), label=KEY[=VALUE] (the agent's), "
    "node.label=KEY[=VALUE], role=manager|worker, membership=accepted|pending",
)
@click.pass_obj
def ls(
    client_factory: Callable[[], Client], fmt: str, quiet: bool, no_trunc: bool, filters: tuple[str, ...]
) -> None:
    """List nodes."""
    asked = listing.ask(NODES, NODE_KEYS, fmt, filters, quiet, no_trunc)
    nodes = client_factory().call("ListNodes", cpb.ListNodesRequest(), retry=True).nodes
    listing.show(
        NODES,
        asked,
        [n for n in nodes if node_matches(asked.filters, n)],
        lambda n: n.meta.id,
        lambda n: node_row(n, asked.trunc),
        node_json,
    )


@node.command()
@click.option("--pretty", is_flag=True, help="Readable text (sizes in human units), not JSON")
@click.argument("refs", nargs=-1, required=True, metavar="NODE...")
@click.pass_obj
def inspect(client_factory: Callable[[], Client], refs: tuple[str, ...], pretty: bool) -> None:
    """Show nodes as JSON (or, with --pretty, as text)."""
    client = client_factory()
    found = [client.call("GetNode", cpb.ObjectRef(ref=r), retry=True) for r in refs]
    if pretty:
        click.echo("\n\n".join(node_pretty(n) for n in found))
        return
    click.echo(json.dumps([node_json(n) for n in found], indent=2))


node.add_command(
    ps.ps_command(
        "NODE...",
        "List the tasks on nodes (current and history).",
        lambda ref: cpb.ListTasksRequest(node=ref),
    )
)


@node.command()
@click.option(
    "--availability",
    type=click.Choice(["active", "pause", "drain"]),
    help="active: takes tasks; pause: no new ones; drain: its tasks move elsewhere",
)
@click.option("--label-add", multiple=True, metavar="KEY=VALUE", help="Add or change a node label")
@click.option("--label-rm", multiple=True, metavar="KEY", help="Remove a node label")
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
    labels = key_values("--label-add", label_add)
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
