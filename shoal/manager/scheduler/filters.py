"""Why a node cannot take a task: small filters, cheapest first.

Each filter answers ``check(node)`` for one task spec and can ``explain`` how
many nodes it turned away, in words a user reads in ``service ps``. The
pipeline stops at a node's first failing filter and counts it there, so the
pending message reads e.g. ``no suitable node (scheduling constraints not
satisfied on 2 nodes; insufficient memory on 1 node)``.

Filters look at a ``NodeInfo``: the node plus what the scheduler knows is
placed on it (task counts, reservations, host ports), kept current while a
batch is being placed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from shoal.manager.nodes import takes_new_tasks
from shoal.protos import objects_pb2 as pb
from shoal.rules.constraints import Constraint, parse_constraints


@dataclass(frozen=True)
class Claim:
    """What one task holds on its node: a place among its service's tasks,
    its reservations, its host ports. Tasks of one service version hold the
    same, so the scheduler keeps one Claim per version, not a task each."""

    service_id: str
    nano_cpus: int = 0
    memory_bytes: int = 0
    ports: tuple[tuple[str, int], ...] = ()

    @staticmethod
    def of(task: pb.Task, ports: list[tuple[str, int]]) -> Claim:
        res = task.spec.resources.reservations
        return Claim(task.service_id, res.nano_cpus, res.memory_bytes, tuple(ports))


@dataclass
class NodeInfo:
    node: pb.Node
    tasks_by_service: Counter[str] = field(default_factory=Counter)
    total_tasks: int = 0
    reserved_cpus: int = 0
    reserved_memory: int = 0
    host_ports: Counter[tuple[str, int]] = field(default_factory=Counter)
    # takes_new_tasks(node), asked at every pick: kept with the node.
    takes: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.set_node(self.node)

    def set_node(self, node: pb.Node) -> None:
        self.node = node
        self.takes = takes_new_tasks(node)

    @property
    def id(self) -> str:
        return self.node.meta.id

    def add(self, task: pb.Task, ports: list[tuple[str, int]]) -> None:
        self.claim(Claim.of(task, ports))

    def remove(self, task: pb.Task, ports: list[tuple[str, int]]) -> None:
        self.release(Claim.of(task, ports))

    def claim(self, claim: Claim) -> None:
        self.tasks_by_service[claim.service_id] += 1
        self.total_tasks += 1
        self.reserved_cpus += claim.nano_cpus
        self.reserved_memory += claim.memory_bytes
        if claim.ports:
            self.host_ports.update(claim.ports)

    def release(self, claim: Claim) -> None:
        self.tasks_by_service[claim.service_id] -= 1
        if self.tasks_by_service[claim.service_id] <= 0:
            del self.tasks_by_service[claim.service_id]
        self.total_tasks -= 1
        self.reserved_cpus -= claim.nano_cpus
        self.reserved_memory -= claim.memory_bytes
        if claim.ports:
            self.host_ports.subtract(claim.ports)
            for port in claim.ports:
                if self.host_ports[port] <= 0:
                    del self.host_ports[port]


def published_host_ports(ports: list[pb.PortConfig]) -> list[tuple[str, int]]:
    """The (protocol, port) pairs a task of these ports claims on its node:
    its host-mode ports. An ingress port claims none: every node's mesh
    answers on it, and the task listens on a host port its agent chose."""
    return [
        (p.protocol or "tcp", p.published_port)
        for p in ports
        if p.publish_mode == "host" and p.published_port
    ]


def plural(n: int, word: str = "node") -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class Filter:
    name = "filter"

    def enabled(self) -> bool:
        return True

    def check(self, info: NodeInfo) -> bool:
        raise NotImplementedError

    def explain(self, count: int) -> str:
        raise NotImplementedError


class ReadyFilter(Filter):
    name = "ready"

    def check(self, info: NodeInfo) -> bool:
        return info.takes

    def explain(self, count: int) -> str:
        return f"{plural(count)} not available for new tasks"


class CPUFilter(Filter):
    name = "cpu"

    def __init__(self, spec: pb.TaskSpec) -> None:
        self.want = spec.resources.reservations.nano_cpus

    def enabled(self) -> bool:
        return self.want > 0

    def check(self, info: NodeInfo) -> bool:
        cap = info.node.description.resources.nano_cpus
        return cap - info.reserved_cpus >= self.want

    def explain(self, count: int) -> str:
        return f"insufficient cpu on {plural(count)}"


class MemoryFilter(Filter):
    name = "memory"

    def __init__(self, spec: pb.TaskSpec) -> None:
        self.want = spec.resources.reservations.memory_bytes

    def enabled(self) -> bool:
        return self.want > 0

    def check(self, info: NodeInfo) -> bool:
        cap = info.node.description.resources.memory_bytes
        return cap - info.reserved_memory >= self.want

    def explain(self, count: int) -> str:
        return f"insufficient memory on {plural(count)}"


class ConstraintFilter(Filter):
    name = "constraints"

    def __init__(self, constraints: list[Constraint]) -> None:
        self.constraints = constraints

    def enabled(self) -> bool:
        return bool(self.constraints)

    def check(self, info: NodeInfo) -> bool:
        return all(c.matches(info.node) for c in self.constraints)

    def explain(self, count: int) -> str:
        return f"scheduling constraints not satisfied on {plural(count)}"


class HostPortFilter(Filter):
    name = "host-ports"

    def __init__(self, ports: list[tuple[str, int]]) -> None:
        self.ports = ports

    def enabled(self) -> bool:
        return bool(self.ports)

    def check(self, info: NodeInfo) -> bool:
        return not any(info.host_ports.get(p, 0) > 0 for p in self.ports)

    def explain(self, count: int) -> str:
        return f"host-mode port already in use on {plural(count)}"


class MaxReplicasFilter(Filter):
    name = "max-replicas"

    def __init__(self, service_id: str, limit: int) -> None:
        self.service_id = service_id
        self.limit = limit

    def enabled(self) -> bool:
        return self.limit > 0

    def check(self, info: NodeInfo) -> bool:
        return info.tasks_by_service[self.service_id] < self.limit

    def explain(self, count: int) -> str:
        return f"max replicas per node limit ({self.limit}) reached on {plural(count)}"


class Pipeline:
    """The filters for one task spec, in order, counting rejections."""

    def __init__(self, service_id: str, spec: pb.TaskSpec, ports: list[pb.PortConfig]) -> None:
        candidates: list[Filter] = [
            ReadyFilter(),
            ConstraintFilter(parse_constraints(list(spec.placement.constraints))),
            CPUFilter(spec),
            MemoryFilter(spec),
            HostPortFilter(published_host_ports(ports)),
            MaxReplicasFilter(service_id, spec.placement.max_replicas_per_node),
        ]
        self.filters = [f for f in candidates if f.enabled()]
        self.rejections: Counter[str] = Counter()

    def check(self, info: NodeInfo) -> bool:
        for f in self.filters:
            if not f.check(info):
                self.rejections[f.name] += 1
                return False
        return True

    def explain(self) -> str:
        parts = [f.explain(self.rejections[f.name]) for f in self.filters if self.rejections[f.name]]
        if not parts:
            return "no suitable node"
        return f"no suitable node ({'; '.join(parts)})"
