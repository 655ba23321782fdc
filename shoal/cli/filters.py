"""``-f/--filter KEY=VALUE`` on the listings, with docker's keys.

Given several times, values of one key are alternatives (any may match) and
different keys must all match, as in docker; ``label`` filters are the
exception, as in docker: every label given must match. A label filter is
``KEY`` (the label is set) or ``KEY=VALUE``.

    service ls, stack services       id, name, label, mode
    service ps, node ps, stack ps    id, name, node, desired-state
    node ls                          id, name, label, node.label, role, membership
    secret ls, config ls             id, name, label

``id`` is an ID prefix; ``name`` a name prefix for services, nodes, secrets
and configs (as docker's), and a task's name (``web.2``) for tasks; ``node`` a node's ID,
ID prefix or hostname; ``label`` on nodes the labels the agent was started
with, ``node.label`` those ``node update`` manages. Parsing refuses an
unknown key or value naming what is allowed; matching is pure (no calls).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shoal.cli.client import CLIError
from shoal.cli.render import mode_word, task_display_name
from shoal.protos import objects_pb2 as pb

# Each listing's keys; a tuple lists the values allowed (None: any value).
SERVICE_KEYS: dict[str, tuple[str, ...] | None] = {
    "id": None,
    "name": None,
    "label": None,
    "mode": ("replicated", "global", "replicated-job", "global-job"),
}
TASK_KEYS: dict[str, tuple[str, ...] | None] = {
    "id": None,
    "name": None,
    "node": None,
    "desired-state": ("running", "shutdown", "accepted"),
}
FILE_KEYS: dict[str, tuple[str, ...] | None] = {"id": None, "name": None, "label": None}
NODE_KEYS: dict[str, tuple[str, ...] | None] = {
    "id": None,
    "name": None,
    "label": None,
    "node.label": None,
    "role": ("manager", "worker"),
    "membership": ("accepted", "pending"),
}


@dataclass(frozen=True)
class Filters:
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.values)

    def any_of(self, key: str, matches: Iterable[bool]) -> bool:
        """True when key was not given; else whether any of its values
        matched (matches: one result per value, in order)."""
        return key not in self.values or any(matches)

    def get(self, key: str) -> tuple[str, ...]:
        return self.values.get(key, ())


def parse_filters(given: Iterable[str], keys: Mapping[str, tuple[str, ...] | None]) -> Filters:
    values: dict[str, list[str]] = {}
    for item in given:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise CLIError(f'--filter "{item}": expected KEY=VALUE (keys: {", ".join(keys)})')
        if key not in keys:
            raise CLIError(f'--filter "{item}": unknown key "{key}" (keys: {", ".join(keys)})')
        allowed = keys[key]
        if allowed is not None and value not in allowed:
            raise CLIError(f'--filter "{item}": {key} must be one of {", ".join(allowed)}, got "{value}"')
        values.setdefault(key, []).append(value)
    return Filters({k: tuple(v) for k, v in values.items()})


def labels_match(wanted: Iterable[str], labels: Mapping[str, str]) -> bool:
    """Every ``KEY`` or ``KEY=VALUE`` in wanted holds for labels."""
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _named_matches(f: Filters, obj_id: str, name: str, labels: Mapping[str, str]) -> bool:
    """The id, name and label filters every named object takes."""
    return (
        f.any_of("id", (obj_id.startswith(v) for v in f.get("id")))
        and f.any_of("name", (name.startswith(v) for v in f.get("name")))
        and labels_match(f.get("label"), labels)
    )


def service_matches(f: Filters, svc: pb.Service) -> bool:
    spec = svc.spec
    return _named_matches(f, svc.meta.id, spec.name, spec.labels) and f.any_of(
        "mode", (mode_word(spec.mode) == v for v in f.get("mode"))
    )


def file_matches(f: Filters, obj: pb.Secret | pb.Config | pb.Network) -> bool:
    """A secret's, a config's or a network's match."""
    return _named_matches(f, obj.meta.id, obj.spec.name, obj.spec.labels)


_DESIRED = {
    "running": lambda state: state <= pb.TASK_STATE_RUNNING,
    "shutdown": lambda state: state >= pb.TASK_STATE_SHUTDOWN,
    "accepted": lambda state: state == pb.TASK_STATE_ACCEPTED,
}


def _task_name_matches(task: pb.Task, wanted: str) -> bool:
    """``web.2`` matches that slot's tasks, ``web.2.<id prefix>`` one task."""
    name = task_display_name(task)
    return wanted == name or (len(wanted) > len(name) + 1 and f"{name}.{task.meta.id}".startswith(wanted))


def task_matches(f: Filters, task: pb.Task, hostnames: Mapping[str, str]) -> bool:
    node = task.node_id
    return (
        f.any_of("id", (task.meta.id.startswith(v) for v in f.get("id")))
        and f.any_of("name", (_task_name_matches(task, v) for v in f.get("name")))
        and f.any_of(
            "node",
            (bool(node) and (node.startswith(v) or hostnames.get(node) == v) for v in f.get("node")),
        )
        and f.any_of("desired-state", (_DESIRED[v](task.desired_state) for v in f.get("desired-state")))
    )


def node_matches(f: Filters, node: pb.Node) -> bool:
    role = "manager" if node.role == pb.NODE_ROLE_MANAGER else "worker"
    return (
        f.any_of("id", (node.meta.id.startswith(v) for v in f.get("id")))
        and f.any_of("name", (node.description.hostname.startswith(v) for v in f.get("name")))
        and f.any_of("role", (role == v for v in f.get("role")))
        # Every node that joined was accepted: shoal has no pending joins.
        and f.any_of("membership", (v == "accepted" for v in f.get("membership")))
        and labels_match(f.get("label"), node.description.labels)
        and labels_match(f.get("node.label"), node.spec.labels)
    )
