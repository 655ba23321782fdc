"""The Engine API's ``ServiceSpec`` read into shoal's spec, with a warning
for every field shoal cannot honour.

Pure: a decoded JSON body in, ``(pb.ServiceSpec, warnings)`` out. Every key
is read through a ``Fields`` reader that takes the keys it knows; whatever
is left holding a value (not null, false, 0, "" or empty) becomes a warning
naming the field (and the docker CLI flag that sets it), so nothing a client
asked for is dropped silently. Fields whose absence would make a task do
something else than asked (a plugin runtime, secrets) are refused with 400
instead. A value of the wrong type is refused naming the field; the
ControlAPI then checks the spec itself (``validate``), as for every client.

A service's networks are read as the client names them (an ID, a name or
an ID prefix; the handler turns each into its network's name through the
ControlAPI). What an update sends is then compared with what is stored
(``updates``).

Swarm's conventions for absent values are kept: a restart policy without a
delay has the default delay, an update config without a monitor the
default monitor (the engine reads 0 as "default" for both).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from shoal import specs
from shoal.defaults import SERVICE
from shoal.manager.dockerapi import words
from shoal.manager.dockerapi.fields import Fields, refuse
from shoal.manager.dockerapi.wire import is_empty
from shoal.names import stack_short_name
from shoal.protos import objects_pb2 as pb

# Why a field is ignored, where a reason helps (else a generic sentence), and
# the docker CLI flag that sets it, so a CLI user recognises it.
_WHY = {
    "TaskTemplate.ContainerSpec.Hostname": ("--hostname", "tasks keep their node's hostname"),
    "TaskTemplate.ContainerSpec.Groups": ("--group", "tasks run with the runtime's groups"),
    "TaskTemplate.ContainerSpec.Init": ("--init", "no init process is added"),
    "TaskTemplate.ContainerSpec.TTY": ("--tty", "tasks get no terminal"),
    "TaskTemplate.ContainerSpec.OpenStdin": ("", "tasks get no standard input"),
    "TaskTemplate.ContainerSpec.ReadOnly": ("--read-only", "the root filesystem stays writable"),
    "TaskTemplate.ContainerSpec.Hosts": ("--host", "no /etc/hosts entries are added"),
    "TaskTemplate.ContainerSpec.DNSConfig": ("--dns", "tasks use their node's resolver"),
    "TaskTemplate.ContainerSpec.Privileges": ("--credential-spec", "no credential spec or SELinux label"),
    "TaskTemplate.ContainerSpec.Sysctls": ("--sysctl", "no sysctls are set"),
    "TaskTemplate.ContainerSpec.CapabilityAdd": ("--cap-add", "capabilities are the runtime's defaults"),
    "TaskTemplate.ContainerSpec.CapabilityDrop": ("--cap-drop", "capabilities are the runtime's defaults"),
    "TaskTemplate.ContainerSpec.Ulimits": ("--ulimit", "limits are the runtime's defaults"),
    "TaskTemplate.ContainerSpec.Isolation": ("--isolation", "isolation is the runtime's default"),
    "TaskTemplate.Resources.Limits.Pids": (
        "--limit-pids",
        "shoal does not limit a task's number of processes",
    ),
    "TaskTemplate.Resources.Reservations.GenericResources": (
        "--generic-resource",
        "shoal schedules by CPU and memory only",
    ),
    "TaskTemplate.Placement.Platforms": ("", "shoal places tasks by constraints only"),
    "TaskTemplate.Networks.DriverOpts": ("--network driver-opt=", "shoal networks have no driver options"),
    "Networks.DriverOpts": ("--network driver-opt=", "shoal networks have no driver options"),
    "TaskTemplate.LogDriver": ("--log-driver", "task output stays with the runtime"),
    "EndpointSpec.Mode": (
        "--endpoint-mode dnsrr",
        "the service's name resolves to its virtual address; tasks.NAME resolves to the addresses "
        "of its tasks (DNS round robin)",
    ),
}


# What a warning lists of a network's aliases, at most.
_MAX_NAMED = 8
_MAX_WORD = 64


def _warning(path: str) -> str:
    flag, why = _WHY.get(path, ("", "shoal does not support it"))
    named = f"{path} ({flag})" if flag else path
    return f"ignored {named}: {why}"


def service_spec(body: Any) -> tuple[pb.ServiceSpec, list[str]]:
    """The spec a ServiceSpec body asks for, and what of it shoal ignores."""
    ignored: list[str] = []
    top = Fields(body, "", ignored)
    spec = pb.ServiceSpec()
    spec.name = top.text("Name") or ""
    spec.labels.update(top.text_map("Labels"))
    _mode(top.child("Mode"), spec)
    template = top.child("TaskTemplate")
    if template is None:
        raise refuse("TaskTemplate", "required (with a ContainerSpec naming the image)")
    aliases: list[str] = []
    # The top-level Networks is the deprecated place for the same thing.
    for attachment in [*template.children("Networks"), *top.children("Networks")]:
        _network(attachment, spec, aliases)
    _task(template, spec.task, spec.mode in words.JOB_MODES)
    for key, target in (("UpdateConfig", spec.update), ("RollbackConfig", spec.rollback)):
        cfg = top.child(key)
        if cfg is not None:
            _update_config(cfg, target)
    endpoint = top.child("EndpointSpec")
    if endpoint is not None:
        _endpoint(endpoint, spec)
    top.finish()
    notes = [_aliases_warning(aliases)] if aliases else []
    return spec, notes + [_warning(path) for path in ignored]


def _network(fields: Fields, spec: pb.ServiceSpec, aliases: list[str]) -> None:
    """A NetworkAttachmentConfig: its Target (a network's name or ID, as
    given: the handler resolves it) joins the spec's networks. shoal
    resolves a service by its name, and a stack's service by its short
    name too (the alias ``docker stack deploy`` gives it); other aliases
    are added to ``aliases``, for a warning."""
    target = fields.text("Target") or ""
    if not target:
        raise refuse(f"{fields.path}.Target", "required (a network's name or ID)")
    spec.networks.append(target)
    honoured = {spec.name, stack_short_name(spec.name, spec.labels)}
    aliases += [a for a in fields.texts("Aliases") if a not in honoured and a not in aliases]
    fields.finish()


def _aliases_warning(aliases: list[str]) -> str:
    named = ", ".join(a[:_MAX_WORD] for a in aliases[:_MAX_NAMED])
    more = f" and {len(aliases) - _MAX_NAMED} more" if len(aliases) > _MAX_NAMED else ""
    return (
        f"ignored the network aliases {named}{more} (--network alias=): a service is resolved by its "
        "name (in a stack, by its short name too)"
    )


def _mode(fields: Fields | None, spec: pb.ServiceSpec) -> None:
    if fields is None:
        return
    given = [(key, fields.child(key)) for key in words.MODES_BY_KEY]
    chosen = [(key, f) for key, f in given if f is not None]
    fields.finish()
    if len(chosen) > 1:
        raise refuse("Mode", "give exactly one of " + ", ".join(words.MODES_BY_KEY))
    if not chosen:
        return
    key, mode = chosen[0]
    spec.mode = words.MODES_BY_KEY[key]
    if key == "Replicated":
        replicas = mode.integer("Replicas")
        if replicas is not None:
            spec.replicas = replicas
    elif key == "ReplicatedJob":
        total = mode.integer("TotalCompletions")
        if total is not None:
            spec.replicas = total
        spec.max_concurrent = mode.integer("MaxConcurrent") or 0
    mode.finish()


def _task(fields: Fields, task: pb.TaskSpec, job: bool) -> None:
    for key in ("PluginSpec", "NetworkAttachmentSpec"):
        if not is_empty(fields.raw(key)):
            raise refuse(f"TaskTemplate.{key}", "shoal runs containers and processes only")
    runtime = fields.text("Runtime") or ""
    if runtime not in ("", "container"):
        raise refuse("TaskTemplate.Runtime", f'"{runtime[:40]}": shoal runs containers only')
    container = fields.child("ContainerSpec")
    if container is None:
        raise refuse("TaskTemplate.ContainerSpec", "required (it names the image)")
    _container(container, task.container)
    resources = fields.child("Resources")
    if resources is not None:
        for key in ("Limits", "Reservations"):
            part = resources.child(key)
            if part is None:
                continue
            cpus, memory = part.integer("NanoCPUs") or 0, part.integer("MemoryBytes") or 0
            # Only what has a value: an empty message is "set" in protobuf,
            # and the ControlAPI compares templates byte for byte.
            if cpus or memory:
                target = getattr(task.resources, key.lower())
                target.nano_cpus, target.memory_bytes = cpus, memory
            part.finish()
        resources.finish()
    restart = fields.child("RestartPolicy")
    if restart is not None:
        _restart(restart, task, job)
    placement = fields.child("Placement")
    if placement is not None:
        _placement(placement, task)
    task.force_update = fields.integer("ForceUpdate") or 0
    fields.finish()


def _container(fields: Fields, c: pb.ContainerSpec) -> None:
    c.image = fields.text("Image") or ""
    c.labels.update(fields.text_map("Labels"))
    c.command.extend(fields.texts("Command"))
    c.args.extend(fields.texts("Args"))
    c.env.extend(fields.texts("Env"))
    c.workdir = fields.text("Dir") or ""
    c.stop_signal = fields.text("StopSignal") or ""
    grace = fields.integer("StopGracePeriod")
    if grace is not None:
        c.stop_grace_period = grace
    health = fields.child("Healthcheck")
    if health is not None:
        _healthcheck(health, c.healthcheck)
    for m in fields.children("Mounts"):
        _mount(m, c.mounts.add())
    c.user = fields.text("User") or ""
    for kind, refs in (("Secret", c.secrets), ("Config", c.configs)):
        for ref in fields.children(f"{kind}s"):
            _file_ref(ref, kind, refs.add())
    isolation = fields.text("Isolation") or ""
    if isolation not in ("", "default"):
        fields.ignored.append("TaskTemplate.ContainerSpec.Isolation")
    fields.finish()


def _healthcheck(fields: Fields, hc: pb.HealthCheck) -> None:
    test = fields.texts("Test")
    values = {
        "interval": fields.integer("Interval") or 0,
        "timeout": fields.integer("Timeout") or 0,
        "start_period": fields.integer("StartPeriod") or 0,
        "retries": fields.integer("Retries") or 0,
    }
    if values["retries"] > 2**32 - 1:
        raise refuse("TaskTemplate.ContainerSpec.Healthcheck.Retries", f"too large: {values['retries']}")
    fields.finish()
    if test:
        hc.test.extend(test)
    for name, value in values.items():
        if value:
            setattr(hc, name, value)


# What the docker CLI sends for a --secret/--config without options: owner
# root, mode 0444. shoal's references leave those unset for the runtime's
# default, which is the same in a container (root, 0444); on the process
# runtime, where tasks run as the agent's user, it is that user and 0400 for
# secrets. Read as unset, so that the docker CLI's defaults mean shoal's.
_DEFAULT_OWNER = "0"
_DEFAULT_MODE = 0o444


def _file_ref(fields: Fields, kind: str, ref: pb.FileReference) -> None:
    """A SecretReference or ConfigReference: the object by name (the
    ControlAPI resolves names; an ID alone is resolved by the handler)."""
    ref.name = fields.text(f"{kind}Name") or ""
    ref.id = fields.text(f"{kind}ID") or ""
    if not ref.name and not ref.id:
        raise refuse(fields.path, f"{kind}Name or {kind}ID is required")
    runtime = fields.raw("Runtime")
    file = fields.child("File")
    if file is None:
        what = "a credential spec" if runtime is not None else "no File"
        raise refuse(fields.path, f"{what}: shoal gives {kind.lower()}s to tasks as files only")
    target = file.text("Name") or ""
    ref.target = "" if target == ref.name else target
    for attr, key in (("uid", "UID"), ("gid", "GID")):
        owner = file.text(key) or ""
        setattr(ref, attr, "" if owner == _DEFAULT_OWNER else owner)
    mode = file.integer("Mode")
    if mode is not None and mode != _DEFAULT_MODE:
        if mode > 0o7777:
            raise refuse(f"{file.path}.Mode", f"expected permission bits (at most 0o7777), got {mode}")
        ref.mode = mode
    file.finish()
    fields.finish()


def _mount(fields: Fields, m: pb.Mount) -> None:
    m.type = fields.text("Type") or ""
    m.source = fields.text("Source") or ""
    m.target = fields.text("Target") or ""
    m.readonly = fields.flag("ReadOnly")
    tmpfs = fields.child("TmpfsOptions")
    if tmpfs is not None:
        m.tmpfs_size = tmpfs.integer("SizeBytes") or 0
        tmpfs.finish()
    fields.finish()


def _restart(fields: Fields, task: pb.TaskSpec, job: bool) -> None:
    policy = specs.default_restart_policy()
    if job:
        policy.condition = pb.RESTART_CONDITION_ON_FAILURE
    condition = fields.text("Condition")
    if condition:
        if condition not in words.CONDITIONS_BY_WORD:
            raise refuse(
                "TaskTemplate.RestartPolicy.Condition", f'"{condition[:40]}": must be none, on-failure or any'
            )
        policy.condition = words.CONDITIONS_BY_WORD[condition]
    delay = fields.integer("Delay")
    if delay is not None:
        policy.delay = delay
    policy.max_attempts = fields.integer("MaxAttempts") or 0
    policy.window = fields.integer("Window") or 0
    fields.finish()
    task.restart.CopyFrom(policy)


def _placement(fields: Fields, task: pb.TaskSpec) -> None:
    constraints = fields.texts("Constraints")
    spreads = []
    for pref in fields.children("Preferences"):
        spread = pref.child("Spread")
        if spread is not None:
            spreads.append(spread.text("SpreadDescriptor") or "")
            spread.finish()
        pref.finish()
    most = fields.integer("MaxReplicas") or 0
    fields.finish()
    if constraints:
        task.placement.constraints.extend(constraints)
    for descriptor in spreads:
        task.placement.preferences.add(spread=descriptor)
    if most:
        task.placement.max_replicas_per_node = most


def _update_config(fields: Fields, cfg: pb.UpdateConfig) -> None:
    cfg.CopyFrom(specs.default_update_config())
    cfg.parallelism = fields.integer("Parallelism") or 0
    cfg.delay = fields.integer("Delay") or 0
    # 0 is the engine's "default" for the monitor window.
    cfg.monitor = fields.integer("Monitor") or SERVICE.update_monitor
    action = fields.text("FailureAction")
    if action:
        if action not in words.FAILURE_ACTIONS_BY_WORD:
            raise refuse(
                f"{fields.path}.FailureAction", f'"{action[:40]}": must be pause, continue or rollback'
            )
        cfg.failure_action = words.FAILURE_ACTIONS_BY_WORD[action]
    ratio = fields.number("MaxFailureRatio")
    if ratio is not None:
        cfg.max_failure_ratio = ratio
    order = fields.text("Order")
    if order:
        if order not in words.ORDERS_BY_WORD:
            raise refuse(f"{fields.path}.Order", f'"{order[:40]}": must be stop-first or start-first')
        cfg.order = words.ORDERS_BY_WORD[order]
    fields.finish()


def _endpoint(fields: Fields, spec: pb.ServiceSpec) -> None:
    mode = fields.text("Mode") or ""
    if mode == "dnsrr":
        fields.ignored.append("EndpointSpec.Mode")
    elif mode not in ("", "vip"):
        raise refuse("EndpointSpec.Mode", f'"{mode[:40]}": must be vip or dnsrr')
    for p in fields.children("Ports"):
        port = spec.ports.add()
        port.protocol = p.text("Protocol") or ""
        target = p.integer("TargetPort") or 0
        published = p.integer("PublishedPort") or 0
        if target > 65535 or published > 65535:
            raise refuse(p.path, "ports must be 1-65535")
        port.target_port = target
        port.published_port = published
        port.publish_mode = p.text("PublishMode") or ""
        p.finish()
    fields.finish()


def registry_auth(header: str) -> str:
    """X-Registry-Auth (base64url of JSON, as the docker CLI encodes it) in
    the standard base64 the ControlAPI takes; "" for none. Anything that is
    not base64 of JSON goes through unchanged, for the ControlAPI to refuse."""
    header = header.strip()
    if not header:
        return ""
    try:
        raw = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        decoded = json.loads(raw)
    except (binascii.Error, ValueError):
        return header
    if not isinstance(decoded, dict) or is_empty(decoded):
        # The docker CLI sends "{}" (encoded) when it has no credentials.
        return ""
    return base64.b64encode(raw).decode()
