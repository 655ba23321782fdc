"""The process handle and what /proc says about it.

start() records a ``ProcessHandle`` (the wrapper's pid and start time) in the
task's ``handle.json``; every later question about the task (does it run, is
its group gone, when did it start) is asked of /proc with that handle, so an
agent that did not start the task (a restarted one) gets the same answers as
the one that did. The start time guards against a reused pid: a different
process with the same number has a different start time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

# Bumped when handle.json changes shape, so that an agent never misreads a
# handle written by another version (STYLE: nomad's versioned TaskHandle).
HANDLE_VERSION = 1


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
class ProcStat:
    state: str  # R, S, D, Z, ...
    pgrp: int
    start_time: int


def parse_proc_stat(data: bytes) -> ProcStat:
    """The fields we use of a /proc/<pid>/stat line."""
    # comm (field 2) is in parentheses and may itself contain ") ".
    fields = data[data.rindex(b")") + 2 :].split()
    # fields[0] is field 3 of proc(5): state; pgrp is field 5, starttime 22.
    return ProcStat(state=fields[0].decode(), pgrp=int(fields[2]), start_time=int(fields[19]))


def proc_stat(pid: int) -> ProcStat | None:
    """The process's /proc/<pid>/stat, or None when there is no such process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:  # gone, or going (ESRCH while it is torn down)
        return None
    return parse_proc_stat(data)


def running(handle: ProcessHandle) -> bool:
    """Whether the task's wrapper is alive (not a zombie, and not a reused pid)."""
    st = proc_stat(handle.pid)
    return st is not None and st.start_time == handle.start_time and st.state not in ("Z", "X")


def reap(handle: ProcessHandle) -> None:
    """Collect the wrapper's zombie if it is our child. We only call waitpid
    on a zombie we know is ours: a reused pid might be another child of the
    agent, and reaping it would take its exit status from its real owner."""
    st = proc_stat(handle.pid)
    if st is not None and st.start_time == handle.start_time and st.state == "Z":
        # Not our child if adopted after a restart: then init reaps it.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(handle.pid, os.WNOHANG)


def group_alive(handle: ProcessHandle) -> bool:
    """Whether any process of the task's process group still runs."""
    reap(handle)
    st = proc_stat(handle.pid)
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
            member = proc_stat(int(entry))
            if member and member.pgrp == handle.pid and member.state not in ("Z", "X"):
                return True
    return False


async def wait_exit(handle: ProcessHandle) -> None:
    """Return once the wrapper process has exited. This works for processes
    that are not our children (adopted after a restart), which waitpid does
    not."""
    try:
        fd = os.pidfd_open(handle.pid)
    except ProcessLookupError:
        return
    try:
        # Checked after pidfd_open: the pid may have been reused before it.
        if not running(handle):
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


def task_age(handle: ProcessHandle) -> float:
    """Seconds since the task's wrapper started. It comes from /proc, so it is
    right for a task adopted from an earlier agent too."""
    since_boot = handle.start_time / os.sysconf("SC_CLK_TCK")
    return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)
