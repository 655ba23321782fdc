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
``update`` recomputes whole only the services that changed themselves, and
for the others only the tasks that came, changed or went: the cost follows
the changes, not the size of the sets.
"""

from __future__ import annotations

import ipaddress
import random
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from shoal.agent.mesh.table import Member, MeshTable
from shoal.defaults import MESH
from shoal.names import DEFAULT_NETWORK
from shoal.protos import dispatcher_pb2 as dpb

Key = tuple[str, str, int]  # (address, protocol, port)
Target = tuple[str, int]


def scopes(service: dpb.MeshService) -> set[str]:
    return set(service.networks) or {DEFAULT_NETWORK}


@dataclass(eq=False)
class VipSet:
    """The backends of one port of a virtual address (changed in place)."""

    entries: dict[str, Target] = field(default_factory=dict)  # task ID -> endpoint
    _sorted: tuple[Target, ...] | None = None

    @property
    def targets(self) -> tuple[Target, ...]:
        if self._sorted is None:
            self._sorted = tuple(sorted(self.entries.values()))
        return self._sorted

    def put(self, task_id: str, target: Target | None) -> bool:
        if self.entries.get(task_id) == target:
            return False
        if target is None:
            del self.entries[task_id]
        else:
            self.entries[task_id] = target
        self._sorted = None
        return True


VipChanges = dict[Key, VipSet | None]
TaskChanges = dict[Key, Target | None]


class Discovery:
    def __init__(self, table: MeshTable, task_addr_net: str = MESH.task_addr_net) -> None:
        self.table = table
        net = ipaddress.ip_network(task_addr_net)
        self._base, self._size = int(net.network_address), net.num_addresses
        # Seeded from the system once: an address only has to differ from
        # this node's others, not to be unguessable.
        self._rng = random.Random(random.SystemRandom().getrandbits(64))
        self.task_addrs: dict[str, str] = {}  # task ID -> this node's address for it
        self._used: set[str] = set()
        self.vips: dict[Key, VipSet] = {}
        self.task_routes: dict[Key, Target] = {}
        self._vip_keys: dict[str, list[Key]] = {}  # service ID -> its VIP ports
        self._task_keys: dict[str, list[Key]] = {}  # task ID -> its task routes
        self._members: dict[str, set[str]] = {}  # service ID -> tasks with routes
        self.by_name: dict[str, str] = {}  # service name -> ID
        self._names: dict[str, str] = {}  # service ID -> name

    # -------------------------------------------------------------- updates

    def update(
        self, whole: Iterable[str], members: dict[str, set[str]] | None = None
    ) -> tuple[VipChanges, TaskChanges]:
        """Recompute these services whole, and these tasks of others; the
        VIP ports and task routes that changed (None: gone)."""
        vips: VipChanges = {}
        tasks: TaskChanges = {}
        for service_id in whole:
            self._service(service_id, vips, tasks)
        for service_id, task_ids in (members or {}).items():
            service = self.table.services.get(service_id)
            if service is None:
                continue
            for task_id in task_ids:
                self._task(service, task_id, vips, tasks)
        return vips, tasks

    def _service(self, service_id: str, vips: VipChanges, tasks: TaskChanges) -> None:
        """A service changed (or went): all its routes made again."""
        for task_id in list(self._members.get(service_id, ())):
            self._drop_task(service_id, task_id, vips, tasks, keep_address=True)
        for key in self._vip_keys.pop(service_id, []):
            if self.vips.pop(key, None) is not None:
                vips[key] = None
        old_name = self._names.pop(service_id, None)
        if old_name is not None and self.by_name.get(old_name) == service_id:
            del self.by_name[old_name]
        service = self.table.services.get(service_id)
        if service is None:
            for task_id in list(self._members.pop(service_id, ())):
                self._release(task_id)
            return
        self.by_name[service.name] = service_id
        self._names[service_id] = service.name
        if service.virtual_ip:
            keys = [(service.virtual_ip, t.protocol or "tcp", t.target_port) for t in service.targets]
            self._vip_keys[service_id] = keys
            for key in keys:
                self.vips[key] = VipSet()
                vips[key] = self.vips[key]
        current = {b.task_id for b in self.table.members(service_id)}
        for task_id in list(self._members.get(service_id, ())):
            if task_id not in current:
                self._members[service_id].discard(task_id)
                self._release(task_id)
        for task_id in current:
            self._task(service, task_id, vips, tasks)

    def _task(self, service: dpb.MeshService, task_id: str, vips: VipChanges, tasks: TaskChanges) -> None:
        """One task of the service came, changed or went: its routes."""
        service_id = service.service_id
        backend = self.table.backends.get(task_id)
        if backend is None or backend.service_id != service_id:
            self._drop_task(service_id, task_id, vips, tasks, keep_address=False)
            return
        old_keys = set(self._task_keys.get(task_id, ()))
        addr = self._addr_of(task_id)
        self._members.setdefault(service_id, set()).add(task_id)
        new_keys = []
        for reached_by in service.targets:
            protocol, number = reached_by.protocol or "tcp", reached_by.target_port
            port = _host_port(backend, protocol, number)
            target = (backend.addr, port) if port else None
            vip = self.vips.get((service.virtual_ip, protocol, number)) if service.virtual_ip else None
            if vip is not None and vip.put(task_id, target):
                vips[(service.virtual_ip, protocol, number)] = vip
            if target is not None:
                key = (addr, protocol, number)
                new_keys.append(key)
                if self.task_routes.get(key) != target:
                    self.task_routes[key] = target
                    tasks[key] = target
        for key in old_keys - set(new_keys):
            self.task_routes.pop(key, None)
            tasks[key] = None
        self._task_keys[task_id] = new_keys

    def _drop_task(
        self, service_id: str, task_id: str, vips: VipChanges, tasks: TaskChanges, keep_address: bool
    ) -> None:
        for key in self._vip_keys.get(service_id, []):
            vip = self.vips.get(key)
            if vip is not None and vip.put(task_id, None):
                vips[key] = vip
        for key in self._task_keys.pop(task_id, []):
            if self.task_routes.pop(key, None) is not None:
                tasks[key] = None
        if not keep_address:
            members = self._members.get(service_id)
            if members is not None:
                members.discard(task_id)
            self._release(task_id)

    def _addr_of(self, task_id: str) -> str:
        addr = self.task_addrs.get(task_id)
        if addr is None:
            while True:
                number = self._base + self._rng.randrange(1, self._size - 1)
                addr = socket.inet_ntoa(number.to_bytes(4, "big"))
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


def _host_port(backend: Member, protocol: str, target: int) -> int:
    return next(
        (e.host_port for e in backend.endpoints if e.protocol == protocol and e.target_port == target), 0
    )
