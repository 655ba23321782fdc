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
        "--network", "networks", multiple=True, help="Discovery scope: a network made with `network create`"
    )(fn)
    return click.option(
        "--expose", multiple=True, help="A port reached through the service's name: PORT[/udp]"
    )(fn)


def update_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for name in ("--network-add", "--network-rm", "--expose-add", "--expose-rm"):
        fn = click.option(name, multiple=True)(fn)
    return fn


def apply_create(spec: pb.ServiceSpec, o: dict[str, Any]) -> None:
    spec.networks.extend(o["networks"])
    spec.expose.extend(parse_expose("--expose", v) for v in o["expose"])


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
