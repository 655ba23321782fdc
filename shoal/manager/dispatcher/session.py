"""One node's session as a dispatcher holds it, and messages of bounded size.

A ``NodeSession`` is the outbox of messages going to one agent, the
assignment changes gathered for it between flushes (``own_report`` says
which changes the agent needs not hear of), the certificate the node
holds, and why the session ended if the node misbehaved.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from shoal.manager.dispatcher.checks import AGENT_STATES
from shoal.outbox import Outbox
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

# Assignments per message, in bytes: far below the agent's receive limit.
ASSIGNMENT_CHUNK_BYTES = 1024 * 1024
# One assignment message to a node follows another no sooner than this: a
# node given a hundred tasks by successive scheduler passes gets them in a
# few messages, not one per pass (a message costs both ends more than the
# tasks in it); an assignment alone goes at once.
ASSIGNMENT_MIN_INTERVAL = 0.1

HEARTBEAT_ACK = dpb.ManagerMessage(heartbeat_ack=dpb.HeartbeatAck())


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


def own_report(old: pb.Task | None, new: pb.Task) -> bool:
    """Whether a change of a task its node already holds is only a status
    the node reported (written by the dispatcher): sending it back would
    tell the agent nothing. Everything else the agent acts on (desired
    state, node, spec version; the spec is immutable) goes to it, and so
    does a status someone else wrote (the scheduler's, ``node rm``'s)."""
    return (
        old is not None
        and new.status.state in AGENT_STATES
        and old.desired_state == new.desired_state
        and old.spec_version == new.spec_version
    )


class NodeSession:
    def __init__(self, node_id: str, cert_pem: bytes) -> None:
        self.node_id = node_id
        # What goes to the agent: assignments, acknowledgements and the
        # like before task input (exec stdin), see shoal.outbox.
        self.queue: Outbox[dpb.ManagerMessage] = Outbox()
        self.upserts: dict[str, pb.Task] = {}
        self.removed: set[str] = set()
        self._flushed = 0.0  # when assignments last went out (monotonic)
        self._flush_later: asyncio.TimerHandle | None = None
        # The certificate the node holds: presented, or issued since.
        self.cert_pem = cert_pem
        self.last_renewal = 0.0
        # Why the session ends, when the node misbehaved.
        self.error: tuple[grpc.StatusCode, str] | None = None

    def send(self, msg: dpb.ManagerMessage) -> None:
        self.queue.put_nowait(msg)

    def send_bulk(self, msg: dpb.ManagerMessage) -> None:
        self.queue.put_bulk(msg)

    def end(self) -> None:
        if self._flush_later is not None:
            self._flush_later.cancel()
            self._flush_later = None
        self.queue.put_nowait(None)

    def flush(self) -> None:
        """Send the assignment changes gathered since the last flush: at once
        when the last message went out ASSIGNMENT_MIN_INTERVAL ago, else
        then (what changes meanwhile joins it; the newest version of each
        task wins)."""
        if self._flush_later is not None or (not self.upserts and not self.removed):
            return
        wait = self._flushed + ASSIGNMENT_MIN_INTERVAL - time.monotonic()
        if wait > 0:
            self._flush_later = asyncio.get_running_loop().call_later(wait, self._flush_now)
        else:
            self._flush_now()

    def _flush_now(self) -> None:
        self._flush_later = None
        self._flushed = time.monotonic()
        if not self.upserts and not self.removed:
            return
        for msg in assignment_messages(list(self.upserts.values()), list(self.removed), full=False):
            self.queue.put_nowait(msg)
        self.upserts.clear()
        self.removed.clear()

    def fail(self, code: grpc.StatusCode, message: str) -> None:
        """End the session because the node overstepped (first reason wins)."""
        if self.error is None:
            self.error = (code, message)
            log.warning("ending the session of node %s: %s", self.node_id, message)
        self.end()
