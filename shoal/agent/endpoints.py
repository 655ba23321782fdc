"""Task endpoints: the host ports through which a task's ports are reached.

A task's target port that is published in ingress mode (the routing mesh
forwards to it) or exposed (other services reach it by name) is reached on
its node through a host port that this agent allocates, as Nomad does with
dynamic ports: a free port of
``MESH.dynamic_port_min``–``dynamic_port_max`` on the node's address,
never one given to another task. The docker runtime maps the container's
TARGET there; a process task is told to listen there (``SHOAL_PORT_<TARGET>``,
and ``PORT`` when it has one port). A host-mode port is its published port.

``EndpointAllocator`` keeps the allocations in ``STATE_DIR/mesh/endpoints.json``
(written atomically on every change), so a restarted agent gives an adopted
task the ports it already listens on. ``wanted`` (pure) says which ports a
task needs; ``allocate`` and ``release`` are called by the worker when a task
is first seen and when it is removed.
"""

from __future__ import annotations

import errno
import json
import logging
import random
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from shoal.defaults import MESH
from shoal.fsutil import write_atomically
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

FILE = Path("mesh") / "endpoints.json"
# Ports tried before giving up (the range holds 12,000: only a host that
# uses nearly all of them fails).
ATTEMPTS = 200

Endpoint = tuple[str, int]  # (protocol, target port)
Probe = Callable[[str, int], bool]


class NoFreePort(Exception):
    """No free host port was found for a task's endpoint."""


def wanted(task: pb.Task) -> list[Endpoint]:
    """The (protocol, target port) pairs of a task that need a host port of
    the agent's choosing: its ingress-published ports and its exposed ones
    (unless published in host mode: those have their own), each once."""
    host = {((p.protocol or "tcp").lower(), p.target_port) for p in task.ports if p.publish_mode == "host"}
    out: list[Endpoint] = []
    ingress = [p for p in task.ports if p.publish_mode in ("ingress", "")]
    for port in [*ingress, *task.expose]:
        key = ((port.protocol or "tcp").lower(), port.target_port)
        if port.target_port and key not in out and key not in host:
            out.append(key)
    return out


def host_mode(task: pb.Task) -> list[pb.TaskEndpoint]:
    """The task's host-mode ports, as endpoints: their host port is the
    published one (0 when the runtime picks it)."""
    return [
        pb.TaskEndpoint(protocol=p.protocol or "tcp", target_port=p.target_port, host_port=p.published_port)
        for p in task.ports
        if p.publish_mode == "host" and p.published_port
    ]


def port_free(addr: str) -> Probe:
    """A probe: whether (protocol, port) can be bound on addr now."""

    def probe(protocol: str, port: int) -> bool:
        kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((addr or "0.0.0.0", port))
            except OSError as err:
                if err.errno in (errno.EADDRINUSE, errno.EACCES):
                    return False
                raise
        return True

    return probe


def env_for(endpoints: Iterable[pb.TaskEndpoint], addr: str) -> dict[str, str]:
    """What a process is told: SHOAL_PORT_<TARGET> per port (SHOAL_PORT_<TARGET>_UDP
    for UDP), PORT when it has exactly one, SHOAL_TASK_ADDR to bind."""
    env: dict[str, str] = {}
    items = list(endpoints)
    for e in items:
        suffix = "_UDP" if e.protocol == "udp" else ""
        env[f"SHOAL_PORT_{e.target_port}{suffix}"] = str(e.host_port)
    if len(items) == 1 and items[0].host_port:
        env["PORT"] = str(items[0].host_port)
    if items:
        env["SHOAL_TASK_ADDR"] = addr or "0.0.0.0"
    return env


class EndpointAllocator:
    """Host ports given to tasks, kept across agent restarts."""

    def __init__(
        self,
        state_dir: Path | None,
        probe: Probe | None,
        low: int = MESH.dynamic_port_min,
        high: int = MESH.dynamic_port_max,
    ) -> None:
        """state_dir None: nothing is saved (benchmarks); probe None: every
        port counts as free (a simulated node binds nothing)."""
        self.path = state_dir / FILE if state_dir is not None else None
        self.probe = probe
        self.low, self.high = low, high
        self.tasks: dict[str, list[pb.TaskEndpoint]] = self._load()
        self._taken: set[tuple[str, int]] = {
            (e.protocol, e.host_port) for eps in self.tasks.values() for e in eps
        }

    def allocate(self, task: pb.Task) -> list[pb.TaskEndpoint]:
        """The task's endpoints: those it was given before (an adopted task)
        and new ones for the ports it lacks. Raises NoFreePort."""
        have = {(e.protocol, e.target_port): e for e in self.tasks.get(task.meta.id, [])}
        out: list[pb.TaskEndpoint] = []
        picked: list[tuple[str, int]] = []
        try:
            for protocol, target in wanted(task):
                found = have.get((protocol, target))
                if found is None:
                    found = pb.TaskEndpoint(
                        protocol=protocol, target_port=target, host_port=self._pick(protocol)
                    )
                    picked.append((protocol, found.host_port))
                    self._taken.add(picked[-1])
                out.append(found)
        except NoFreePort:
            self._taken.difference_update(picked)
            raise
        if picked:
            self.tasks[task.meta.id] = out
            self._save()
        return out + host_mode(task)

    def release(self, task_id: str) -> None:
        """The task is gone: its ports may be given again."""
        gone = self.tasks.pop(task_id, None)
        if gone:
            self._taken.difference_update((e.protocol, e.host_port) for e in gone)
            self._save()

    def keep_only(self, task_ids: set[str]) -> None:
        """Forget the allocations of tasks not in task_ids (a full assignment
        set: anything else is gone for good)."""
        for task_id in [t for t in self.tasks if t not in task_ids]:
            self.release(task_id)

    def _pick(self, protocol: str) -> int:
        rng = random.SystemRandom()
        for _ in range(ATTEMPTS):
            port = rng.randint(self.low, self.high)
            if (protocol, port) in self._taken:
                continue
            if self.probe is None or self.probe(protocol, port):
                return port
        raise NoFreePort(
            f"no free {protocol} port in {self.low}-{self.high} after {ATTEMPTS} tries "
            "(ports of this range are in use on the node's address)"
        )

    def _load(self) -> dict[str, list[pb.TaskEndpoint]]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            log.warning("ignoring %s (%s): tasks get new endpoints", self.path, err)
            return {}
        tasks: dict[str, list[pb.TaskEndpoint]] = {}
        for task_id, items in (data.get("tasks") or {}).items():
            tasks[str(task_id)] = [
                pb.TaskEndpoint(protocol=str(p), target_port=int(t), host_port=int(h)) for p, t, h in items
            ]
        return tasks

    def _save(self) -> None:
        if self.path is None:
            return
        data = {
            "version": 1,
            "tasks": {
                task_id: [[e.protocol, e.target_port, e.host_port] for e in eps]
                for task_id, eps in sorted(self.tasks.items())
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, (json.dumps(data) + "\n").encode())
