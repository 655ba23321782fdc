"""The ``process`` backend: each task is a process group on the host.

There is no image and no isolation: the task's ``ContainerSpec`` gives the argv
(``command + args``), the working directory and, through the agent's
``TaskContext.env``, the environment. The image reference is only recorded
(``SHOAL_TASK_IMAGE``, set by the agent). The memory limit is applied as
RLIMIT_AS (address space, not resident memory: runtimes that reserve large
virtual ranges, such as Go or the JVM, may need a generous limit). The CPU
limit is not enforced by this backend. Processes that leave the task's process
group (``setsid``, daemons) are not tracked. A cgroup backend would handle them.

Everything about a task lives in ``<state_dir>/tasks/<task_id>/``::

    launch.sh      written by start(): cd, ulimit, env fix-ups, ``set -- argv``
    handle.json    written by start(): wrapper pid, its start time, argv
    child_pid      written by the wrapper: pid of the task's own process
    exit_code      written by the wrapper (tmp + mv) when that process ends
    stdout.log     the task's output, appended to
    stderr.log
    work/          the working directory when the spec names none

Data flow: start() spawns a small ``/bin/sh`` wrapper as the leader of a new
session (so the process group ID is the wrapper's pid). The wrapper forks a
subshell that records its pid, sources ``launch.sh`` and execs the task.
The wrapper waits for it in the foreground and records its exit status.
Because the files hold everything, a restarted agent (a new ``ProcessRuntime``
on the same state_dir) adopts running tasks: inspect() reads handle.json and
checks /proc, and wait() watches the wrapper with a pidfd, which works for
processes that are not our children.

Why the wrapper is built this way:

- It traps every catchable signal with ``:``. A caught signal does not kill
  the shell, and exec resets caught signals to default in the task. Ignoring a
  signal (``trap '' SIG``) would make the task inherit the ignore. So a stop
  signal sent to the group ends the task, the wrapper lives on to write
  ``exit_code``, and signal N becomes exit code 128+N.
- It runs the task in the foreground, not with ``"$@" &``. A non-interactive sh
  starts background commands with SIGINT and SIGQUIT ignored, which cannot be
  undone, so ``stop_signal: SIGINT`` would never stop the task.
- The task's argv lives in ``launch.sh``, not in the wrapper's command line,
  so ``pgrep -f <task command>`` finds the task's own process only.
- dash changes the environment it passes on (it exports PWD and rewrites
  OPTIND, PPID and IFS). ``launch.sh`` puts those back, so the task gets
  exactly the agent's env. dash also drops names that are not shell
  identifiers, so prepare() rejects such names.
- ``os.posix_spawn`` (not ``subprocess``) starts the wrapper. It can reset
  every signal disposition and the signal mask in the new process, so a
  signal the agent itself inherited as ignored (``nohup``, a background job)
  does not leak into tasks. It cannot chdir, so ``launch.sh`` does the cd.

Health checks (``ContainerSpec.healthcheck``) follow Docker's rules and run in
the agent, not in the task's files: a ``_HealthMonitor`` per controller runs the
check as its own process group, with the task's env and working directory,
from start() (or, for an adopted task, from the first inspect() or health())
until the task's wrapper exits or the controller stops the task. Its verdict
lives in memory only, so an adopted task starts again at STARTING.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import shlex
import shutil
import signal
import stat
import time
import weakref
from collections.abc import AsyncIterator, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.agent.runtime.base import (
    ExitStatus,
    Health,
    RuntimeState,
    TaskContext,
    TaskFailed,
    TaskRejected,
)
from shoal.fsutil import write_atomically
from shoal.protos import objects_pb2 as pb
from shoal.signals import parse_signal

log = logging.getLogger(__name__)

# Bumped when handle.json changes shape, so that an agent never misreads a
# handle written by another version (STYLE: nomad's versioned TaskHandle).
HANDLE_VERSION = 1
# What wait() reports when the wrapper died without recording an exit code.
# That happens when the wrapper was SIGKILLed, almost always together with the
# task: our own shutdown's SIGKILL to the group, or the OOM killer. 128+9 is
# what the task itself would report and what Docker shows.
KILLED_EXIT_CODE = 137
KILLED_MESSAGE = "task process was killed"
# discard(): the task has no owner any more; a short grace only lets it flush.
DISCARD_GRACE = 2.0
# How long shutdown waits for the group to vanish after SIGKILL. Processes in
# uninterruptible sleep (stuck NFS I/O) can outlive it; then shutdown fails.
KILL_TIMEOUT = 10.0
# logs(follow=True) re-reads the files this often (polling is simpler than
# inotify and cheap at this rate).
LOG_POLL_INTERVAL = 0.2
# Shutdown polls the group starting fast (most tasks exit within
# milliseconds of SIGTERM) and backing off to this.
_MAX_POLL_INTERVAL = 0.1
# start() waits this long for the wrapper to record the task's pid, so that
# inspect() reports the task's pid, not the wrapper's, from the start (it
# takes about a millisecond; on an overloaded host inspect falls back to the
# wrapper's pid until it appears).
_CHILD_PID_WAIT = 1.0
_LOG_CHUNK = 1 << 20
_TAIL_BLOCK = 8192
# A health check's fields at zero mean Docker's defaults (moby's
# daemon/health.go), so that a service behaves as it does under Docker.
HEALTH_DEFAULT_INTERVAL = 30.0
HEALTH_DEFAULT_TIMEOUT = 30.0
HEALTH_DEFAULT_RETRIES = 3
# Docker waits one interval before the first check, so with the 30 s default
# a task stays "starting" for half a minute. We check once at most this long
# after start: rollouts that wait for health move on sooner, and an interval
# shorter than this (tests) is honoured as it is.
HEALTH_FIRST_CHECK_DELAY = 1.0
# How much of a failed check's output (stdout and stderr together) we keep
# for last_health_message; the rest is read and dropped. Docker keeps 4 KiB.
HEALTH_OUTPUT_LIMIT = 4096

# dash's own PATH when the environment has none: the lookup in prepare() must
# find what the wrapper's exec will find.
_SH_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Task IDs become directory names: no separators, no "." or "..".
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Variables dash rewrites on the way to the task (see module docstring); of
# these it adds PWD always and OLDPWD on cd, even when the env has neither.
_SHELL_REWRITTEN = ("PWD", "OLDPWD", "OPTIND", "PPID", "IFS")
_SHELL_ADDED = ("PWD", "OLDPWD")
# The wrapper's scratch variables in the task's subshell; launch.sh removes them.
_WRAPPER_VARS = ("_shoal_pid", "_shoal_rest")

# Every signal sh may trap. KILL and STOP cannot be caught. CHLD is left to
# the shell's own child handling.
_TRAPPED_SIGNALS = sorted(
    int(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD)
)
# $1 is the task directory. The subshell's /proc/self is the process that
# then execs the task, so its pid is the task's pid (dash has no $BASHPID).
_WRAPPER_SCRIPT = f"""\
trap : {" ".join(map(str, _TRAPPED_SIGNALS))}
(
  read -r _shoal_pid _shoal_rest </proc/self/stat
  printf '%s\\n' "$_shoal_pid" >"$1/child_pid"
  . "$1/launch.sh"
  exec "$@"
)
printf '%s\\n' "$?" >"$1/exit_code.tmp" && command -p mv -f -- "$1/exit_code.tmp" "$1/exit_code"
"""
# Shown as the wrapper's $0 in ps, next to the task directory.
_WRAPPER_NAME = "shoal-task"


@dataclass(frozen=True)
class ProcessHandle:
    """What start() records so that any later agent can find the task again."""

    # The wrapper's pid, which is also the task's process group ID.
    pid: int
    # /proc/<pid>/stat field 22 (clock ticks since boot). A reused pid has a
    # different start time.
    start_time: int
    argv: tuple[str, ...]
    version: int = HANDLE_VERSION

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "pid": self.pid,
                "start_time": self.start_time,
                "argv": list(self.argv),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ProcessHandle:
        data = json.loads(text)
        if data.get("version") != HANDLE_VERSION:
            raise ValueError(f"unsupported handle version {data.get('version')!r}")
        return cls(
            pid=int(data["pid"]),
            start_time=int(data["start_time"]),
            argv=tuple(str(a) for a in data["argv"]),
        )


@dataclass(frozen=True)
class _ProcStat:
    state: str  # R, S, D, Z, ...
    pgrp: int
    start_time: int


def _proc_stat(pid: int) -> _ProcStat | None:
    """The process's /proc/<pid>/stat, or None when there is no such process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:  # gone, or going (ESRCH while it is torn down)
        return None
    # comm (field 2) is in parentheses and may itself contain ") ".
    fields = data[data.rindex(b")") + 2 :].split()
    # fields[0] is field 3 of proc(5): state; pgrp is field 5, starttime 22.
    return _ProcStat(state=fields[0].decode(), pgrp=int(fields[2]), start_time=int(fields[19]))


def _running(handle: ProcessHandle) -> bool:
    """Whether the task's wrapper is alive (not a zombie, and not a reused pid)."""
    st = _proc_stat(handle.pid)
    return st is not None and st.start_time == handle.start_time and st.state not in ("Z", "X")


def _reap(handle: ProcessHandle) -> None:
    """Collect the wrapper's zombie if it is our child. We only call waitpid
    on a zombie we know is ours: a reused pid might be another child of the
    agent, and reaping it would take its exit status from its real owner."""
    st = _proc_stat(handle.pid)
    if st is not None and st.start_time == handle.start_time and st.state == "Z":
        # Not our child if adopted after a restart: then init reaps it.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(handle.pid, os.WNOHANG)


def _group_alive(handle: ProcessHandle) -> bool:
    """Whether any process of the task's process group still runs."""
    _reap(handle)
    st = _proc_stat(handle.pid)
    if st is not None and st.start_time != handle.start_time:
        # The number belongs to a new process. Linux does not reuse a pid
        # while a process group still holds it, so our group is gone.
        return False
    if st is not None and st.state not in ("Z", "X"):
        return True
    try:
        os.killpg(handle.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal (setuid): it exists
        return True
    # killpg counts zombies too. A process the task left behind becomes init's
    # child once the wrapper is gone, and may stay a zombie for a while.
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            member = _proc_stat(int(entry))
            if member and member.pgrp == handle.pid and member.state not in ("Z", "X"):
                return True
    return False


async def _wait_exit(handle: ProcessHandle) -> None:
    """Return once the wrapper process has exited. This works for processes
    that are not our children (adopted after a restart), which waitpid does
    not."""
    try:
        fd = os.pidfd_open(handle.pid)
    except ProcessLookupError:
        return
    try:
        # Checked after pidfd_open: the pid may have been reused before it.
        if not _running(handle):
            return
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:  # a pidfd turns readable when the process exits
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(fd, on_readable)
        try:
            await exited
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _write_atomic(path: Path, text: str) -> None:
    """Write text so that readers (and an agent starting after a power loss)
    see the old file or the new one, never a part."""
    write_atomically(path, text.encode())


def _read_int(path: Path) -> int | None:
    """An integer file written by the wrapper, or None if missing or incomplete."""
    try:
        text = path.read_text()
    except OSError:
        return None
    # The wrapper ends each value with a newline. Without it the write has
    # not finished yet.
    if not text.endswith("\n"):
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _inheritable_fds() -> Iterator[int]:
    """Our descriptors beyond stdio that an exec would pass on. Python's own
    descriptors are close-on-exec, but a library may have made one
    inheritable. Tasks live long, so a leaked socket stays open for that long."""
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    yield fd
            except OSError:  # the listing's own descriptor, closed by now
                pass


def _sig_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:  # real-time signals other than RTMIN/RTMAX have no name
        return f"signal {sig}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _os_error(err: int) -> str:
    return _lower_first(os.strerror(err))


def _tail_offset(path: Path, lines: int) -> int:
    """The byte offset where the last `lines` lines of the file begin. It reads
    backwards in blocks, so a long log costs only what is shown."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return 0
    with f:
        size = f.seek(0, os.SEEK_END)
        if lines <= 0:
            return size
        end = size
        if size:
            f.seek(size - 1)
            if f.read(1) == b"\n":  # the final newline ends the last line
                end = size - 1
        found = 0
        pos = end
        while pos > 0:
            start = max(0, pos - _TAIL_BLOCK)
            f.seek(start)
            block = f.read(pos - start)
            idx = len(block)
            while (idx := block.rfind(b"\n", 0, idx)) >= 0:
                found += 1
                if found == lines:
                    return start + idx + 1
            pos = start
        return 0


def _read_lines(path: Path, offset: int, partial: bool) -> tuple[list[bytes], int]:
    """Lines from offset on (at most about a chunk), and the offset after them.
    An unterminated last line is kept back unless `partial` is set, because
    the writer may still be writing it."""
    try:
        with path.open("rb") as f:
            if f.seek(0, os.SEEK_END) < offset:  # truncated: start over
                offset = 0
            f.seek(offset)
            data = f.read(_LOG_CHUNK)
    except FileNotFoundError:
        return [], offset
    lines = data.splitlines(keepends=True)
    if lines and not lines[-1].endswith(b"\n"):
        at_eof = len(data) < _LOG_CHUNK
        # At EOF the writer may be mid-line. Before EOF, read on from the
        # line's start, unless the line alone fills the chunk: then pass it
        # on in pieces rather than never.
        if (at_eof and not partial) or (not at_eof and len(lines) > 1):
            lines.pop()
    return lines, offset + sum(len(line) for line in lines)


class _TaskLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every record with the task it is about."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"task {self.extra['task_id'] if self.extra else '?'}: {msg}", kwargs


@dataclass(frozen=True)
class _LaunchPlan:
    """A task's ContainerSpec resolved against this host."""

    argv: tuple[str, ...]
    workdir: Path
    env: dict[str, str]
    memory_kib: int  # 0: no limit


class _TaskDir:
    """One task's directory and the process it records. Needs only the task
    ID, so that discard() can stop and delete tasks it has no spec for."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.log = _TaskLog(log, {"task_id": path.name})

    @property
    def handle_file(self) -> Path:
        return self.path / "handle.json"

    def handle(self) -> ProcessHandle | None:
        """The recorded handle, or None if the task was never started."""
        try:
            text = self.handle_file.read_text()
        except FileNotFoundError:
            return None
        try:
            return ProcessHandle.from_json(text)
        except (ValueError, KeyError, TypeError) as e:
            raise TaskFailed(f"{self.handle_file}: unreadable handle: {e}") from e

    def exit_status(self) -> ExitStatus:
        """How the task ended, once its wrapper has gone."""
        code = _read_int(self.path / "exit_code")
        if code is None:
            return ExitStatus(KILLED_EXIT_CODE, message=KILLED_MESSAGE)
        return ExitStatus(code)

    def state(self) -> RuntimeState:
        if not self.path.is_dir():
            return RuntimeState(exists=False, running=False)
        handle = self.handle()
        if handle is None:  # prepared, never started
            return RuntimeState(exists=True, running=False)
        pid = _read_int(self.path / "child_pid") or handle.pid
        if (self.path / "exit_code").exists():
            return RuntimeState(exists=True, running=False, pid=pid, exit=self.exit_status())
        if _running(handle):
            return RuntimeState(exists=True, running=True, pid=pid)
        _reap(handle)
        return RuntimeState(exists=True, running=False, pid=pid, exit=self.exit_status())

    async def stop(self, grace_period: float, sig: int) -> None:
        """Signal the group, give it grace_period, then SIGKILL it. Return once
        none of it runs."""
        handle = self.handle()
        if handle is None or not _group_alive(handle):
            return
        if sig != signal.SIGKILL:
            self._signal(handle, sig)
            if await self._wait_gone(handle, grace_period):
                return
            self.log.info("still running %.1fs after %s; killing it", grace_period, _sig_name(sig))
        self._signal(handle, signal.SIGKILL)
        if not await self._wait_gone(handle, KILL_TIMEOUT):
            raise TaskFailed(
                f"task processes (process group {handle.pid}) still run "
                f"{KILL_TIMEOUT:.0f}s after SIGKILL; see `ps -g {handle.pid}`"
            )

    def _signal(self, handle: ProcessHandle, sig: int) -> None:
        self.log.debug("sending signal %d to process group %d", sig, handle.pid)
        try:
            os.killpg(handle.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as e:
            raise TaskFailed(f"cannot signal process group {handle.pid}: {e.strerror}") from e

    async def _wait_gone(self, handle: ProcessHandle, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.01
        while _group_alive(handle):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, _MAX_POLL_INTERVAL)
        return True

    async def delete(self) -> None:
        try:
            # The default workdir may hold anything the task wrote: not on the loop.
            await asyncio.to_thread(shutil.rmtree, self.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise TaskFailed(f"removing {self.path}: {e}") from e


@dataclass(frozen=True)
class _HealthConfig:
    """A ContainerSpec's health check with Docker's defaults filled in."""

    argv: tuple[str, ...]
    interval: float  # seconds
    timeout: float
    retries: int
    start_period: float
    # Set when the test cannot run at all; every check then fails with it.
    error: str = ""

    @classmethod
    def from_spec(cls, hc: pb.HealthCheck) -> _HealthConfig | None:
        """The check to run, or None when the spec has none (no test, or NONE)."""
        test = tuple(hc.test)
        if not test or test[0] == "NONE":
            return None
        kind, rest = test[0], test[1:]
        error = ""
        if kind == "CMD-SHELL":
            # As Docker: the rest follows `-c`, so extra items become $0, $1...
            argv: tuple[str, ...] = ("/bin/sh", "-c", *rest)
        elif kind == "CMD":
            argv = rest
        else:
            argv = ()
            error = f"healthcheck.test: must start with NONE, CMD or CMD-SHELL, got {kind!r}"
        if not rest and not error:
            error = f"healthcheck.test: {kind} needs a command after it"
        seconds = 1e-9
        return cls(
            argv=argv,
            interval=hc.interval * seconds if hc.interval > 0 else HEALTH_DEFAULT_INTERVAL,
            timeout=hc.timeout * seconds if hc.timeout > 0 else HEALTH_DEFAULT_TIMEOUT,
            retries=hc.retries or HEALTH_DEFAULT_RETRIES,
            start_period=max(hc.start_period, 0) * seconds,
            error=error,
        )


@dataclass(frozen=True)
class _CheckResult:
    ok: bool
    message: str = ""


def _task_age(handle: ProcessHandle) -> float:
    """Seconds since the task's wrapper started. It comes from /proc, so it is
    right for a task adopted from an earlier agent too."""
    since_boot = handle.start_time / os.sysconf("SC_CLK_TCK")
    return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)


class _OutputTail:
    """Reads a pipe on the event loop, keeping only its last bytes. We own
    the read end, so closing it never waits for whoever still holds the write
    end (a check's background child); such writers get EPIPE."""

    def __init__(self, fd: int, limit: int) -> None:
        self._fd = fd
        self._limit = limit
        self._data = bytearray()
        self._open = True
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, self._drain)

    def _drain(self, to_the_end: bool = False) -> None:
        # One read per wake-up: a check that writes without pause must not
        # keep the event loop in here.
        while self._open:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            if not chunk:  # every writer is gone
                self.close()
                return
            self._data += chunk
            del self._data[: -self._limit]
            if not to_the_end:
                return

    def close(self) -> None:
        if self._open:
            self._open = False
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)

    def text(self) -> str:
        """What is in the pipe by now (the tail of it); then closes it."""
        self._drain(to_the_end=True)
        self.close()
        return self._data.decode(errors="replace").strip()


class _HealthMonitor:
    """Runs one task's health check in the background and keeps the verdict,
    by Docker's rules: STARTING until the first success (HEALTHY); `retries`
    failures in a row make it UNHEALTHY until the next success; failures
    within `start_period` of the task's start do not count while it is still
    STARTING; a check that outlives `timeout` is killed and counts as failed."""

    def __init__(self, config: _HealthConfig, task_id: str, task_log: _TaskLog) -> None:
        self.config = config
        self.task_id = task_id
        self.log = task_log
        self.status = Health.STARTING
        self.failing_streak = 0
        # The last failed check's message with its output; "" until one fails.
        self.last_message = ""
        self._loop_task: asyncio.Task[None] | None = None
        self._handle: ProcessHandle | None = None

    @property
    def active(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    def watch(self, handle: ProcessHandle, env: dict[str, str], workdir: Path) -> None:
        """Start checking the task `handle` records, unless this monitor has
        checked it already: once stopped, checks of the same run stay off."""
        if self.active or self._handle == handle:
            return
        self._handle = handle
        self.status = Health.STARTING
        self.failing_streak = 0
        self.last_message = ""
        self._loop_task = asyncio.create_task(
            self._run(handle, env, workdir), name=f"health-check-{self.task_id}"
        )
        self._loop_task.add_done_callback(self._crashed)

    async def stop(self) -> None:
        """Cancel the loop and return once it and its check process are gone."""
        task = self._loop_task
        if task is not None and not task.done():
            task.cancel()
            # asyncio.wait, not await: the loop's CancelledError is expected,
            # but our caller's own cancellation must still reach it.
            await asyncio.wait({task})

    async def _run(self, handle: ProcessHandle, env: dict[str, str], workdir: Path) -> None:
        checks = asyncio.create_task(
            self._check_forever(handle, env, workdir), name=f"health-check-{self.task_id}-runs"
        )
        try:
            # The loop ends with the task, whoever else watches it.
            await _wait_exit(handle)
        finally:
            checks.cancel()
            await asyncio.wait({checks})

    async def _check_forever(self, handle: ProcessHandle, env: dict[str, str], workdir: Path) -> None:
        loop = asyncio.get_running_loop()
        started_at = loop.time() - _task_age(handle)
        await asyncio.sleep(min(self.config.interval, HEALTH_FIRST_CHECK_DELAY))
        while True:
            began = loop.time()
            try:
                result = await self._check(env, workdir)
            except Exception as e:  # a bug here must not end health checking
                self.log.exception("health check could not run")
                result = _CheckResult(False, f"health check error: {e}")
            self._record(result, in_start_period=began - started_at < self.config.start_period)
            # As Docker: the interval runs from the end of one check.
            await asyncio.sleep(self.config.interval)

    async def _check(self, env: dict[str, str], workdir: Path) -> _CheckResult:
        """Run the check once, as its own process group."""
        cfg = self.config
        if cfg.error:
            return _CheckResult(False, cfg.error)
        try:  # the same lookup and wording as for the task's own command
            _check_executable(cfg.argv[0], workdir, env.get("PATH", _SH_DEFAULT_PATH))
        except TaskRejected as e:
            return _CheckResult(False, f"health check: {e}")
        read_fd, write_fd = os.pipe()
        output = _OutputTail(read_fd, HEALTH_OUTPUT_LIMIT)
        try:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *cfg.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=write_fd,
                    stderr=write_fd,
                    cwd=workdir,
                    env=env,
                    start_new_session=True,
                )
            except OSError as e:
                name = e.filename or cfg.argv[0]
                return _CheckResult(False, f'health check: exec: "{name}": {_os_error(e.errno or errno.EIO)}')
            finally:
                os.close(write_fd)
            code: int | None = None
            try:
                code = await asyncio.wait_for(proc.wait(), cfg.timeout)
            except TimeoutError:
                pass
            finally:
                # Also after a normal exit: whatever the check left running in
                # its group must not pile up, one set per interval. Linux does
                # not reuse the group's ID while a member remains; once it is
                # empty, killpg finds nothing.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
            if code == 0:
                return _CheckResult(True)
            if code is None:
                how = f"timed out after {cfg.timeout:g}s"
            elif code < 0:
                how = f"killed by {_sig_name(-code)}"
            else:
                how = f"exit code {code}"
            text = output.text()
            return _CheckResult(False, f"health check {how}" + (f": {text}" if text else ""))
        finally:
            output.close()

    def _record(self, result: _CheckResult, in_start_period: bool) -> None:
        if result.ok:
            self.failing_streak = 0
            self._set(Health.HEALTHY)
            return
        self.last_message = result.message
        self.log.debug("%s", result.message)
        if self.status == Health.STARTING and in_start_period:
            return
        self.failing_streak += 1
        if self.failing_streak >= self.config.retries:
            self._set(Health.UNHEALTHY)

    def _set(self, status: Health) -> None:
        if status == self.status:
            return
        self.status = status
        if status == Health.UNHEALTHY:
            self.log.info(
                "unhealthy after %d failed health checks: %s", self.failing_streak, self.last_message
            )
        else:
            self.log.info("health: %s", status.name.lower())

    def _crashed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (err := task.exception()) is not None:
            self.log.error(
                "health checking stopped (%s stays %s)",
                err,
                self.status.name.lower(),
                exc_info=err,
            )


class ProcessTaskController:
    """Runs one task as a host process group (see the module docstring)."""

    def __init__(self, ctx: TaskContext, task_dir: Path) -> None:
        self.ctx = ctx
        self._dir = _TaskDir(task_dir)
        config = _HealthConfig.from_spec(ctx.task.spec.container.healthcheck)
        self._health = _HealthMonitor(config, task_dir.name, self._dir.log) if config else None

    @property
    def task_dir(self) -> Path:
        return self._dir.path

    @property
    def last_health_message(self) -> str:
        """The last failed health check, e.g. "health check exit code 1:
        <its output>"; "" while none has failed (or there is no check)."""
        return self._health.last_message if self._health else ""

    async def inspect(self) -> RuntimeState:
        """Report the task's state from its files and /proc."""
        state = self._dir.state()
        if state.running:
            self._watch_health()  # an adopted task: start checking it
        return state

    async def health(self) -> Health:
        """The task's health by its last checks: NONE without a health check,
        STARTING until a check has passed (or failed `retries` times)."""
        if self._health is None:
            return Health.NONE
        self._watch_health()
        return self._health.status

    async def stop_health_checks(self) -> None:
        """Stop the health check loop and any check it runs (the task runs on)."""
        if self._health is not None:
            await self._health.stop()

    async def prepare(self) -> None:
        """Create the task's directories and check that the command and the
        workdir exist; raise TaskRejected if not."""
        self._plan()

    async def start(self) -> None:
        """Spawn the wrapper and record its handle. Does nothing if the task
        was started before (by this agent or an earlier one)."""
        if self._dir.handle() is not None:
            self._watch_health()
            return
        plan = self._plan()
        path = self.task_dir
        (path / "child_pid").unlink(missing_ok=True)
        (path / "exit_code").unlink(missing_ok=True)
        _write_atomic(path / "launch.sh", self._launch_script(plan))
        append = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        file_actions: list[tuple[Any, ...]] = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(path / "stdout.log"), append, 0o640),
            (os.POSIX_SPAWN_OPEN, 2, str(path / "stderr.log"), append, 0o640),
        ]
        file_actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()]
        try:
            pid = os.posix_spawn(
                "/bin/sh",
                ["/bin/sh", "-c", _WRAPPER_SCRIPT, _WRAPPER_NAME, str(path)],
                plan.env,
                file_actions=file_actions,
                setsid=True,
                setsigdef=[*_TRAPPED_SIGNALS, int(signal.SIGCHLD)],
                setsigmask=(),
            )
        except OSError as e:
            raise TaskRejected(f'exec: "/bin/sh": {_os_error(e.errno or errno.EIO)}') from e
        st = _proc_stat(pid)  # our unreaped child: /proc/<pid> exists
        if st is None:
            raise TaskFailed(f"task wrapper {pid} vanished right after it was spawned")
        handle = ProcessHandle(pid=pid, start_time=st.start_time, argv=plan.argv)
        # If the agent dies right here, the task runs unrecorded and a restarted
        # agent may start it again. The window is microseconds. The wrapper's
        # command line names the task directory, so `pgrep -f <dir>` finds it.
        _write_atomic(self._dir.handle_file, handle.to_json())
        self._dir.log.debug("started wrapper pid %d: %s", pid, shlex.join(plan.argv))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CHILD_PID_WAIT
        while _read_int(path / "child_pid") is None and _running(handle):
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.002)
        self._watch_health()

    async def wait(self) -> ExitStatus:
        """Return once the wrapper has exited, with the task's exit code, or
        137 and a message if the wrapper was killed before it could record one."""
        handle = self._dir.handle()
        if handle is None:
            raise TaskFailed("task was never started")
        await _wait_exit(handle)
        await self.stop_health_checks()
        _reap(handle)
        status = self._dir.exit_status()
        self._dir.log.debug("exited with code %d", status.exit_code)
        return status

    async def shutdown(self, grace_period: float, stop_signal: str) -> None:
        """Send stop_signal (default SIGTERM) to the task's process group and
        SIGKILL it after grace_period; return once none of it runs."""
        try:
            sig = parse_signal(stop_signal)
        except ValueError:
            # Stopping must not fail over a bad spec. The API should have
            # rejected the value already.
            self._dir.log.warning("unknown stop signal %r; using SIGTERM", stop_signal)
            sig = signal.SIGTERM
        # No checks while the task goes down: they would only fail.
        await self.stop_health_checks()
        await self._dir.stop(grace_period, sig)

    async def remove(self) -> None:
        """Kill whatever of the task still runs and delete its directory."""
        await self.stop_health_checks()
        await self._dir.stop(0.0, signal.SIGKILL)
        await self._dir.delete()

    async def logs(self, follow: bool, tail: int | None) -> AsyncIterator[tuple[str, bytes, int]]:
        """Yield ("stdout" | "stderr", line, written_at) with the newline
        kept: one stream after the other, the one written to last at the end. The
        files hold no timestamps, so written_at is the file's last change for
        what was already there (and tail counts each file on its own, the
        last line excepted); lines that appear while following are stamped
        when read, within LOG_POLL_INTERVAL of being written. Logs are not
        rotated."""
        offsets: dict[str, int] = {}
        # With no per-line times, the file written to last goes last, so that
        # the final line (what `--tail 1` shows) is the task's last word.
        order = sorted(("stdout", "stderr"), key=lambda s: _mtime_ns(self.task_dir / f"{s}.log"))
        for stream in order:
            path = self.task_dir / f"{stream}.log"
            offset = 0 if tail is None else _tail_offset(path, tail)
            while True:
                lines, new_offset = _read_lines(path, offset, partial=not follow)
                # No per-line times on disk: a line already there is stamped
                # with its file's last change, an upper bound of when it was
                # written (so --since errs on the side of showing it).
                written = _mtime_ns(path)
                for line in lines:
                    yield stream, line, written
                if new_offset == offset:
                    break
                offset = new_offset
                await asyncio.sleep(0)  # let the loop breathe between chunks
            offsets[stream] = offset
        while follow:
            await asyncio.sleep(LOG_POLL_INTERVAL)
            for stream in ("stdout", "stderr"):
                lines, offsets[stream] = _read_lines(
                    self.task_dir / f"{stream}.log", offsets[stream], partial=False
                )
                now = time.time_ns()
                for line in lines:
                    yield stream, line, now

    # ----------------------------------------------------------------- helpers

    def _watch_health(self) -> None:
        """Start the health check loop if the task has a check, runs, and has
        not been checked by this controller yet."""
        if self._health is None or self._health.active:
            return
        handle = self._dir.handle()
        if handle is None or not _running(handle):
            return
        workdir = self.ctx.task.spec.container.workdir
        self._health.watch(handle, self._env(), Path(workdir) if workdir else self.task_dir / "work")

    def _env(self) -> dict[str, str]:
        """The task's environment: the agent's env for it, plus the agent's
        PATH and HOME unless it sets them."""
        env = dict(self.ctx.env)
        for name in ("PATH", "HOME"):
            if name not in env and name in os.environ:
                env[name] = os.environ[name]
        return env

    def _plan(self) -> _LaunchPlan:
        """Resolve the spec against this host, creating the task's directories.
        Raises TaskRejected with a message naming what is wrong."""
        container = self.ctx.task.spec.container
        argv = tuple(container.command) + tuple(container.args)
        if not argv:
            raise TaskRejected("no command given")
        if container.mounts:
            # Refused rather than ignored: a task that expects its volume
            # must not run without it.
            raise TaskRejected("mounts: the process runtime cannot mount anything (use --runtime docker)")
        env = self._env()
        for name, value in env.items():
            if not _ENV_NAME.fullmatch(name):
                raise TaskRejected(
                    f"env: {name!r} is not a valid variable name (the process runtime "
                    "starts tasks through /bin/sh, which drops such names)"
                )
            if "\0" in value:
                raise TaskRejected(f"env: the value of {name} contains a NUL byte")
        if any("\0" in arg for arg in argv):
            raise TaskRejected("command: an argument contains a NUL byte")

        self.task_dir.mkdir(parents=True, exist_ok=True)
        if container.workdir:
            workdir = Path(container.workdir)
            if not workdir.is_absolute():
                raise TaskRejected(f"container.workdir: must be an absolute path, got {container.workdir!r}")
            if not workdir.is_dir():
                raise TaskRejected(f"container.workdir: directory {container.workdir!r} does not exist")
        else:
            workdir = self.task_dir / "work"
            workdir.mkdir(exist_ok=True)

        _check_executable(argv[0], workdir, env.get("PATH", _SH_DEFAULT_PATH))
        memory = self.ctx.task.spec.resources.limits.memory_bytes
        return _LaunchPlan(
            argv=argv, workdir=workdir, env=env, memory_kib=-(-memory // 1024) if memory > 0 else 0
        )

    @staticmethod
    def _launch_script(plan: _LaunchPlan) -> str:
        """The shell the wrapper's subshell sources just before exec."""
        q = shlex.quote
        lines = ["# written by shoal's process runtime; sourced by the task wrapper"]
        # 126: the command could not be invoked (POSIX's code for it).
        lines.append(f"cd -- {q(str(plan.workdir))} || exit 126")
        if plan.memory_kib:
            lines.append(f"ulimit -v {plan.memory_kib} || exit 126")
        lines.append("unset " + " ".join(_WRAPPER_VARS))
        # Give back exactly the environment the agent asked for.
        for name in (*_SHELL_REWRITTEN, *_WRAPPER_VARS):
            if name in plan.env:
                lines.append(f"export {name}={q(plan.env[name])}")
        added = [name for name in _SHELL_ADDED if name not in plan.env]
        if added:
            lines.append("unset " + " ".join(added))
        lines.append("set -- " + " ".join(q(arg) for arg in plan.argv))
        return "\n".join(lines) + "\n"


def _check_executable(name: str, workdir: Path, search_path: str) -> None:
    """Raise TaskRejected unless `name` would exec, using the wording of
    runc/Go's exec errors that users know from Docker."""
    if "/" in name:
        path = workdir / name  # an absolute name replaces workdir
        try:
            mode = path.stat().st_mode
        except OSError as e:
            raise TaskRejected(f'exec: "{name}": stat {name}: {_os_error(e.errno or errno.ENOENT)}') from e
        if stat.S_ISDIR(mode):
            raise TaskRejected(f'exec: "{name}": is a directory')
        if not stat.S_ISREG(mode) or not os.access(path, os.X_OK):
            raise TaskRejected(f'exec: "{name}": {_os_error(errno.EACCES)}')
        return
    if name:
        for entry in search_path.split(":"):
            candidate = workdir / (entry or ".") / name
            try:
                if stat.S_ISREG(candidate.stat().st_mode) and os.access(candidate, os.X_OK):
                    return
            except OSError:
                continue
    raise TaskRejected(f'exec: "{name}": executable file not found in $PATH')


class ProcessRuntime:
    """The ``process`` backend: tasks are host process groups whose state
    lives under ``state_dir/tasks``."""

    name = "process"

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.tasks_dir = state_dir / "tasks"
        # Only so that close() can stop their health checks.
        self._controllers: weakref.WeakSet[ProcessTaskController] = weakref.WeakSet()

    def controller(self, ctx: TaskContext) -> ProcessTaskController:
        """Make the controller of one task (no I/O)."""
        ctl = ProcessTaskController(ctx, self._task_dir(ctx.task.meta.id))
        self._controllers.add(ctl)
        return ctl

    async def known_task_ids(self) -> set[str]:
        """The IDs of all task directories, running or not."""
        try:
            return {p.name for p in self.tasks_dir.iterdir() if p.is_dir()}
        except FileNotFoundError:
            return set()

    async def discard(self, task_id: str) -> None:
        """Stop (SIGTERM, then SIGKILL after 2 s) and delete a task known
        only by its ID."""
        task = _TaskDir(self._task_dir(task_id))
        await task.stop(DISCARD_GRACE, signal.SIGTERM)
        await task.delete()

    async def close(self) -> None:
        """Stop the health checks; the tasks keep running and need no agent
        (a later agent adopts them and checks them again)."""
        for ctl in list(self._controllers):
            await ctl.stop_health_checks()

    def _task_dir(self, task_id: str) -> Path:
        if not _TASK_ID.fullmatch(task_id):
            # IDs come from the manager; one that is not a plain name is a bug.
            raise ValueError(f"task id {task_id!r} is not usable as a directory name")
        return self.tasks_dir / task_id
