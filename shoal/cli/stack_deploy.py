"""``shoal stack deploy``: a stack's files made true in the cluster, or nothing.

1. **load** the files (``shoal.stack``: merged, interpolated, converted and
   checked with the manager's own rules); print its warnings;
2. **plan**: the stack's services, secrets and configs as they are now
   (labelled ``com.docker.stack.namespace=STACK``), and what changes;
3. **check** everything with the manager before changing anything: each
   service create or update is sent with ``validate_only`` (spec, name,
   ports, secret and config references, the version read), the stack's
   existing secrets are asked whether they hold the same bytes (they are
   immutable), its external ones must exist;
4. **apply**: create secrets and configs, create new services, update the
   services whose stored spec would change (the others keep their tasks),
   and with ``--prune`` remove what the files no longer hold;
5. **follow** every created or updated service with ``service create``'s
   progress (``progress.follow``) unless ``-d``; exit 1 naming the services
   that did not converge (an update that paused or rolled back, a task that
   fits no node, with the reason). Jobs count once they completed.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import click

from shoal.cli.client import Client, CLIError
from shoal.cli.progress import follow
from shoal.ids import new_id
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb
from shoal.stack import NAMESPACE_LABEL, Stack, StackError, StackObject, load_stack
from shoal.stack.networks import StackNetwork


def in_stack(labels: Any, stack: str) -> bool:
    return bool(labels.get(NAMESPACE_LABEL) == stack)


@dataclass
class StackNow:
    """What of a stack the cluster holds: its services, secrets, configs."""

    services: dict[str, pb.Service] = field(default_factory=dict)
    secrets: dict[str, pb.Secret] = field(default_factory=dict)
    configs: dict[str, pb.Config] = field(default_factory=dict)
    # Every secret and config by name (a stack may use external ones).
    all_secrets: dict[str, pb.Secret] = field(default_factory=dict)
    all_configs: dict[str, pb.Config] = field(default_factory=dict)
    # Networks: the stack's (by its label), and every one by name.
    networks: dict[str, pb.Network] = field(default_factory=dict)
    all_networks: dict[str, pb.Network] = field(default_factory=dict)


def stack_now(client: Client, stack: str) -> StackNow:
    now = StackNow()
    for summary in client.call("ListServices", cpb.ListServicesRequest(), retry=True).services:
        if in_stack(summary.service.spec.labels, stack):
            now.services[summary.service.spec.name] = summary.service
    for secret in client.call("ListSecrets", cpb.ListSecretsRequest(), retry=True).secrets:
        now.all_secrets[secret.spec.name] = secret
        if in_stack(secret.spec.labels, stack):
            now.secrets[secret.spec.name] = secret
    for config in client.call("ListConfigs", cpb.ListConfigsRequest(), retry=True).configs:
        now.all_configs[config.spec.name] = config
        if in_stack(config.spec.labels, stack):
            now.configs[config.spec.name] = config
    for network in client.call("ListNetworks", cpb.ListNetworksRequest(), retry=True).networks:
        now.all_networks[network.spec.name] = network
        if in_stack(network.spec.labels, stack):
            now.networks[network.spec.name] = network
    return now


@dataclass
class Plan:
    create_networks: list[StackNetwork] = field(default_factory=list)
    prune_networks: list[str] = field(default_factory=list)
    create_files: list[StackObject] = field(default_factory=list)
    create: list[pb.ServiceSpec] = field(default_factory=list)
    update: list[tuple[pb.Service, pb.ServiceSpec]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    prune_services: list[pb.Service] = field(default_factory=list)
    prune_files: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)


def _same(a: pb.ServiceSpec, b: pb.ServiceSpec) -> bool:
    return a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)


def check(client: Client, stack: Stack, now: StackNow, prune: bool) -> Plan:
    """What deploying would change, everything checked by the manager;
    CLIError (nothing changed) for the first problem."""
    plan = Plan()
    planned: dict[str, list[str]] = {"secret": [], "config": [], "network": []}
    for network in stack.networks:
        if network.name in now.all_networks:
            continue
        if network.external:
            raise CLIError(f"network {network.name} (external in the file as {network.key}) does not exist")
        plan.create_networks.append(network)
        planned["network"].append(network.name)
    for obj in stack.secrets + stack.configs:
        existing: Any = (now.all_secrets if obj.kind == "secret" else now.all_configs).get(obj.name)
        if obj.external:
            if existing is None:
                raise CLIError(f"{obj.kind} {obj.name} (external in the file as {obj.key}) does not exist")
            continue
        if existing is None:
            plan.create_files.append(obj)
            planned[obj.kind].append(obj.name)
            continue
        # It exists: the same bytes, or refused (secrets are immutable). The
        # manager answers without changing anything when it holds the name.
        if obj.kind == "secret":
            request: Any = cpb.CreateSecretRequest(
                spec=pb.SecretSpec(name=obj.name, labels=obj.labels, data=obj.data), reuse_same=True
            )
            client.call("CreateSecret", request)
        elif client.call("GetConfig", cpb.ObjectRef(ref=existing.meta.id)).spec.data != obj.data:
            raise CLIError(
                f"config {obj.name} exists with other contents: configs cannot be changed; "
                "give the new one another name (name: in the file)"
            )
    wanted = {spec.name for spec in stack.services}
    for spec in stack.services:
        current = now.services.get(spec.name)
        try:
            if current is None:
                client.call(
                    "CreateService",
                    cpb.CreateServiceRequest(
                        spec=spec,
                        validate_only=True,
                        planned_secrets=planned["secret"],
                        planned_configs=planned["config"],
                        planned_networks=planned["network"],
                    ),
                )
                plan.create.append(spec)
                continue
            checked = client.call(
                "UpdateService",
                cpb.UpdateServiceRequest(
                    ref=current.meta.id,
                    version=current.meta.version,
                    spec=spec,
                    validate_only=True,
                    planned_secrets=planned["secret"],
                    planned_configs=planned["config"],
                    planned_networks=planned["network"],
                ),
            )
        except CLIError as err:
            raise CLIError(f"service {spec.name}: {err}") from None
        if _same(checked.spec, current.spec):
            plan.unchanged.append(spec.name)
        else:
            plan.update.append((current, spec))
    if prune:
        plan.prune_services = [svc for name, svc in sorted(now.services.items()) if name not in wanted]
        keep = {(o.kind, o.name) for o in stack.secrets + stack.configs}
        for kind, held in (("secret", now.secrets), ("config", now.configs)):
            plan.prune_files += [(kind, name) for name in sorted(held) if (kind, name) not in keep]
        used = {n.name for n in stack.networks}
        plan.prune_networks = [name for name in sorted(now.networks) if name not in used]
    return plan


def apply(client: Client, plan: Plan) -> list[pb.Service]:
    """Make the changes; the services created or updated."""
    changed: list[pb.Service] = []
    for network in plan.create_networks:
        click.echo(f"Creating network {network.name}")
        spec_n = pb.NetworkSpec(name=network.name, labels=network.labels, driver="overlay")
        client.call("CreateNetwork", cpb.CreateNetworkRequest(spec=spec_n))
    for obj in plan.create_files:
        click.echo(f"Creating {obj.kind} {obj.name}")
        if obj.kind == "secret":
            spec_s = pb.SecretSpec(name=obj.name, labels=obj.labels, data=obj.data)
            client.call(
                "CreateSecret", cpb.CreateSecretRequest(spec=spec_s, id=new_id(), reuse_same=True), retry=True
            )
        else:
            spec_c = pb.ConfigSpec(name=obj.name, labels=obj.labels, data=obj.data)
            client.call(
                "CreateConfig", cpb.CreateConfigRequest(spec=spec_c, id=new_id(), reuse_same=True), retry=True
            )
    for spec in plan.create:
        click.echo(f"Creating service {spec.name}")
        created = client.call("CreateService", cpb.CreateServiceRequest(spec=spec, id=new_id()), retry=True)
        changed.append(created)
    for current, spec in plan.update:
        click.echo(f"Updating service {spec.name} (id: {current.meta.id})")
        request = cpb.UpdateServiceRequest(ref=current.meta.id, version=current.meta.version, spec=spec)
        changed.append(client.call("UpdateService", request))
    for name in plan.unchanged:
        click.echo(f"Service {name} is up to date")
    for svc in plan.prune_services:
        click.echo(f"Removing service {svc.spec.name}")
        client.call("RemoveService", cpb.ObjectRef(ref=svc.meta.id))
    for kind, name in plan.prune_files:
        try:
            client.call(f"Remove{kind.capitalize()}", cpb.ObjectRef(ref=name))
            click.echo(f"Removing {kind} {name}")
        except CLIError as err:
            click.echo(f"warning: {kind} {name} is kept: {err}", err=True)
    for name in plan.prune_networks:
        try:
            client.call("RemoveNetwork", cpb.ObjectRef(ref=name))
            click.echo(f"Removing network {name}")
        except CLIError as err:
            click.echo(f"warning: network {name} is kept: {err}", err=True)
    return changed


def wait(client: Client, services: list[pb.Service], quiet: bool) -> list[str]:
    """Follow each service until it converges; the names of those that did
    not, each with its reason printed (``NAME: why``) on stderr."""
    failed: list[str] = []
    for svc in services:
        out = io.StringIO() if quiet else sys.stdout
        if not quiet:
            click.echo(f"{svc.spec.name}:")
        # The first line says why; the next would tell how to look at one
        # service, where the stack's own summary follows.
        errors: list[str] = []
        code = follow(client, svc.meta.id, out=out, name=svc.spec.name, errors=errors.append)
        if code == 130:
            sys.exit(130)
        if code:
            reason = errors[0].removeprefix("Error: ") if errors else "did not converge"
            click.echo(f"{svc.spec.name}: {reason}", err=True)
            failed.append(svc.spec.name)
    return failed


def deploy(
    client_factory: Any, files: tuple[str, ...], stack_name: str, prune: bool, detach: bool, quiet: bool
) -> None:
    try:
        stack = load_stack(list(files), stack_name, dict(os.environ))
    except StackError as err:
        raise CLIError(str(err)) from None
    for warning in stack.warnings:
        click.echo(f"warning: {warning}", err=True)
    client = client_factory()
    plan = check(client, stack, stack_now(client, stack_name), prune)
    nothing = not (plan.create_files or plan.create or plan.update or plan.prune_services or plan.prune_files)
    changed = apply(client, plan)
    if nothing:
        click.echo(f"Stack {stack_name} is up to date")
        return
    if detach or not changed:
        return
    failed = wait(client, changed, quiet)
    if failed:
        which = "service" if len(failed) == 1 else "services"
        raise CLIError(f"{len(failed)} {which} of stack {stack_name} did not converge: {', '.join(failed)}")
