"""The endpoint sets as this node knows them, and the ports they make.

``MeshTable.apply`` takes the manager's ``MeshUpdate``s in order: a full
set (possibly in several messages, applied once the last one arrived)
replaces everything; a diff upserts and removes services and backends.
``take_changes`` then says which published ports changed since it was last
asked, each with its whole ``PortSet`` (the service's port and the backends
that serve it, in a stable order) or None when the port is no longer
published. Only services touched by an update are looked at again, so a
node of a large cluster pays for what changed, not for everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shoal.protos import dispatcher_pb2 as dpb

PortKey = tuple[str, int]  # (protocol, published port)


@dataclass(frozen=True, order=True)
class Backend:
    """One task behind a published port: where its target is reached."""

    addr: str
    port: int  # the task's host port for the target
    name: str = field(compare=False)  # web.2, for people
    task_id: str = field(compare=False)


@dataclass(frozen=True)
class PortSet:
    """A published port of a service and the backends that serve it."""

    service_id: str
    service_name: str
    protocol: str
    port: int
    target: int
    proxy_protocol: str
    backends: tuple[Backend, ...]


class MeshTable:
    def __init__(self) -> None:
        self.services: dict[str, dpb.MeshService] = {}
        self.backends: dict[str, dpb.MeshBackend] = {}
        self._by_service: dict[str, set[str]] = {}
        self._ports: dict[PortKey, PortSet] = {}
        self._dirty: set[str] = set()  # service IDs to look at again
        self._named: set[str] = set()  # service IDs discovery must look at again
        self._partial: list[dpb.MeshUpdate] = []  # a full set still arriving

    def apply(self, update: dpb.MeshUpdate) -> None:
        if update.full:
            self._partial.append(update)
            if update.more:
                return
            parts, self._partial = self._partial, []
            self._dirty.update(self.services)
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
            self._dirty.add(service.service_id)
        for service_id in update.removed_services:
            if self.services.pop(service_id, None) is not None:
                self._dirty.add(service_id)
            for task_id in self._by_service.pop(service_id, set()):
                self.backends.pop(task_id, None)
        for backend in update.backends:
            self._drop(backend.task_id)
            self.backends[backend.task_id] = backend
            self._by_service.setdefault(backend.service_id, set()).add(backend.task_id)
            self._dirty.add(backend.service_id)
        for task_id in update.removed_backends:
            self._drop(task_id)

    def _drop(self, task_id: str) -> None:
        old = self.backends.pop(task_id, None)
        if old is None:
            return
        self._dirty.add(old.service_id)
        members = self._by_service.get(old.service_id)
        if members is not None:
            members.discard(task_id)
            if not members:
                del self._by_service[old.service_id]

    def take_changes(self) -> dict[PortKey, PortSet | None]:
        """The ports whose set changed since the last call: the new set, or
        None for a port no longer published."""
        dirty, self._dirty = self._dirty, set()
        self._named |= dirty
        changes: dict[PortKey, PortSet | None] = {
            key: None for key, old in self._ports.items() if old.service_id in dirty
        }
        for service_id in dirty:
            changes.update(self._port_sets(service_id))
        out: dict[PortKey, PortSet | None] = {}
        for key, new in changes.items():
            old = self._ports.get(key)
            if new is None:
                if old is not None:
                    del self._ports[key]
                    out[key] = None
            elif new != old:
                self._ports[key] = new
                out[key] = new
        return out

    def ports(self) -> dict[PortKey, PortSet]:
        return dict(self._ports)

    def take_services(self) -> set[str]:
        """The services whose discovery data (address, networks, backends)
        may have changed since the last call (after take_changes)."""
        named, self._named = self._named, set()
        return named

    def members(self, service_id: str) -> list[dpb.MeshBackend]:
        """The service's backends, in a stable order."""
        return sorted(
            (self.backends[t] for t in self._by_service.get(service_id, ())), key=lambda b: b.task_id
        )

    def _port_sets(self, service_id: str) -> dict[PortKey, PortSet]:
        service = self.services.get(service_id)
        if service is None:
            return {}
        members = [self.backends[t] for t in self._by_service.get(service_id, ())]
        out: dict[PortKey, PortSet] = {}
        for port in service.ports:
            protocol = port.protocol or "tcp"
            backends = []
            for b in members:
                host_port = next(
                    (
                        e.host_port
                        for e in b.endpoints
                        if e.protocol == protocol and e.target_port == port.target_port
                    ),
                    0,
                )
                if host_port:
                    backends.append(Backend(b.addr, host_port, f"{service.name}.{b.slot}", b.task_id))
            out[(protocol, port.published_port)] = PortSet(
                service_id=service_id,
                service_name=service.name,
                protocol=protocol,
                port=port.published_port,
                target=port.target_port,
                proxy_protocol=port.proxy_protocol,
                backends=tuple(sorted(backends)),
            )
        return out
