"""Placement constraints: ``node.labels.zone==b``, ``node.role!=manager``.

Parsed once per service version into ``Constraint`` values; matching a node is
then a dictionary lookup and a comparison. The grammar is Swarm's: a field,
``==`` or ``!=``, a value; several constraints must all hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shoal.protos import objects_pb2 as pb
from shoal.rules.errors import InvalidRequest

FIELDS = (
    "node.id",
    "node.hostname",
    "node.role",
    "node.platform.os",
    "node.platform.arch",
    "node.labels.KEY",
)
_EXPR = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(==|!=)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Constraint:
    field: str
    equal: bool
    value: str

    def matches(self, node: pb.Node) -> bool:
        actual = node_field(node, self.field)
        # Swarm compares values case-insensitively except for labels.
        if self.field.startswith("node.labels."):
            same = actual == self.value
        else:
            same = actual is not None and actual.lower() == self.value.lower()
        return same if self.equal else not same


def parse_constraint(expr: str) -> Constraint:
    m = _EXPR.match(expr)
    if m is None:
        raise InvalidRequest(
            f'constraint "{expr}": expected FIELD==VALUE or FIELD!=VALUE (fields: {", ".join(FIELDS)})'
        )
    field, op, value = m.groups()
    lowered = field.lower()
    if lowered.startswith("node.labels."):
        field = "node.labels." + field[len("node.labels.") :]
        if field == "node.labels.":
            raise InvalidRequest(f'constraint "{expr}": node.labels needs a KEY (node.labels.KEY)')
    elif lowered in FIELDS:
        field = lowered
    else:
        raise InvalidRequest(f'constraint "{expr}": unknown field "{field}" (allowed: {", ".join(FIELDS)})')
    if not value:
        raise InvalidRequest(f'constraint "{expr}": missing value after {op}')
    return Constraint(field, op == "==", value)


def parse_constraints(exprs: list[str]) -> list[Constraint]:
    return [parse_constraint(e) for e in exprs]


def node_field(node: pb.Node, field: str) -> str | None:
    if field == "node.id":
        return node.meta.id
    if field == "node.hostname":
        return node.description.hostname
    if field == "node.role":
        return "manager" if node.role == pb.NODE_ROLE_MANAGER else "worker"
    if field == "node.platform.os":
        return node.description.platform.os
    if field == "node.platform.arch":
        return node.description.platform.arch
    if field.startswith("node.labels."):
        # Only the cluster's record of the labels counts: taken from the
        # agent when it first joined, changed since only by `node update`.
        # A re-registering agent cannot attract tasks by claiming labels.
        return node.spec.labels.get(field[len("node.labels.") :])
    return None


def node_label(node: pb.Node, key: str) -> str | None:
    return node_field(node, "node.labels." + key)
