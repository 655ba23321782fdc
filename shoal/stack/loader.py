"""Compose files in, a checked stack out: ``load_stack``.

    files --yamlsafe--> located trees --interpolate (env, .env)--> --normalize-->
          --merge (in order)--> one file --objects, convert--> ServiceSpecs
          --shoal.rules.validate--> Stack (or StackError: nothing is sent)

The top level may hold ``version`` and ``name`` (read, not needed),
``services``, ``secrets``, ``configs``, ``volumes`` (named volumes),
``networks`` (discovery scopes: ``shoal.stack.networks``) and ``x-``
extensions (anchors to reuse). Anything else is a warning. Each spec passes the manager's own
checks (``shoal.rules.validate``, after Swarm's defaults) before anything is
sent, and two services of the stack may not claim one published port in a
way the manager would refuse, so a stack that cannot deploy whole deploys
nothing. This package only reads files: it talks to no manager.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal import specs
from shoal.protos import objects_pb2 as pb
from shoal.rules import validate
from shoal.rules.errors import InvalidRequest
from shoal.stack import normalize
from shoal.stack.convert import Context, service_spec
from shoal.stack.dotenv import dotenv_beside
from shoal.stack.interpolate import interpolate
from shoal.stack.located import LMap, StackError, located
from shoal.stack.merge import merge_files
from shoal.stack.networks import StackNetwork, read_networks
from shoal.stack.objects import StackObject, read_objects
from shoal.stack.values import as_map
from shoal.stack.yamlsafe import load_file

TOP_LEVEL = {"version", "name", "services", "secrets", "configs", "volumes", "networks"}
MAX_FILES = 32


@dataclass
class Stack:
    name: str
    services: list[pb.ServiceSpec] = field(default_factory=list)
    secrets: list[StackObject] = field(default_factory=list)
    configs: list[StackObject] = field(default_factory=list)
    # The networks its services are on (the stack creates those not external).
    networks: list[StackNetwork] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _read(path: str, env: Mapping[str, str], warn: Any) -> LMap:
    doc = load_file(path)
    if doc is None:
        raise StackError(f"{path}: empty file: a Compose file needs a services mapping")
    if not isinstance(doc, LMap):
        raise StackError(
            "not a Compose file: expected a mapping with services at the top", getattr(doc, "loc", None)
        )
    out = LMap(doc.loc)
    for key, value in doc.items():
        at = doc.at(key)
        if key.startswith("x-"):
            out.put(key, value, at)
            continue
        if key not in TOP_LEVEL:
            warn(located(at, f"{key} is not a top-level Compose key; ignored"))
            continue
        value = interpolate(value, env, key, warn, at)
        if key == "services":
            services = as_map(value, "services", at) if value is not None else LMap(at)
            normalized = LMap(services.loc)
            for name, svc in services.items():
                normalized.put(
                    name,
                    normalize.service(svc, f"service {name}", services.at(name), warn),
                    services.at(name),
                )
            value = normalized
        out.put(key, value, at)
    return out


def _used(services: LMap, key: str) -> set[str]:
    return {
        ref["source"] for svc in services.values() for ref in (svc.get(key) or []) if isinstance(ref, LMap)
    }


def load_stack(files: list[str], stack: str, environ: Mapping[str, str]) -> Stack:
    """Read, merge and convert the files (in order) as stack `stack`;
    StackError (with file and line where there is one) for anything that
    cannot be deployed; warnings for what is ignored."""
    if not files:
        raise StackError("no Compose file given (-c FILE)")
    if len(files) > MAX_FILES:
        raise StackError(f"at most {MAX_FILES} Compose files, got {len(files)}")
    try:
        validate.validate_name(stack)
    except InvalidRequest as err:
        raise StackError(f"stack {err}") from None
    result = Stack(stack)
    warnings: list[str] = []

    def warn(message: str) -> None:
        if message not in warnings:
            warnings.append(message)

    # The environment wins over .env, as in Compose.
    env = {**dotenv_beside(files[0]), **environ}
    merged: LMap | None = None
    for path in files:
        doc = _read(path, env, warn)
        merged = doc if merged is None else merge_files(merged, doc)
    assert merged is not None
    services = merged.get("services")
    if not isinstance(services, LMap) or not services:
        raise StackError("no services: a Compose file needs a top-level services mapping with at least one")
    networks = read_networks(merged.get("networks"), stack, warn, merged.at("networks"))
    volumes = merged.get("volumes")
    if isinstance(volumes, LMap):
        for name, spec in volumes.items():
            if isinstance(spec, LMap):
                for key in spec:
                    if key not in ("name", "external") and not key.startswith("x-"):
                        warn(
                            located(
                                spec.at(key), f"volumes.{name}.{key} is ignored (the engine's local driver)"
                            )
                        )
    project_dir = Path.cwd() if files[0] == "-" else Path(files[0]).resolve().parent
    secrets = read_objects(
        "secret", merged.get("secrets"), _used(services, "secrets"), stack, project_dir, env, warn
    )
    configs = read_objects(
        "config", merged.get("configs"), _used(services, "configs"), stack, project_dir, env, warn
    )
    ctx = Context(
        stack,
        project_dir,
        env,
        secrets,
        configs,
        volumes if isinstance(volumes, LMap) else None,
        warn,
        networks,
    )
    for name, svc in services.items():
        spec = service_spec(name, svc, ctx, services.at(name))
        _check(spec, name, services.at(name))
        result.services.append(spec)
    _check_ports(result.services)
    used = {name for spec in result.services for name in spec.networks}
    result.networks = [n for n in networks.values() if n.name in used]
    result.secrets = list(secrets.values())
    result.configs = list(configs.values())
    result.warnings = warnings
    return result


def _check(spec: pb.ServiceSpec, name: str, loc: Any) -> None:
    """The manager's own checks, on a copy with Swarm's defaults."""
    checked = pb.ServiceSpec()
    checked.CopyFrom(spec)
    specs.apply_defaults(checked)
    try:
        validate.validate_service_spec(checked)
    except InvalidRequest as err:
        raise StackError(f"service {name}: {err}", loc) from None


def _check_ports(services: list[pb.ServiceSpec]) -> None:
    """A published port is one service's, unless all that publish it use
    host mode (the scheduler keeps them on different nodes)."""
    claims: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for spec in services:
        for port in spec.ports:
            if port.published_port:
                key = (port.protocol or "tcp", port.published_port)
                claims.setdefault(key, []).append((spec.name, port.publish_mode or "ingress"))
    for (protocol, number), users in claims.items():
        names = sorted({name for name, _ in users})
        if len(names) > 1 and any(mode != "host" for _, mode in users):
            raise StackError(
                f"port {number}/{protocol} is published by more than one service: {', '.join(names)}"
            )
