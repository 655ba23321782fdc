"""``shoal agent``: join (once), then keep a session and run assigned tasks.

SIGTERM/SIGINT stop the agent but leave its tasks running: a restart with the
same state dir adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from shoal import eventloop
from shoal.agent.endpoints import EndpointAllocator, port_free
from shoal.agent.identity import JoinError, join, load_identity
from shoal.agent.mesh import Mesh, make_path
from shoal.agent.mesh.dns import DnsServer
from shoal.agent.runtime.base import Networking, NodeNetwork, Runtime
from shoal.agent.session import NodeRemoved, Session, load_managers
from shoal.agent.taskfiles import FileStore, WithFiles, watch_reports
from shoal.agent.worker import Worker
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


@dataclass(frozen=True)
class AgentSettings:
    managers: list[str]
    token: str  # only needed to join; empty once the state dir holds an identity
    state_dir: Path
    runtime: str = "process"
    hostname: str = ""
    advertise_addr: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    cpus: float = 0.0
    memory: int = 0
    # Removed from the cluster: leave the node's tasks running (else stopped).
    keep_tasks_on_removal: bool = False
    # The routing mesh's data path: auto (the kernel where nft works), kernel
    # or userspace.
    mesh: str = "auto"


def describe(settings: AgentSettings, runtime_name: str) -> pb.NodeDescription:
    desc = pb.NodeDescription(
        hostname=settings.hostname or socket.gethostname(),
        runtime=runtime_name,
    )
    desc.platform.os = platform.system().lower()
    desc.platform.arch = _ARCH.get(platform.machine(), platform.machine())
    desc.resources.nano_cpus = int((settings.cpus or os.cpu_count() or 1) * 1e9)
    desc.resources.memory_bytes = settings.memory or psutil.virtual_memory().total
    desc.labels.update(settings.labels)
    return desc


def make_runtime(name: str, state_dir: Path, advertise_addr: str = "", node_id: str = "") -> Runtime:
    """The backend called `name`: "process", "docker", or "auto" (docker when
    a Docker engine answers within about 2 s, else process). The returned
    runtime's `.name` is the backend picked: report that one. The docker
    backend labels its containers with `node_id` (default: this state dir's
    identity) and publishes ports on `advertise_addr` (default: 0.0.0.0)."""
    if name == "auto":
        from shoal.agent.runtime.docker import PROBE_TIMEOUT, probe_engine

        problem = probe_engine(PROBE_TIMEOUT)
        if problem is None:
            log.info("runtime auto: a Docker engine answers; using docker")
            name = "docker"
        else:
            log.info(
                "runtime auto: no Docker engine answered within %.0fs (%s); using process",
                PROBE_TIMEOUT,
                problem,
            )
            name = "process"
    if name == "process":
        from shoal.agent.runtime.process import ProcessRuntime

        return ProcessRuntime(state_dir / "runtime")
    if name == "docker":
        from shoal.agent.runtime.docker import DockerRuntime

        if not node_id:
            identity = load_identity(state_dir)
            node_id = identity.node_id if identity is not None else ""
        if not node_id:
            raise ValueError('runtime "docker": needs the node ID (join the cluster first)')
        return DockerRuntime(state_dir / "runtime", node_id, advertise_addr)
    raise ValueError(f'runtime "{name}": not available (choose process, docker or auto)')


def _nobody(_address: str) -> str | None:
    return None


async def _start_dns(
    mesh: Mesh, runtime: Runtime, network: NodeNetwork | None, addr: str
) -> DnsServer | None:
    """The node's resolver: on its network's gateway (docker: containers
    ask there), else on the node's address at a port of its own (process
    tasks find it in SHOAL_DNS). None when it cannot listen."""
    # A process on the host cannot be told apart from another: it may
    # resolve every name.
    who: Callable[[str], str | None] = _nobody
    where = (addr or "127.0.0.1", 0)
    if network is not None and isinstance(runtime, Networking):
        where, who = (network.gateway, 53), runtime.service_of
    try:
        server = await DnsServer.serve(where[0], where[1], mesh.resolver(who))
    except OSError as err:
        log.warning("service discovery: cannot listen on %s:%d for DNS (%s)", where[0], where[1], err)
        return None
    log.info("service discovery: resolver on %s:%d", *server.address)
    return server


async def run_agent(settings: AgentSettings, stop: asyncio.Event) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    identity = load_identity(settings.state_dir)
    if identity is None:
        if not settings.token:
            raise JoinError(
                "this node has not joined a cluster yet: give the join token with --token-file FILE "
                "or SHOAL_JOIN_TOKEN (`shoal join-token -q worker` prints it)"
            )
        identity = await join(settings.state_dir, settings.managers, settings.token)
        log.info("joined the cluster as node %s", identity.node_id)
    elif identity.expired():
        raise JoinError(identity.expiry_problem(settings.state_dir))
    runtime = await asyncio.to_thread(
        make_runtime, settings.runtime, settings.state_dir, settings.advertise_addr, identity.node_id
    )
    # The docker runtime's own network (its containers join it from now on).
    network = await asyncio.to_thread(runtime.ensure_network) if isinstance(runtime, Networking) else None
    path, problem = await make_path(
        settings.mesh, settings.advertise_addr, identity.node_id, network.interface if network else ""
    )
    mesh = Mesh(path, problem)
    dns = await _start_dns(mesh, runtime, network, settings.advertise_addr)
    # Secrets and configs: written to a tmpfs per task around whichever runtime.
    files = await asyncio.to_thread(FileStore.for_agent, settings.state_dir)
    runtime = WithFiles(runtime, files)
    # The managers given, then those the cluster named last time (managers
    # added since the agent was set up).
    managers = list(dict.fromkeys([*settings.managers, *load_managers(settings.state_dir)]))
    session = Session(
        identity,
        managers,
        describe(settings, runtime.name),
        settings.advertise_addr,
        settings.state_dir,
        mesh,
    )
    endpoints = EndpointAllocator(settings.state_dir, port_free(settings.advertise_addr))
    node_env = {"SHOAL_DNS": "{}:{}".format(*dns.address)} if dns is not None else {}
    worker = Worker(
        runtime,
        identity.node_id,
        watch_reports(session.report, files),
        endpoints,
        settings.advertise_addr,
        node_env,
    )
    log.info("agent %s starting (runtime %s)", identity.node_id, runtime.name)
    task = asyncio.create_task(session.run(worker), name="session")
    mesher = asyncio.create_task(mesh.run(), name="mesh")
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            try:
                task.result()  # raises SessionRefused
            except NodeRemoved:
                if settings.keep_tasks_on_removal:
                    log.warning("this node was removed; its tasks are left running (--keep-tasks-on-removal)")
                else:
                    stopped = await worker.discard_all()
                    log.warning("this node was removed: stopped its %d task(s)", stopped)
                raise
    finally:
        stopper.cancel()
        task.cancel()
        mesher.cancel()
        for t in (task, mesher):
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await worker.close()
        # The node's published ports stop answering with the agent (and its
        # nft table goes): a node without an agent is down for the cluster.
        if dns is not None:
            await dns.close()
        await mesh.close()
        log.info("agent %s stopped; its tasks keep running", identity.node_id)


def main(settings: AgentSettings) -> None:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_agent(settings, stop)

    with contextlib.suppress(KeyboardInterrupt):
        eventloop.run(runner(), starts_children=True)
