"""Benchmark: `docker service ls` against shoal's Docker API versus
`shoal service ls`, on a cluster running ~1,000 tasks.

Real etcd, one manager with --docker-api, three agents (process runtime),
SERVICES services of REPLICAS `sleep` tasks each (1,000 by default: 2,000
processes with their wrappers). Each command is run RUNS times, alternately,
as whole processes (start-up included, which is what a user waits for);
prints min / median / max wall seconds, and the same for one HTTPS request
(GET /services?status=true, and GET /tasks of every task) made in-process
on a connection of its own.

    python3 -m tests.bench.docker_api [--services 10] [--replicas 100] [--runs 20]
"""

from __future__ import annotations

import argparse
import functools
import http.client
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.cluster import Cluster, pids_of, sleep_seconds, wait_for
from tests.support.etcd_server import EtcdServer, free_port

DOCKER = "/usr/bin/docker"


def timed(run: Callable[[], object]) -> float:
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


def figures(name: str, samples: list[float]) -> str:
    return (
        f"{name:<42} min {min(samples):7.3f} s   median {statistics.median(samples):7.3f} s   "
        f"max {max(samples):7.3f} s   (n={len(samples)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-docker-api-"))
    etcd = EtcdServer(root / "etcd")
    cluster = Cluster(etcd, root / "cluster", heartbeat="5s")
    marker = sleep_seconds(86_400)
    try:
        port = free_port()
        cluster.start_manager("--docker-api", f"127.0.0.1:{port}")
        for _ in range(3):
            cluster.start_agent()
        cluster.wait_nodes_ready(3)
        for i in range(args.services):
            cluster.create_service(f"s{i}", args.replicas, "bench:1", "sleep", marker)
        total = args.services * args.replicas
        wait_for(lambda: len(pids_of(f"sleep {marker}")) == total, 600, 1.0, what=f"{total} running tasks")
        wait_for(
            lambda: all(s["replicas_running"] == args.replicas for s in cluster.services()),
            120,
            what="every service reported at full strength",
        )
        tls = cluster.tls_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(
            DOCKER_HOST=f"tcp://127.0.0.1:{port}",
            DOCKER_TLS_VERIFY="1",
            DOCKER_CERT_PATH=str(tls),
            DOCKER_CONFIG=str(root / "docker-config"),
            NO_PROXY="127.0.0.1",
        )
        docker = [DOCKER, "service", "ls"]
        shoal = [sys.executable, "-m", "shoal", "--host", cluster.manager_addrs[0], "--tls-dir", str(tls)]
        shoal += ["service", "ls"]
        runs: dict[str, list[float]] = {"docker service ls": [], "shoal service ls": []}
        for _ in range(args.runs):
            for name, command in (("docker service ls", docker), ("shoal service ls", shoal)):
                runs[name].append(
                    timed(
                        functools.partial(subprocess.run, command, env=env, check=True, capture_output=True)
                    )
                )
        ctx = ssl.create_default_context(cafile=str(tls / "ca.pem"))
        ctx.load_cert_chain(tls / "cert.pem", tls / "key.pem")

        def get(path: str) -> None:
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=60)
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200, resp.status
            finally:
                conn.close()

        for path in ("/v1.41/services?status=true", "/v1.41/tasks"):
            runs[f"GET {path}"] = [timed(functools.partial(get, path)) for _ in range(args.runs)]
        print(
            f"{args.services} services x {args.replicas} tasks = {total} running tasks, 3 agents, 1 manager"
        )
        for name, samples in runs.items():
            print(figures(name, samples))
    finally:
        cluster.close()
        etcd.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
