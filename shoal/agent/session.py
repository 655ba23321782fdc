"""The agent's session: one long-lived stream to a manager, and failover.

Dial a manager (mutual TLS), send Register, receive SessionStarted (node ID,
heartbeat period, the managers to fail over to), the roots to trust and the
full set of assignments (in several messages when it is large), then at
once: heartbeat every period, send task statuses in batches
(``statuses.StatusOutbox``), and hand assignment changes to the worker. When
the stream breaks, try the next manager with capped exponential backoff;
tasks keep running meanwhile and statuses wait in the outbox (the newest per
task wins).

Log requests, execs and commits arrive on the same session (``logs``,
``taskio``); what they send back is bulk, which heartbeats and statuses
always overtake (``shoal.outbox``).

The routing mesh's endpoint sets arrive on the same stream (a full set when
the session starts, then changes) and go to the node's ``Mesh``; its summary
goes back as a ``MeshReport`` when it changed, at most once per heartbeat
period. The mesh keeps serving with the last sets while no session runs.

The certificate is renewed over the open session, at a random point between
50 % and 80 % of its lifetime, or at once when the manager says the cluster's
CA changed; the session, the node ID and the tasks are not disturbed. The
new certificate is used from the next connection on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import tenacity

from shoal import defaults, pki
from shoal.agent.identity import NodeIdentity, renewal_request, renewed, with_roots
from shoal.agent.logs import LogStreamer
from shoal.agent.mesh import Mesh
from shoal.agent.mesh.reports import report_mesh
from shoal.agent.statuses import StatusOutbox
from shoal.agent.taskio import Link, TaskIO
from shoal.agent.worker import Worker
from shoal.fsutil import write_atomically
from shoal.outbox import Outbox
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import dispatcher_pb2_grpc as dgrpc
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

BACKOFF_START = 0.2
BACKOFF_MAX = 5.0
# A manager silent for this many heartbeat periods (at least MIN_SILENCE
# seconds) is taken for hung: the same span as the grace a manager gives a
# silent node, so a node leaves a hung manager before anyone calls it down.
SILENT_PERIODS = 3
MIN_SILENCE = 3.0
# The watchdog looks this long after the silence could have passed its limit.
WATCHDOG_SLACK = 0.01
# A renewal that got no answer is asked again after this long.
RENEWAL_RETRY = 5.0


class SessionRefused(Exception):
    """The cluster will not take this node back (it was removed)."""


class NodeRemoved(SessionRefused):
    """This node was removed from the cluster (`node rm`): for good."""


class ManagerSilent(Exception):
    """The manager stopped answering within a session."""


class _NoSession(Exception):
    """No session could be started with a manager: try the next one."""


MANAGERS_FILE = "managers.json"


def load_managers(state_dir: Path) -> list[str]:
    """The managers the cluster last named (empty when unknown or unreadable)."""
    try:
        data = json.loads((state_dir / MANAGERS_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [m for m in data if isinstance(m, str)] if isinstance(data, list) else []


def save_managers(state_dir: Path, managers: list[str]) -> None:
    write_atomically(state_dir / MANAGERS_FILE, (json.dumps(managers) + "\n").encode())


class Session:
    def __init__(
        self,
        identity: NodeIdentity,
        managers: list[str],
        description: pb.NodeDescription,
        addr: str,
        state_dir: Path,
        mesh: Mesh | None = None,
    ) -> None:
        self.identity = identity
        self.mesh = mesh
        self.state_dir = state_dir
        self.managers = list(managers)
        self.description = description
        self.addr = addr
        self.worker: Worker | None = None
        self.taskio: TaskIO | None = None
        self.heartbeat_period = defaults.CLUSTER.heartbeat_period / defaults.SECOND
        self.statuses = StatusOutbox()
        self.connected = asyncio.Event()
        # Renewal: when to ask next (monotonic), and the key of a request in flight.
        self._renew_at = time.monotonic() + pki.renewal_delay(identity.cert_pem)
        self._renew_now = asyncio.Event()
        self._pending_key: bytes | None = None
        self.renewals = 0
        self._index = 0
        self._saved = sorted(load_managers(state_dir))

    def report(self, task_id: str, status: pb.TaskStatus) -> None:
        """Queue a task status for the manager (called by the worker)."""
        self.statuses.report(task_id, status)

    async def run(self, worker: Worker) -> None:
        """Keep a session, moving from manager to manager: after one that
        ran, at once to the next; while none answers, with exponential
        backoff and jitter (capped at a heartbeat period, since a restarted
        manager gives nodes a grace of a few periods only)."""
        self.worker = worker
        self.taskio = TaskIO(worker)
        while True:
            retrying = tenacity.AsyncRetrying(
                retry=tenacity.retry_if_exception_type(_NoSession),
                wait=tenacity.wait_random_exponential(
                    multiplier=BACKOFF_START, max=min(BACKOFF_MAX, self.heartbeat_period)
                ),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    await self._next_manager()
            # A session ran and ended: spread the reconnects of many nodes a little.
            await asyncio.sleep(random.uniform(0, min(0.5, self.heartbeat_period / 4)))

    async def _next_manager(self) -> None:
        """One session with the next manager on the list; _NoSession when it
        never started."""
        addr = self.managers[self._index % len(self.managers)]
        self._index += 1
        established = False
        try:
            established = await self._session(addr)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.PERMISSION_DENIED:
                details = err.details() or "the manager refused this node"
                if pki.REMOVED_PHRASE in details:
                    raise NodeRemoved(details) from None
                raise SessionRefused(details) from None
            if self.identity.expired():
                raise SessionRefused(self.identity.expiry_problem(self.state_dir)) from None
            if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                log.error("manager %s refused this node: %s", addr, err.details())
            else:
                log.warning("session with %s ended: %s", addr, err.details() or err.code().name)
        except ManagerSilent as err:
            log.warning("%s; moving to another manager", err)
        except (OSError, ConnectionError) as err:
            log.warning("session with %s failed: %s", addr, err)
        finally:
            self.connected.clear()
        if not established:
            raise _NoSession(addr)

    def _period(self) -> float:
        return self.heartbeat_period

    def _silence_limit(self) -> float:
        return max(MIN_SILENCE, SILENT_PERIODS * self.heartbeat_period)

    async def _session(self, addr: str) -> bool:
        """Run one session until it ends; whether it was established.
        ManagerSilent when the manager stops answering (hung, or a network
        that drops everything), which gRPC's keepalive alone finds late."""
        assert self.worker is not None and self.taskio is not None
        worker, taskio = self.worker, self.taskio
        creds = self.identity.channel_credentials()
        async with grpc.aio.secure_channel(addr, creds, options=pki.CHANNEL_OPTIONS) as channel:
            stub = dgrpc.DispatcherStub(channel)
            # Heartbeats and statuses overtake task output (shoal.outbox).
            send_queue: Outbox[dpb.AgentMessage] = Outbox()
            register = dpb.AgentMessage()
            register.register.description.CopyFrom(self.description)
            register.register.addr = self.addr
            await send_queue.put(register)

            async def outgoing() -> AsyncIterator[dpb.AgentMessage]:
                while True:
                    msg = await send_queue.get()
                    if msg is None:
                        return
                    yield msg

            call = stub.Session(outgoing())
            helpers: list[asyncio.Task[None]] = []
            streamer = LogStreamer(worker, send_queue.put_bulk)
            link = Link(send_queue.put_nowait, send_queue.put_bulk)
            full_set: list[pb.Task] = []
            heard = [time.monotonic()]
            established = [False]

            async def receive() -> None:
                nonlocal full_set
                async for msg in call:
                    heard[0] = time.monotonic()
                    kind = msg.WhichOneof("msg")
                    if kind == "started":
                        self._on_started(msg.started, addr)
                        helpers.extend(
                            [
                                asyncio.create_task(self._heartbeats(send_queue)),
                                asyncio.create_task(self.statuses.send(send_queue)),
                                asyncio.create_task(self._renewals(send_queue)),
                            ]
                        )
                        if self.mesh is not None:
                            helpers.append(
                                asyncio.create_task(report_mesh(self.mesh, send_queue.put, self._period))
                            )
                        established[0] = True
                        self.connected.set()
                    elif kind == "assignments":
                        a = msg.assignments
                        if a.full:
                            # A large set comes in pieces: apply it whole.
                            full_set.extend(a.tasks)
                            if a.more:
                                continue
                            tasks, full_set = full_set, []
                            await worker.assign(tasks, list(a.removed), True)
                        else:
                            await worker.assign(list(a.tasks), list(a.removed), False)
                    elif kind == "mesh":
                        if self.mesh is not None:
                            self.mesh.receive(msg.mesh)
                    elif kind == "managers":
                        self._on_managers(list(msg.managers.managers), addr)
                    elif kind == "trust":
                        self._on_trust(msg.trust)
                    elif kind == "certificate":
                        self._on_certificate(msg.certificate)
                    elif kind == "log_request":
                        streamer.start(msg.log_request)
                    elif kind == "log_cancel":
                        streamer.cancel(msg.log_cancel.request_id)
                    elif kind == "exec":
                        taskio.on_exec(msg.exec, link)
                    elif kind == "commit":
                        taskio.on_commit(msg.commit, link)

            async def watchdog() -> None:
                while True:
                    silent = time.monotonic() - heard[0]
                    # Until the session is up, one period (at least
                    # MIN_SILENCE): a manager that takes the connection but
                    # never answers (hung) is left sooner.
                    limit = (
                        self._silence_limit() if established[0] else max(MIN_SILENCE, self.heartbeat_period)
                    )
                    if silent > limit:
                        raise ManagerSilent(f"manager {addr} has not answered for {silent:.1f}s")
                    # Look again when the silence could first pass the limit,
                    # and at least once a period (the period may change): a
                    # thousand nodes in one process each waking every second
                    # cost it more than their heartbeats.
                    await asyncio.sleep(min(self.heartbeat_period, limit - silent) + WATCHDOG_SLACK)

            tasks = [asyncio.create_task(receive()), asyncio.create_task(watchdog())]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # raises what ended it
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError, ManagerSilent):
                        await task
                await streamer.close()
                taskio.session_ended(link)
                for h in helpers:
                    h.cancel()
                for h in helpers:
                    with contextlib.suppress(asyncio.CancelledError):
                        await h
                await send_queue.put(None)
                call.cancel()
            return established[0]

    def _on_managers(self, managers: list[str], addr: str) -> None:
        """The cluster's managers now: fail over among them, and remember
        them for the next start."""
        if not managers:
            return
        # Keep the one we are talking to first so that a reconnect tries it again.
        ordered = [addr] + [m for m in managers if m != addr] if addr in managers else list(managers)
        if ordered != self.managers:
            self.managers = ordered
            # The next attempt goes to the one after the manager we talk to.
            self._index = 1 if addr in managers else 0
            log.info("managers of the cluster: %s", ", ".join(managers))
        if sorted(managers) != self._saved:
            self._saved = sorted(managers)
            save_managers(self.state_dir, self._saved)

    def _on_started(self, started: dpb.SessionStarted, addr: str) -> None:
        if started.node_id != self.identity.node_id:
            log.warning("manager calls this node %s, expected %s", started.node_id, self.identity.node_id)
        if started.heartbeat_period:
            self.heartbeat_period = started.heartbeat_period / 1e9
        if started.managers:
            self._on_managers(list(started.managers), addr)
        log.info("session with manager %s (heartbeat %.3gs)", addr, self.heartbeat_period)
        self.statuses.wake()  # statuses queued while disconnected go out now

    # -------------------------------------------------------------- certificate

    def _on_trust(self, trust: dpb.TrustUpdate) -> None:
        if trust.ca_pem and trust.ca_pem != self.identity.ca_pem:
            self.identity = with_roots(self.state_dir, self.identity, trust.ca_pem)
            log.info(
                "the cluster's roots changed; trusting %d root(s) now", len(pki.split_pems(trust.ca_pem))
            )
        if trust.renew:
            log.info("the cluster's CA changed: renewing this node's certificate now")
            self._renew_at = time.monotonic()
            self._renew_now.set()

    def _on_certificate(self, issued: dpb.IssuedCertificate) -> None:
        key, self._pending_key = self._pending_key, None
        if issued.error or key is None:
            log.warning("certificate renewal refused: %s", issued.error or "no request in flight")
            self._renew_at = time.monotonic() + RENEWAL_RETRY
            return
        try:
            self.identity = renewed(self.state_dir, self.identity, key, issued)
        except ValueError as err:
            log.error("certificate renewal: %s", err)
            self._renew_at = time.monotonic() + RENEWAL_RETRY
            return
        self.renewals += 1
        self._renew_at = time.monotonic() + pki.renewal_delay(self.identity.cert_pem)
        info = pki.cert_info(self.identity.cert_pem)
        log.info("renewed this node's certificate (valid until %s)", info.not_after.isoformat())

    async def _renewals(self, queue: Outbox[dpb.AgentMessage]) -> None:
        """Ask for a new certificate when it is time (or when told to)."""
        while True:
            wait = self._renew_at - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._renew_now.wait(), wait)
                self._renew_now.clear()
                continue
            key, request = renewal_request()
            self._pending_key = key
            self._renew_at = time.monotonic() + RENEWAL_RETRY  # unless answered first
            await queue.put(dpb.AgentMessage(cert_request=request))

    async def _heartbeats(self, queue: Outbox[dpb.AgentMessage]) -> None:
        beat = dpb.AgentMessage(heartbeat=dpb.Heartbeat())
        while True:
            await queue.put(beat)
            await asyncio.sleep(self.heartbeat_period)
