"""The endpoint sets as this node knows them, and the ports they make.

``MeshTable.apply`` takes the manager's ``MeshUpdate``s in order: a full
set (possibly in several messages, applied once the last one arrived)
replaces everything; a diff upserts and removes services and backends.
``take_changes`` then says which published ports changed since it was last
asked, each with its ``PortSet`` (the service's port, the backends that
serve it, and which of them joined or left since the last report), or None
when the port is no longer published.

The cost follows what changed, not the size of the sets (a node of a
cluster with a 10,000-task service gets a diff every 100 ms while it
starts): a backend that comes or goes touches its own entry in each of its
service's ports; only a change of the service itself (its ports) rebuilds
that service's ports. ``take_services`` tells discovery the same: services
to look at whole, and per service the tasks that changed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import NamedTuple

from shoal.protos import dispatcher_pb2 as dpb

PortKey = tuple[str, int]  # (protocol, published port)


class Endpoint(NamedTuple):
    protocol: str
    target_port: int
    host_port: int


class Member(NamedTuple):
    """A backend as the node keeps it: the manager's MeshBackend, without
    the message (a node of a large cluster holds tens of thousands)."""

    task_id: str
    service_id: str
    addr: str
    slot: int
    endpoints: tuple[Endpoint, ...]

    @classmethod
    def of(cls, b: dpb.MeshBackend) -> Member:
        # Service IDs, node addresses and protocols repeat across thousands
        # of backends: one string each.
        return cls(
            b.task_id,
            sys.intern(b.service_id),
            sys.intern(b.addr),
            b.slot,
            tuple(Endpoint(sys.intern(e.protocol), e.target_port, e.host_port) for e in b.endpoints),
        )


@dataclass(frozen=True, order=True)
class Backend:
    """One task behind a published port: where its target is reached."""

    addr: str
    port: int  # the task's host port for the target
    name: str = field(compare=False)  # web.2, for people
    task_id: str = field(compare=False)


@dataclass(eq=False)
class PortSet:
    """A published port of a service and the backends that serve it
    (changed in place as they come and go)."""

    service_id: str
    service_name: str
    protocol: str
    port: int
    target: int
    proxy_protocol: str
    entries: dict[str, Backend] = field(default_factory=dict)  # task ID -> backend
    # What changed since the last report (the Mesh logs it, then clears it).
    joined: list[Backend] = field(default_factory=list)
    left: list[Backend] = field(default_factory=list)
    _sorted: tuple[Backend, ...] | None = None

    @property
    def backends(self) -> tuple[Backend, ...]:
        """Every backend, in a stable order (made when asked)."""
        if self._sorted is None:
            self._sorted = tuple(sorted(self.entries.values()))
        return self._sorted

    def same_port(self, other: PortSet) -> bool:
        return (self.service_id, self.protocol, self.port, self.target, self.proxy_protocol) == (
            other.service_id,
            other.protocol,
            other.port,
            other.target,
            other.proxy_protocol,
        )

    def put(self, task_id: str, backend: Backend | None) -> bool:
        """Set (or, None, remove) one task's entry; whether anything changed."""
        old = self.entries.get(task_id)
        if old is None and backend is None:
            return False
        if old is not None and backend is not None and old == backend and old.name == backend.name:
            return False
        if old is not None:
            del self.entries[task_id]
            self.left.append(old)
        if backend is not None:
            self.entries[task_id] = backend
            self.joined.append(backend)
        self._sorted = None
        return True

    def reported(self) -> None:
        self.joined.clear()
        self.left.clear()


def _entry(service: dpb.MeshService, ps: PortSet, backend: Member) -> Backend | None:
    host_port = next(
        (e.host_port for e in backend.endpoints if e.protocol == ps.protocol and e.target_port == ps.target),
        0,
    )
    if not host_port:
        return None
    return Backend(backend.addr, host_port, f"{service.name}.{backend.slot}", backend.task_id)


class MeshTable:
    def __init__(self) -> None:
        self.services: dict[str, dpb.MeshService] = {}
        self.backends: dict[str, Member] = {}
        self._by_service: dict[str, set[str]] = {}
        self._ports: dict[PortKey, PortSet] = {}
        self._keys: dict[str, list[PortKey]] = {}  # service ID -> its ports
        # Since the last take_changes: services to rebuild, tasks that changed.
        self._whole: set[str] = set()
        self._members: dict[str, set[str]] = {}
        # The same, for discovery (take_services).
        self._named_whole: set[str] = set()
        self._named_members: dict[str, set[str]] = {}
        self._partial: list[dpb.MeshUpdate] = []  # a full set still arriving

    def apply(self, update: dpb.MeshUpdate) -> None:
        if update.full:
            self._partial.append(update)
            if update.more:
                return
            parts, self._partial = self._partial, []
            self._whole.update(self.services)
            self.services.clear()
            self.backends.clear()
            self._by_service.clear()
            for part in parts:
                self._merge(part)
            return
        self._merge(update)

    def _merge(self, update: dpb.MeshUpdate) -> None:
        for service in update.services:
            self.services[service.service_id] = service
            self._whole.add(service.service_id)
        for service_id in update.removed_services:
            if self.services.pop(service_id, None) is not None:
                self._whole.add(service_id)
            for task_id in self._by_service.pop(service_id, set()):
                self.backends.pop(task_id, None)
        for sent in update.backends:
            backend = Member.of(sent)
            self._drop(backend.task_id)
            self.backends[backend.task_id] = backend
            self._by_service.setdefault(backend.service_id, set()).add(backend.task_id)
            self._members.setdefault(backend.service_id, set()).add(backend.task_id)
        for task_id in update.removed_backends:
            self._drop(task_id)

    def _drop(self, task_id: str) -> None:
        old = self.backends.pop(task_id, None)
        if old is None:
            return
        self._members.setdefault(old.service_id, set()).add(task_id)
        members = self._by_service.get(old.service_id)
        if members is not None:
            members.discard(task_id)
            if not members:
                del self._by_service[old.service_id]

    def take_changes(self) -> dict[PortKey, PortSet | None]:
        """The ports whose set changed since the last call (their PortSet,
        with what joined and left), or None for a port no longer published."""
        whole, self._whole = self._whole, set()
        members, self._members = self._members, {}
        self._named_whole |= whole
        for service_id, task_ids in members.items():
            self._named_members.setdefault(service_id, set()).update(task_ids)
        out: dict[PortKey, PortSet | None] = {}
        # Every changed service's ports come out first, so that a port that
        # moved from one service to another is the new one's.
        before = {service_id: self._detach(service_id) for service_id in whole}
        for service_id in whole:
            self._build(service_id, before[service_id], out)
        for left in before.values():
            for key in left:
                if key not in self._ports:
                    out[key] = None
        for service_id, task_ids in members.items():
            service = self.services.get(service_id)
            if service_id in whole or service is None:
                continue
            for key in self._keys.get(service_id, ()):
                ps = self._ports[key]
                changed = False
                for task_id in task_ids:
                    b = self.backends.get(task_id)
                    entry = _entry(service, ps, b) if b is not None and b.service_id == service_id else None
                    changed |= ps.put(task_id, entry)
                if changed:
                    out[key] = ps
        return out

    def _detach(self, service_id: str) -> dict[PortKey, PortSet]:
        """Take a changed service's ports out of the table (rebuilt next)."""
        before: dict[PortKey, PortSet] = {}
        for key in self._keys.pop(service_id, []):
            old = self._ports.get(key)
            if old is not None and old.service_id == service_id:
                before[key] = self._ports.pop(key)
        return before

    def _build(
        self, service_id: str, before: dict[PortKey, PortSet], out: dict[PortKey, PortSet | None]
    ) -> None:
        """A changed service's ports made again from its members; a port that
        stays the same port keeps its PortSet and reports only the backends
        that changed."""
        service = self.services.get(service_id)
        if service is None:
            return
        keys = []
        for port in service.ports:
            fresh = PortSet(
                service_id,
                service.name,
                port.protocol or "tcp",
                port.published_port,
                port.target_port,
                port.proxy_protocol,
            )
            key = (fresh.protocol, fresh.port)
            ps = before.pop(key, None)
            if ps is None or not ps.same_port(fresh):
                ps = fresh
            changed = ps is fresh
            for b in (self.backends[t] for t in self._by_service.get(service_id, ())):
                changed |= ps.put(b.task_id, _entry(service, ps, b))
            for task_id in [t for t in ps.entries if self.backends.get(t) is None]:
                changed |= ps.put(task_id, None)
            self._ports[key] = ps
            keys.append(key)
            if changed:
                out[key] = ps
        self._keys[service_id] = keys

    def ports(self) -> dict[PortKey, PortSet]:
        return dict(self._ports)

    def take_services(self) -> tuple[set[str], dict[str, set[str]]]:
        """For discovery, since the last call (after take_changes): the
        services to look at whole, and per other service its tasks that
        changed."""
        whole, self._named_whole = self._named_whole, set()
        members, self._named_members = self._named_members, {}
        return whole, {s: t for s, t in members.items() if s not in whole}

    def members(self, service_id: str) -> list[Member]:
        """The service's backends, in a stable order."""
        return sorted(
            (self.backends[t] for t in self._by_service.get(service_id, ())), key=lambda b: b.task_id
        )
