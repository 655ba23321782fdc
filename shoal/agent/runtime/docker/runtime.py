"""The docker backend as the agent sees it: one ``DockerRuntime`` per agent.

It owns the SDK client (through one ``Engine``), makes a
``DockerTaskController`` per task, and lists and discards this node's
containers by their labels, so that a restarted agent finds what an earlier
one left and several agents can share one engine.
"""

from __future__ import annotations

import logging
from pathlib import Path

import docker
import docker.errors

from shoal.agent.runtime.base import TaskContext
from shoal.agent.runtime.common import DISCARD_GRACE, task_log
from shoal.agent.runtime.docker.controller import DockerTaskController
from shoal.agent.runtime.docker.engine import Engine, EngineUnavailable
from shoal.agent.runtime.docker.network import Bridge, ensure_network, remove_network

log = logging.getLogger(__name__)


class DockerRuntime:
    """The ``docker`` backend: tasks are containers on the engine that
    `client` (default: ``docker.from_env()``) talks to, labelled with
    `node_id`. The runtime owns the client and closes it in close()."""

    name = "docker"

    def __init__(
        self,
        state_dir: Path,
        node_id: str,
        advertise_addr: str = "",
        client: docker.DockerClient | None = None,
    ) -> None:
        if not node_id:
            raise ValueError("the docker runtime needs the node ID (its containers are labelled with it)")
        # Unused: the engine holds all state (see the package docstring).
        self.state_dir = state_dir
        self.node_id = node_id
        # Where published ports are bound; empty: every address (0.0.0.0).
        self.advertise_addr = advertise_addr
        if client is None:
            try:
                client = docker.from_env()
            except docker.errors.DockerException as err:
                raise EngineUnavailable(f"no Docker engine answers: {err}") from err
        self._client = client
        self._engine = Engine(client, node_id)
        # The node's own network (service discovery), once ensure_network ran.
        self.bridge: Bridge | None = None
        # Addresses of this node's containers on it -> their service's ID.
        self.addresses: dict[str, str] = {}

    def ensure_network(self) -> Bridge:
        """Make (or find) the node's network; containers made from now on
        join it (blocking: SDK calls)."""
        self.bridge = ensure_network(self._client, self.node_id)
        return self.bridge

    def remove_network(self) -> bool:
        """Remove the node's network once its containers are gone (shoal
        down); whether there was one (blocking)."""
        return remove_network(self._client, self.node_id)

    def service_of(self, address: str) -> str | None:
        """The service whose container has `address` on the node's network."""
        return self.addresses.get(address)

    def controller(self, ctx: TaskContext) -> DockerTaskController:
        """Make the controller of one task (no I/O)."""
        return DockerTaskController(ctx, self._engine, self.advertise_addr, self.bridge, self.addresses)

    async def known_task_ids(self) -> set[str]:
        """The task IDs of all this node's containers, running or not."""
        return await self._engine.task_ids()

    async def discard(self, task_id: str) -> None:
        """Stop (stop signal, SIGKILL after 2 s) and remove the containers of
        a task known only by its ID."""
        tlog = task_log(log, task_id)
        for container_id in await self._engine.find(task_id):
            await self._engine.stop(container_id, DISCARD_GRACE, "", tlog)
            await self._engine.remove(container_id)

    async def close(self) -> None:
        """Close the client; the containers keep running (a later agent
        adopts them)."""
        await self._engine.close()
