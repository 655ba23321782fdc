"""The service options about discovery: ``--network``, ``--expose`` and
their ``-add``/``-rm`` forms on update, and how they change a ServiceSpec."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from shoal.cli.client import CLIError
from shoal.protos import objects_pb2 as pb


def parse_expose(flag: str, value: str) -> pb.PortConfig:
    """``PORT[/tcp|udp]``: a target port other services reach by name."""
    port, _, protocol = value.partition("/")
    try:
        number = int(port)
    except ValueError:
        raise CLIError(f'{flag} "{value}": expected PORT[/tcp|udp]') from None
    return pb.PortConfig(target_port=number, protocol=protocol or "tcp")


def create_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--network",
        "networks",
        multiple=True,
        metavar="NETWORK",
        help="Resolve the names of the services on this network (made with `network create`; repeat)",
    )(fn)
    return click.option(
        "--expose",
        multiple=True,
        metavar="PORT[/udp]",
        help="A port other services reach through this service's name (repeat)",
    )(fn)


UPDATE_OPTIONS = (
    ("--network-add", "NETWORK", "Join a network (as --network; repeat)"),
    ("--network-rm", "NETWORK", "Leave a network (repeat)"),
    ("--expose-add", "PORT[/udp]", "Expose another port (as --expose; repeat)"),
    ("--expose-rm", "PORT[/udp]", "Stop exposing a port (repeat)"),
)


def update_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for name, metavar, text in reversed(UPDATE_OPTIONS):
        fn = click.option(name, multiple=True, metavar=metavar, help=text)(fn)
    return fn


def apply_create(spec: pb.ServiceSpec, o: dict[str, Any]) -> None:
    spec.networks.extend(o.get("networks", ()))
    spec.expose.extend(parse_expose("--expose", v) for v in o.get("expose", ()))


def apply_update(spec: pb.ServiceSpec, o: dict[str, Any]) -> None:
    gone = set(o["network_rm"])
    networks = [n for n in spec.networks if n not in gone]
    networks += [n for n in o["network_add"] if n not in networks]
    del spec.networks[:]
    spec.networks.extend(networks)
    dropped = {(p.protocol, p.target_port) for p in (parse_expose("--expose-rm", v) for v in o["expose_rm"])}
    expose = [p for p in spec.expose if (p.protocol or "tcp", p.target_port) not in dropped]
    expose += [parse_expose("--expose-add", v) for v in o["expose_add"]]
    del spec.expose[:]
    spec.expose.extend(expose)
