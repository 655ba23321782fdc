"""Service discovery on a node: names, virtual addresses, task addresses.

From the endpoint sets (``MeshTable``) this keeps what the node's resolver
(``dns.py``) answers and what its data path must route:

- ``SERVICE`` (and, inside a stack, its short Compose name) resolves to the
  service's virtual address (the manager allocated it, cluster-wide); each of
  the service's target ports on that address goes to one of its running
  tasks, in turn (``vips``: (address, protocol, port) -> backends);
- ``tasks.SERVICE`` resolves to one address per running task. Those
  addresses are **this node's**: chosen here, at random in
  ``MESH.task_addr_net``, kept while the task runs, and meaningful only to
  this node's resolver and rules (``task_routes``: (address, protocol, port)
  -> the task's endpoint). A client reaches them from the node that answered
  it, which is the only one it asks. No manager writes per task, and nodes
  never need to agree.

A name is answered only to a task whose service shares a network with the
named service (services on no network share the cluster's default); an
asker the node cannot place (a process on the host) may resolve every name.
``update`` recomputes only the services the table says changed.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable

from shoal.agent.mesh.table import MeshTable
from shoal.defaults import MESH
from shoal.protos import dispatcher_pb2 as dpb

Key = tuple[str, str, int]  # (address, protocol, port)
Target = tuple[str, int]
DEFAULT_NETWORK = "default"


def scopes(service: dpb.MeshService) -> set[str]:
    return set(service.networks) or {DEFAULT_NETWORK}


class Discovery:
    def __init__(self, table: MeshTable, task_addr_net: str = MESH.task_addr_net) -> None:
        self.table = table
        self._net = ipaddress.ip_network(task_addr_net)
        self._rng = random.SystemRandom()
        self.task_addrs: dict[str, str] = {}  # task ID -> this node's address for it
        self._used: set[str] = set()
        self.vips: dict[Key, tuple[Target, ...]] = {}
        self.task_routes: dict[Key, Target] = {}
        self._keys: dict[
            str, tuple[set[Key], set[Key], set[str]]
        ] = {}  # service -> vip keys, task keys, tasks
        self.by_name: dict[str, str] = {}  # service name -> ID
        self._names: dict[str, str] = {}  # service ID -> name

    # -------------------------------------------------------------- updates

    def update(
        self, service_ids: Iterable[str]
    ) -> tuple[dict[Key, tuple[Target, ...] | None], dict[Key, Target | None]]:
        """Recompute these services; the VIP routes and task routes that
        changed (None: gone)."""
        vip_changes: dict[Key, tuple[Target, ...] | None] = {}
        task_changes: dict[Key, Target | None] = {}
        for service_id in service_ids:
            self._update_one(service_id, vip_changes, task_changes)
        return vip_changes, task_changes

    def _update_one(
        self,
        service_id: str,
        vip_changes: dict[Key, tuple[Target, ...] | None],
        task_changes: dict[Key, Target | None],
    ) -> None:
        old_vips, old_tasks, old_members = self._keys.pop(service_id, (set(), set(), set()))
        old_name = self._names.pop(service_id, None)
        if old_name is not None and self.by_name.get(old_name) == service_id:
            del self.by_name[old_name]
        service = self.table.services.get(service_id)
        vips: dict[Key, tuple[Target, ...]] = {}
        tasks: dict[Key, Target] = {}
        members: set[str] = set()
        if service is not None:
            self.by_name[service.name] = service_id
            self._names[service_id] = service.name
            backends = self.table.members(service_id)
            for reached_by in service.targets:
                protocol, number = reached_by.protocol or "tcp", reached_by.target_port
                reached = [(b, _host_port(b, protocol, number)) for b in backends]
                if service.virtual_ip:
                    vips[(service.virtual_ip, protocol, number)] = tuple(
                        sorted((b.addr, port) for b, port in reached if port)
                    )
                for b, port in reached:
                    if port:
                        tasks[(self._addr_of(b.task_id), protocol, number)] = (b.addr, port)
            members = {b.task_id for b in backends}
        for task_id in old_members - members:
            self._release(task_id)
        for key in old_vips - set(vips):
            self.vips.pop(key, None)
            vip_changes[key] = None
        for key, value in vips.items():
            if self.vips.get(key) != value:
                self.vips[key] = value
                vip_changes[key] = value
        for key in old_tasks - set(tasks):
            self.task_routes.pop(key, None)
            task_changes[key] = None
        for key, target in tasks.items():
            if self.task_routes.get(key) != target:
                self.task_routes[key] = target
                task_changes[key] = target
        if service is not None:
            self._keys[service_id] = (set(vips), set(tasks), members)

    def _addr_of(self, task_id: str) -> str:
        addr = self.task_addrs.get(task_id)
        if addr is None:
            while True:
                addr = str(self._net[self._rng.randrange(1, self._net.num_addresses - 1)])
                if addr not in self._used:
                    break
            self.task_addrs[task_id] = addr
            self._used.add(addr)
        return addr

    def _release(self, task_id: str) -> None:
        addr = self.task_addrs.pop(task_id, None)
        if addr is not None:
            self._used.discard(addr)

    # -------------------------------------------------------------- names

    def resolve(self, name: str, asker: str | None) -> list[str] | None:
        """The addresses `name` stands for, as told to a task of service
        `asker` (None: not a task this node can place); None when the name
        is not a service's (or not one the asker may see)."""
        name = name.lower().rstrip(".")
        want_tasks = name.startswith("tasks.")
        base = name[len("tasks.") :] if want_tasks else name
        asking = self.table.services.get(asker) if asker else None
        service_id = self.by_name.get(base)
        if service_id is None and asking is not None and asking.stack:
            service_id = self.by_name.get(f"{asking.stack}_{base}")
        service = self.table.services.get(service_id) if service_id else None
        if service is None:
            return None
        if asking is not None and not scopes(asking) & scopes(service):
            return None
        if not want_tasks and service.virtual_ip:
            return [service.virtual_ip]
        return [
            self.task_addrs[b.task_id]
            for b in self.table.members(service.service_id)
            if b.task_id in self.task_addrs
        ]


def _host_port(backend: dpb.MeshBackend, protocol: str, target: int) -> int:
    return next(
        (e.host_port for e in backend.endpoints if e.protocol == protocol and e.target_port == target), 0
    )
