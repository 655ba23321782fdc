"""The dispatcher: every agent's one session with the managers.

Runs on every manager, leader or not. An agent opens ``Session`` with a
Register message; the dispatcher records the node (description, address,
READY, and which manager holds the session), answers with SessionStarted (its
node ID, the heartbeat period, the managers to fail over to) and the full set
of the node's tasks, then streams changes as the view sees them.

What the agent sends back, each checked first (``checks``: a node speaks
only for its own tasks, in the states agents own, within bounds):
- heartbeats: each one pushes the node's deadline to now + 3 periods (Swarm's
  grace); a node past its deadline is marked DOWN by the manager that held its
  session (``NodeMonitor`` on the leader covers managers that died);
- task statuses: collected from all sessions and written every 100 ms in one
  batch; a status never moves a task backwards;
- certificate requests: the node's renewal (or re-certification during a CA
  rotation), signed here with the cluster CA for the same node ID. Whenever
  the cluster's roots change, every session is told which roots to trust and
  whether to renew (``TrustUpdate``).

Labels: an agent's ``--label`` values become the node's labels when it first
registers; afterwards only ``node update`` changes them, whatever the agent
sends.

Assignments are routed with the view's tasks-by-node index: one event touches
one session, never a scan of all tasks. Large sets go in several messages of
at most ``ASSIGNMENT_CHUNK_BYTES``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from shoal import defaults, pki
from shoal.ids import new_id
from shoal.manager import limits, seal
from shoal.manager.auth import Authorizer, ca_bundle, trusted_roots
from shoal.manager.dispatcher.checks import NotYours, check_log_chunk, check_registration, check_status
from shoal.manager.keyring import KeyRing, Locked
from shoal.manager.logsource import NodeNotConnected
from shoal.manager.nodes import marked_down
from shoal.manager.store import (
    AlreadyExists,
    Event,
    NotFound,
    Store,
    StoreError,
    VersionConflict,
    View,
    clone,
    now_ns,
    on_conflict,
    update_with_retry,
)
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import dispatcher_pb2_grpc as dgrpc
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

STATUS_FLUSH_INTERVAL = 0.1
# How often a write that lost a race is redone at once.
STATUS_ATTEMPTS = 5
REGISTER_ATTEMPTS = 10
# Assignments per message, in bytes: far below the agent's receive limit.
ASSIGNMENT_CHUNK_BYTES = 1024 * 1024
# A node asks for a certificate a few times per lifetime; more often than
# this is refused (each one signs and writes the node object).
MIN_RENEWAL_INTERVAL = 1.0
MAX_CSR_BYTES = 8 * 1024


def assignment_messages(tasks: list[pb.Task], removed: list[str], full: bool) -> list[dpb.ManagerMessage]:
    """One set of assignments as messages of bounded size; for a full set,
    all but the last say ``more``."""
    messages: list[dpb.ManagerMessage] = []
    msg, size = dpb.ManagerMessage(), 0
    msg.assignments.full = full
    for task in tasks:
        task_size = task.ByteSize() + 8  # and the field's tag and length
        if msg.assignments.tasks and size + task_size > ASSIGNMENT_CHUNK_BYTES:
            msg.assignments.more = full
            messages.append(msg)
            msg, size = dpb.ManagerMessage(), 0
            msg.assignments.full = full
        msg.assignments.tasks.append(task)
        size += task_size
    msg.assignments.removed.extend(removed)
    messages.append(msg)
    return messages


HEARTBEAT_ACK = dpb.ManagerMessage(heartbeat_ack=dpb.HeartbeatAck())


class _Session:
    def __init__(self, node_id: str, cert_pem: bytes) -> None:
        self.node_id = node_id
        self.queue: asyncio.Queue[dpb.ManagerMessage | None] = asyncio.Queue()
        self.upserts: dict[str, pb.Task] = {}
        self.removed: set[str] = set()
        # The certificate the node holds: presented, or issued since.
        self.cert_pem = cert_pem
        self.last_renewal = 0.0
        # Why the session ends, when the node misbehaved.
        self.error: tuple[grpc.StatusCode, str] | None = None

    def flush(self) -> None:
        if not self.upserts and not self.removed:
            return
        for msg in assignment_messages(list(self.upserts.values()), list(self.removed), full=False):
            self.queue.put_nowait(msg)
        self.upserts.clear()
        self.removed.clear()

    def fail(self, code: grpc.StatusCode, message: str) -> None:
        if self.error is None:
            self.error = (code, message)
            log.warning("ending the session of node %s: %s", self.node_id, message)
        self.queue.put_nowait(None)


class Dispatcher(dgrpc.DispatcherServicer):
    def __init__(
        self,
        view: View,
        store: Store,
        authorizer: Authorizer,
        keyring: KeyRing,
        manager_id: str,
        manager_addrs: Callable[[], list[str]],
    ) -> None:
        self.view = view
        self.store = store
        self.auth = authorizer
        self.keyring = keyring
        self.manager_id = manager_id
        self.manager_addrs = manager_addrs
        self.sessions: dict[str, _Session] = {}
        self.deadlines: dict[str, float] = {}
        self._statuses: dict[str, pb.TaskStatus] = {}
        self._status_wakeup = asyncio.Event()
        # Log requests in flight: request ID -> (session, queue of chunks)
        self._logs: dict[str, tuple[_Session, asyncio.Queue[dpb.LogChunk | None]]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.renewals = 0

    def heartbeat_period(self) -> float:
        cluster = self.view.cluster()
        return defaults.heartbeat_period(cluster.spec if cluster else None) / defaults.SECOND

    def grace(self) -> float:
        return self.heartbeat_period() * defaults.CLUSTER.grace_periods

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
        sub = self.view.subscribe(["tasks", "nodes", "clusters", "keys"])
        try:
            while True:
                events = await sub.get_batch()
                touched: set[_Session] = set()
                for ev in events:
                    if ev.kind == "nodes":
                        if ev.new is None:
                            self._end_session(ev.id)  # `node rm`: it is not ours any more
                        continue
                    if ev.kind == "keys":
                        if self.keyring.locked:
                            # New keys this manager cannot open (a CA rotation
                            # under autolock, made elsewhere): it can no longer
                            # renew certificates, so its nodes move to a manager
                            # that can.
                            for session in list(self.sessions.values()):
                                session.fail(grpc.StatusCode.UNAVAILABLE, str(Locked()))
                        continue
                    if ev.kind == "clusters":
                        if ev.old is None or ev.new is None or ca_bundle(ev.old) != ca_bundle(ev.new):
                            for session in self.sessions.values():
                                session.queue.put_nowait(self._trust_update(session))
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
            batch.update(marked_down(node, "heartbeat failure"))
        if not len(batch):
            return True
        try:
            result = await batch.commit()
        except StoreError as err:
            log.warning("marking %d node(s) down failed: %s; retrying", len(batch), err)
            return False
        for conflict in result.conflicts:
            if conflict.current is not None:
                self.view.observe(conflict.current)
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
        with contextlib.suppress(VersionConflict):  # the rest goes with the next flush
            async for attempt in on_conflict(STATUS_ATTEMPTS):
                with attempt:
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
                    # Someone else wrote those tasks (desired state): apply
                    # the statuses to the versions now stored.
                    pending = {c.obj.meta.id: c.obj.status for c in result.conflicts if c.current is not None}
                    for c in result.conflicts:
                        if c.current is not None:
                            self.view.observe(c.current)
                    raise VersionConflict("task statuses raced other writers")

    # -------------------------------------------------------------- the RPC

    async def Session(
        self, request_iterator: AsyncIterator[dpb.AgentMessage], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[dpb.ManagerMessage]:
        ident = await self.auth.require(context, pki.ROLE_WORKER)
        node_id = ident.node_id
        if self.keyring.locked:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(Locked()))
        cert_pem = pki.peer_cert_pem(context) or b""
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("msg") != "register":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a session starts with Register")
            return
        try:
            check_registration(first.register)
        except ValueError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"registration refused: {err}")
        if not first.register.addr:
            # Like Docker: a node that names no address is reached at the one
            # it connected from.
            first.register.addr = pki.peer_address(context)
        await self._register(node_id, first.register, cert_pem)
        old = self.sessions.get(node_id)
        if old is not None:
            old.queue.put_nowait(None)
        session = _Session(node_id, cert_pem)
        self.sessions[node_id] = session
        self.deadlines[node_id] = time.monotonic() + self.grace()
        log.info("node %s (%s) connected", node_id, first.register.description.hostname)

        started = dpb.ManagerMessage()
        started.started.node_id = node_id
        started.started.heartbeat_period = int(self.heartbeat_period() * 1e9)
        started.started.managers.extend(self.manager_addrs())
        yield started
        yield self._trust_update(session)
        tasks = [
            self._with_credentials(t)
            for t in self.view.tasks_by_node.get(node_id, {}).values()
            if _assigned_node(t)
        ]
        for msg in assignment_messages(tasks, [], full=True):
            yield msg

        reader = asyncio.create_task(self._read(node_id, session, request_iterator))
        try:
            while True:
                queued = await session.queue.get()
                if queued is None:
                    break
                yield queued
            if session.error is not None:
                await context.abort(*session.error)
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
                if kind == "heartbeat":
                    session.queue.put_nowait(HEARTBEAT_ACK)
                elif kind == "statuses":
                    if not self._take_statuses(session, msg.statuses):
                        break
                elif kind == "log_chunk":
                    waiting = self._logs.get(msg.log_chunk.request_id)
                    if waiting is not None and waiting[0] is session:
                        try:
                            check_log_chunk(msg.log_chunk)
                        except ValueError as err:
                            session.fail(grpc.StatusCode.INVALID_ARGUMENT, str(err))
                            break
                        waiting[1].put_nowait(msg.log_chunk)
                elif kind == "cert_request":
                    self._spawn(self._renew(session, msg.cert_request))
        except (grpc.RpcError, asyncio.CancelledError):
            pass
        finally:
            session.queue.put_nowait(None)

    def _take_statuses(self, session: _Session, batch: dpb.TaskStatusBatch) -> bool:
        """Queue the statuses of one message for writing, all or none; False
        (and the session failed) when the node overstepped."""
        if len(batch.updates) > limits.MAX_STATUS_UPDATES:
            session.fail(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"statuses: at most {limits.MAX_STATUS_UPDATES} in one message, got {len(batch.updates)}",
            )
            return False
        checked: dict[str, pb.TaskStatus] = {}
        for update in batch.updates:
            task = self.view.tasks.get(update.task_id)
            if task is None or not _assigned_node(task):
                continue  # gone, or not yet assigned in this view: nothing to write
            try:
                checked[update.task_id] = check_status(session.node_id, task, update.status)
            except NotYours as err:
                session.fail(grpc.StatusCode.PERMISSION_DENIED, str(err))
                return False
            except ValueError as err:
                session.fail(grpc.StatusCode.INVALID_ARGUMENT, str(err))
                return False
        if checked:
            self._statuses.update(checked)
            self._status_wakeup.set()
        return True

    # -------------------------------------------------------------- certificates

    def _trust_update(self, session: _Session) -> dpb.ManagerMessage:
        """Which roots the node should trust, and whether it must renew (its
        certificate is not from the current root: a CA rotation)."""
        msg = dpb.ManagerMessage()
        cluster = self.view.cluster()
        if cluster is None:
            return msg
        msg.trust.ca_pem = ca_bundle(cluster)
        msg.trust.renew = pki.issuer_of(session.cert_pem, (cluster.root_ca.cert_pem,)) is None
        return msg

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _renew(self, session: _Session, request: dpb.CertificateRequest) -> None:
        reply = dpb.ManagerMessage()
        now = time.monotonic()
        cluster = self.view.cluster()
        if now - session.last_renewal < MIN_RENEWAL_INTERVAL:
            reply.certificate.error = "certificate requests too frequent; retry in a second"
        elif len(request.csr_pem) > MAX_CSR_BYTES or cluster is None:
            reply.certificate.error = "certificate request refused: too large"
        else:
            session.last_renewal = now
            expiry = defaults.cert_expiry(cluster.spec) // defaults.SECOND
            try:
                cert = self.keyring.ca().sign_csr(
                    request.csr_pem, session.node_id, pki.ROLE_WORKER, cluster.meta.id, expiry
                )
            except (Locked, ValueError) as err:
                reply.certificate.error = f"certificate request refused: {err}"
            else:
                reply.certificate.cert_pem = cert
                reply.certificate.ca_pem = ca_bundle(cluster)
                session.cert_pem = cert
                self.renewals += 1
                try:
                    await self._record_certificate(session.node_id, cert, issued=True)
                except StoreError as err:
                    log.warning("recording node %s's new certificate: %s", session.node_id, err)
                log.info("renewed the certificate of node %s", session.node_id)
        if self.sessions.get(session.node_id) is session:
            session.queue.put_nowait(reply)

    def _certificate_record(self, cert_pem: bytes, issued: bool) -> pb.NodeCertificate:
        record = pb.NodeCertificate()
        cluster = self.view.cluster()
        if not cert_pem or cluster is None:
            return record
        info = pki.cert_info(cert_pem)
        issuer = pki.issuer_of(cert_pem, trusted_roots(cluster))
        record.serial = info.serial
        record.not_after = int(info.not_after.timestamp() * 1e9)
        record.ca_digest = pki.cert_digest(issuer) if issuer else ""
        record.issued_at = now_ns() if issued else 0
        return record

    async def _record_certificate(self, node_id: str, cert_pem: bytes, issued: bool) -> None:
        record = self._certificate_record(cert_pem, issued)

        def change(node: pb.Node) -> None:
            node.certificate.CopyFrom(record)

        await update_with_retry(self.view, self.store, pb.Node, node_id, change)

    def _with_credentials(self, task: pb.Task) -> pb.Task:
        """The task as sent to its node: with the service's registry
        credentials unsealed, if it has any (they are never stored so)."""
        service = self.view.services.get(task.service_id)
        if service is None or not service.registry_auth_sealed:
            return task
        try:
            key = self.keyring.seal_key()
            auth = seal.unseal(key, service.registry_auth_sealed, service.meta.id.encode())
        except Exception:
            log.warning("cannot unseal the registry credentials of service %s", service.spec.name)
            return task
        sent = clone(task)
        sent.registry_auth = auth.decode()
        return sent

    def announce_managers(self, addrs: list[str]) -> None:
        """Tell every connected node the managers it may fail over to."""
        msg = dpb.ManagerMessage()
        msg.managers.managers.extend(addrs)
        for session in self.sessions.values():
            session.queue.put_nowait(msg)

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

    async def _register(self, node_id: str, reg: dpb.Register, cert_pem: bytes) -> None:
        async for attempt in on_conflict(REGISTER_ATTEMPTS):
            with attempt:
                await self._register_once(node_id, reg, cert_pem)

    async def _register_once(self, node_id: str, reg: dpb.Register, cert_pem: bytes) -> None:
        current = self.view.nodes.get(node_id)
        node = clone(current) if current is not None else pb.Node()
        node.meta.id = node_id
        node.description.CopyFrom(reg.description)
        if current is None:
            # First join: the agent's labels become the node's.
            node.spec.labels.update(reg.description.labels)
        else:
            # Later registrations cannot change them, nor the record of them.
            node.description.labels.clear()
            node.description.labels.update(current.description.labels)
        record = self._certificate_record(cert_pem, issued=False)
        if current is None or current.certificate.serial != record.serial:
            node.certificate.CopyFrom(record)
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
        except (VersionConflict, AlreadyExists, NotFound):
            # Another writer (node update, a registration elsewhere): read
            # it again and redo.
            with contextlib.suppress(NotFound):
                self.view.observe(await self.store.get(pb.Node, node_id))
            raise VersionConflict(f"node {node_id} changed while it registered") from None


def _assigned_node(task: pb.Task | None) -> str:
    """The node a task is assigned to, once the scheduler confirmed it (a
    global task carries its node from birth, but must not reach the agent
    before the scheduler checked that it fits there)."""
    if task is None or task.status.state < pb.TASK_STATE_ASSIGNED:
        return ""
    return task.node_id


def _moves_forward(current: pb.TaskStatus, new: pb.TaskStatus) -> bool:
    """Statuses never go backwards; the same state may carry news (health,
    a message)."""
    if new.state < current.state:
        return False
    return new.state > current.state or new.SerializeToString() != current.SerializeToString()
