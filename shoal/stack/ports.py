"""``ports:`` of a Compose service, in both syntaxes, as shoal's PortConfigs.

Short syntax: ``[IP:][PUBLISHED[-END]:]TARGET[-END][/PROTOCOL]``, or a
bare number. A range publishes each port of it (``9090-9091:8080-8081`` is
two ports; the two ranges must be as long as each other); a target alone
gets a published port the manager picks (30000-32767, as Swarm). Short-syntax
ports are published in ``ingress`` mode, as ``--publish 8080:80`` is: the
routing mesh answers on every node. Long syntax: ``target``,
``published``, ``protocol``, ``mode`` (``ingress`` by default, as in
Compose). A host address (``127.0.0.1:8001:8001``, ``host_ip``) cannot be
honoured: the agent publishes on its own address; that is a warning.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from shoal.protos import objects_pb2 as pb
from shoal.stack.located import LList, LMap, Loc, StackError, located
from shoal.stack.values import as_int, as_str, fail, long_forms

Warn = Callable[[str], None]

_SHORT = re.compile(
    r"^(?:(?P<ip>\[[0-9a-fA-F:.]+\]|\d+\.\d+\.\d+\.\d+):)?"
    r"(?:(?P<published>\d+(?:-\d+)?)?:)?"
    r"(?P<target>\d+(?:-\d+)?)"
    r"(?:/(?P<protocol>[a-zA-Z]+))?$"
)
_LONG_KEYS = {"target", "published", "protocol", "mode", "host_ip", "name", "app_protocol"}


def _range(text: str, where: str, loc: Loc | None) -> list[int]:
    first, _, last = text.partition("-")
    low, high = int(first), int(last or first)
    if high < low or high - low >= 1024:
        raise StackError(f'{where}: invalid port range "{text}"', loc)
    return list(range(low, high + 1))


def expand_short(value: Any, where: str, loc: Loc | None, warn: Warn) -> list[LMap]:
    """One short-syntax entry as long-syntax mappings (one per port)."""
    text = as_str(value, where, loc).strip()
    m = _SHORT.match(text)
    if m is None:
        raise StackError(
            f'{where}: invalid port "{text[:60]}" (expected [IP:][PUBLISHED:]TARGET[/PROTOCOL], '
            "each port a number or a range such as 8000-8010)",
            loc,
        )
    if m.group("ip"):
        warn(
            located(
                loc,
                f"{where}: the host address {m.group('ip')} is not honoured (tasks publish on their node)",
            )
        )
    targets = _range(m.group("target"), where, loc)
    published = _range(m.group("published"), where, loc) if m.group("published") else [0] * len(targets)
    if len(published) != len(targets):
        raise StackError(
            f'{where}: "{text}": the published range and the target range must be as long as each other', loc
        )
    out = []
    for target, pub in zip(targets, published, strict=True):
        port = LMap(loc)
        port.put("target", target, loc)
        port.put("published", pub, loc)
        port.put("protocol", (m.group("protocol") or "tcp").lower(), loc)
        port.put("mode", "ingress", loc)
        out.append(port)
    return out


def normalize(value: Any, where: str, loc: Loc | None, warn: Warn) -> LList:
    """The ports as a list of long-syntax mappings."""
    return long_forms(value, where, loc, lambda item, at, item_loc: expand_short(item, at, item_loc, warn))


def key(port: LMap) -> tuple[Any, ...]:
    """What makes two entries the same port when files are merged."""
    return (port.get("published"), port.get("target"), port.get("protocol", "tcp"), port.get("mode"))


def to_configs(ports: LList, where: str, warn: Warn) -> list[pb.PortConfig]:
    out = []
    for i, port in enumerate(ports):
        item_where, loc = f"{where}[{i}]", ports.at(i)
        if not isinstance(port, LMap):
            raise fail(item_where, "a port", port, loc)
        for extra in sorted(set(port) - _LONG_KEYS):
            warn(located(loc, f"{item_where}: {extra} is not a port setting; ignored"))
        if "host_ip" in port:
            warn(located(loc, f"{item_where}: host_ip is not honoured (tasks publish on their node)"))
        for unsupported in ("name", "app_protocol"):
            if unsupported in port:
                warn(located(loc, f"{item_where}: {unsupported} is not supported; ignored"))
        if "target" not in port:
            raise StackError(f"{item_where}: a target port is required", loc)
        target = as_int(port["target"], f"{item_where}.target", port.at("target"))
        published_value = port.get("published")
        published = 0
        if published_value is not None and published_value != "":
            text = str(published_value)
            if "-" in text:
                raise StackError(
                    f'{item_where}.published: a range ("{text}") needs the short syntax, one port per target',
                    port.at("published"),
                )
            published = as_int(published_value, f"{item_where}.published", port.at("published"))
        protocol = as_str(port.get("protocol", "tcp"), f"{item_where}.protocol", port.at("protocol")).lower()
        mode = as_str(port.get("mode", "ingress"), f"{item_where}.mode", port.at("mode"))
        if published < 0 or target < 0:
            raise StackError(f"{item_where}: ports must be positive", loc)
        out.append(
            pb.PortConfig(target_port=target, published_port=published, protocol=protocol, publish_mode=mode)
        )
    return out
