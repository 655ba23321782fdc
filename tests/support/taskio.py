"""What the exec, run and commit tests share: a cluster whose nodes run both
runtimes, the CLI aimed at one manager, and looks at what really runs.

``mixed_cluster`` starts a manager, two agents on the process runtime
(labelled ``rt=process``) and, when a Docker engine answers, one on the
docker runtime (``rt=docker``), then a second manager: every agent's session
is then held by the first, so a client of the second has its execs and
commits forwarded.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import CLIResult, Cluster, pids_of, start_cluster
from tests.support.docker_engine import containers_of, engine_or_skip
from tests.support.etcd_server import EtcdServer

IMAGE = "shoal-test:1"  # the docker runtime runs it; the process runtime ignores it


@dataclass
class Mixed:
    cluster: Cluster
    engine: Any  # a docker.DockerClient, or None without an engine

    def need(self, runtime: str) -> None:
        """Skip (fail under CI) a docker test when no engine answers."""
        if runtime == "docker" and self.engine is None:
            engine_or_skip()


@contextlib.contextmanager
def mixed_cluster(etcd: EtcdServer, root: Path) -> Iterator[Mixed]:
    """The cluster described above, stopped when the block ends."""
    try:
        engine = engine_or_skip()
    except pytest.skip.Exception:
        engine = None
    cluster = start_cluster(etcd, root, agents=2, labels=[{"rt": "process"}, {"rt": "process"}])
    try:
        if engine is not None:
            cluster.start_agent(labels={"rt": "docker"}, runtime="docker")
            cluster.wait_nodes_ready(3)
        cluster.start_manager()
        yield Mixed(cluster, engine)
    finally:
        cluster.close()
        if engine is not None:
            engine.close()


def argv_via(cluster: Cluster, manager: int, *args: str) -> list[str]:
    """The CLI's command line, talking to one manager only (0: the first)."""
    host = cluster.manager_addrs[manager]
    return [sys.executable, "-m", "shoal", "--host", host, "--tls-dir", str(cluster.tls_dir), *args]


def cli_via(
    cluster: Cluster, manager: int, *args: str, stdin: str | None = None, timeout: float = 120
) -> CLIResult:
    """Run the CLI talking to one manager only."""
    res = subprocess.run(
        argv_via(cluster, manager, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cluster.env,
        input=stdin,
    )
    return CLIResult(res.returncode, res.stdout, res.stderr)


def vm_hwm_kib(pid: int) -> int:
    """A process's peak resident memory so far (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def running_commands(mixed: Mixed, runtime: str, marker: str, service: str) -> list[str]:
    """Commands now running that start with marker: host processes for the
    process runtime, the service's containers' processes (asked of the
    engine) for docker."""
    if runtime == "process":
        # Only processes that run it, not those that name it (the CLI's own
        # command line holds the same words).
        return [str(pid) for pid in pids_of(marker) if _cmdline(pid).startswith(marker)]
    found = []
    node_ids = {n["id"] for n in mixed.cluster.nodes()}
    for container in containers_of(mixed.engine, service, node_ids):
        top = container.top()
        column = top["Titles"].index("CMD")
        found += [p[column] for p in top["Processes"] if p[column].startswith(marker)]
    return found
