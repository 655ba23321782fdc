"""``shoal network ...``: create, ls, inspect, rm (discovery scopes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from shoal.cli import listing
from shoal.cli.client import Client, for_each_ref
from shoal.cli.filters import FILE_KEYS, file_matches
from shoal.cli.listing import Listing
from shoal.cli.render import network_json
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


NETWORKS = Listing(
    {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Labels": "LABELS"},
    "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
)


def network_row(network: pb.Network, trunc: bool) -> dict[str, Any]:
    return {
        "ID": network.meta.id[:12] if trunc else network.meta.id,
        "Name": network.spec.name,
        "Driver": network.spec.driver,
        "Scope": "swarm",  # as docker says of a cluster-wide network
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(network.spec.labels.items())),
    }


@network.command(name="ls")
@listing.options(NETWORKS, "network IDs", "Only networks that match: id, name (a prefix), label=KEY[=VALUE]")
@click.pass_obj
def ls(
    client_factory: Callable[[], Client], fmt: str, quiet: bool, no_trunc: bool, filters: tuple[str, ...]
) -> None:
    """List networks."""
    asked = listing.ask(NETWORKS, FILE_KEYS, fmt, filters, quiet, no_trunc)
    found = client_factory().call("ListNetworks", cpb.ListNetworksRequest(), retry=True).networks
    chosen = [n for n in found if file_matches(asked.filters, n)]
    listing.show(
        NETWORKS,
        asked,
        sorted(chosen, key=lambda n: listing.natural_key(n.spec.name)),
        lambda n: n.meta.id,
        lambda n: network_row(n, asked.trunc),
        network_json,
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
