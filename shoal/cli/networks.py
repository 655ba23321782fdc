"""``shoal network ...``: create, ls, inspect, rm (discovery scopes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from shoal.cli.client import Client, for_each_ref
from shoal.cli.render import network_json, table
from shoal.cli.service_flags import key_values
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb


@click.group()
def network() -> None:
    """Manage networks: services on a network resolve each other's names."""


@network.command()
@click.option("--label", "-l", multiple=True, metavar="KEY=VALUE", help="Network label (repeat)")
@click.option(
    "--driver",
    "-d",
    default="overlay",
    type=click.Choice(["overlay"]),
    help="The only one: every network spans the cluster",
)
@click.argument("name")
@click.pass_obj
def create(client_factory: Callable[[], Client], name: str, label: tuple[str, ...], driver: str) -> None:
    """Create a network."""
    spec = pb.NetworkSpec(name=name, driver=driver, labels=key_values("--label", label))
    created: pb.Network = client_factory().call("CreateNetwork", cpb.CreateNetworkRequest(spec=spec))
    click.echo(created.meta.id)


@network.command(name="ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", help="table or json")
@click.option("--quiet", "-q", is_flag=True, help="Print only the network IDs")
@click.pass_obj
def ls(client_factory: Callable[[], Client], fmt: str, quiet: bool) -> None:
    """List networks."""
    networks = client_factory().call("ListNetworks", cpb.ListNetworksRequest()).networks
    if quiet:
        for n in networks:
            click.echo(n.meta.id)
        return
    shown: list[dict[str, Any]] = [network_json(n) for n in networks]
    if fmt == "json":
        click.echo(json.dumps(shown, indent=2))
        return
    click.echo(
        table([[n["id"][:12], n["name"], n["driver"]] for n in shown], ["NETWORK ID", "NAME", "DRIVER"])
    )


@network.command()
@click.argument("refs", nargs=-1, required=True, metavar="NETWORK...")
@click.pass_obj
def inspect(client_factory: Callable[[], Client], refs: tuple[str, ...]) -> None:
    """Show networks as JSON."""
    client = client_factory()
    click.echo(
        json.dumps([network_json(client.call("GetNetwork", cpb.ObjectRef(ref=r))) for r in refs], indent=2)
    )


@network.command(name="rm")
@click.argument("refs", nargs=-1, required=True, metavar="NETWORK...")
@click.pass_obj
def rm(client_factory: Callable[[], Client], refs: tuple[str, ...]) -> None:
    """Remove networks no service uses."""
    client = client_factory()
    for_each_ref(refs, lambda ref: client.call("RemoveNetwork", cpb.ObjectRef(ref=ref)))
