"""Exec streams and commits, relayed over a node's session.

``ExecRelay.open`` sends an ExecOpen to the node (under a new exec ID) and
returns a ``RelayedExec``: what the client sends goes to the agent through
it, what the agent sends back for that ID comes out of it. Only the session
the exec was opened on may speak for it. The agent's output is charged
against the exec's window as it arrives (``shoal.execflow``) and released
when the client acknowledges it, so a node that sends beyond its credit is
cut off at once, before this manager holds more than a window of it.

``CommitRelay`` does the same for the one-shot commits: a request out, one
answer back (or the session's end). ``TaskIOPort`` is what the ControlAPI
holds of all this (``shoal.manager.execsource.TaskIOSource``).
"""

from __future__ import annotations

import asyncio
import logging

from shoal import execflow
from shoal.ids import new_id
from shoal.manager.dispatcher.session import NodeSession
from shoal.manager.execsource import ExecChannel, NodeBusy
from shoal.manager.logsource import NodeNotConnected
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import taskio_pb2 as tpb

log = logging.getLogger(__name__)

# What an exec's client sees when the node went away mid-command: its code
# cannot be known (255, as ssh says for a lost connection).
LOST = 255


def lost(why: str) -> tpb.ExecOutput:
    return tpb.ExecOutput(exit=tpb.ExecExit(exit_code=LOST, error=why))


class RelayedExec:
    """One exec on one node's session."""

    def __init__(self, exec_id: str, session: NodeSession) -> None:
        self.exec_id = exec_id
        self.session = session
        self.outputs: asyncio.Queue[tpb.ExecOutput] = asyncio.Queue()
        self.output_credit = execflow.Credit()
        self.ended = False

    def send(self, msg: tpb.ExecInput) -> None:
        """A client's message, on to the agent; output acknowledgements
        return the node's credit on the way."""
        if self.ended:
            return
        relayed = tpb.ExecInput()
        relayed.CopyFrom(msg)
        relayed.exec_id = self.exec_id
        if relayed.WhichOneof("msg") == "output_ack":
            self.output_credit.release(relayed.output_ack)
        out = dpb.ManagerMessage(exec=relayed)
        if relayed.WhichOneof("msg") in ("stdin", "stdin_eof"):
            # Bulk, in order: the end of input must not overtake the input.
            self.session.send_bulk(out)
        else:
            self.session.send(out)

    async def next(self) -> tpb.ExecOutput:
        """The next message from the agent (its last one has ``exit``)."""
        return await self.outputs.get()

    def end(self, final: tpb.ExecOutput | None = None) -> None:
        if not self.ended:
            self.ended = True
            if final is not None:
                self.outputs.put_nowait(final)


class ExecRelay:
    def __init__(self) -> None:
        self._execs: dict[str, RelayedExec] = {}

    def count(self, session: NodeSession) -> int:
        return sum(1 for ex in self._execs.values() if ex.session is session)

    def open(self, session: NodeSession, opened: tpb.ExecOpen) -> RelayedExec:
        if self.count(session) >= execflow.MAX_EXECS_PER_NODE:
            raise NodeBusy(f"node runs {execflow.MAX_EXECS_PER_NODE} execs already; try again later")
        ex = RelayedExec(new_id(), session)
        self._execs[ex.exec_id] = ex
        ex.send(tpb.ExecInput(open=opened))
        return ex

    def close(self, ex: RelayedExec, hangup: bool) -> None:
        """The client is done with it; with hangup, the command is told so."""
        if hangup and not ex.ended:
            ex.send(tpb.ExecInput(hangup=True))
        ex.end()
        self._execs.pop(ex.exec_id, None)

    def deliver(self, session: NodeSession, msg: tpb.ExecOutput) -> None:
        ex = self._execs.get(msg.exec_id)
        if ex is None or ex.session is not session or ex.ended:
            return  # late, or not this node's to speak for
        kind = msg.WhichOneof("msg")
        if kind == "output":
            try:
                ex.output_credit.charge(len(msg.output.data))
            except execflow.CreditExceeded as err:
                log.warning(
                    "node %s broke exec flow control (%s); ending exec %s", session.node_id, err, ex.exec_id
                )
                ex.send(tpb.ExecInput(hangup=True))
                ex.end(lost(f"the node broke flow control: {err}"))
                return
        ex.outputs.put_nowait(msg)
        if kind == "exit":
            ex.ended = True

    def session_ended(self, session: NodeSession) -> None:
        for ex in [e for e in self._execs.values() if e.session is session]:
            ex.end(lost(f"the session of node {session.node_id} ended"))


class CommitRelay:
    def __init__(self) -> None:
        self._pending: dict[str, tuple[NodeSession, asyncio.Future[tpb.CommitTaskResponse]]] = {}

    async def commit(self, session: NodeSession, request: tpb.CommitTaskRequest) -> tpb.CommitTaskResponse:
        """Ask the node to commit; its answer. NodeNotConnected when the
        session ends first."""
        request_id = new_id()
        future: asyncio.Future[tpb.CommitTaskResponse] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (session, future)
        sent = tpb.CommitTaskRequest()
        sent.CopyFrom(request)
        sent.request_id = request_id
        session.send(dpb.ManagerMessage(commit=sent))
        try:
            return await future
        finally:
            del self._pending[request_id]

    def deliver(self, session: NodeSession, reply: tpb.CommitTaskResponse) -> None:
        waiting = self._pending.get(reply.request_id)
        if waiting is not None and waiting[0] is session and not waiting[1].done():
            waiting[1].set_result(reply)

    def session_ended(self, session: NodeSession) -> None:
        for owner, future in self._pending.values():
            if owner is session and not future.done():
                future.set_exception(NodeNotConnected(session.node_id))


class TaskIOPort:
    """Exec and commit on the nodes whose sessions this dispatcher holds,
    as the ControlAPI asks for them (a ``TaskIOSource``)."""

    def __init__(self, sessions: dict[str, NodeSession], execs: ExecRelay, commits: CommitRelay) -> None:
        self._sessions = sessions
        self._execs = execs
        self._commits = commits

    def has_session(self, node_id: str) -> bool:
        return node_id in self._sessions

    def open_exec(self, node_id: str, opened: tpb.ExecOpen) -> RelayedExec:
        session = self._sessions.get(node_id)
        if session is None:
            raise NodeNotConnected(node_id)
        return self._execs.open(session, opened)

    def close_exec(self, channel: ExecChannel, hangup: bool) -> None:
        assert isinstance(channel, RelayedExec)
        self._execs.close(channel, hangup)

    async def commit(self, node_id: str, request: tpb.CommitTaskRequest) -> tpb.CommitTaskResponse:
        session = self._sessions.get(node_id)
        if session is None:
            raise NodeNotConnected(node_id)
        return await self._commits.commit(session, request)
