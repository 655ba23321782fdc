"""The client end of an exec stream, shared by ``shoal exec`` and ``shoal run -i/-t``.

One gRPC stream (``Control.Exec``) carries everything. Its requests come from
a queue that three producers feed: the open message, a thread reading stdin
(``-i``; within the exec's stdin window, ``shoal.execflow``), and the
terminal's size on each SIGWINCH (``-t``). The main thread reads the
responses, writes output to stdout and stderr (one terminal stream with
``-t``) and acknowledges each chunk once it has been written, which is what
lets the node send more: a reader that stops (a full pipe, a paused ``less``)
stops the command's output all the way back.

The exit code is the command's. Ctrl-C without ``-t`` ends the call, and the
manager hangs the command up (SIGHUP, then SIGKILL): 130. With ``-t`` Ctrl-C
is a key the command's terminal interprets.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc

from shoal.cli.client import Client, CLIError
from shoal.cli.terminal import is_terminal, on_resize, raw_terminal, window_size
from shoal.execflow import CHUNK, WINDOW
from shoal.protos import taskio_pb2 as tpb

INTERRUPTED = 130


@dataclass(frozen=True)
class ExecRequest:
    task: str
    command: list[str]
    env: list[str] = field(default_factory=list)
    workdir: str = ""
    tty: bool = False
    stdin: bool = False


class _StdinCredit:
    """The stdin window, for a thread: take() waits for room."""

    def __init__(self) -> None:
        self._outstanding = 0
        self._cond = threading.Condition()

    def take(self, size: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._outstanding + size <= WINDOW)
            self._outstanding += size

    def release(self, size: int) -> None:
        with self._cond:
            self._outstanding = max(0, self._outstanding - size)
            self._cond.notify_all()


def check_tty(req: ExecRequest) -> None:
    if req.tty and req.stdin and not is_terminal(sys.stdin.fileno()):
        raise CLIError("the input device is not a TTY: leave out -t, or run this in a terminal")


def run_exec(client: Client, req: ExecRequest) -> int:
    """Run the command in the task; its exit code. CLIError when the call
    is refused (no such task, not running, not allowed)."""
    check_tty(req)
    if client.stub is None:
        client.connect()
    opened = tpb.ExecOpen(
        task=req.task, command=req.command, env=req.env, workdir=req.workdir, tty=req.tty, stdin=req.stdin
    )
    if req.tty:
        rows, cols = window_size()
        opened.size.rows, opened.size.cols = rows, cols
    outgoing: queue.Queue[tpb.ExecInput | None] = queue.Queue()
    outgoing.put(tpb.ExecInput(open=opened))

    def requests() -> Iterator[tpb.ExecInput]:
        while (msg := outgoing.get()) is not None:
            yield msg

    credit = _StdinCredit()
    call = client.stub.Exec(requests())
    raw = req.tty and req.stdin
    session = _Session(call, outgoing, credit, req)
    try:
        with contextlib.ExitStack() as stack:
            if raw:
                stack.enter_context(raw_terminal(sys.stdin.fileno()))
            if req.tty:
                stack.enter_context(on_resize(session.resized))
            code = session.run()
    except KeyboardInterrupt:
        call.cancel()
        return INTERRUPTED
    finally:
        outgoing.put(None)
    if session.error:
        sys.stderr.write(f"Error: {session.error}\n")
        sys.stderr.flush()
    return code


class _Session:
    def __init__(
        self,
        call: grpc.Call,
        outgoing: queue.Queue[tpb.ExecInput | None],
        credit: _StdinCredit,
        req: ExecRequest,
    ) -> None:
        self.call = call
        self.outgoing = outgoing
        self.credit = credit
        self.req = req
        self.error = ""
        self.opened: tpb.ExecOpened | None = None

    def resized(self, rows: int, cols: int) -> None:
        self.outgoing.put(tpb.ExecInput(resize=tpb.WindowSize(rows=rows, cols=cols)))

    def _read_stdin(self) -> None:
        fd = sys.stdin.fileno()
        while True:
            try:
                data = os.read(fd, CHUNK)
            except OSError:
                data = b""
            if not data:
                self.outgoing.put(tpb.ExecInput(stdin_eof=True))
                return
            self.credit.take(len(data))
            self.outgoing.put(tpb.ExecInput(stdin=data))

    def run(self) -> int:
        try:
            for out in self.call:
                kind = out.WhichOneof("msg")
                if kind == "opened":
                    self.opened = out.opened
                    if self.req.stdin:
                        threading.Thread(target=self._read_stdin, name="exec-stdin", daemon=True).start()
                elif kind == "output":
                    fd = 2 if out.output.stream == tpb.EXEC_STREAM_STDERR and not self.req.tty else 1
                    if not _write_all(fd, out.output.data):
                        self.call.cancel()  # nobody reads our output any more: hang up
                        return 141  # as a shell reports SIGPIPE
                    self.outgoing.put(tpb.ExecInput(output_ack=len(out.output.data)))
                elif kind == "stdin_ack":
                    self.credit.release(out.stdin_ack)
                elif kind == "exit":
                    self.error = out.exit.error
                    return int(out.exit.exit_code)
        except grpc.RpcError as err:
            detail = err.details() or err.code().name
            if self.opened is None:
                raise CLIError(detail) from None
            self.error = f"lost the connection to the command: {detail}"
            return 255
        if self.opened is None:
            raise CLIError("the manager ended the exec before it started")
        self.error = "the manager ended the exec without the command's exit code"
        return 255


def _write_all(fd: int, data: bytes) -> bool:
    """Write everything; False when the reader has gone (EPIPE)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:
        return False
    return True
