"""Benchmark: what the routing mesh costs, on one machine.

A real etcd, a manager and two agents on 127.0.0.11 (``--mesh kernel``) and
127.0.0.12 (``--mesh userspace``), and one process task on node 1 running
tests/bench/mesh_server.py, published in ingress mode. Three ways to reach
the task:

    direct     its endpoint, 127.0.0.11:<host port>
    kernel     127.0.0.11:PUBLISHED: nftables DNAT on the task's own host
    userspace  127.0.0.12:PUBLISHED: node 2's relay (asyncio) to the endpoint

and for each: throughput of a large upload (MB/s, one connection, and four
at once), connections per second (a small request per connection, from
several client threads), the latency of one such request (p50, p99) and
what it adds over direct, and the agent's CPU per 1,000 connections. Then
the time for a stopped task to leave the rotation: with two tasks, one is
killed (SIGKILL); the clock runs until requests through the kernel path
succeed 20 times in a row again.

    python3 -m tests.bench.mesh [--upload-mib 1024] [--connections 5000] [--json out.json]

A benchmark prints figures; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from tests.support.cluster import Cluster, wait_for
from tests.support.etcd_server import EtcdServer
from tests.support.mesh import free_published_port

SERVER = [sys.executable, str(Path(__file__).with_name("mesh_server.py"))]
CHUNK = 1 << 20


def upload(addr: str, port: int, total: int) -> float:
    """Seconds to send `total` bytes and hear the count back."""
    data = memoryview(bytes(CHUNK))
    began = time.perf_counter()
    with socket.create_connection((addr, port), timeout=60) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.sendall(b"S")
        sent = 0
        while sent < total:
            s.sendall(data)
            sent += CHUNK
        s.shutdown(socket.SHUT_WR)
        answer = s.makefile().readline()
    assert int(answer) == sent, answer
    return time.perf_counter() - began


def request(addr: str, port: int) -> float:
    """Seconds for one small request on a new connection."""
    began = time.perf_counter()
    with socket.create_connection((addr, port), timeout=10) as s:
        s.sendall(b"Ehello\n")
        data = b""
        while not data.endswith(b"\n"):
            more = s.recv(100)
            if not more:
                raise ConnectionResetError("closed early")
            data += more
    return time.perf_counter() - began


def cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def measure(addr: str, port: int, agent_pid: int, upload_bytes: int, connections: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    request(addr, port)  # warm up (the relay's first connect)
    seconds = upload(addr, port, upload_bytes)
    out["upload_mb_s_1"] = round(upload_bytes / seconds / 1e6)
    began = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: upload(addr, port, upload_bytes // 4), range(4)))
    out["upload_mb_s_4"] = round(upload_bytes / (time.perf_counter() - began) / 1e6)
    before = cpu(agent_pid)
    began = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        latencies = list(pool.map(lambda _: request(addr, port), range(connections)))
    elapsed = time.perf_counter() - began
    out["connections_per_s"] = round(connections / elapsed)
    out["agent_cpu_s_per_1000_conns"] = round((cpu(agent_pid) - before) / connections * 1000, 3)
    del latencies
    return out


def latencies(paths: dict[str, tuple[str, int, int]], rounds: int) -> dict[str, dict[str, float]]:
    """p50 and p99 of one small request at a time on a new connection, the
    paths taken in turn (so that a busy moment of the machine hits all)."""
    seen: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, (addr, port, _) in paths.items():
            seen[name].append(request(addr, port))
    out = {}
    for name, values in seen.items():
        values.sort()
        out[name] = {
            "latency_p50_ms": round(statistics.median(values) * 1000, 3),
            "latency_p99_ms": round(values[int(len(values) * 0.99) - 1] * 1000, 3),
        }
    return out


def leave_time(cluster: Cluster, addr: str, port: int) -> float:
    """Seconds from killing one of two tasks until 20 requests in a row
    through addr:port succeed."""
    running = wait_for(lambda: r if len(r := cluster.running("bench")) == 2 else None, timeout=60)
    victim = running[0]
    pid = int(victim["pid"])
    os.kill(pid, signal.SIGKILL)
    began = time.perf_counter()
    streak = 0
    while streak < 20:
        try:
            request(addr, port)
            streak += 1
        except OSError:
            streak = 0
            time.sleep(0.005)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--upload-mib", type=int, default=1024)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--heartbeat", default="1s")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        etcd = EtcdServer(Path(tmp) / "etcd")
        cluster = Cluster(etcd, Path(tmp) / "cluster", heartbeat=args.heartbeat)
        try:
            cluster.start_manager()
            kernel = cluster.start_agent(mesh="kernel")
            relay = cluster.start_agent(mesh="userspace")
            cluster.wait_nodes_ready(2)
            port = free_published_port(2)
            res = cluster.cli(
                "service", "create", "--name", "bench", "--constraint", "node.hostname==node-1",
                "--publish", f"{port}:80", "--restart-delay", "60s", "app:1", *SERVER,
            )  # fmt: skip
            assert res.code == 0, res.err
            (task,) = wait_for(lambda: [t for t in cluster.running("bench") if t["endpoints"]] or None)
            endpoint = task["endpoints"][0]
            (node1,) = cluster.cli("node", "inspect", "node-1").json()
            wait_for(lambda: request("127.0.0.12", port) > 0, what="the relay to answer")
            paths = {
                "direct": (endpoint["addr"], endpoint["host_port"], kernel.pid),
                "kernel": ("127.0.0.11", port, kernel.pid),
                "userspace": ("127.0.0.12", port, relay.pid),
            }
            for name, (addr, p, pid) in paths.items():
                result = measure(addr, p, pid, args.upload_mib << 20, args.connections)
                figures[name] = result
                print(f"{name:<10} {json.dumps(result)}", flush=True)
            for name, result in latencies(paths, 1000).items():
                figures[name].update(result)
                print(f"{name:<10} {json.dumps(result)}", flush=True)
            for name in ("kernel", "userspace"):
                for q in ("p50", "p99"):
                    added = figures[name][f"latency_{q}_ms"] - figures["direct"][f"latency_{q}_ms"]
                    figures[name][f"added_latency_{q}_ms"] = round(added, 3)
            figures["mesh_path_node1"] = (node1.get("mesh") or {}).get("path")
            assert cluster.cli("service", "scale", "bench=2").code == 0
            figures["leave_rotation_s"] = round(leave_time(cluster, "127.0.0.11", port), 2)
            print(f"stopped task out of the rotation after {figures['leave_rotation_s']} s", flush=True)
        finally:
            cluster.close()
            etcd.stop()
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    threading.stack_size(1 << 20)
    main()
