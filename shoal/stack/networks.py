"""The ``networks:`` and ``expose:`` of a Compose file, as discovery scopes.

A network in shoal is a discovery scope (``shoal network``): services that
share one resolve each other's names. So:

- every top-level network the stack's services use becomes ``STACK_KEY``
  (or its ``name:``), labelled with the stack, made by ``stack deploy``;
  ``external: true`` (or ``external: {name: N}``) names one that exists and
  keeps its name;
- a service without ``networks:`` is on the stack's default network,
  ``STACK_default``, as in Compose (and inside a stack, a service also
  answers to its short name, ``web`` for ``STACK_web``);
- a service's ``networks:`` (a list, or a mapping whose values may carry
  ``aliases``, which are a warning) must name top-level networks or
  ``default``.

What shapes a real network (``driver`` other than overlay or bridge,
``driver_opts``, ``ipam``, ``internal``, ``attachable``) is a warning: there
are no wires to shape. ``expose:`` lists ports (``80``, ``"53/udp"``,
``"8000-8010"``) other services reach through the service's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shoal.protos import objects_pb2 as pb
from shoal.stack.located import LList, LMap, Loc, StackError, located
from shoal.stack.values import as_bool, as_map, as_str, key_values

Warn = Callable[[str], None]
NAMESPACE_LABEL = "com.docker.stack.namespace"
DEFAULT = "default"
_KEYS = {"external", "name", "labels", "driver"}
_SHAPES = {"driver_opts", "ipam", "internal", "attachable", "enable_ipv6"}


@dataclass(frozen=True)
class StackNetwork:
    key: str  # in the file ("default" for the implicit one)
    name: str  # in the cluster
    external: bool = False
    labels: dict[str, str] = field(default_factory=dict)


def read_networks(top: Any, stack: str, warn: Warn, loc: Loc | None = None) -> dict[str, StackNetwork]:
    """The top-level networks (and the implicit default) by key."""
    out = {DEFAULT: StackNetwork(DEFAULT, f"{stack}_{DEFAULT}", labels={NAMESPACE_LABEL: stack})}
    if top is None:
        return out
    section = as_map(top, "networks", loc)
    for key, spec in section.items():
        where, at = f"networks.{key}", section.at(key)
        cfg = as_map(spec, where, at) if spec is not None else LMap(at)
        for extra in sorted(set(cfg) - _KEYS - _SHAPES):
            if not extra.startswith("x-"):
                warn(located(cfg.at(extra), f"{where}.{extra} is ignored (not supported)"))
        for shape in sorted(set(cfg) & _SHAPES):
            warn(located(cfg.at(shape), f"{where}.{shape} is ignored (shoal networks are discovery scopes)"))
        driver = cfg.get("driver")
        if driver is not None and as_str(driver, f"{where}.driver", cfg.at("driver")) not in (
            "overlay",
            "bridge",
        ):
            warn(
                located(
                    cfg.at("driver"), f"{where}.driver {driver} is ignored (every network spans the cluster)"
                )
            )
        external = cfg.get("external")
        name = as_str(cfg["name"], f"{where}.name", cfg.at("name")) if cfg.get("name") else ""
        if isinstance(external, LMap):
            name = as_str(external.get("name", key), f"{where}.external.name", external.at("name")) or name
            external = True
        is_external = external is not None and as_bool(external, f"{where}.external", cfg.at("external"))
        labels = {} if is_external else {NAMESPACE_LABEL: stack}
        if cfg.get("labels") is not None:
            labels.update(key_values(cfg["labels"], f"{where}.labels", cfg.at("labels")))
        out[key] = StackNetwork(key, name or (key if is_external else f"{stack}_{key}"), is_external, labels)
    return out


def service_networks(
    value: Any, networks: dict[str, StackNetwork], where: str, loc: Loc | None, warn: Warn
) -> list[StackNetwork]:
    """The networks a service is on (none given: the stack's default)."""
    if value is None:
        return [networks[DEFAULT]]
    keys: list[tuple[str, Loc | None]] = []
    if isinstance(value, LList):
        keys = [(as_str(item, f"{where}[{i}]", value.at(i)), value.at(i)) for i, item in enumerate(value)]
    else:
        section = as_map(value, where, loc)
        for key, cfg in section.items():
            keys.append((key, section.at(key)))
            if isinstance(cfg, LMap):
                for extra in sorted(cfg):
                    warn(
                        located(cfg.at(extra), f"{where}.{key}.{extra} is ignored (names are service names)")
                    )
    out = []
    for key, at in keys:
        if key not in networks:
            raise StackError(f"{where}: network {key} is not defined under the top-level networks", at)
        if networks[key] not in out:
            out.append(networks[key])
    return out


def expose_ports(value: Any, where: str, loc: Loc | None) -> list[pb.PortConfig]:
    """``expose:`` as PortConfigs (target and protocol only)."""
    if isinstance(value, LList):
        items = value
    else:
        items = LList(loc)
        items.add(value, loc)
    out: list[pb.PortConfig] = []
    for i, item in enumerate(items):
        text = str(item).strip()
        spec, _, protocol = text.partition("/")
        first, _, last = spec.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise StackError(
                f'{where}[{i}]: invalid port "{text[:40]}" (PORT[-END][/PROTOCOL])', items.at(i)
            ) from None
        if high < low or high - low >= 1024:
            raise StackError(f'{where}[{i}]: invalid port range "{text[:40]}"', items.at(i))
        for port in range(low, high + 1):
            config = pb.PortConfig(target_port=port, protocol=(protocol or "tcp").lower())
            if config not in out:
                out.append(config)
    return out
