"""The docker backend's TaskController: one task's life as a container.

Data flow of one task, in Docker terms::

    prepare   image present? else pull it (once per reference, however many
              tasks wait for it); create the container, not started
    start     start it
    wait      poll its state until it is no longer running
    shutdown  kill with the stop signal, SIGKILL after the grace period
    remove    force-remove it with its anonymous volumes

The controller finds its container by label (``Engine.find``) and remembers
only its ID; the engine holds everything else, so a controller made by a
restarted agent adopts the container an earlier one created. What the
container is made of comes from ``options``; every engine call goes through
``engine``; health and logs are read by ``health`` and ``logs``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from shoal.agent.runtime.base import (
    CommitOptions,
    CommitResult,
    ExecFailed,
    ExecSpec,
    ExitStatus,
    HealthReport,
    LogLine,
    RuntimeState,
    TaskContext,
    TaskFailed,
)
from shoal.agent.runtime.common import task_log
from shoal.agent.runtime.docker.commits import commit_container
from shoal.agent.runtime.docker.engine import Engine, exit_status, is_running
from shoal.agent.runtime.docker.execs import DockerExec, start_exec
from shoal.agent.runtime.docker.health import health_report
from shoal.agent.runtime.docker.logs import container_logs
from shoal.agent.runtime.docker.network import Bridge
from shoal.agent.runtime.docker.options import container_options, registry_auth

log = logging.getLogger(__name__)

# wait() looks at the container this often. Docker's own wait endpoint would
# hold one thread per running task; an inspect is cheap (the engine answers
# from memory) and half a second is well within what a user notices.
WAIT_POLL_INTERVAL = 0.5
_NEVER = "0001-01-01T00:00:00Z"  # Go's zero time: a container never started


def _started(attrs: dict[str, Any]) -> bool:
    """Whether the container was ever started (it may have stopped since)."""
    return bool(attrs["State"].get("StartedAt", _NEVER) != _NEVER)


class DockerTaskController:
    """Runs one task as a container (see the module docstring)."""

    def __init__(
        self,
        ctx: TaskContext,
        engine: Engine,
        advertise_addr: str,
        bridge: Bridge | None = None,
        addresses: dict[str, str] | None = None,
    ) -> None:
        self.ctx = ctx
        self._engine = engine
        self._advertise_addr = advertise_addr
        self._bridge = bridge
        # The runtime's: container address on the bridge -> service ID.
        self._addresses = addresses if addresses is not None else {}
        self._ip = ""
        self._task_id = ctx.task.meta.id
        self._id: str | None = None
        self.log = task_log(log, self._task_id)

    @property
    def container_id(self) -> str | None:
        """The container's ID once prepare() or a lookup has found it."""
        return self._id

    async def inspect(self) -> RuntimeState:
        """Report the container's state: running, or how it exited."""
        attrs = await self._attrs()
        if attrs is None:
            return RuntimeState(exists=False, running=False)
        pid = int(attrs["State"].get("Pid") or 0)
        if is_running(attrs):
            self._note_address(attrs)
            return RuntimeState(exists=True, running=True, pid=pid)
        if _started(attrs):  # started, and stopped since
            return RuntimeState(exists=True, running=False, pid=pid, exit=exit_status(attrs["State"]))
        return RuntimeState(exists=True, running=False, pid=pid)  # created, not started

    async def prepare(self) -> None:
        """Pull the image if it is missing and create the container (not
        started). A container of this task that exists already is reused."""
        bridge = self._bridge
        opts = container_options(
            self.ctx,
            self._engine.node_id,
            self._advertise_addr,
            network=bridge.name if bridge else "",
            dns=bridge.gateway if bridge else "",
        )
        if await self._find() is not None:
            self.log.debug("reusing its existing container %s", self._id)
            return
        await self._engine.ensure_image(opts.image, self.log, registry_auth(self.ctx.task))
        self._id = await self._engine.create(opts)
        self.log.debug("created container %s (%s)", opts.name, self._id[:12])

    async def start(self) -> int:
        """Start the container and return its pid (0 once it has stopped);
        do not start it again if it was started before (by this agent or an
        earlier one). Raises TaskRejected with the engine's message when it
        cannot start (port taken, executable not found)."""
        container_id = await self._require()
        attrs = await self._engine.inspect(container_id)
        if attrs is None or not _started(attrs):
            await self._engine.start(container_id)
            self.log.debug("started container %s", container_id[:12])
            attrs = await self._engine.inspect(container_id)
        if attrs is not None:
            self._note_address(attrs)
        return int(attrs["State"].get("Pid") or 0) if attrs is not None else 0

    def _note_address(self, attrs: dict[str, Any]) -> None:
        """Remember which service the container's address on the bridge is
        (the node's resolver answers it by its service's networks)."""
        if self._bridge is None:
            return
        net = (attrs.get("NetworkSettings") or {}).get("Networks", {}).get(self._bridge.name) or {}
        if net.get("IPAddress"):
            self._ip = str(net["IPAddress"])
            self._addresses[self._ip] = self.ctx.task.service_id

    async def wait(self) -> ExitStatus:
        """Return once the container has stopped, with its exit code (and
        "OOMKilled" or the engine's error as the message)."""
        container_id = await self._require()
        while True:
            attrs = await self._engine.inspect(container_id)
            if attrs is None:
                raise TaskFailed(f"container {container_id[:12]} disappeared (removed outside shoal?)")
            if not is_running(attrs):
                break
            await asyncio.sleep(WAIT_POLL_INTERVAL)
        if not _started(attrs):
            raise TaskFailed("task was never started")
        status = exit_status(attrs["State"])
        self.log.debug("exited with code %d", status.exit_code)
        return status

    async def shutdown(self, grace_period: float, stop_signal: str) -> None:
        """Send stop_signal (empty: the container's StopSignal, by default
        SIGTERM), SIGKILL after grace_period; return once it has stopped."""
        container_id = await self._find()
        if container_id is not None:
            await self._engine.stop(container_id, grace_period, stop_signal, self.log)

    async def remove(self) -> None:
        """Force-remove the container and its anonymous volumes. Idempotent."""
        if self._ip and self._addresses.get(self._ip) == self.ctx.task.service_id:
            del self._addresses[self._ip]
        for container_id in await self._engine.find(self._task_id):
            await self._engine.remove(container_id)
        self._id = None

    async def health(self) -> HealthReport:
        """The engine's verdict (State.Health), NONE without a health check;
        the message is the last failed check in the engine's log of them."""
        return health_report(await self._attrs())

    async def logs(self, follow: bool, tail: int | None) -> AsyncIterator[LogLine]:
        """The engine's log of the container (see ``logs.container_logs``)."""
        container_id = await self._require()
        async with aclosing(container_logs(self._engine.api, container_id, follow, tail)) as lines:
            async for line in lines:
                yield line

    async def exec(self, spec: ExecSpec) -> DockerExec:
        """Run a further command in the container (see ``execs``)."""
        container_id = await self._find()
        if container_id is None:
            raise ExecFailed(f"task {self._task_id} has no container")
        return await start_exec(self._engine, container_id, spec)

    async def commit(self, options: CommitOptions) -> CommitResult:
        """The container as a new image (see ``commits``)."""
        return await commit_container(self._engine, await self._require(), options)

    async def _find(self) -> str | None:
        if self._id is None:
            found = await self._engine.find(self._task_id)
            self._id = found[0] if found else None
        return self._id

    async def _require(self) -> str:
        container_id = await self._find()
        if container_id is None:
            raise TaskFailed(f"task {self._task_id} has no container (was it prepared?)")
        return container_id

    async def _attrs(self) -> dict[str, Any] | None:
        container_id = await self._find()
        if container_id is None:
            return None
        attrs = await self._engine.inspect(container_id)
        if attrs is None:
            self._id = None  # removed behind our back: look it up afresh next time
        return attrs
