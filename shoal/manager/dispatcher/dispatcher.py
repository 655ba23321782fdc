"""The dispatcher: every agent's one session with the managers.

Runs on every manager, leader or not. An agent opens ``Session`` with a
Register message; the dispatcher records the node (description, address,
READY, and which manager holds the session), answers with SessionStarted (its
node ID, the heartbeat period, the managers to fail over to) and the full set
of the node's tasks, then streams changes as the view sees them.

What the agent sends back:
- heartbeats: each one pushes the node's deadline to now + 3 periods (Swarm's
  grace); a node past its deadline is marked DOWN by the manager that held its
  session (``NodeMonitor`` on the leader covers managers that died);
- task statuses: collected from all sessions and written every 100 ms in one
  batch; a status never moves a task backwards.

Assignments are routed with the view's tasks-by-node index: one event touches
one session, never a scan of all tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from shoal import pki
from shoal.ids import new_id
from shoal.manager import seal
from shoal.manager.auth import Authorizer
from shoal.manager.logsource import NodeNotConnected
from shoal.manager.store import Event, Store, StoreError, View, clone, now_ns
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import dispatcher_pb2_grpc as dgrpc
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

# Heartbeat grace as a multiple of the period: Swarm's value, long enough to
# ride out a GC pause or a slow disk.
GRACE_MULTIPLIER = 3
STATUS_FLUSH_INTERVAL = 0.1
DEFAULT_HEARTBEAT_NS = 5_000_000_000


class _Session:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.queue: asyncio.Queue[dpb.ManagerMessage | None] = asyncio.Queue()
        self.upserts: dict[str, pb.Task] = {}
        self.removed: set[str] = set()

    def flush(self) -> None:
        if not self.upserts and not self.removed:
            return
        msg = dpb.ManagerMessage()
        msg.assignments.tasks.extend(self.upserts.values())
        msg.assignments.removed.extend(self.removed)
        self.upserts.clear()
        self.removed.clear()
        self.queue.put_nowait(msg)


class Dispatcher(dgrpc.DispatcherServicer):
    def __init__(
        self,
        view: View,
        store: Store,
        authorizer: Authorizer,
        manager_id: str,
        manager_addrs: Callable[[], list[str]],
    ) -> None:
        self.view = view
        self.store = store
        self.auth = authorizer
        self.manager_id = manager_id
        self.manager_addrs = manager_addrs
        self.sessions: dict[str, _Session] = {}
        self.deadlines: dict[str, float] = {}
        self._statuses: dict[str, pb.TaskStatus] = {}
        self._status_wakeup = asyncio.Event()
        # Log requests in flight: request ID -> (session, queue of chunks)
        self._logs: dict[str, tuple[_Session, asyncio.Queue[dpb.LogChunk | None]]] = {}

    def heartbeat_period(self) -> float:
        cluster = self.view.cluster()
        ns = cluster.spec.heartbeat_period if cluster and cluster.spec.heartbeat_period else 0
        return (ns or DEFAULT_HEARTBEAT_NS) / 1e9

    def grace(self) -> float:
        return self.heartbeat_period() * GRACE_MULTIPLIER

    # -------------------------------------------------------------- background

    async def run(self) -> None:
        """Route task changes to sessions, write statuses, watch deadlines."""
        # Nodes whose session this manager held before a restart get a fresh
        # grace period to come back before anyone calls them down.
        for node in self.view.nodes.values():
            if node.status.state == pb.NODE_STATE_READY and node.status.manager_id == self.manager_id:
                # Twice the usual grace, as Swarm gives nodes of unknown state
                # after a leader change: agents are still backing off.
                self.deadlines.setdefault(node.meta.id, time.monotonic() + 2 * self.grace())
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._route_assignments(), name="dispatcher-assignments")
            tg.create_task(self._flush_statuses(), name="dispatcher-statuses")
            tg.create_task(self._watch_deadlines(), name="dispatcher-liveness")

    async def _route_assignments(self) -> None:
        sub = self.view.subscribe(["tasks", "nodes"])
        try:
            while True:
                events = await sub.get_batch()
                touched: set[_Session] = set()
                for ev in events:
                    if ev.kind == "nodes":
                        if ev.new is None:
                            self._end_session(ev.id)  # `node rm`: it is not ours any more
                        continue
                    self._route(ev, touched)
                for session in touched:
                    session.flush()
        finally:
            sub.close()

    def _end_session(self, node_id: str) -> None:
        self.deadlines.pop(node_id, None)
        session = self.sessions.pop(node_id, None)
        if session is not None:
            session.queue.put_nowait(None)

    def _route(self, ev: Event, touched: set[_Session]) -> None:
        old_node = _assigned_node(ev.old)
        new_node = _assigned_node(ev.new)
        if old_node and old_node != new_node and (s := self.sessions.get(old_node)):
            s.upserts.pop(ev.id, None)
            s.removed.add(ev.id)
            touched.add(s)
        if new_node and (s := self.sessions.get(new_node)):
            assert ev.new is not None
            s.removed.discard(ev.id)
            s.upserts[ev.id] = self._with_credentials(ev.new)
            touched.add(s)

    async def _watch_deadlines(self) -> None:
        while True:
            interval = max(0.05, min(1.0, self.heartbeat_period() / 4))
            before = time.monotonic()
            await asyncio.sleep(interval)
            now = time.monotonic()
            overslept = now - before - interval
            if overslept > self.heartbeat_period():
                # This manager stalled (a paused process, a starved machine):
                # heartbeats it could not read are not the nodes' fault.
                log.warning("dispatcher stalled for %.1fs; extending node deadlines", overslept)
                for node_id in self.deadlines:
                    self.deadlines[node_id] += overslept
            expired = [n for n, d in self.deadlines.items() if d < now]
            for node_id in expired:
                session = self.sessions.pop(node_id, None)
                if session is not None:
                    session.queue.put_nowait(None)  # end the stream
            if expired and await self._mark_down(expired):
                for node_id in expired:
                    self.deadlines.pop(node_id, None)

    async def _mark_down(self, node_ids: list[str]) -> bool:
        """Mark these nodes down in one batch (a rack that loses power is one
        write, not a hundred). False when it must be tried again."""
        batch = self.store.batch()
        for node_id in node_ids:
            node = self.view.nodes.get(node_id)
            if node is None or node.status.manager_id != self.manager_id:
                continue  # the node went to another manager: not ours to judge
            if node.status.state == pb.NODE_STATE_DOWN:
                continue
            node = clone(node)
            node.status.state = pb.NODE_STATE_DOWN
            node.status.message = "heartbeat failure"
            node.status.timestamp = now_ns()
            batch.update(node)
        if not len(batch):
            return True
        try:
            result = await batch.commit()
        except StoreError as err:
            log.warning("marking %d node(s) down failed: %s; retrying", len(batch), err)
            return False
        for conflict in result.conflicts:
            if conflict.current is not None:
                self.view.observe("nodes", conflict.current)
        for node in result.committed:
            log.info("node %s (%s) is down: heartbeat failure", node.meta.id, node.description.hostname)
        return not result.conflicts

    async def _flush_statuses(self) -> None:
        while True:
            await self._status_wakeup.wait()
            self._status_wakeup.clear()
            await asyncio.sleep(STATUS_FLUSH_INTERVAL)
            pending, self._statuses = self._statuses, {}
            try:
                await self._write_statuses(pending)
            except StoreError as err:
                log.warning("writing task statuses failed (%s); will retry", err)
                for task_id, status in pending.items():
                    self._statuses.setdefault(task_id, status)
                self._status_wakeup.set()
                await asyncio.sleep(0.5)

    async def _write_statuses(self, pending: dict[str, pb.TaskStatus]) -> None:
        for _ in range(5):
            batch = self.store.batch()
            for task_id, status in pending.items():
                task = self.view.tasks.get(task_id)
                if task is None or not _moves_forward(task.status, status):
                    continue
                task = clone(task)
                task.status.CopyFrom(status)
                batch.update(task)
            if not len(batch):
                return
            result = await batch.commit()
            if not result.conflicts:
                return
            # Someone else wrote those tasks (desired state): the view has the
            # new version via write-through or soon via the watch.
            pending = {c.obj.meta.id: c.obj.status for c in result.conflicts if c.current is not None}
            for c in result.conflicts:
                if c.current is not None:
                    self.view.observe("tasks", c.current)

    # -------------------------------------------------------------- the RPC

    async def Session(
        self, request_iterator: AsyncIterator[dpb.AgentMessage], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[dpb.ManagerMessage]:
        ident = await self.auth.require(context, pki.ROLE_WORKER)
        node_id = ident.node_id
        cluster = self.view.cluster()
        if cluster is not None and node_id in cluster.removed_nodes:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"node {node_id} was removed from the cluster; join again with a fresh state dir",
            )
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("msg") != "register":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a session starts with Register")
            return
        if not first.register.addr:
            # Like Docker: a node that names no address is reached at the one
            # it connected from.
            first.register.addr = _peer_ip(context.peer())
        await self._register(node_id, first.register)
        old = self.sessions.get(node_id)
        if old is not None:
            old.queue.put_nowait(None)
        session = _Session(node_id)
        self.sessions[node_id] = session
        self.deadlines[node_id] = time.monotonic() + self.grace()
        log.info("node %s (%s) connected", node_id, first.register.description.hostname)

        started = dpb.ManagerMessage()
        started.started.node_id = node_id
        started.started.heartbeat_period = int(self.heartbeat_period() * 1e9)
        started.started.managers.extend(self.manager_addrs())
        yield started
        full = dpb.ManagerMessage()
        full.assignments.full = True
        full.assignments.tasks.extend(
            self._with_credentials(t)
            for t in self.view.tasks_by_node.get(node_id, {}).values()
            if _assigned_node(t)
        )
        yield full

        reader = asyncio.create_task(self._read(node_id, session, request_iterator))
        try:
            while True:
                msg = await session.queue.get()
                if msg is None:
                    return
                yield msg
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if self.sessions.get(node_id) is session:
                del self.sessions[node_id]
            for owner, queue in list(self._logs.values()):
                if owner is session:
                    queue.put_nowait(None)
            log.info("node %s session ended", node_id)

    async def _read(self, node_id: str, session: _Session, requests: AsyncIterator[dpb.AgentMessage]) -> None:
        try:
            async for msg in requests:
                kind = msg.WhichOneof("msg")
                if self.sessions.get(node_id) is not session:
                    break
                self.deadlines[node_id] = time.monotonic() + self.grace()
                if kind == "statuses":
                    for update in msg.statuses.updates:
                        self._statuses[update.task_id] = update.status
                    self._status_wakeup.set()
                elif kind == "log_chunk":
                    waiting = self._logs.get(msg.log_chunk.request_id)
                    if waiting is not None:
                        waiting[1].put_nowait(msg.log_chunk)
        except (grpc.RpcError, asyncio.CancelledError):
            pass
        finally:
            session.queue.put_nowait(None)

    def _with_credentials(self, task: pb.Task) -> pb.Task:
        """The task as sent to its node: with the service's registry
        credentials unsealed, if it has any (they are never stored so)."""
        service = self.view.services.get(task.service_id)
        cluster = self.view.cluster()
        if service is None or not service.registry_auth_sealed or cluster is None or not cluster.seal_key:
            return task
        try:
            auth = seal.unseal(cluster.seal_key, service.registry_auth_sealed, service.meta.id.encode())
        except Exception:
            log.warning("cannot unseal the registry credentials of service %s", service.spec.name)
            return task
        sent = clone(task)
        sent.registry_auth = auth.decode()
        return sent

    def has_session(self, node_id: str) -> bool:
        return node_id in self.sessions

    async def request_logs(
        self, node_id: str, task_ids: list[str], follow: bool, tail: int, since: int
    ) -> AsyncIterator[dpb.LogChunk]:
        """Ask a connected node for the output of some of its tasks; yield the
        chunks until every task is done (or, following, until the caller stops).
        Raises NodeNotConnected when the node's session is not here."""
        session = self.sessions.get(node_id)
        if session is None:
            raise NodeNotConnected(node_id)
        request_id = new_id()
        queue: asyncio.Queue[dpb.LogChunk | None] = asyncio.Queue()
        self._logs[request_id] = (session, queue)
        msg = dpb.ManagerMessage()
        msg.log_request.request_id = request_id
        msg.log_request.task_ids.extend(task_ids)
        msg.log_request.follow = follow
        msg.log_request.tail = tail
        msg.log_request.since = since
        session.queue.put_nowait(msg)
        remaining = set(task_ids)
        try:
            while remaining:
                chunk = await queue.get()
                if chunk is None:
                    raise NodeNotConnected(node_id)
                if chunk.done:
                    remaining.discard(chunk.task_id)
                yield chunk
        finally:
            del self._logs[request_id]
            if remaining and self.sessions.get(node_id) is session:
                cancel = dpb.ManagerMessage()
                cancel.log_cancel.request_id = request_id
                session.queue.put_nowait(cancel)

    async def _register(self, node_id: str, reg: dpb.Register) -> None:
        for _ in range(10):
            current = self.view.nodes.get(node_id)
            node = clone(current) if current is not None else pb.Node()
            node.meta.id = node_id
            node.description.CopyFrom(reg.description)
            node.status.state = pb.NODE_STATE_READY
            node.status.message = ""
            node.status.addr = reg.addr
            node.status.manager_id = self.manager_id
            node.status.timestamp = now_ns()
            try:
                if current is None:
                    await self.store.create(node)
                else:
                    await self.store.update(node)
                return
            except StoreError:
                fresh = await self.store.get("nodes", node_id) if current is not None else None
                if fresh is not None:
                    self.view.observe("nodes", fresh)
                await asyncio.sleep(0.05)
        raise StoreError(f"could not register node {node_id}")


def _assigned_node(task: pb.Task | None) -> str:
    """The node a task is assigned to, once the scheduler confirmed it (a
    global task carries its node from birth, but must not reach the agent
    before the scheduler checked that it fits there)."""
    if task is None or task.status.state < pb.TASK_STATE_ASSIGNED:
        return ""
    return task.node_id


def _peer_ip(peer: str) -> str:
    """'ipv4:127.0.0.1:5000' or 'ipv6:[::1]:5000' -> the address."""
    _, _, rest = peer.partition(":")
    host = rest.rsplit(":", 1)[0]
    return host.strip("[]")


def _moves_forward(current: pb.TaskStatus, new: pb.TaskStatus) -> bool:
    """Statuses never go backwards; the same state may carry news (health,
    a message)."""
    if new.state < current.state:
        return False
    return new.state > current.state or new.SerializeToString() != current.SerializeToString()
