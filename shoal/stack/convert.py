"""One Compose service (merged, interpolated, normalised) as a ServiceSpec.

What each key becomes:

    image                 container.image (required: shoal builds nothing)
    command / entrypoint  container.args / container.command (string: split as a shell would)
    environment, env_file container.env (env_file first, environment wins; a bare
                          KEY takes the deploying shell's value)
    labels                container.labels (deploy.labels are the service's)
    working_dir, user     container.workdir, container.user
    stop_grace_period     container.stop_grace_period
    stop_signal           container.stop_signal
    healthcheck           container.healthcheck (disable / test: NONE turn it off)
    ports                 ports (see ``ports``)
    volumes, tmpfs        container.mounts (see ``mounts``)
    secrets, configs      container.secrets / .configs (targets default to the key)
    networks, expose      networks (discovery scopes: STACK_default without any) / expose
                          (see ``networks``)
    deploy                mode, replicas, placement, resources, policies (see ``deploy``)
    restart               the restart policy when deploy.restart_policy is absent

The service is named ``STACK_NAME``; it and its containers carry the label
``com.docker.stack.namespace=STACK``. Every other key is one warning naming
the key and the service (``x-`` keys are extensions and stay silent).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal import specs
from shoal.protos import objects_pb2 as pb
from shoal.stack import deploy, mounts, ports
from shoal.stack.dotenv import read_env_file
from shoal.stack.located import LList, LMap, Loc, StackError, located
from shoal.stack.networks import StackNetwork, expose_ports, service_networks
from shoal.stack.objects import NAMESPACE_LABEL, StackObject
from shoal.stack.values import (
    Reader,
    as_bool,
    as_duration,
    as_int,
    as_map,
    as_str,
    command,
    set_fields,
    str_list,
)

Warn = Callable[[str], None]

HANDLED = {
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "labels",
    "working_dir",
    "user",
    "stop_grace_period",
    "stop_signal",
    "healthcheck",
    "ports",
    "volumes",
    "tmpfs",
    "secrets",
    "configs",
    "deploy",
    "restart",
    "networks",
    "expose",
}
# Why some keys cannot be honoured (the rest: "not supported").
REASONS = {
    "build": "build the image and push it to a registry first",
    "depends_on": "services start in no particular order; make each wait for what it needs",
    "links": "services find each other by name on their networks",
    "external_links": "services find each other by name on their networks",
    "network_mode": "tasks join their node's network",
    "container_name": "a task's container is named SERVICE.SLOT.TASK",
    "hostname": "not supported yet",
    "scale": "use deploy.replicas",
}
_HEALTH: Mapping[str, tuple[str, Reader]] = {
    "interval": ("interval", as_duration),
    "timeout": ("timeout", as_duration),
    "start_period": ("start_period", as_duration),
    "retries": ("retries", as_int),
}
_HEALTH_KEYS = {"test", "disable", *_HEALTH}
_CONTAINER: Mapping[str, tuple[str, Reader]] = {
    "working_dir": ("workdir", as_str),
    "user": ("user", as_str),
    "stop_grace_period": ("stop_grace_period", as_duration),
    "stop_signal": ("stop_signal", as_str),
}


@dataclass(frozen=True)
class Context:
    """What converting a service needs besides the service."""

    stack: str
    project_dir: Path
    env: Mapping[str, str]
    secrets: dict[str, StackObject]
    configs: dict[str, StackObject]
    volumes: LMap | None
    warn: Warn
    networks: dict[str, StackNetwork] = field(default_factory=dict)


def service_spec(name: str, svc: LMap, ctx: Context, loc: Loc | None = None) -> pb.ServiceSpec:
    """The spec of service `name`, written at `loc` (StackError for what
    cannot be deployed)."""
    where = f"service {name}"
    warn = ctx.warn
    for key in svc:
        if key not in HANDLED and not key.startswith("x-"):
            why = REASONS.get(key, "not supported")
            warn(located(svc.at(key), f"{where}: {key} is ignored ({why})"))
    spec = pb.ServiceSpec(name=f"{ctx.stack}_{name}")
    spec.labels[NAMESPACE_LABEL] = ctx.stack
    container = spec.task.container
    if not svc.get("image"):
        raise StackError(f"{where}: image is required (shoal does not build images)", loc or svc.loc)
    container.image = as_str(svc["image"], f"{where}: image", svc.at("image"))
    if svc.get("entrypoint") is not None:
        container.command.extend(command(svc["entrypoint"], f"{where}: entrypoint", svc.at("entrypoint")))
    if svc.get("command") is not None:
        container.args.extend(command(svc["command"], f"{where}: command", svc.at("command")))
    container.env.extend(_environment(svc, where, ctx))
    for key, value in (svc.get("labels") or {}).items():
        container.labels[key] = value or ""
    container.labels[NAMESPACE_LABEL] = ctx.stack
    set_fields(container, svc, f"{where}: ", _CONTAINER)
    if svc.get("healthcheck") is not None:
        _healthcheck(container.healthcheck, svc, where, warn)
    if svc.get("ports") is not None:
        spec.ports.extend(ports.to_configs(svc["ports"], f"{where}: ports", warn))
    if svc.get("volumes") is not None:
        container.mounts.extend(
            mounts.to_mounts(
                svc["volumes"], f"{where}: volumes", ctx.project_dir, ctx.stack, ctx.volumes, warn
            )
        )
    if svc.get("tmpfs") is not None:
        container.mounts.extend(mounts.tmpfs_mounts(svc["tmpfs"], f"{where}: tmpfs", svc.at("tmpfs"), warn))
    _file_refs(container.secrets, svc.get("secrets"), "secret", ctx.secrets, where, svc)
    _file_refs(container.configs, svc.get("configs"), "config", ctx.configs, where, svc)
    if ctx.networks:
        on = service_networks(
            svc.get("networks"), ctx.networks, f"{where}: networks", svc.at("networks"), warn
        )
        spec.networks.extend(n.name for n in on)
    if svc.get("expose") is not None:
        spec.expose.extend(expose_ports(svc["expose"], f"{where}: expose", svc.at("expose")))
    if svc.get("deploy") is not None:
        deploy.apply_deploy(spec, svc["deploy"], f"{where}: deploy", warn)
    _restart(spec, svc, where, warn)
    return spec


def _environment(svc: LMap, where: str, ctx: Context) -> list[str]:
    """env_file entries, then environment (later wins), as KEY=VALUE."""
    values: dict[str, str] = {}
    for i, entry in enumerate(svc.get("env_file") or []):
        path = Path(entry).expanduser()
        path = path if path.is_absolute() else ctx.project_dir / path
        try:
            read = read_env_file(path, allow_bare=True)
        except StackError as err:
            raise StackError(f"{where}: env_file[{i}]: {err}", svc.at("env_file")) from None
        for key, value in read.items():
            _put_env(values, key, value, where, ctx, svc.at("env_file"))
    environment = svc.get("environment")
    if isinstance(environment, LMap):
        for key, value in environment.items():
            _put_env(values, key, value, where, ctx, environment.at(key))
    return [f"{k}={v}" for k, v in values.items()]


def _put_env(values: dict[str, str], key: str, value: str | None, where: str, ctx: Context, loc: Any) -> None:
    if value is not None:
        values[key] = value
    elif key in ctx.env:
        values[key] = ctx.env[key]
    else:
        values.pop(key, None)
        ctx.warn(
            located(loc, f"{where}: environment {key} has no value here (not set when deploying); left out")
        )


def _healthcheck(hc: pb.HealthCheck, svc: LMap, where: str, warn: Warn) -> None:
    h = as_map(svc["healthcheck"], f"{where}: healthcheck", svc.at("healthcheck"))
    name = f"{where}: healthcheck"
    for key in h:
        if key not in _HEALTH_KEYS:
            warn(located(h.at(key), f"{name}.{key} is ignored (not supported)"))
    if h.get("disable") is not None and as_bool(h["disable"], f"{name}.disable", h.at("disable")):
        hc.test.append("NONE")
        return
    test = h.get("test")
    if isinstance(test, str):
        hc.test.extend(["CMD-SHELL", test])
    elif test is not None:
        hc.test.extend(str_list(test, f"{name}.test", h.at("test")))
        if hc.test and hc.test[0] not in ("NONE", "CMD", "CMD-SHELL"):
            raise StackError(f"{name}.test: a list must start with NONE, CMD or CMD-SHELL", h.at("test"))
    set_fields(hc, h, f"{name}.", _HEALTH)


def _file_refs(
    target: Any, refs: Any, kind: str, declared: dict[str, StackObject], where: str, svc: LMap
) -> None:
    if refs is None:
        return
    items: LList = refs
    for i, ref in enumerate(items):
        item_where, loc = f"{where}: {kind}s[{i}]", items.at(i)
        source = as_str(ref["source"], f"{item_where}.source", ref.at("source"))
        obj = declared.get(source)
        if obj is None:
            raise StackError(
                f'{item_where}: {kind} "{source}" is not declared under the top-level {kind}s', loc
            )
        for key in ref:
            if key not in ("source", "target", "uid", "gid", "mode"):
                raise StackError(
                    f"{item_where}: unknown key {key} (source, target, uid, gid, mode)", ref.at(key)
                )
        out = target.add(name=obj.name)
        out.target = as_str(ref.get("target") or source, f"{item_where}.target", ref.at("target"))
        for key in ("uid", "gid"):
            if ref.get(key) is not None:
                setattr(out, key, as_str(ref[key], f"{item_where}.{key}", ref.at(key)))
        mode = ref.get("mode")
        if mode is not None:
            if isinstance(mode, str):
                try:
                    out.mode = int(mode, 8)
                except ValueError:
                    raise StackError(
                        f'{item_where}.mode: expected octal such as 0440, got "{mode}"', loc
                    ) from None
            else:
                out.mode = as_int(mode, f"{item_where}.mode", ref.at("mode"))


def _restart(spec: pb.ServiceSpec, svc: LMap, where: str, warn: Warn) -> None:
    """Compose's ``restart:``, which Docker's stacks honour when the deploy
    section gives no restart policy."""
    restart = svc.get("restart")
    if restart is None:
        return
    if spec.task.HasField("restart"):
        warn(located(svc.at("restart"), f"{where}: restart is ignored (deploy.restart_policy is used)"))
        return
    text = as_str(restart, f"{where}: restart", svc.at("restart"))
    name, _, attempts = text.partition(":")
    policy = spec.task.restart
    policy.CopyFrom(specs.default_restart_policy())
    if name in ("always", "unless-stopped"):
        policy.condition = pb.RESTART_CONDITION_ANY
    elif name == "on-failure":
        policy.condition = pb.RESTART_CONDITION_ON_FAILURE
        if attempts:
            policy.max_attempts = as_int(attempts, f"{where}: restart", svc.at("restart"))
    elif name == "no":
        policy.condition = pb.RESTART_CONDITION_NONE
    else:
        raise StackError(
            f'{where}: restart "{text}": expected no, always, on-failure[:N] or unless-stopped',
            svc.at("restart"),
        )
