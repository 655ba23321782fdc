"""The agent's session: one long-lived stream to a manager, and failover.

Dial a manager (mutual TLS), send Register, receive SessionStarted (node ID,
heartbeat period, the managers to fail over to), the roots to trust and the
full set of assignments (in several messages when it is large), then at
once: heartbeat every period, send task statuses in batches (everything
reported within ``STATUS_BATCH_DELAY`` goes in one message), and hand
assignment changes to the worker. When the stream breaks, try the next
manager with capped exponential backoff; tasks keep running meanwhile and
statuses wait in the outbox (the newest per task wins).

The certificate is renewed over the open session, at a random point between
50 % and 80 % of its lifetime, or at once when the manager says the cluster's
CA changed; the session, the node ID and the tasks are not disturbed. The
new certificate is used from the next connection on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from shoal import pki
from shoal.agent.identity import NodeIdentity, renewal_request, renewed, with_roots
from shoal.agent.logs import LogStreamer
from shoal.agent.worker import Worker
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import dispatcher_pb2_grpc as dgrpc
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

STATUS_BATCH_DELAY = 0.05
BACKOFF_START = 0.2
BACKOFF_MAX = 5.0
# A renewal that got no answer is asked again after this long.
RENEWAL_RETRY = 5.0


class SessionRefused(Exception):
    """The cluster will not take this node back (it was removed)."""


class Session:
    def __init__(
        self,
        identity: NodeIdentity,
        managers: list[str],
        description: pb.NodeDescription,
        addr: str,
        state_dir: Path,
    ) -> None:
        self.identity = identity
        self.state_dir = state_dir
        self.managers = list(managers)
        self.description = description
        self.addr = addr
        self.worker: Worker | None = None
        self.heartbeat_period = 5.0
        self._outbox: dict[str, pb.TaskStatus] = {}
        self._outbox_ready = asyncio.Event()
        self.connected = asyncio.Event()
        # Renewal: when to ask next (monotonic), and the key of a request in flight.
        self._renew_at = time.monotonic() + pki.renewal_delay(identity.cert_pem)
        self._renew_now = asyncio.Event()
        self._pending_key: bytes | None = None
        self.renewals = 0

    def report(self, task_id: str, status: pb.TaskStatus) -> None:
        """Queue a task status for the manager (called by the worker)."""
        self._outbox[task_id] = status
        self._outbox_ready.set()

    async def run(self, worker: Worker) -> None:
        self.worker = worker
        backoff = BACKOFF_START
        index = 0
        while True:
            addr = self.managers[index % len(self.managers)]
            try:
                await self._session(addr)
                backoff = BACKOFF_START
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.PERMISSION_DENIED:
                    raise SessionRefused(err.details() or "the manager refused this node") from None
                if self.identity.expired():
                    raise SessionRefused(self.identity.expiry_problem(self.state_dir)) from None
                if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                    log.error("manager %s refused this node: %s", addr, err.details())
                else:
                    log.warning("session with %s ended: %s", addr, err.details() or err.code().name)
            except (OSError, ConnectionError) as err:
                log.warning("session with %s failed: %s", addr, err)
            self.connected.clear()
            index += 1
            await asyncio.sleep(backoff * (0.5 + random.random()))
            # Never wait longer than a heartbeat period between attempts: a
            # restarted manager gives nodes a grace of a few periods only.
            backoff = min(BACKOFF_MAX, self.heartbeat_period, backoff * 2)

    async def _session(self, addr: str) -> None:
        assert self.worker is not None
        creds = self.identity.channel_credentials()
        async with grpc.aio.secure_channel(addr, creds, options=pki.CHANNEL_OPTIONS) as channel:
            stub = dgrpc.DispatcherStub(channel)
            send_queue: asyncio.Queue[dpb.AgentMessage | None] = asyncio.Queue()
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
            streamer = LogStreamer(self.worker, send_queue.put_nowait)
            full_set: list[pb.Task] = []
            try:
                async for msg in call:
                    kind = msg.WhichOneof("msg")
                    if kind == "started":
                        self._on_started(msg.started, addr)
                        helpers = [
                            asyncio.create_task(self._heartbeats(send_queue)),
                            asyncio.create_task(self._send_statuses(send_queue)),
                            asyncio.create_task(self._renewals(send_queue)),
                        ]
                        self.connected.set()
                    elif kind == "assignments":
                        a = msg.assignments
                        if a.full:
                            # A large set comes in pieces: apply it whole.
                            full_set.extend(a.tasks)
                            if a.more:
                                continue
                            tasks, full_set = full_set, []
                            await self.worker.assign(tasks, list(a.removed), True)
                        else:
                            await self.worker.assign(list(a.tasks), list(a.removed), False)
                    elif kind == "trust":
                        self._on_trust(msg.trust)
                    elif kind == "certificate":
                        self._on_certificate(msg.certificate)
                    elif kind == "log_request":
                        streamer.start(msg.log_request)
                    elif kind == "log_cancel":
                        streamer.cancel(msg.log_cancel.request_id)
            finally:
                await streamer.close()
                for h in helpers:
                    h.cancel()
                for h in helpers:
                    with contextlib.suppress(asyncio.CancelledError):
                        await h
                await send_queue.put(None)
                call.cancel()

    def _on_started(self, started: dpb.SessionStarted, addr: str) -> None:
        if started.node_id != self.identity.node_id:
            log.warning("manager calls this node %s, expected %s", started.node_id, self.identity.node_id)
        if started.heartbeat_period:
            self.heartbeat_period = started.heartbeat_period / 1e9
        if started.managers:
            # Keep the one that answered first so a reconnect tries it again.
            self.managers = [addr] + [m for m in started.managers if m != addr]
        log.info("session with manager %s (heartbeat %.3gs)", addr, self.heartbeat_period)
        # Statuses queued while disconnected go out now.
        if self._outbox:
            self._outbox_ready.set()

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

    async def _renewals(self, queue: asyncio.Queue[dpb.AgentMessage | None]) -> None:
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

    async def _heartbeats(self, queue: asyncio.Queue[dpb.AgentMessage | None]) -> None:
        beat = dpb.AgentMessage(heartbeat=dpb.Heartbeat())
        while True:
            await queue.put(beat)
            await asyncio.sleep(self.heartbeat_period)

    async def _send_statuses(self, queue: asyncio.Queue[dpb.AgentMessage | None]) -> None:
        while True:
            await self._outbox_ready.wait()
            await asyncio.sleep(STATUS_BATCH_DELAY)
            self._outbox_ready.clear()
            batch, self._outbox = self._outbox, {}
            if not batch:
                continue
            msg = dpb.AgentMessage()
            for task_id, status in batch.items():
                msg.statuses.updates.add(task_id=task_id, status=status)
            await queue.put(msg)
