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

Task logs, exec streams and commits ride the same session (``logrelay``,
``execrelay``); each answer is accepted only from the session asked.

Labels: an agent's ``--label`` values become the node's labels when it first
registers; afterwards only ``node update`` changes them, whatever the agent
sends.

Assignments are routed with the view's tasks-by-node index: one event touches
one session, never a scan of all tasks. Large sets go in several messages of
at most ``ASSIGNMENT_CHUNK_BYTES``. The copy of a task sent to its node
carries what is never stored with it (``sealed``).

The routing mesh's endpoint sets (``endpoints.EndpointTable``: which running
tasks each published port may reach) go to every session: the whole set when
it starts, then the changes, gathered for ``endpoints.FLUSH_INTERVAL`` and
sent as the same messages to all. Each node's summary of its mesh
(``MeshReport``) is written into its Node object (``meshreports``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from shoal import defaults, pki
from shoal.manager.auth import Authorizer, ca_bundle
from shoal.manager.dispatcher import endpoints, sealed
from shoal.manager.dispatcher.certificates import CertificateDesk, trust_update
from shoal.manager.dispatcher.checks import (
    NotYours,
    check_log_chunk,
    check_mesh_report,
    check_registration,
    check_status,
)
from shoal.manager.dispatcher.execrelay import CommitRelay, ExecRelay, TaskIOPort
from shoal.manager.dispatcher.liveness import Liveness
from shoal.manager.dispatcher.logrelay import LogRelay
from shoal.manager.dispatcher.meshreports import MeshReportWriter
from shoal.manager.dispatcher.registration import register
from shoal.manager.dispatcher.session import HEARTBEAT_ACK, NodeSession, assignment_messages, own_report
from shoal.manager.dispatcher.statuses import StatusWriter
from shoal.manager.keyring import KeyRing, Locked
from shoal.manager.logsource import NodeNotConnected
from shoal.manager.store import (
    Event,
    Store,
    View,
)
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import dispatcher_pb2_grpc as dgrpc
from shoal.protos import objects_pb2 as pb
from shoal.rules import limits
from shoal.rules.errors import InvalidRequest

log = logging.getLogger(__name__)


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
        self.sessions: dict[str, NodeSession] = {}
        self.statuses = StatusWriter(view, store)
        self.liveness = Liveness(view, store, manager_id, self.heartbeat_period, self.grace, self._expired)
        self.logs = LogRelay()
        self.execs = ExecRelay()
        self.commits = CommitRelay()
        # What the ControlAPI asks of this dispatcher for exec and commit.
        self.taskio = TaskIOPort(self.sessions, self.execs, self.commits)
        self.certificates = CertificateDesk(view, store, keyring)
        self.endpoints = endpoints.EndpointFeed(view, lambda: self.sessions.values())
        self.mesh_reports = MeshReportWriter(view, store)
        self._background: set[asyncio.Task[None]] = set()
        # Session messages received and sent, for benchmarks (`shoal info`'s stats).
        self.stats = {"messages_in": 0, "messages_out": 0}

    @property
    def renewals(self) -> int:
        return self.certificates.renewals

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
                self.liveness.expect_back(node.meta.id)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._route_assignments(), name="dispatcher-assignments")
            tg.create_task(self.statuses.run(), name="dispatcher-statuses")
            tg.create_task(self.liveness.run(), name="dispatcher-liveness")
            tg.create_task(self.endpoints.run(), name="dispatcher-endpoints")
            tg.create_task(self.mesh_reports.run(), name="dispatcher-mesh-reports")

    async def _route_assignments(self) -> None:
        sub = self.view.subscribe(["tasks", "nodes", "services", "clusters", "keys"])
        try:
            while True:
                events = await sub.get_batch()
                touched: set[NodeSession] = set()
                for ev in events:
                    self.endpoints.apply(ev)
                    if ev.kind == "services":
                        continue
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
                                session.send(trust_update(ev.new, session))
                        continue
                    self._route(ev, touched)
                for session in touched:
                    session.flush()
        finally:
            sub.close()

    def _end_session(self, node_id: str) -> None:
        self.liveness.forget(node_id)
        self._expired(node_id)

    def _expired(self, node_id: str) -> None:
        session = self.sessions.pop(node_id, None)
        if session is not None:
            session.end()

    def _route(self, ev: Event, touched: set[NodeSession]) -> None:
        old_node = _assigned_node(ev.old)
        new_node = _assigned_node(ev.new)
        if old_node and old_node != new_node and (s := self.sessions.get(old_node)):
            s.upserts.pop(ev.id, None)
            s.removed.add(ev.id)
            touched.add(s)
        if new_node and (s := self.sessions.get(new_node)):
            assert ev.new is not None
            if old_node == new_node and own_report(ev.old, ev.new):
                return  # the node's own status, written: it knows it already
            s.removed.discard(ev.id)
            s.upserts[ev.id] = self._with_credentials(ev.new)
            touched.add(s)

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
        except InvalidRequest as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"registration refused: {err}")
        if not first.register.addr:
            # Like Docker: a node that names no address is reached at the one
            # it connected from.
            first.register.addr = pki.peer_address(context)
        await register(self.view, self.store, self.manager_id, node_id, first.register, cert_pem)
        old = self.sessions.get(node_id)
        if old is not None:
            old.queue.put_nowait(None)
        session = NodeSession(node_id, cert_pem)
        self.sessions[node_id] = session
        self.liveness.beat(node_id)
        log.info("node %s (%s) connected", node_id, first.register.description.hostname)

        started = dpb.ManagerMessage()
        started.started.node_id = node_id
        started.started.heartbeat_period = int(self.heartbeat_period() * 1e9)
        started.started.managers.extend(self.manager_addrs())
        yield started
        yield trust_update(self.view.cluster(), session)
        tasks = [
            self._with_credentials(t)
            for t in self.view.tasks_by_node.get(node_id, {}).values()
            if _assigned_node(t)
        ]
        for msg in assignment_messages(tasks, [], full=True):
            yield msg
        for msg in self.endpoints.full():
            yield msg

        reader = asyncio.create_task(self._read(node_id, session, request_iterator))
        try:
            while True:
                queued = await session.queue.get()
                if queued is None:
                    break
                self.stats["messages_out"] += 1
                yield queued
            if session.error is not None:
                await context.abort(*session.error)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if self.sessions.get(node_id) is session:
                del self.sessions[node_id]
            self.logs.session_ended(session)
            self.execs.session_ended(session)
            self.commits.session_ended(session)
            log.info("node %s session ended", node_id)

    async def _read(
        self, node_id: str, session: NodeSession, requests: AsyncIterator[dpb.AgentMessage]
    ) -> None:
        try:
            async for msg in requests:
                self.stats["messages_in"] += 1
                kind = msg.WhichOneof("msg")
                if self.sessions.get(node_id) is not session:
                    break
                self.liveness.beat(node_id)
                if kind == "heartbeat":
                    session.queue.put_nowait(HEARTBEAT_ACK)
                elif kind == "statuses":
                    if not self._take_statuses(session, msg.statuses):
                        break
                elif kind == "log_chunk":
                    try:
                        check_log_chunk(msg.log_chunk)
                    except InvalidRequest as err:
                        session.fail(grpc.StatusCode.INVALID_ARGUMENT, str(err))
                        break
                    self.logs.deliver(session, msg.log_chunk)
                elif kind == "cert_request":
                    self._spawn(self._renew(session, msg.cert_request))
                elif kind == "mesh_report":
                    try:
                        self.mesh_reports.add(node_id, check_mesh_report(msg.mesh_report))
                    except InvalidRequest as err:
                        session.fail(grpc.StatusCode.INVALID_ARGUMENT, str(err))
                        break
                elif kind == "exec":
                    self.execs.deliver(session, msg.exec)
                elif kind == "commit":
                    self.commits.deliver(session, msg.commit)
        except (grpc.RpcError, asyncio.CancelledError):
            pass
        finally:
            session.queue.put_nowait(None)

    def _take_statuses(self, session: NodeSession, batch: dpb.TaskStatusBatch) -> bool:
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
            except InvalidRequest as err:
                session.fail(grpc.StatusCode.INVALID_ARGUMENT, str(err))
                return False
        if checked:
            self.statuses.add(checked)
        return True

    # -------------------------------------------------------------- certificates

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _renew(self, session: NodeSession, request: dpb.CertificateRequest) -> None:
        reply = await self.certificates.renew(session, request)
        if self.sessions.get(session.node_id) is session:
            session.send(reply)

    def _with_credentials(self, task: pb.Task) -> pb.Task:
        """The task as sent to its node: with what is never stored with it
        (registry credentials, secret and config values; ``sealed``)."""
        return sealed.as_sent(self.view, self.keyring, task)

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
        chunks = self.logs.request(
            session, lambda: self.sessions.get(node_id) is session, task_ids, follow, tail, since
        )
        async for chunk in chunks:
            yield chunk


def _assigned_node(task: pb.Task | None) -> str:
    """The node a task is assigned to, once the scheduler confirmed it (a
    global task carries its node from birth, but must not reach the agent
    before the scheduler checked that it fits there)."""
    if task is None or task.status.state < pb.TASK_STATE_ASSIGNED:
        return ""
    return task.node_id
