"""shoal's networks as the Engine API shows them, and a network create
request read into shoal's ``NetworkSpec``.

Pure: protobuf or decoded JSON in, JSON-ready dicts or a spec out, in the
shapes of the v1.41 swagger (``Network``, ``NetworkCreateRequest``); the
unit tests check them.

A shoal network is a discovery scope that spans the cluster: services on
it resolve each other's names. So every network is ``Scope: swarm``,
``Driver: overlay``, with no subnet, options or attached containers. Two
things have no shoal object behind them:

- ``ingress``, listed as Swarm lists its routing-mesh network (a stable ID
  of its own, ``Ingress: true``): shoal's routing mesh, where published
  ports answer on every node, and the scope of services on no network (their
  virtual address is shown on it). It cannot be created, removed or named
  by a service, as in Swarm.
- what a create asks for that shoal cannot do. What would leave a network
  less isolated or less private than asked (``Internal``, the overlay's
  ``encrypted`` option), or another kind of network (``Ingress``,
  ``ConfigOnly``, ``ConfigFrom``, a local scope), is refused with 400 and
  a message; what only has no meaning here (``Attachable``, IPv6, subnets
  and IPAM settings, other driver options) is named in the engine's
  ``Warning`` field.
"""

from __future__ import annotations

import hashlib
from typing import Any

from shoal.manager.dockerapi import filters
from shoal.manager.dockerapi.fields import Fields, refuse
from shoal.manager.dockerapi.wire import rfc3339
from shoal.names import INGRESS_NETWORK
from shoal.protos import objects_pb2 as pb

Json = dict[str, Any]

INGRESS = INGRESS_NETWORK
SCOPE = "swarm"
DRIVER = "overlay"
# The engine's Created for a time it does not know (Go's zero time).
_UNKNOWN_TIME = "0001-01-01T00:00:00Z"
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
# What a warning lists of a create's driver options, at most.
_MAX_NAMED = 8
_MAX_WORD = 64


def _stable_id(name: str) -> str:
    """A stable 25-character ID (shoal's ID length) for a network with no
    stored object."""
    number = int.from_bytes(hashlib.sha256(f"shoal network {name}".encode()).digest(), "big")
    out = []
    for _ in range(25):
        number, digit = divmod(number, 36)
        out.append(_ALPHABET[digit])
    return "".join(out)


INGRESS_ID = _stable_id(INGRESS)


def _shape(name: str, network_id: str, created: str, labels: dict[str, str], ingress: bool) -> Json:
    return {
        "Name": name,
        "Id": network_id,
        "Created": created,
        "Scope": SCOPE,
        "Driver": DRIVER,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Config": [], "Options": {}},
        "Internal": False,
        "Attachable": False,
        "Ingress": ingress,
        "Containers": {},
        "Options": {},
        "Labels": labels,
    }


def network(n: pb.Network) -> Json:
    return _shape(n.spec.name, n.meta.id, rfc3339(n.meta.created_at), dict(n.spec.labels), False)


def ingress() -> Json:
    return _shape(INGRESS, INGRESS_ID, _UNKNOWN_TIME, {}, True)


def is_ingress(ref: str) -> bool:
    """Whether a reference (name, ID) names the ingress network exactly."""
    return ref in (INGRESS, INGRESS_ID)


# ---------------------------------------------------------------- listing

LIST_FILTERS = ("name", "id", "label", "driver", "scope", "type", "dangling")
_TYPES = ("custom", "builtin")


def listed(wanted: filters.Filters, shown: Json, in_use: bool) -> bool:
    """Whether a network (as shown) passes the filters of GET /networks.

    ``name`` and ``id`` match as the engine's do (the engine reads a regular
    expression; this takes the common part of one: a substring, anchored by
    ``^`` and ``$``); ``dangling=true`` keeps the networks no service uses
    (never the built-in one)."""
    builtin = bool(shown["Ingress"])
    for word in wanted.get("type", ()):
        if word not in _TYPES:
            raise refuse("filters", f"invalid filter 'type'='{word[:40]}': expected custom or builtin")
    dangling = [_truth("dangling", w) for w in wanted.get("dangling", ())]
    return (
        _found(wanted, "name", shown["Name"])
        and _found(wanted, "id", shown["Id"])
        and filters.labels(wanted, "label", shown["Labels"])
        and filters.exact(wanted, "driver", shown["Driver"])
        and filters.exact(wanted, "scope", shown["Scope"])
        and filters.exact(wanted, "type", "builtin" if builtin else "custom")
        and all(d == (not in_use and not builtin) for d in dangling)
    )


def _truth(name: str, word: str) -> bool:
    if word.lower() in ("true", "1"):
        return True
    if word.lower() in ("false", "0"):
        return False
    raise refuse("filters", f"invalid filter '{name}'='{word[:40]}': expected true or false")


def _found(wanted: filters.Filters, name: str, value: str) -> bool:
    return name not in wanted or any(_like(w, value) for w in wanted[name])


def _like(pattern: str, value: str) -> bool:
    start, end = pattern.startswith("^"), pattern.endswith("$") and len(pattern) > 1
    core = pattern[1 if start else 0 : -1 if end else None]
    if start and end:
        return value == core
    if start:
        return value.startswith(core)
    if end:
        return value.endswith(core)
    return core in value


# ---------------------------------------------------------------- create

_WARN = {
    "Attachable": ("--attachable", "shoal runs no standalone containers to attach"),
    "EnableIPv6": ("--ipv6", "shoal networks have no addresses of their own"),
    "IPAM.Driver": ("--ipam-driver", "shoal networks have no addresses of their own"),
    "IPAM.Config": ("--subnet/--ip-range/--gateway", "shoal networks have no subnet"),
    "IPAM.Options": ("--ipam-opt", "shoal networks have no addresses of their own"),
}
_REFUSE = {
    "Internal": (
        "--internal",
        "shoal networks do not cut their services off from the outside (a network is a discovery "
        "scope, not a packet filter)",
    ),
    "Ingress": (
        "--ingress",
        "shoal's routing mesh is built in (the network ingress); create a plain network",
    ),
    "ConfigOnly": ("--config-only", "shoal has no configuration-only networks"),
}
# What the docker CLI asks for unless told --driver: a network on one host.
LOCAL_DRIVER = "bridge"


def create_request(body: Any) -> tuple[pb.NetworkSpec, list[str]]:
    """The spec a NetworkCreateRequest asks for, and what of it shoal ignores.

    The ControlAPI checks the spec itself (name, labels, driver), as for
    ``shoal network create``."""
    ignored: list[str] = []
    top = Fields(body, "", ignored)
    spec = pb.NetworkSpec()
    spec.name = top.text("Name") or ""
    if not spec.name:
        raise refuse("Name", "required")
    spec.driver = top.text("Driver") or ""
    spec.labels.update(top.text_map("Labels"))
    scope = top.text("Scope") or ""
    if scope not in ("", SCOPE):
        raise refuse("Scope (--scope)", f'"{scope[:_MAX_WORD]}": shoal networks span the cluster (swarm)')
    # shoal's network names are unique whatever the client asks.
    top.flag("CheckDuplicate")
    for key, (flag, why) in _REFUSE.items():
        if top.flag(key):
            raise refuse(f"{key} ({flag})", why)
    source = top.child("ConfigFrom")
    if source is not None:
        if source.text("Network"):
            raise refuse("ConfigFrom (--config-from)", "shoal has no configuration-only networks")
        source.finish()
    warnings: list[str] = []
    options = top.text_map("Options")
    if "encrypted" in options:
        raise refuse(
            "Options.encrypted (--opt encrypted)",
            "shoal does not encrypt the traffic between nodes; create the network without it",
        )
    if options:
        named = ", ".join(k[:_MAX_WORD] for k in sorted(options)[:_MAX_NAMED])
        more = f" and {len(options) - _MAX_NAMED} more" if len(options) > _MAX_NAMED else ""
        warnings.append(f"ignored Options (--opt) {named}{more}: shoal networks have no driver options")
    for key in ("Attachable", "EnableIPv6"):
        if top.flag(key):
            warnings.append(_warning(key))
    ipam = top.child("IPAM")
    if ipam is not None:
        if (ipam.text("Driver") or "default") != "default":
            warnings.append(_warning("IPAM.Driver"))
        ipam_config = ipam.children("Config")
        for part in ipam_config:
            part.raw("Subnet")
            part.raw("IPRange")
            part.raw("Gateway")
            part.raw("AuxiliaryAddresses")
            part.finish()
        if ipam_config:
            warnings.append(_warning("IPAM.Config"))
        if ipam.text_map("Options"):
            warnings.append(_warning("IPAM.Options"))
        ipam.finish()
    top.finish()
    if ignored:
        # Keys a client made up are named within bounds (the manager logs them).
        named = ", ".join(p[: 2 * _MAX_WORD] for p in ignored[:_MAX_NAMED])
        more = f" and {len(ignored) - _MAX_NAMED} more" if len(ignored) > _MAX_NAMED else ""
        warnings.append(f"ignored {named}{more}: shoal does not support them")
    return spec, warnings


def _warning(path: str) -> str:
    flag, why = _WARN[path]
    return f"ignored {path} ({flag}): {why}"
