"""Stopping a task's process group with the shared stop protocol.

The controller picks the signal (``common.signal_plan``); ``stop_group`` then
runs ``common.stop_task`` on the group the handle names: the signal to the
whole group (``killpg``), the grace period, SIGKILL, and a last wait for the
group to vanish, looking at /proc.
"""

from __future__ import annotations

import os
import signal

from shoal.agent.runtime.base import TaskFailed
from shoal.agent.runtime.common import TaskLog, stop_task
from shoal.agent.runtime.process.handle import ProcessHandle, group_alive
from shoal.signals import signal_name

# A look at the group may walk /proc (when the wrapper has gone but the group
# has not), so the looks back off to this.
MAX_STOP_POLL = 0.1


class _GroupStop:
    """A task's process group as the stop protocol sees it."""

    def __init__(self, handle: ProcessHandle, sig: int, log: TaskLog) -> None:
        self._handle = handle
        self._signal = sig
        self._log = log
        self.stop_signal_name = signal_name(sig)

    async def running(self) -> bool:
        return group_alive(self._handle)

    async def send_stop_signal(self) -> None:
        self._send(self._signal)

    async def kill(self) -> None:
        self._send(signal.SIGKILL)

    def stuck_error(self, kill_timeout: float) -> str:
        pgid = self._handle.pid
        return (
            f"task processes (process group {pgid}) still run "
            f"{kill_timeout:.0f}s after SIGKILL; see `ps -g {pgid}`"
        )

    def _send(self, sig: int) -> None:
        self._log.debug("sending signal %d to process group %d", sig, self._handle.pid)
        try:
            os.killpg(self._handle.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as e:
            raise TaskFailed(f"cannot signal process group {self._handle.pid}: {e.strerror}") from e


async def stop_group(handle: ProcessHandle, grace_period: float, sig: int, log: TaskLog) -> None:
    """Signal the group, give it grace_period, then SIGKILL it. Return once
    none of it runs; no error when it has gone already."""
    if not group_alive(handle):
        return
    await stop_task(
        _GroupStop(handle, sig, log),
        grace_period,
        log,
        poll_max=MAX_STOP_POLL,
        kill_at_once=sig == signal.SIGKILL,
    )
