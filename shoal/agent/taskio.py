"""The agent side of ``shoal exec`` and ``shoal commit``, over the session.

The manager sends ``ExecInput`` messages on the node's session (agents open
no port): an ``open`` starts a command in one of this node's running tasks
through the runtime's ``Execing`` ability; then stdin, end of input, window
sizes, output credit and hang-ups follow for that exec's ID. What the
command prints goes back as ``ExecOutput`` chunks, bulk class (heartbeats
and statuses overtake them, see ``shoal.outbox``), within the exec's window
of unacknowledged output (``shoal.execflow``), then one ``exit``.

A command is hung up (SIGHUP, then SIGKILL after ``HANGUP_GRACE``) when its
client went away (the manager says so), when this session ends, or when its
task ends. A ``CommitTaskRequest`` runs the runtime's ``Committing`` ability
and answers with the image's ID. Every exec and commit is logged with who
asked for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shoal import execflow
from shoal.agent.runtime.base import (
    CommitFailed,
    CommitOptions,
    Committing,
    ExecFailed,
    Execing,
    ExecProcess,
    ExecSpec,
    TaskRuntimeError,
)
from shoal.agent.worker import Worker
from shoal.names import command_line
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import taskio_pb2 as tpb

log = logging.getLogger(__name__)

# After SIGHUP, a command gets this long to end before SIGKILL.
HANGUP_GRACE = 5.0
# How often a running exec looks whether its task still runs.
TASK_CHECK = 1.0

Send = Callable[[dpb.AgentMessage], None]
_EOF = b""  # in the stdin queue: end of input


@dataclass(frozen=True, eq=False)
class Link:
    """How to reach the manager of one session: control and bulk class."""

    send: Send
    bulk: Send


class AgentExec:
    """One command run inside a task for a client."""

    def __init__(self, exec_id: str, opened: tpb.ExecOpen, controller: Any, link: Link) -> None:
        self.exec_id = exec_id
        self.opened = opened
        self.controller = controller
        self.link = link
        self._send = link.send
        self._bulk = link.bulk
        self.output_credit = execflow.Credit()
        self.stdin_credit = execflow.Credit()
        self._stdin: asyncio.Queue[bytes] = asyncio.Queue()
        self._size: tuple[int, int] | None = None
        self._background: set[asyncio.Future[None]] = set()
        self.proc: ExecProcess | None = None
        self._hangup = asyncio.Event()
        self._dropping = False
        self.hangup_reason = ""
        self.task: asyncio.Task[None] | None = None

    def _out(self, **fields: Any) -> dpb.AgentMessage:
        return dpb.AgentMessage(exec=tpb.ExecOutput(exec_id=self.exec_id, **fields))

    def hangup(self, reason: str, client_gone: bool = False) -> None:
        """End the command (SIGHUP, SIGKILL after the grace). With
        client_gone nobody reads any more: output is dropped from now on
        instead of waiting for credit that will never come."""
        if client_gone:
            self._dropping = True
            self.output_credit.open_wide()
        if not self._hangup.is_set():
            self.hangup_reason = reason
            self._hangup.set()

    def take(self, msg: tpb.ExecInput) -> None:
        """A message from the manager for this exec."""
        kind = msg.WhichOneof("msg")
        try:
            if kind == "stdin":
                self.stdin_credit.charge(len(msg.stdin))
                self._stdin.put_nowait(msg.stdin)
            elif kind == "stdin_eof":
                self._stdin.put_nowait(_EOF)
            elif kind == "output_ack":
                self.output_credit.release(msg.output_ack)
            elif kind == "resize":
                self._size = (msg.resize.rows, msg.resize.cols)
                if self.proc is not None:
                    resizing = asyncio.ensure_future(self.proc.resize(*self._size))
                    self._background.add(resizing)
                    resizing.add_done_callback(self._background.discard)
            elif kind == "hangup":
                self.hangup("its client went away", client_gone=True)
        except execflow.CreditExceeded as err:
            log.warning("exec %s: the manager broke flow control (%s); hanging up", self.exec_id, err)
            self.hangup("flow control broken")

    async def run(self) -> None:
        o = self.opened
        spec = ExecSpec(
            command=tuple(o.command),
            env=dict(e.partition("=")[::2] for e in o.env),
            workdir=o.workdir,
            tty=o.tty,
            stdin=o.stdin,
            rows=o.size.rows,
            cols=o.size.cols,
            marker=self.exec_id,
        )
        what = f"exec {self.exec_id} in task {o.task_id} by {o.caller or 'unknown'}"
        try:
            if not (await self.controller.inspect()).running:
                raise ExecFailed(f"task {o.task_id} is not running")
            self.proc = await self.controller.exec(spec)
        except ExecFailed as err:
            log.info("%s: %s refused: %s", what, command_line(o.command), err)
            self._bulk(self._out(exit=tpb.ExecExit(exit_code=err.exit_code, error=str(err))))
            return
        log.info("%s: %s%s", what, command_line(o.command), " (tty)" if o.tty else "")
        proc = self.proc
        if self._size is not None:
            await proc.resize(*self._size)
        helpers = [
            asyncio.create_task(self._feed_stdin(proc)),
            asyncio.create_task(self._watch(proc)),
        ]
        error = ""
        try:
            code = await self._pump_output(proc)
        except TaskRuntimeError as err:
            code, error = 126, str(err)
        finally:
            for helper in helpers:
                helper.cancel()
            for helper in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
            await proc.close()
        if self.hangup_reason and not error:
            error = f"hung up: {self.hangup_reason}"
        log.info("%s ended: exit code %d%s", what, code, f" ({error})" if error else "")
        self._bulk(self._out(exit=tpb.ExecExit(exit_code=code, error=error)))

    async def _pump_output(self, proc: ExecProcess) -> int:
        """Output to the manager within the window; then the exit code."""
        while (piece := await proc.read()) is not None:
            stream, data = piece
            await self.output_credit.take(len(data))
            if self._dropping:
                continue
            self._bulk(self._out(output=tpb.ExecChunk(stream=stream, data=data)))  # type: ignore[arg-type]
        return await proc.wait()

    async def _feed_stdin(self, proc: ExecProcess) -> None:
        while True:
            data = await self._stdin.get()
            if data == _EOF:
                await proc.close_stdin()
                return
            await proc.write(data)
            self.stdin_credit.release(len(data))
            self._send(self._out(stdin_ack=len(data)))

    async def _watch(self, proc: ExecProcess) -> None:
        """Hang up when asked to or when the task ends; SIGKILL after the grace."""
        while not self._hangup.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hangup.wait(), TASK_CHECK)
            if not self._hangup.is_set():
                with contextlib.suppress(TaskRuntimeError):
                    if not (await self.controller.inspect()).running:
                        self.hangup("its task ended")
        log.info("exec %s: hanging up (%s)", self.exec_id, self.hangup_reason)
        await proc.signal(signal.SIGHUP)
        await asyncio.sleep(HANGUP_GRACE)
        log.info("exec %s: still running %.0fs after SIGHUP; killing it", self.exec_id, HANGUP_GRACE)
        await proc.signal(signal.SIGKILL)


class TaskIO:
    """The execs and commits of this agent. It outlives sessions: an exec
    whose session ended is hung up and finishes on its own."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.execs: dict[str, AgentExec] = {}
        self._commits: set[asyncio.Task[None]] = set()

    def on_exec(self, msg: tpb.ExecInput, link: Link) -> None:
        running = self.execs.get(msg.exec_id)
        if running is not None:
            if running.link is link:  # only the session that opened it speaks for it
                running.take(msg)
            return
        if msg.WhichOneof("msg") != "open":
            return  # for an exec that has ended: nothing to do
        self._open(msg.exec_id, msg.open, link)

    def _open(self, exec_id: str, opened: tpb.ExecOpen, link: Link) -> None:
        def refuse(why: str, code: int = 126) -> None:
            log.info("exec %s in task %s by %s refused: %s", exec_id, opened.task_id, opened.caller, why)
            out = tpb.ExecOutput(exec_id=exec_id, exit=tpb.ExecExit(exit_code=code, error=why))
            link.bulk(dpb.AgentMessage(exec=out))

        runner = self.worker.runners.get(opened.task_id)
        if runner is None:
            refuse(f"task {opened.task_id} is not on this node")
            return
        if not isinstance(runner.controller, Execing):
            refuse("this node's runtime cannot run commands in tasks")
            return
        if len(self.execs) >= execflow.MAX_EXECS_PER_NODE:
            refuse(f"this node runs {execflow.MAX_EXECS_PER_NODE} execs already")
            return
        ex = AgentExec(exec_id, opened, runner.controller, link)
        self.execs[exec_id] = ex
        ex.task = asyncio.create_task(self._run(ex), name=f"exec-{exec_id}")

    async def _run(self, ex: AgentExec) -> None:
        try:
            await ex.run()
        except Exception:
            log.exception("exec %s failed", ex.exec_id)
            out = tpb.ExecOutput(exec_id=ex.exec_id, exit=tpb.ExecExit(exit_code=126, error="agent error"))
            ex.link.bulk(dpb.AgentMessage(exec=out))
        finally:
            self.execs.pop(ex.exec_id, None)

    def on_commit(self, request: tpb.CommitTaskRequest, link: Link) -> None:
        task = asyncio.create_task(self._commit(request, link), name=f"commit-{request.request_id}")
        self._commits.add(task)
        task.add_done_callback(self._commits.discard)

    async def _commit(self, req: tpb.CommitTaskRequest, link: Link) -> None:
        reply = tpb.CommitTaskResponse(request_id=req.request_id, task_id=req.task_id)
        reply.reference = f"{req.repository}:{req.tag}"
        runner = self.worker.runners.get(req.task_id)
        controller = runner.controller if runner is not None else None
        what = f"commit of task {req.task_id} as {reply.reference} by {req.caller or 'unknown'}"
        if controller is None:
            reply.error = f"task {req.task_id} is not on this node"
        elif not isinstance(controller, Committing):
            reply.error = "this node's runtime cannot commit tasks: shoal commit needs the docker runtime"
        else:
            options = CommitOptions(
                repository=req.repository,
                tag=req.tag,
                message=req.message,
                changes=tuple(req.changes),
                author=req.author,
                pause=not req.no_pause,
                push=req.push,
                registry_auth=req.registry_auth,
            )
            try:
                result = await controller.commit(options)
            except (CommitFailed, TaskRuntimeError) as err:
                reply.error = str(err)
            else:
                reply.image_id = result.image_id
                reply.pushed = result.pushed
                reply.push_error = result.push_error
        if reply.error:
            log.info("%s failed: %s", what, reply.error)
        else:
            pushed = (
                f"; push failed: {reply.push_error}"
                if reply.push_error
                else ", pushed"
                if reply.pushed
                else ""
            )
            log.info("%s: image %s%s", what, reply.image_id, pushed)
        link.send(dpb.AgentMessage(commit=reply))

    def session_ended(self, link: Link) -> None:
        """The execs of a session that ended have no client any more."""
        for ex in list(self.execs.values()):
            if ex.link is link:
                ex.hangup("the session with its manager ended", client_gone=True)
