"""Health checks of process tasks, run by the agent as Docker would run them.

A ``ContainerSpec.healthcheck`` becomes a ``HealthConfig`` (Docker's defaults
filled in). A ``HealthMonitor`` per controller runs the check in the
background as its own process group, with the task's env and working
directory, from start() (or, for an adopted task, from the first inspect() or
health()) until the task's wrapper exits or the controller stops the task.
Each result moves the verdict by Docker's rules (``HealthMonitor._record``);
the controller reads the verdict and the last failure's message as a
``HealthReport``. The verdict lives in memory only, so an adopted task starts
again at STARTING.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from shoal.agent.runtime.base import Health, HealthReport, TaskRejected
from shoal.agent.runtime.common import TaskLog
from shoal.agent.runtime.process.handle import ProcessHandle, task_age, wait_exit
from shoal.agent.runtime.process.launch import SH_DEFAULT_PATH, check_executable, os_error
from shoal.protos import objects_pb2 as pb
from shoal.signals import signal_name

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
# for the report's message; the rest is read and dropped. Docker keeps 4 KiB.
HEALTH_OUTPUT_LIMIT = 4096


@dataclass(frozen=True)
class HealthConfig:
    """A ContainerSpec's health check with Docker's defaults filled in."""

    argv: tuple[str, ...]
    interval: float  # seconds
    timeout: float
    retries: int
    start_period: float
    # Set when the test cannot run at all; every check then fails with it.
    error: str = ""

    @classmethod
    def from_spec(cls, hc: pb.HealthCheck) -> HealthConfig | None:
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


class HealthMonitor:
    """Runs one task's health check in the background and keeps the verdict,
    by Docker's rules: STARTING until the first success (HEALTHY); `retries`
    failures in a row make it UNHEALTHY until the next success; failures
    within `start_period` of the task's start do not count while it is still
    STARTING; a check that outlives `timeout` is killed and counts as failed."""

    def __init__(self, config: HealthConfig, task_id: str, task_log: TaskLog) -> None:
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

    def report(self) -> HealthReport:
        """The verdict, with the last failed check's message."""
        return HealthReport(self.status, self.last_message)

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
            await wait_exit(handle)
        finally:
            checks.cancel()
            await asyncio.wait({checks})

    async def _check_forever(self, handle: ProcessHandle, env: dict[str, str], workdir: Path) -> None:
        loop = asyncio.get_running_loop()
        started_at = loop.time() - task_age(handle)
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
            check_executable(cfg.argv[0], workdir, env.get("PATH", SH_DEFAULT_PATH))
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
                return _CheckResult(False, f'health check: exec: "{name}": {os_error(e.errno or errno.EIO)}')
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
                how = f"killed by {signal_name(-code)}"
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
