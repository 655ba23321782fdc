"""Benchmark: how long each fault costs.

Real etcd, three managers and three agents (process runtime), the default
5 s heartbeat unless --heartbeat says otherwise. Prints:

- leader failover: kill -9 of the leader -> another manager leads; and
  SIGTERM of the leader -> another leads (polled every 20 ms in-process);
- hung manager: SIGSTOP of the manager holding the agents' sessions -> no
  node's session is with it any more;
- etcd restart: kill -9 of etcd, restart on the same data -> the first
  write that succeeds again;
- etcd's database after 100,000 task status transitions (on 1,000 task
  keys): its size, and after compacting and defragmenting.

    python3 -m tests.bench.faults [--heartbeat 5s] [--transitions 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from pyetcd import etcdrpc

from shoal.manager.store import Etcd, Store
from shoal.protos import control_pb2 as cpb
from shoal.protos import control_pb2_grpc as cgrpc
from shoal.protos import objects_pb2 as pb
from tests.support.cluster import Cluster, wait_for
from tests.support.etcd_server import EtcdServer


def leader_of(stub: cgrpc.ControlStub) -> str:
    try:
        info = stub.GetClusterInfo(cpb.GetClusterInfoRequest(), timeout=2)
    except grpc.RpcError:
        return ""
    return next((m.id for m in info.managers if m.leader), "")


def failover(c: Cluster, how: str) -> float:
    old = wait_for(c.leader, what="a leader")
    watcher = next(m for m in c.managers if m is not old and m.alive())
    channel, stub = c.control(watcher)
    old_id = c.manager_id(old)
    try:
        began = time.perf_counter()
        if how == "kill":
            old.kill9()
        else:
            assert old.popen is not None
            old.popen.send_signal(signal.SIGTERM)
        wait_for(lambda: leader_of(stub) not in ("", old_id), timeout=60, interval=0.02)
        took = time.perf_counter() - began
    finally:
        channel.close()
    c.restart(old)
    wait_for(lambda: c.cli("info").code == 0)
    return took


def hung_manager(c: Cluster) -> float:
    wait_for(lambda: len({n["manager_id"] for n in c.nodes()}) == 1, timeout=60, what="agents on one manager")
    nodes = c.nodes()
    held = max({n["manager_id"] for n in nodes}, key=lambda m: sum(n["manager_id"] == m for n in nodes))
    hung = next(m for m in c.managers if c.manager_id(m) == held)
    others = [a for m, a in zip(c.managers, c.manager_addrs, strict=True) if m is not hung]
    addrs = list(c.manager_addrs)
    assert hung.popen is not None
    hung.popen.send_signal(signal.SIGSTOP)
    began = time.perf_counter()
    c.manager_addrs[:] = others
    try:
        wait_for(lambda: held not in {n["manager_id"] for n in c.nodes()}, timeout=120, interval=0.2)
        return time.perf_counter() - began
    finally:
        hung.popen.send_signal(signal.SIGCONT)
        c.manager_addrs[:] = addrs


def etcd_restart(c: Cluster, etcd: EtcdServer) -> float:
    etcd.process.kill()
    etcd.process.wait()
    time.sleep(2)
    etcd.process = subprocess.Popen(etcd.args, stdout=etcd._log, stderr=subprocess.STDOUT)
    began = time.perf_counter()
    wait_for(
        lambda: c.cli("service", "scale", "-d", "bench=3", timeout=30).code == 0, timeout=120, interval=0.2
    )
    return time.perf_counter() - began


async def db_after_transitions(url: str, transitions: int) -> dict[str, float]:
    etcd = Etcd([url])
    store = Store(etcd, b"/bench-db/shoal/v1/")
    try:
        tasks = []
        for i in range(1000):
            t = pb.Task(service_id="s", slot=i + 1)
            t.meta.id = f"t{i:05d}"
            t.spec.container.image = "app:1"
            t.spec.container.args.extend(["sleep", "3600"])
            tasks.append(t)
        await store.batch().extend("create", tasks).commit()
        states = [
            pb.TASK_STATE_ASSIGNED,
            pb.TASK_STATE_PREPARING,
            pb.TASK_STATE_RUNNING,
            pb.TASK_STATE_SHUTDOWN,
        ]
        for n in range(transitions // len(tasks)):
            for t in tasks:
                t.status.state = states[n % len(states)]  # type: ignore[assignment]
                t.status.timestamp = n
            await store.batch().extend("update", tasks).commit()

        def status() -> int:
            with grpc.insecure_channel(url.removeprefix("http://")) as ch:
                return int(etcdrpc.MaintenanceStub(ch).Status(etcdrpc.StatusRequest(), 5).dbSize)

        before = status()
        await etcd.compact(await etcd.current_revision())
        with grpc.insecure_channel(url.removeprefix("http://")) as ch:
            etcdrpc.MaintenanceStub(ch).Defragment(etcdrpc.DefragmentRequest(), 60)
        after = status()
        return {
            "db_mib_without_compaction": round(before / 2**20, 1),
            "db_mib_compacted": round(after / 2**20, 1),
        }
    finally:
        await etcd.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--heartbeat", default="5s")
    parser.add_argument("--transitions", type=int, default=100_000)
    args = parser.parse_args()
    out: dict[str, object] = {"heartbeat": args.heartbeat}
    with tempfile.TemporaryDirectory() as tmp:
        etcd = EtcdServer(Path(tmp) / "etcd")
        c = Cluster(etcd, Path(tmp) / "c", heartbeat=args.heartbeat)
        try:
            for _ in range(3):
                c.start_manager()
            for _ in range(3):
                c.start_agent()
            c.wait_nodes_ready(3, timeout=60)
            assert (
                c.cli(
                    "service", "create", "--name", "bench", "--replicas", "3", "app:1", "sleep", "3600"
                ).code
                == 0
            )
            out["agents_leave_hung_manager_seconds"] = round(hung_manager(c), 1)
            out["failover_kill9_seconds"] = round(failover(c, "kill"), 2)
            out["failover_sigterm_seconds"] = round(failover(c, "term"), 3)
            out["write_after_etcd_restart_seconds"] = round(etcd_restart(c, etcd), 1)
        finally:
            c.close()
        out.update(asyncio.run(db_after_transitions(etcd.url, args.transitions)))
        etcd.stop()
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
