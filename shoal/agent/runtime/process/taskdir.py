"""One task's directory, the only record of the task there is.

Everything about a task lives in ``<state_dir>/tasks/<task_id>/``::

    launch.sh      written by start(): cd, ulimit, env fix-ups, ``set -- argv``
    handle.json    written by start(): wrapper pid, its start time, argv
    child_pid      written by the wrapper: pid of the task's own process
    exit_code      written by the wrapper (tmp + mv) when that process ends
    stdout.log     the task's output, appended to
    stderr.log
    work/          the working directory when the spec names none

``TaskDir`` reads these files back into what the controller reports
(``RuntimeState``, ``ExitStatus``), stops the group its handle names and
deletes the directory. It needs only the directory, not the task's spec, so
that discard() can stop and delete a task known by its ID alone.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from shoal.agent.runtime.base import ExitStatus, RuntimeState, TaskFailed
from shoal.agent.runtime.common import task_log
from shoal.agent.runtime.process.handle import ProcessHandle, reap, running
from shoal.agent.runtime.process.stopping import stop_group
from shoal.fsutil import write_atomically

log = logging.getLogger(__name__)

# What wait() reports when the wrapper died without recording an exit code.
# That happens when the wrapper was SIGKILLed, almost always together with the
# task: our own shutdown's SIGKILL to the group, or the OOM killer. 128+9 is
# what the task itself would report and what Docker shows.
KILLED_EXIT_CODE = 137
KILLED_MESSAGE = "task process was killed"


def write_atomic(path: Path, text: str) -> None:
    """Write text so that readers (and an agent starting after a power loss)
    see the old file or the new one, never a part."""
    write_atomically(path, text.encode())


def read_int(path: Path) -> int | None:
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


class TaskDir:
    """One task's directory and the process it records."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.log = task_log(log, path.name)

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
        code = read_int(self.path / "exit_code")
        if code is None:
            return ExitStatus(KILLED_EXIT_CODE, message=KILLED_MESSAGE)
        return ExitStatus(code)

    def state(self) -> RuntimeState:
        if not self.path.is_dir():
            return RuntimeState(exists=False, running=False)
        handle = self.handle()
        if handle is None:  # prepared, never started
            return RuntimeState(exists=True, running=False)
        pid = read_int(self.path / "child_pid") or handle.pid
        if (self.path / "exit_code").exists():
            return RuntimeState(exists=True, running=False, pid=pid, exit=self.exit_status())
        if running(handle):
            return RuntimeState(exists=True, running=True, pid=pid)
        reap(handle)
        return RuntimeState(exists=True, running=False, pid=pid, exit=self.exit_status())

    async def stop(self, grace_period: float, sig: int) -> None:
        """Signal the group, give it grace_period, then SIGKILL it. Return once
        none of it runs."""
        handle = self.handle()
        if handle is not None:
            await stop_group(handle, grace_period, sig, self.log)

    async def delete(self) -> None:
        try:
            # The default workdir may hold anything the task wrote: not on the loop.
            await asyncio.to_thread(shutil.rmtree, self.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise TaskFailed(f"removing {self.path}: {e}") from e
