"""The runtime backends as the CLI sees them: which one an agent started
from the command line uses, and stopping the tasks of agents this machine ran.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from shoal.cli.client import CLIError


def pick_runtime(name: str) -> str:
    """auto -> docker when an engine answers, else process (and say so);
    docker -> refused at once when no engine answers."""
    if name == "process":
        return name
    from shoal.agent.runtime.docker import probe_engine

    problem = probe_engine()
    if name == "docker":
        if problem is not None:
            raise CLIError(f"--runtime docker: no Docker engine answers ({problem})")
        return name
    picked = "docker" if problem is None else "process"
    reason = "a Docker engine answers" if problem is None else f"no Docker engine ({problem})"
    click.echo(f"runtime auto: {reason}; using {picked}", err=True)
    return picked


def stop_agent_tasks(agent_dirs: list[Path]) -> None:
    """Stop and remove every task these agents ran: processes, containers
    labelled with their node IDs, and the tasks' secret and config tmpfs;
    and what their routing mesh left (an nft table, when an agent was
    killed; the docker runtime's network)."""
    from shoal.agent.identity import JoinError, load_identity
    from shoal.agent.runtime.base import Runtime
    from shoal.agent.runtime.docker import DockerRuntime, probe_engine
    from shoal.agent.runtime.process import ProcessRuntime
    from shoal.agent.taskfiles import FileStore

    docker_up = probe_engine(1.0) is None

    async def discard_all() -> None:
        for d in agent_dirs:
            runtimes: list[Runtime] = [ProcessRuntime(d / "runtime")]
            try:
                identity = load_identity(d)
            except JoinError:
                identity = None  # unusable; its containers cannot be told apart
            if identity is not None:
                from shoal.agent.mesh.nft import remove_leftover

                remove_leftover(identity.node_id)
            if docker_up and identity is not None:
                runtimes.append(DockerRuntime(d / "runtime", identity.node_id))
            for runtime in runtimes:
                for task_id in await runtime.known_task_ids():
                    await runtime.discard(task_id)
                if isinstance(runtime, DockerRuntime):
                    await asyncio.to_thread(runtime.remove_network)
                await runtime.close()
            files = FileStore.for_agent(d)
            for task_id in files.known():
                files.remove(task_id)

    asyncio.run(discard_all())
