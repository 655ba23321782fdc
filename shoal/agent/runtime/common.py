"""What every backend does the same way: the stop protocol, its timeouts, and
the logger that names the task.

The stop protocol is Docker's ``docker stop``: send the stop signal, give the
task its grace period, then SIGKILL it and wait a while longer. A backend
hands ``stop_task`` a ``StopTarget`` (its process group, its container, a fake
task) that knows how to signal and look at the task; ``stop_task`` owns the
order, the waiting and the messages, so that all backends stop alike and say
so alike. Backends that send signals themselves (process, fake) read the
spec's ``stop_signal`` with ``signal_plan``; the docker backend hands the name
to the engine, which reads it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from shoal.agent.runtime.base import TaskFailed
from shoal.signals import parse_signal

# How long a stop waits for the task to vanish after SIGKILL, as the engine's
# own `docker stop` does before it gives up. Only processes in
# uninterruptible sleep (stuck NFS I/O) outlive it.
KILL_TIMEOUT = 10.0
# discard(): the task has no owner any more; a short grace only lets it flush.
DISCARD_GRACE = 2.0
# The first look after a signal comes this soon: most tasks exit within
# milliseconds of SIGTERM. Later looks back off (doubling) to a backend's
# own ceiling, which depends on what one look costs it.
FIRST_STOP_POLL = 0.01


class TaskLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every record with the task it is about."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"task {self.extra['task_id'] if self.extra else '?'}: {msg}", kwargs


def task_log(logger: logging.Logger, task_id: str) -> TaskLog:
    """A backend's logger, speaking of one task."""
    return TaskLog(logger, {"task_id": task_id})


@dataclass(frozen=True)
class SignalPlan:
    """The signal a stop sends first, from the spec's stop_signal."""

    signal: int
    # The spec named a signal this host does not know; SIGTERM stands in.
    unknown: bool = False


def signal_plan(stop_signal: str) -> SignalPlan:
    """What shutdown(…, stop_signal) sends first: the named signal, SIGTERM
    when the name is empty, and SIGTERM (marked unknown) when this host does
    not know it. The API should have rejected such a name already."""
    try:
        return SignalPlan(parse_signal(stop_signal))
    except ValueError:
        return SignalPlan(int(signal.SIGTERM), unknown=True)


class StopTarget(Protocol):
    """One task's processes as the stop protocol sees them, with the stop
    signal already chosen."""

    # How the log names the stop signal ("SIGTERM").
    stop_signal_name: str

    async def running(self) -> bool:
        """Whether anything of the task still runs."""
        ...

    async def send_stop_signal(self) -> None:
        """Send the chosen stop signal; raise TaskFailed if it cannot be sent
        (a target that can go on without it logs instead)."""
        ...

    async def kill(self) -> None:
        """Send SIGKILL to everything of the task."""
        ...

    def stuck_error(self, kill_timeout: float) -> str:
        """The error when the task still runs kill_timeout seconds after
        SIGKILL: what runs, and where the user can look at it."""
        ...


async def gone_within(target: StopTarget, timeout: float, poll_max: float) -> bool:
    """Whether nothing of the task runs any more, looking until `timeout`
    seconds have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = FIRST_STOP_POLL
    while await target.running():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, poll_max)
    return True


async def stop_task(
    target: StopTarget,
    grace_period: float,
    log: TaskLog,
    *,
    poll_max: float,
    kill_at_once: bool = False,
    kill_timeout: float = KILL_TIMEOUT,
) -> None:
    """Stop a task its caller has seen running: the stop signal, up to
    grace_period seconds for it to end, then SIGKILL and up to kill_timeout
    more. `kill_at_once` when the stop signal is SIGKILL itself. Raises
    TaskFailed when even SIGKILL does not end it."""
    if not kill_at_once:
        await target.send_stop_signal()
        if await gone_within(target, grace_period, poll_max):
            return
        log.info("still running %.1fs after %s; killing it", grace_period, target.stop_signal_name)
    await target.kill()
    if not await gone_within(target, kill_timeout, poll_max):
        raise TaskFailed(target.stuck_error(kill_timeout))
