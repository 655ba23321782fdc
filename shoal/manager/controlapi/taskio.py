"""The ControlAPI's calls inside a running task: Exec and CommitTask.

Who may: an admin certificate, or a manager forwarding for one (its
requests name the original caller, believed from managers only). What: a
task resolved from the user's reference (``taskrefs``) that runs (exec) or
has run (commit) on a node that is up. Where: the node's session, here
(``TaskIOSource``, the dispatcher) or on the manager that holds it
(``forwarding``). How much: the request's fields are bounded here, and an
exec's data is flow controlled at every hop (``shoal.execflow``): this
manager holds at most a window of output and one of stdin per exec.

Each exec and commit is logged here (who, which task, the command or
image, and the exit code), as on the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from shoal import execflow, imagerefs, pki
from shoal.manager.controlapi.common import ControlBase, Ctx, abort_for, rpc
from shoal.manager.controlapi.forwarding import ForwardedExec, forward_commit
from shoal.manager.controlapi.taskrefs import has_started, is_running, resolve_task
from shoal.manager.execsource import ExecChannel, NodeBusy
from shoal.manager.logsource import NodeNotConnected
from shoal.manager.store import NotFound
from shoal.names import command_line, slot_name
from shoal.protos import objects_pb2 as pb
from shoal.protos import taskio_pb2 as tpb
from shoal.rules import limits
from shoal.rules.errors import InvalidRequest

log = logging.getLogger(__name__)

MAX_TERMINAL = 10_000  # rows or columns
MAX_COMMIT_MESSAGE = 64 * 1024
MAX_CHANGES = 64
MAX_CHANGE = 4096
MAX_AUTHOR = 1024


def caller_name(ident: pki.Identity) -> str:
    return ident.node_id if ident.role == pki.ROLE_ADMIN else f"{ident.role} {ident.node_id}"


def check_exec_open(opened: tpb.ExecOpen) -> None:
    """Bounds on what a client may ask to run (InvalidRequest naming the field)."""
    if not opened.command:
        raise InvalidRequest("command: at least the program to run is required")
    if not opened.command[0]:
        raise InvalidRequest("command: the program's name must not be empty")
    limits.check_texts("command", opened.command, limits.MAX_ITEMS, limits.MAX_ITEM_BYTES)
    limits.check_texts("env", opened.env, limits.MAX_ITEMS, limits.MAX_ITEM_BYTES)
    for entry in opened.env:
        key, sep, _ = entry.partition("=")
        if not sep or not key or len(key) > limits.MAX_ENV_KEY:
            raise InvalidRequest(f'env "{entry[:60]}": expected KEY=VALUE')
    limits.check_text("workdir", opened.workdir, limits.MAX_PATH)
    if opened.workdir and not opened.workdir.startswith("/"):
        raise InvalidRequest(f'workdir "{opened.workdir[:60]}": must be an absolute path')
    if opened.size.rows > MAX_TERMINAL or opened.size.cols > MAX_TERMINAL:
        raise InvalidRequest(f"size: at most {MAX_TERMINAL} rows and columns")


def check_commit(request: tpb.CommitTaskRequest) -> None:
    try:
        imagerefs.check_repository(request.repository)
        imagerefs.check_tag(request.tag or imagerefs.DEFAULT_TAG)
        for change in request.changes:
            imagerefs.check_change(change)
    except ValueError as err:
        raise InvalidRequest(str(err)) from None
    limits.check_text("message", request.message, MAX_COMMIT_MESSAGE)
    limits.check_text("author", request.author, MAX_AUTHOR)
    limits.check_texts("changes", request.changes, MAX_CHANGES, MAX_CHANGE)
    limits.check_text("registry_auth", request.registry_auth, limits.MAX_REGISTRY_AUTH)


class TaskIOAPI(ControlBase):
    # -------------------------------------------------------------- exec

    async def Exec(
        self, request_iterator: AsyncIterator[tpb.ExecInput], context: Ctx
    ) -> AsyncIterator[tpb.ExecOutput]:
        ident = await self.authorize("Exec", tpb.ExecInput(), context)
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("msg") != "open":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "exec: the stream starts with open")
            return
        opened = tpb.ExecOpen()
        opened.CopyFrom(first.open)
        try:
            check_exec_open(opened)
            task, node = self._exec_target(opened, ident)
        except (InvalidRequest, NotFound) as err:
            await abort_for(context, err)
            return
        where = f"{slot_name(task)} ({task.meta.id}) on node {node.description.hostname}"
        what = f"exec in task {where} by {opened.caller}"
        channel = await self._open_exec(node, opened, context)
        log.info("%s: %s%s", what, command_line(opened.command), " (tty)" if opened.tty else "")
        stdin_credit = execflow.Credit()
        reader = asyncio.create_task(self._client_input(request_iterator, channel, stdin_credit))
        exited: tpb.ExecExit | None = None  # as the node said it
        try:
            yield tpb.ExecOutput(
                opened=tpb.ExecOpened(
                    task_id=task.meta.id,
                    task_name=slot_name(task),
                    node_id=node.meta.id,
                    node=node.description.hostname,
                )
            )
            async for out in self._node_output(channel, reader, stdin_credit):
                if out.WhichOneof("msg") == "exit":
                    exited = out.exit
                yield out
        except execflow.CreditExceeded as err:
            # A peer broke flow control: the command is hung up (finally).
            log.warning("%s: flow control broken (%s)", what, err)
            yield tpb.ExecOutput(exit=tpb.ExecExit(exit_code=255, error=f"flow control broken: {err}"))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, execflow.CreditExceeded):
                await reader
            await self._close_exec(channel, hangup=exited is None)
            if exited is None:
                log.info("%s: hung up (its client went away, or flow control broke)", what)
            else:
                error = f" ({exited.error})" if exited.error else ""
                log.info("%s ended: exit code %d%s", what, exited.exit_code, error)

    async def _node_output(
        self, channel: ExecChannel, reader: asyncio.Task[None], stdin_credit: execflow.Credit
    ) -> AsyncIterator[tpb.ExecOutput]:
        """What the node sends, up to its exit; raises CreditExceeded when
        the client (its input, read by reader) or a relay broke flow control."""
        pending: asyncio.Future[tpb.ExecOutput] = asyncio.ensure_future(channel.next())
        try:
            while True:
                waiting: set[asyncio.Future[Any]] = {pending} if reader.done() else {pending, reader}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                error = reader.exception() if reader.done() and not reader.cancelled() else None
                if error is not None:
                    raise error
                if not pending.done():
                    continue  # the client finished sending: fine, keep relaying
                out = pending.result()
                kind = out.WhichOneof("msg")
                if kind == "stdin_ack":
                    stdin_credit.release(out.stdin_ack)
                yield out
                if kind == "exit":
                    return
                pending = asyncio.ensure_future(channel.next())
        finally:
            pending.cancel()

    def _exec_target(self, opened: tpb.ExecOpen, ident: pki.Identity) -> tuple[pb.Task, pb.Node]:
        """The task to exec in and its node; names the caller in opened."""
        forwarded = ident.role == pki.ROLE_MANAGER and bool(opened.task_id)
        if forwarded:
            task = self.view.tasks.get(opened.task_id)
            if task is None:
                raise NotFound(f"no such task: {opened.task_id}")
        else:
            task = resolve_task(self.view, opened.task)
            opened.caller = caller_name(ident)
        if not opened.caller:
            opened.caller = caller_name(ident)
        if not is_running(task):
            state = pb.TaskState.Name(task.status.state).removeprefix("TASK_STATE_").lower()
            raise InvalidRequest(f"task {slot_name(task)} is not running (it is {state})")
        node = self.view.nodes.get(task.node_id)
        if node is None:
            raise NotFound(f"the node of task {slot_name(task)} is gone")
        opened.task_id = task.meta.id
        return task, node

    async def _open_exec(self, node: pb.Node, opened: tpb.ExecOpen, context: Ctx) -> ExecChannel:
        """The exec started on its node, here or through the manager
        holding the node's session (aborts the call when neither can)."""
        hostname = node.description.hostname
        if node.status.state == pb.NODE_STATE_DOWN:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"node {hostname} is down")
        if self.taskio is None or self.peers is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "exec is not served here")
            raise AssertionError("unreachable")
        if self.taskio.has_session(node.meta.id):
            try:
                return self.taskio.open_exec(node.meta.id, opened)
            except NodeNotConnected:
                pass  # it just left: fall through to where it went
            except NodeBusy as err:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"node {hostname}: {err}")
        addr = await self.peers.address(node.status.manager_id)
        if addr is None:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"node {hostname} is not connected to any manager"
            )
            raise AssertionError("unreachable")
        forwarded = ForwardedExec(self.peers, addr)
        await forwarded.start(opened)
        return forwarded

    async def _close_exec(self, channel: ExecChannel, hangup: bool) -> None:
        if isinstance(channel, ForwardedExec):
            await channel.close(hangup)
        elif self.taskio is not None:
            self.taskio.close_exec(channel, hangup)

    async def _client_input(
        self, requests: AsyncIterator[tpb.ExecInput], channel: ExecChannel, credit: execflow.Credit
    ) -> None:
        """What the client sends after open, on to the node; the client's
        end of sending is not its going away (that cancels the call)."""
        async for msg in requests:
            kind = msg.WhichOneof("msg")
            if kind == "stdin":
                credit.charge(len(msg.stdin))  # CreditExceeded ends the call
            elif kind not in ("stdin_eof", "resize", "output_ack"):
                continue  # open again, or a hang-up: only managers decide those
            channel.send(msg)

    # -------------------------------------------------------------- commit

    @rpc
    async def CommitTask(self, request: tpb.CommitTaskRequest, context: Ctx) -> tpb.CommitTaskResponse:
        ident = self.auth.identity(context)
        assert ident is not None  # rpc() authorized the call
        check_commit(request)
        sent = tpb.CommitTaskRequest()
        sent.CopyFrom(request)
        sent.tag = request.tag or imagerefs.DEFAULT_TAG
        if ident.role == pki.ROLE_MANAGER and request.task_id:
            task = self.view.tasks.get(request.task_id)
            if task is None:
                raise NotFound(f"no such task: {request.task_id}")
        else:
            task = resolve_task(self.view, request.task)
            sent.caller = caller_name(ident)
        sent.caller = sent.caller or caller_name(ident)
        sent.task_id = task.meta.id
        node = self.view.nodes.get(task.node_id)
        name = slot_name(task)
        if node is None or not has_started(task):
            raise InvalidRequest(f"task {name} has not run on any node: there is nothing to commit")
        if node.description.runtime == "process":
            raise InvalidRequest(
                f"task {name} runs on the process runtime: shoal commit needs the docker runtime"
            )
        hostname = node.description.hostname
        where = f"{name} ({task.meta.id}) on node {hostname}"
        what = f"commit of task {where} as {sent.repository}:{sent.tag} by {sent.caller}"
        reply = await self._relay_commit(node, sent, context)
        if reply.error:
            log.info("%s failed: %s", what, reply.error)
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"commit of task {name} failed: {reply.error}"
            )
        log.info(
            "%s: image %s%s",
            what,
            reply.image_id,
            f"; push failed: {reply.push_error}" if reply.push_error else "",
        )
        reply.node_id, reply.node, reply.task_id = node.meta.id, hostname, task.meta.id
        reply.reference = f"{sent.repository}:{sent.tag}"
        return reply

    async def _relay_commit(
        self, node: pb.Node, request: tpb.CommitTaskRequest, context: Ctx
    ) -> tpb.CommitTaskResponse:
        hostname = node.description.hostname
        if node.status.state == pb.NODE_STATE_DOWN:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"node {hostname} is down")
        if self.taskio is None or self.peers is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "commit is not served here")
            raise AssertionError("unreachable")
        if self.taskio.has_session(node.meta.id):
            try:
                return await self.taskio.commit(node.meta.id, request)
            except NodeNotConnected:
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE, f"node {hostname} disconnected during the commit"
                )
        addr = await self.peers.address(node.status.manager_id)
        if addr is None:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"node {hostname} is not connected to any manager"
            )
            raise AssertionError("unreachable")
        try:
            return await forward_commit(self.peers, addr, request)
        except grpc.RpcError as err:
            await context.abort(err.code(), err.details() or "")
            raise AssertionError("unreachable") from err
