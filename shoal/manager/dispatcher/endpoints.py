"""Endpoint sets: which tasks each node's routing mesh may send traffic to.

Every manager keeps one ``EndpointTable`` (in its dispatcher), fed by the
view's service, task and node events. Every service is in it
(``MeshService``: its name, ingress ports, and for discovery its virtual
address, networks and the target ports reached by name). A
task of such a service is a backend (``MeshBackend``: its node's address and
the host ports its agent reported) while it is RUNNING (which means healthy
when it has a health check: the agent holds it STARTING until then), its
desired state is RUNNING and its node is READY. A task that stops, fails, or
whose node goes down (marked within one heartbeat grace) leaves; a task that
starts joins.

Each event touches one task, one node's tasks (the view's tasks-by-node
index) or one service's (tasks-by-service): never a scan of all tasks. The
changes gather in a pending diff that the dispatcher takes at most every
``FLUSH_INTERVAL`` and sends, as the same messages, to every session: nodes
get only what changed, batched (as Kubernetes moved from Endpoints to
EndpointSlices). A session that starts gets the whole set first. Updates are
idempotent (an upsert replaces, a removal of something unknown is nothing),
so a diff that repeats what a full set already said is harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from shoal.manager.store import Event, View
from shoal.names import STACK_LABEL, stack_short_name
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import objects_pb2 as pb

# How often a pending diff is sent: a burst of task starts becomes one
# message per node instead of one per task.
FLUSH_INTERVAL = 0.1
# Bytes per message, far below the agent's receive limit (as assignments).
CHUNK_BYTES = 1024 * 1024


def mesh_service(service: pb.Service | None) -> dpb.MeshService | None:
    """The service as the mesh sees it: its ingress ports, and what
    discovery needs (virtual address, networks, the target ports reached by
    name, its stack and short name)."""
    if service is None:
        return None
    spec = service.spec
    ports = [p for p in spec.ports if p.publish_mode == "ingress" and p.published_port]
    targets: list[pb.PortConfig] = []
    for p in [*spec.expose, *spec.ports]:
        key = pb.PortConfig(protocol=p.protocol or "tcp", target_port=p.target_port)
        if key not in targets and key.protocol in ("tcp", "udp"):
            targets.append(key)
    stack = spec.labels.get(STACK_LABEL, "")
    short = stack_short_name(spec.name, spec.labels)
    return dpb.MeshService(
        service_id=service.meta.id,
        name=spec.name,
        ports=ports,
        virtual_ip=service.virtual_ip,
        networks=spec.networks,
        targets=targets,
        stack=stack,
        short_name=short,
    )


@dataclass
class Diff:
    """What changed since the last flush (the newest value per key)."""

    services: dict[str, dpb.MeshService] = field(default_factory=dict)
    removed_services: set[str] = field(default_factory=set)
    backends: dict[str, dpb.MeshBackend] = field(default_factory=dict)
    removed_backends: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.services or self.removed_services or self.backends or self.removed_backends)


class EndpointTable:
    def __init__(self, view: View) -> None:
        self.view = view
        self.services: dict[str, dpb.MeshService] = {}
        self.backends: dict[str, dpb.MeshBackend] = {}  # task ID -> backend
        self._by_service: dict[str, set[str]] = {}
        self.pending = Diff()

    def load(self) -> None:
        """Build the table from the view (once, when the dispatcher starts)."""
        for service in self.view.services.values():
            self._service(service.meta.id)

    # -------------------------------------------------------------- events

    def apply(self, ev: Event) -> None:
        if ev.kind == "services":
            self._service(ev.id)
        elif ev.kind == "tasks":
            if ev.new is None:
                self._drop(ev.id)
            else:
                self._task(ev.new)
        elif ev.kind == "nodes":
            old, new = ev.old, ev.new
            if (
                old is not None
                and new is not None
                and (old.status.state, old.status.addr)
                == (
                    new.status.state,
                    new.status.addr,
                )
            ):
                return  # labels, availability, mesh reports: nothing for the sets
            for task in self.view.tasks_by_node.get(ev.id, {}).values():
                self._task(task)

    def _service(self, service_id: str) -> None:
        now = mesh_service(self.view.services.get(service_id))
        before = self.services.get(service_id)
        if now is None:
            if before is not None:
                del self.services[service_id]
                for task_id in list(self._by_service.get(service_id, ())):
                    self._drop(task_id)
                self.pending.services.pop(service_id, None)
                self.pending.removed_services.add(service_id)
            return
        if before != now:
            self.services[service_id] = now
            self.pending.removed_services.discard(service_id)
            self.pending.services[service_id] = now
        if before is None:
            for task in self.view.tasks_by_service.get(service_id, {}).values():
                self._task(task)

    def _task(self, task: pb.Task) -> None:
        backend = self._backend(task)
        task_id = task.meta.id
        if backend is None:
            self._drop(task_id)
            return
        if self.backends.get(task_id) == backend:
            return
        self.backends[task_id] = backend
        self._by_service.setdefault(task.service_id, set()).add(task_id)
        self.pending.removed_backends.discard(task_id)
        self.pending.backends[task_id] = backend

    def _drop(self, task_id: str) -> None:
        backend = self.backends.pop(task_id, None)
        if backend is None:
            return
        members = self._by_service.get(backend.service_id)
        if members is not None:
            members.discard(task_id)
            if not members:
                del self._by_service[backend.service_id]
        self.pending.backends.pop(task_id, None)
        self.pending.removed_backends.add(task_id)

    def _backend(self, task: pb.Task) -> dpb.MeshBackend | None:
        """The task as a backend, or None while it may not receive traffic."""
        if task.status.state != pb.TASK_STATE_RUNNING or task.desired_state != pb.TASK_STATE_RUNNING:
            return None
        if task.service_id not in self.services or not task.status.endpoints:
            return None
        node = self.view.nodes.get(task.node_id)
        if node is None or node.status.state != pb.NODE_STATE_READY or not node.status.addr:
            return None
        return dpb.MeshBackend(
            task_id=task.meta.id,
            service_id=task.service_id,
            addr=node.status.addr,
            endpoints=task.status.endpoints,
            slot=task.slot,
        )

    # -------------------------------------------------------------- messages

    def take(self) -> list[dpb.ManagerMessage]:
        """The pending diff as messages (none when nothing changed); cleared."""
        diff, self.pending = self.pending, Diff()
        if not diff:
            return []
        return messages(diff, full=False)

    def full(self) -> list[dpb.ManagerMessage]:
        """The whole set, for a session that starts."""
        return messages(Diff(dict(self.services), set(), dict(self.backends), set()), full=True)


def messages(diff: Diff, full: bool) -> list[dpb.ManagerMessage]:
    """A diff as messages of at most CHUNK_BYTES, in the order the agent
    applies them (services first); for a full set all but the last say more."""
    out: list[dpb.ManagerMessage] = []
    msg, size = dpb.ManagerMessage(), 0
    msg.mesh.full = full

    def room(item_size: int) -> None:
        nonlocal msg, size
        if size and size + item_size > CHUNK_BYTES:
            msg.mesh.more = full
            out.append(msg)
            msg, size = dpb.ManagerMessage(), 0
            msg.mesh.full = full

    for service in diff.services.values():
        room(service.ByteSize() + 8)
        msg.mesh.services.append(service)
        size += service.ByteSize() + 8
    for service_id in sorted(diff.removed_services):
        room(len(service_id) + 4)
        msg.mesh.removed_services.append(service_id)
        size += len(service_id) + 4
    for backend in diff.backends.values():
        room(backend.ByteSize() + 8)
        msg.mesh.backends.append(backend)
        size += backend.ByteSize() + 8
    for task_id in sorted(diff.removed_backends):
        room(len(task_id) + 4)
        msg.mesh.removed_backends.append(task_id)
        size += len(task_id) + 4
    out.append(msg)
    return out


class Sink(Protocol):
    def send(self, msg: dpb.ManagerMessage) -> None: ...


class EndpointFeed:
    """The table, fed by the dispatcher's view events, and the sending of its
    changes to every session (``run``) at most every FLUSH_INTERVAL."""

    KINDS = ("tasks", "nodes", "services")

    def __init__(self, view: View, sessions: Callable[[], Iterable[Sink]]) -> None:
        self.table = EndpointTable(view)
        self.sessions = sessions
        self._changed = asyncio.Event()
        # The whole set as messages, made once per change: a thousand
        # sessions that start together share them.
        self._full: list[dpb.ManagerMessage] | None = None

    def apply(self, ev: Event) -> None:
        if ev.kind not in self.KINDS:
            return
        self.table.apply(ev)
        if self.table.pending:
            self._full = None
            self._changed.set()

    def full(self) -> list[dpb.ManagerMessage]:
        if self._full is None:
            self._full = self.table.full()
        return self._full

    async def run(self) -> None:
        self.table.load()
        while True:
            await self._changed.wait()
            await asyncio.sleep(FLUSH_INTERVAL)
            self._changed.clear()
            for msg in self.table.take():
                for session in self.sessions():
                    session.send(msg)
