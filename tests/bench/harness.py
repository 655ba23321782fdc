"""Many simulated nodes in one process: the real agent code on SimRuntime.

Each node is a real agent (shoal.agent: join with the token over TLS, its own
certificate and node ID, one session with heartbeats and batched statuses,
the worker) whose runtime is ``SimRuntime``. Run as a child process by the
benchmark and the scale correctness test, and driven by JSON lines on stdin:

    {"cmd": "ready"}                 -> {"nodes": N} once every node joined
    {"cmd": "kill", "count": K}      -> stop K nodes at once (as kill -9 would:
                                        sessions drop, tasks vanish); their
                                        hostnames and how many tasks they ran
    {"cmd": "stats"}                 -> running tasks, tasks started twice, the
                                        mesh's backends summed over the nodes, ...
    {"cmd": "quit"}

    python -m tests.bench.harness --join ADDR --token T --count N --state-dir D
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections import Counter
from pathlib import Path

from shoal import eventloop
from shoal.agent.identity import join, load_identity
from shoal.agent.mesh import Mesh
from shoal.agent.mesh.paths import NullPath
from shoal.agent.session import Session
from shoal.agent.worker import Worker
from shoal.protos import objects_pb2 as pb
from tests.bench.simruntime import SimRuntime

ZONES = ("a", "b", "c")


class SimNode:
    def __init__(self, index: int, managers: list[str], token: str, state_dir: Path) -> None:
        self.index = index
        self.hostname = f"sim-{index:04d}"
        self.managers = managers
        self.token = token
        self.state_dir = state_dir / self.hostname
        self.runtime = SimRuntime()
        self.task: asyncio.Task[None] | None = None
        self.worker: Worker | None = None
        # The routing mesh without a data path: endpoint sets arrive and are
        # applied (what they cost a node), nothing is bound.
        self.mesh = Mesh(NullPath())
        self.mesh_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        identity = load_identity(self.state_dir) or await join(self.state_dir, self.managers, self.token)
        desc = pb.NodeDescription(hostname=self.hostname, runtime="sim")
        desc.platform.os, desc.platform.arch = "linux", "amd64"
        desc.resources.nano_cpus = 8 * 10**9
        desc.resources.memory_bytes = 32 << 30
        desc.labels["zone"] = ZONES[self.index % len(ZONES)]
        addr = f"127.1.{self.index // 250}.{self.index % 250 + 1}"
        session = Session(identity, self.managers, desc, addr, self.state_dir, self.mesh)
        self.worker = Worker(self.runtime, identity.node_id, session.report)
        self.task = asyncio.create_task(session.run(self.worker))
        self.mesh_task = asyncio.create_task(self.mesh.run())

    async def kill(self) -> None:
        """Vanish like a host that lost power: no goodbye, tasks gone."""
        for task in (self.task, self.mesh_task):
            if task is not None:
                task.cancel()
        if self.worker is not None:
            for runner in list(self.worker.runners.values()):
                if runner.runner is not None:
                    runner.runner.cancel()
        self.runtime.vanish()


async def main_async(args: argparse.Namespace) -> None:
    managers = args.join.split(",")
    nodes = [
        SimNode(i, managers, args.token, Path(args.state_dir))
        for i in range(args.offset, args.offset + args.count)
    ]
    gate = asyncio.Semaphore(32)

    async def start(node: SimNode) -> None:
        async with gate:
            await node.start()

    await asyncio.gather(*(start(n) for n in nodes))
    alive = list(nodes)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(obj: object) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd["cmd"] == "ready":
            reply({"nodes": len(alive)})
        elif cmd["cmd"] == "kill":
            victims, alive = alive[: cmd["count"]], alive[cmd["count"] :]
            lost = sum(len(n.runtime.running()) for n in victims)
            for node in victims:
                await node.kill()
            reply({"killed": [n.hostname for n in victims], "lost": lost})
        elif cmd["cmd"] == "stats":
            running = sum(len(n.runtime.running()) for n in alive)
            # Starts of each task ID on any node, the lost ones included: a
            # task started on two nodes counts as started twice too.
            every: Counter[str] = Counter()
            for n in nodes:
                every.update(n.runtime.starts)
            twice = sum(1 for c in every.values() if c > 1)
            starts = sum(every.values())
            # Endpoints the nodes' meshes hold (every node holds every backend).
            backends = sum(len(n.mesh.table.backends) for n in alive)
            reply(
                {
                    "running": running,
                    "started_twice": twice,
                    "starts": starts,
                    "nodes": len(alive),
                    "mesh_backends": backends,
                }
            )
        elif cmd["cmd"] == "quit":
            break
    for node in alive:
        if node.task is not None:
            node.task.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--join", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # The loop a real agent runs on (asyncio's own: see shoal.eventloop), so
    # the CPU this process spends is what the agents' code costs.
    eventloop.run(main_async(args), starts_children=True)


if __name__ == "__main__":
    main()
