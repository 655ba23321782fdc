"""``shoal exec`` on the process runtime: a further command beside a task.

The command gets what the task has (its environment from the agent, plus
``-e``; its working directory unless ``-w``; its memory limit; the agent's
user, as the task) and a session of its own, so that a hang-up reaches it
and everything it started, and nothing of the task. Its stdio are pipes
(stdin /dev/null without ``-i``) or, with a tty, a pseudo-terminal whose
slave becomes its controlling terminal.

posix_spawn cannot chdir nor make a controlling terminal, and a fork in this
threaded agent could deadlock, so the command is started through a few
lines of Python (``HELPER``, run isolated with ``-I -S``): chdir, TIOCSCTTY,
the memory limit, then exec of the command with the environment exactly as
given (read back from /proc/self/environ, which Python's own start-up does
not touch).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import signal
import struct
import sys
import termios
from pathlib import Path
from typing import Any

from shoal.agent.runtime.base import STDERR, STDOUT, ExecFailed, ExecSpec, TaskContext, TaskRejected
from shoal.agent.runtime.process.launch import (
    SH_DEFAULT_PATH,
    TRAPPED_SIGNALS,
    _inheritable_fds,
    check_executable,
    process_env,
)
from shoal.execflow import CHUNK

# argv: mode ("tty" or "pipes"), memory limit in bytes (0: none), workdir,
# then the command.
HELPER = r"""
import os, sys
mode, memory, workdir, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
def fail(code, text):
    os.write(2, ("shoal exec: " + text + "\n").encode(errors="replace"))
    os._exit(code)
try:
    os.chdir(workdir)
except OSError as e:
    fail(126, "chdir to %s: %s" % (workdir, e.strerror))
if mode == "tty":
    import fcntl, termios
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
if memory:
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
with open("/proc/self/environ", "rb") as f:
    env = dict(i.split(b"=", 1) for i in f.read().split(b"\0") if b"=" in i)
try:
    os.execvpe(argv[0], argv, env)
except OSError as e:
    fail(127 if e.errno == 2 else 126, "exec %s: %s" % (argv[0], e.strerror))
"""


def exec_workdir(ctx: TaskContext, task_dir: Path, spec: ExecSpec) -> Path:
    """Where the command runs: -w, else the task's working directory."""
    if spec.workdir:
        workdir = Path(spec.workdir)
        if not workdir.is_absolute():
            raise ExecFailed(f"workdir {spec.workdir!r}: must be an absolute path")
    elif ctx.task.spec.container.workdir:
        workdir = Path(ctx.task.spec.container.workdir)
    else:
        workdir = task_dir / "work"
    if not workdir.is_dir():
        raise ExecFailed(f"workdir {str(workdir)!r}: no such directory")
    return workdir


async def start_exec(ctx: TaskContext, task_dir: Path, spec: ExecSpec) -> ProcessExec:
    """Start spec's command beside the task; ExecFailed when it cannot."""
    if not spec.command:
        raise ExecFailed("no command given")
    env = process_env({**ctx.env, **spec.env}, os.environ)
    if any("\0" in part for part in (*spec.command, *env, *env.values())):
        raise ExecFailed("the command or the environment contains a NUL byte")
    workdir = exec_workdir(ctx, task_dir, spec)
    try:
        check_executable(spec.command[0], workdir, env.get("PATH", SH_DEFAULT_PATH))
    except TaskRejected as err:
        raise ExecFailed(str(err), 127 if "not found" in str(err) else 126) from None
    memory = ctx.task.spec.resources.limits.memory_bytes
    if spec.tty:
        master, slave = os.openpty()
        if spec.rows and spec.cols:
            _set_size(master, spec.rows, spec.cols)
        # A terminal is its own stdin too; without -i nothing is typed into it.
        child_fds = [slave, slave, slave]
        ours: dict[int, int] = {STDOUT: master}
        stdin_fd: int | None = master
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        if spec.stdin:
            in_r, in_w = os.pipe()
        else:
            in_r, in_w = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1
        child_fds = [in_r, out_w, err_w]
        ours = {STDOUT: out_r, STDERR: err_r}
        stdin_fd = in_w if spec.stdin else None
    mode = "tty" if spec.tty else "pipes"
    argv = [sys.executable, "-I", "-S", "-c", HELPER, mode, str(max(memory, 0)), str(workdir), *spec.command]
    actions: list[tuple[Any, ...]] = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(child_fds)]
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()]
    try:
        pid = os.posix_spawn(
            sys.executable,
            argv,
            env,
            file_actions=actions,
            setsid=True,
            setsigdef=[*TRAPPED_SIGNALS, int(signal.SIGCHLD)],
            setsigmask=(),
        )
    except OSError as err:
        for fd in {*child_fds, *ours.values(), *([stdin_fd] if stdin_fd is not None else [])}:
            with contextlib.suppress(OSError):
                os.close(fd)
        raise ExecFailed(f"cannot start the command: {err.strerror}") from err
    for fd in set(child_fds):
        os.close(fd)
    return ProcessExec(pid, ours, stdin_fd, tty=spec.tty)


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def session_members(sid: int) -> list[int]:
    """The processes of session sid (the exec's, led by its first process)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            data = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2 :].split()
        # fields[0] is field 3 of proc(5): state; the session is field 6.
        if int(fields[3]) == sid and fields[0] not in (b"Z", b"X"):
            members.append(int(entry))
    return members


class ProcessExec:
    """One exec'd command: its pid (also its session's ID) and our ends of
    its stdio, all non-blocking."""

    def __init__(self, pid: int, outputs: dict[int, int], stdin_fd: int | None, tty: bool) -> None:
        self.pid = pid
        self._outputs = dict(outputs)
        self._stdin = stdin_fd
        self._tty = tty
        self._master = outputs[STDOUT] if tty else None
        self._order = sorted(self._outputs)
        self._exit: int | None = None
        for fd in {*self._outputs.values(), *([stdin_fd] if stdin_fd is not None else [])}:
            os.set_blocking(fd, False)

    async def read(self) -> tuple[int, bytes] | None:
        loop = asyncio.get_running_loop()
        while self._outputs:
            # Take turns, so that a chatty stdout cannot hide stderr.
            self._order = self._order[1:] + self._order[:1]
            for stream in self._order:
                fd = self._outputs.get(stream)
                if fd is None:
                    continue
                try:
                    data = os.read(fd, CHUNK)
                except BlockingIOError:
                    continue
                except OSError as err:
                    if err.errno != errno.EIO:  # EIO: the terminal's last user went
                        raise
                    data = b""
                if data:
                    return stream, data
                self._drop_output(stream)
            if self._outputs:
                await _first_readable(loop, list(self._outputs.values()))
        return None

    def _drop_output(self, stream: int) -> None:
        fd = self._outputs.pop(stream)
        self._order = [s for s in self._order if s != stream]
        if fd != self._stdin:
            os.close(fd)

    async def write(self, data: bytes) -> None:
        if self._stdin is None:
            return
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._stdin, view)
            except BlockingIOError:
                await _writable(loop, self._stdin)
                continue
            except (BrokenPipeError, OSError):
                return  # the command closed its stdin or ended: input is dropped, as by a pipe
            view = view[written:]

    async def close_stdin(self) -> None:
        if self._stdin is None:
            return
        if self._tty:
            # One terminal for input and output: type end-of-file instead.
            with contextlib.suppress(OSError):
                eof = termios.tcgetattr(self._stdin)[6][termios.VEOF]
                await self.write(eof if isinstance(eof, bytes) else bytes([eof]))
            return
        with contextlib.suppress(OSError):
            os.close(self._stdin)
        self._stdin = None

    async def resize(self, rows: int, cols: int) -> None:
        if self._master is not None and rows and cols:
            with contextlib.suppress(OSError):
                _set_size(self._master, rows, cols)

    async def signal(self, sig: int) -> None:
        if self._exit is not None and not session_members(self.pid):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
        # Jobs of an interactive shell have process groups of their own.
        for member in await asyncio.to_thread(session_members, self.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(member, sig)

    async def wait(self) -> int:
        if self._exit is None:
            loop = asyncio.get_running_loop()
            pidfd = os.pidfd_open(self.pid)
            try:
                done = loop.create_future()
                loop.add_reader(pidfd, _settle, done)
                try:
                    await done
                finally:
                    loop.remove_reader(pidfd)
            finally:
                os.close(pidfd)
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            self._exit = 128 - code if code < 0 else code
        return self._exit

    async def close(self) -> None:
        for stream in list(self._outputs):
            self._drop_output(stream)
        if self._stdin is not None:
            with contextlib.suppress(OSError):
                os.close(self._stdin)
            self._stdin = None
        if self._exit is None:
            # Never waited for (the agent is going): collect it if it ended.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, os.WNOHANG)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _first_readable(loop: asyncio.AbstractEventLoop, fds: list[int]) -> None:
    ready: asyncio.Future[None] = loop.create_future()
    for fd in fds:
        loop.add_reader(fd, _settle, ready)
    try:
        await ready
    finally:
        for fd in fds:
            loop.remove_reader(fd)


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_writer(fd, _settle, ready)
    try:
        await ready
    finally:
        loop.remove_writer(fd)
