"""``shoal exec`` on the docker runtime: the engine's exec API.

An exec is created in the task's container (the container's user, its
environment plus ``-e`` and the marker below, ``-w`` or its working
directory), then started on a hijacked connection that carries stdin one
way and the output the other: with a tty, raw; without, in the engine's
frames (an 8-byte header: stream, 0, 0, 0, length as big-endian uint32).
The socket is read and written from the event loop, not from a thread.

Hanging up. The engine has no call to signal an exec. Its inspect gives the
process's PID, but in the engine's PID namespace: an agent in a container of
its own (CI runs the tests so) cannot see that process. So each exec's
environment carries ``SHOAL_EXEC_ID=<its ID>``, and a hang-up is a second,
short exec in the same container that signals every process carrying it
(the command and whatever it started): it needs only ``sh`` and ``grep`` in
the image. Where the image has neither, the engine's PID is used when this
agent can see it and it carries the marker (an agent on the host); else the
hang-up fails, which is logged (the command then ends with the container).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

from shoal.agent.runtime.base import STDERR, STDOUT, ExecFailed, ExecSpec, TaskRuntimeError
from shoal.agent.runtime.docker.engine import Engine
from shoal.execflow import CHUNK

log = logging.getLogger(__name__)

MARKER = "SHOAL_EXEC_ID"
# $1: the marker's value, $2: the signal's name. Prints how many processes
# it signalled; 127 when the image lacks grep. (Not grep -F: busybox's stops
# at the first NUL of the environment; the value is [0-9a-z] only.)
KILLER = (
    "command -v grep >/dev/null 2>&1 || exit 127; n=0; "
    'for f in $(grep -l "' + MARKER + '=$1" /proc/[0-9]*/environ 2>/dev/null); do '
    'p=${f#/proc/}; kill -s "$2" "${p%/environ}" 2>/dev/null && n=$((n+1)); done; echo "$n"'
)
# After the output ends, the engine may take a moment to record the exit code.
EXIT_POLL = 0.05
EXIT_POLLS = 200
_HEADER = 8


class DockerExec:
    """One exec on the engine: its ID and the hijacked socket."""

    def __init__(self, engine: Engine, container_id: str, exec_id: str, sock: Any, spec: ExecSpec) -> None:
        self._engine = engine
        self._container = container_id
        self.exec_id = exec_id
        self._holder = sock  # the SDK's wrapper: keep it, or the socket is closed under us
        self._sock: socket.socket = getattr(sock, "_sock", sock)
        self._sock.setblocking(False)
        self._spec = spec
        self._pending = bytearray()
        self._frame_stream = STDOUT
        self._frame_left = 0
        self._eof = False
        self._exit: int | None = None

    async def read(self) -> tuple[int, bytes] | None:
        loop = asyncio.get_running_loop()
        while True:
            if self._spec.tty:
                if self._eof:
                    return None
                data = await loop.sock_recv(self._sock, CHUNK)
                if not data:
                    self._eof = True
                    return None
                return STDOUT, data
            piece = self._next_piece()
            if piece is not None:
                return piece
            if self._eof:
                return None
            data = await loop.sock_recv(self._sock, CHUNK + _HEADER)
            if not data:
                self._eof = True
            self._pending += data

    def _next_piece(self) -> tuple[int, bytes] | None:
        """The next piece of the engine's frames already received."""
        while True:
            if self._frame_left == 0:
                if len(self._pending) < _HEADER:
                    return None
                kind = self._pending[0]
                self._frame_left = int.from_bytes(self._pending[4:8], "big")
                self._frame_stream = STDERR if kind == 2 else STDOUT
                del self._pending[:_HEADER]
                continue
            if not self._pending:
                return None
            take = min(self._frame_left, CHUNK, len(self._pending))
            data = bytes(self._pending[:take])
            del self._pending[:take]
            self._frame_left -= take
            return self._frame_stream, data

    async def write(self, data: bytes) -> None:
        if not self._spec.stdin:
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            await loop.sock_sendall(self._sock, data)

    async def close_stdin(self) -> None:
        if not self._spec.stdin:
            return
        if self._spec.tty:
            await self.write(b"\x04")  # one terminal: type end-of-file
            return
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    async def resize(self, rows: int, cols: int) -> None:
        if self._spec.tty and rows and cols:
            with contextlib.suppress(TaskRuntimeError):
                await self._engine.run(
                    "resizing the exec", self._engine.api.exec_resize, self.exec_id, height=rows, width=cols
                )

    async def signal(self, sig: int) -> None:
        """Signal the command and everything it started (see the module
        docstring); a warning when nothing could be signalled."""
        if self._exit is not None:
            return
        name = signal.Signals(sig).name.removeprefix("SIG")
        if await self._signal_inside(name):
            return
        if not await self._signal_by_engine_pid(sig):
            log.warning(
                "exec %s: could not send SIG%s (the image has no sh and grep, and this agent "
                "cannot see the engine's processes)",
                self.exec_id[:12],
                name,
            )

    async def _signal_inside(self, name: str) -> int:
        """Signal from a second exec in the container; how many processes
        got it (0 also when that exec could not run)."""
        try:
            helper = await self._engine.run(
                "exec (hang-up)",
                self._engine.api.exec_create,
                self._container,
                ["sh", "-c", KILLER, "shoal-hangup", self._spec.marker, name],
                stdout=True,
                stderr=True,
                user="0",
            )
            out = await self._engine.run("exec (hang-up)", self._engine.api.exec_start, helper["Id"])
            result = await self._engine.run("exec (hang-up)", self._engine.api.exec_inspect, helper["Id"])
        except TaskRuntimeError as err:
            log.debug("exec %s: signalling inside the container failed: %s", self.exec_id[:12], err)
            return 0
        if result.get("ExitCode") != 0:
            return 0
        try:
            return int(bytes(out).decode(errors="replace").strip().splitlines()[-1])
        except (ValueError, IndexError):
            return 0

    async def _signal_by_engine_pid(self, sig: int) -> bool:
        try:
            info = await self._engine.run("inspecting the exec", self._engine.api.exec_inspect, self.exec_id)
        except TaskRuntimeError:
            return False
        if not info.get("Running"):
            return True  # it ended meanwhile: nothing left to signal
        pid = int(info.get("Pid") or 0)
        if not pid:
            return False
        try:
            # Only a process that carries this exec's marker: a PID of
            # another namespace could name anything here.
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return False
        if f"{MARKER}={self._spec.marker}".encode() not in environ.split(b"\0"):
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        return True

    async def wait(self) -> int:
        if self._exit is None:
            for _ in range(EXIT_POLLS):
                info = await self._engine.run(
                    "inspecting the exec", self._engine.api.exec_inspect, self.exec_id
                )
                if not info.get("Running"):
                    self._exit = int(info.get("ExitCode") or 0)
                    break
                await asyncio.sleep(EXIT_POLL)
            else:
                raise ExecFailed("the engine still reports the exec running after its output ended")
        return self._exit

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(OSError):
            self._holder.close()


async def start_exec(engine: Engine, container_id: str, spec: ExecSpec) -> DockerExec:
    """Create and start the exec; ExecFailed when the engine refuses it."""
    if not spec.command:
        raise ExecFailed("no command given")
    env = [f"{k}={v}" for k, v in spec.env.items()]
    if spec.marker:
        env.append(f"{MARKER}={spec.marker}")
    try:
        created = await engine.run(
            "creating the exec",
            engine.api.exec_create,
            container_id,
            list(spec.command),
            stdout=True,
            stderr=True,
            stdin=spec.stdin,
            tty=spec.tty,
            environment=env or None,
            workdir=spec.workdir or None,
        )
        exec_id = str(created["Id"])
        sock = await engine.run(
            "starting the exec", engine.api.exec_start, exec_id, tty=spec.tty, socket=True
        )
    except TaskRuntimeError as err:
        raise ExecFailed(str(err)) from None
    started = DockerExec(engine, container_id, exec_id, sock, spec)
    # The engine sizes a terminal only once its process runs (API 1.41 has
    # no size at create): as soon as it does.
    await started.resize(spec.rows, spec.cols)
    return started
