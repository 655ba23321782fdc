"""Benchmark: a thousand nodes and a hundred thousand tasks on one machine.

Real etcd, a real manager process, and N simulated nodes running the real
agent code (tests/bench/harness.py) in a few processes. Prints a table and
writes JSON with:

- time from the create requests to all tasks running, tasks running per second;
- scheduler placements per second measured inside the manager;
- etcd transactions and keys written per task; the etcd ceiling for the same
  number of keys (batched puts on the same etcd) and shoal's ratio to it;
- manager RSS and CPU seconds; `service ps` / `service ls` latency;
- killing a tenth of the nodes: time to detection and to all replacements
  running;
- a rolling update of one service with parallelism 500.

With ``--publish``, service s0 publishes a port in ingress mode: its tasks
report endpoints and every node's mesh receives the endpoint sets (the
simulated nodes apply them to no data path); the figures then include the
time until every node holds every backend (``mesh_converge_seconds``).

    python3 -m tests.bench.scale                      # 1,000 nodes, 10 x 10,000 tasks
    python3 -m tests.bench.scale --nodes 100 --replicas 1000 --json out.json
    python3 -m tests.bench.scale --services 1 --publish --converge-only   # what the mesh adds

A benchmark prints figures; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from shoal.cli.client import Client, Target
from shoal.manager.store.etcd import MAX_TXN_OPS, Etcd, op_put
from shoal.protos import control_pb2 as cpb
from tests.bench.create_replicas import etcd_counters
from tests.bench.simpool import SimPool, create_sim_services
from tests.support.cluster import Cluster, wait_for
from tests.support.etcd_server import EtcdServer


class Figures(dict[str, Any]):
    """Prints each figure as it is measured, so a run that is cut short
    still shows what it got."""

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        if key != "manager_stats":
            print(f"{key:<36}  {value}", flush=True)

    def __init__(self, **kw: Any) -> None:
        super().__init__()
        for k, v in kw.items():
            self[k] = v


def running_total(client: Client) -> int:
    resp = client.call("ListServices", cpb.ListServicesRequest(), timeout=120)
    return sum(s.replicas_running for s in resp.services)


def nodes_down(client: Client) -> int:
    return sum(
        1 for n in client.call("ListNodes", cpb.ListNodesRequest(), timeout=60).nodes if n.status.state == 1
    )


def etcd_ceiling(url: str, keys: int, value_size: int) -> float:
    """Seconds etcd alone needs to write `keys` values of value_size bytes,
    batched like shoal batches (MAX_TXN_OPS per txn, 4 in flight)."""

    async def run() -> float:
        etcd = Etcd([url])
        value = b"x" * value_size
        gate = asyncio.Semaphore(4)

        async def txn(start: int) -> None:
            async with gate:
                ops = [
                    op_put(f"/ceiling/{i:08d}".encode(), value)
                    for i in range(start, min(keys, start + MAX_TXN_OPS))
                ]
                await etcd.txn([], ops)

        began = time.perf_counter()
        await asyncio.gather(*(txn(s) for s in range(0, keys, MAX_TXN_OPS)))
        took = time.perf_counter() - began
        await etcd.delete_prefix(b"/ceiling/")
        etcd.close()
        return took

    return asyncio.run(run())


def timed_cli(cluster: Cluster, *args: str) -> float:
    began = time.perf_counter()
    res = cluster.cli(*args, timeout=300)
    took = time.perf_counter() - began
    if res.code != 0:
        raise RuntimeError(res.err)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=10000)
    parser.add_argument("--pools", type=int, default=2, help="harness processes")
    parser.add_argument("--kill", type=int, default=0, help="nodes to kill (default: a tenth)")
    parser.add_argument("--heartbeat", default="5s")
    parser.add_argument("--update-parallelism", type=int, default=500)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=Path, help="write a py-spy profile of the manager here")
    parser.add_argument("--converge-only", action="store_true", help="stop after the convergence figures")
    parser.add_argument(
        "--publish", action="store_true", help="s0 publishes a port (ingress): the mesh at scale"
    )
    args = parser.parse_args()
    total = args.services * args.replicas
    kill = args.kill or max(1, args.nodes // 10)
    figures: dict[str, Any] = Figures(nodes=args.nodes, services=args.services, tasks=total)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        etcd = EtcdServer(root / "etcd")
        cluster = Cluster(etcd, root / "cluster", heartbeat=args.heartbeat)
        pools: list[SimPool] = []
        profiler = None
        try:
            cluster.start_manager()
            client = Client(Target(cluster.manager_addrs, cluster.tls_dir), timeout=120).connect()
            token = cluster.token()
            per_pool = -(-args.nodes // args.pools)
            began = time.perf_counter()
            for p in range(args.pools):
                count = min(per_pool, args.nodes - p * per_pool)
                pools.append(
                    SimPool(cluster.manager_addrs[0], token, count, root / "sim", offset=p * per_pool)
                )
            for pool in pools:
                pool.ask("ready")
            wait_for(
                lambda: client.call("GetClusterInfo", cpb.GetClusterInfoRequest()).nodes_ready >= args.nodes,
                timeout=600,
                interval=0.5,
                what="all nodes ready",
            )
            figures["join_seconds"] = round(time.perf_counter() - began, 2)
            manager = psutil.Process(cluster.managers[0].pid)
            cpu_before = sum(manager.cpu_times()[:2])
            stats_before = dict(client.call("GetClusterInfo", cpb.GetClusterInfoRequest()).stats)
            counters_before = etcd_counters(etcd.url)
            if args.profile:
                profiler = subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "-o",
                        str(args.profile),
                        "--format",
                        "speedscope",
                        "--pid",
                        str(manager.pid),
                        "--rate",
                        "50",
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )

            # -------------------------------------------------- converge
            began = time.perf_counter()
            create_sim_services(
                cluster,
                args.services,
                args.replicas,
                "--update-parallelism",
                str(args.update_parallelism),
                "--update-monitor",
                "0s",
                first=("--publish", "18080:80") if args.publish else (),
            )
            wait_for(
                lambda: running_total(client) == total, timeout=900, interval=0.5, what="all tasks running"
            )
            converge = time.perf_counter() - began
            figures["converge_seconds"] = round(converge, 2)
            if args.publish:
                # Every node's mesh holds each of s0's tasks.
                wanted = args.nodes * args.replicas
                wait_for(
                    lambda: sum(p.ask("stats")["mesh_backends"] for p in pools) >= wanted,
                    timeout=900,
                    interval=0.5,
                    what="every node's mesh to hold every backend",
                )
                figures["mesh_converge_seconds"] = round(time.perf_counter() - began, 2)
            figures["tasks_running_per_second"] = round(total / converge, 1)
            stats = dict(client.call("GetClusterInfo", cpb.GetClusterInfoRequest()).stats)
            placed = stats.get("scheduler_placed", 0) - stats_before.get("scheduler_placed", 0)
            placing = stats.get("scheduler_seconds", 0) - stats_before.get("scheduler_seconds", 0)
            figures["scheduler_placements_per_second"] = round(placed / placing, 1) if placing else None
            counters = etcd_counters(etcd.url)
            txns = counters["etcd_mvcc_txn_total"] - counters_before["etcd_mvcc_txn_total"]
            keys = counters["etcd_mvcc_put_total"] - counters_before["etcd_mvcc_put_total"]
            figures["etcd_txns_per_task"] = round(txns / total, 4)
            figures["etcd_keys_per_task"] = round(keys / total, 3)
            figures["manager_rss_mib"] = round(manager.memory_info().rss / (1 << 20), 1)
            figures["manager_cpu_seconds_converge"] = round(sum(manager.cpu_times()[:2]) - cpu_before, 1)
            ceiling = etcd_ceiling(etcd.url, int(keys), 600)
            figures["etcd_only_seconds_same_keys"] = round(ceiling, 2)
            figures["etcd_batched_puts_per_second"] = round(keys / ceiling, 0)
            figures["converge_vs_etcd_ratio"] = round(converge / ceiling, 2)
            if args.converge_only:
                return

            # -------------------------------------------------- reads
            figures["service_ps_seconds_cli"] = round(
                timed_cli(cluster, "service", "ps", "s2", "--format", "json"), 3
            )
            began = time.perf_counter()
            client.call("ListTasks", cpb.ListTasksRequest(service="s2"), timeout=120)
            figures["service_ps_seconds_rpc"] = round(time.perf_counter() - began, 3)
            figures["service_ls_seconds_cli"] = round(
                timed_cli(cluster, "service", "ls", "--format", "json"), 3
            )

            # -------------------------------------------------- node loss
            killed_at = time.perf_counter()
            per = -(-kill // len(pools))
            left = kill
            for pool in pools:
                n = min(per, left)
                if n:
                    pool.ask("kill", count=n)
                left -= n
            wait_for(
                lambda: nodes_down(client) >= kill, timeout=300, interval=0.2, what="dead nodes detected"
            )
            detected_at = time.perf_counter()
            wait_for(
                lambda: running_total(client) == total, timeout=600, interval=0.2, what="replacements running"
            )
            replaced_at = time.perf_counter()
            figures["killed_nodes"] = kill
            figures["death_to_detection_seconds"] = round(detected_at - killed_at, 2)
            figures["detection_to_replaced_seconds"] = round(replaced_at - detected_at, 2)

            # -------------------------------------------------- rolling update
            began = time.perf_counter()
            res = cluster.cli("service", "update", "-d", "--image", "sim:2", "s3")
            if res.code != 0:
                raise RuntimeError(res.err)

            def update_done() -> bool:
                svc = client.call("GetService", cpb.ObjectRef(ref="s3"))
                return bool(svc.update_status.state == 3)

            wait_for(update_done, timeout=900, interval=0.5, what="rolling update")
            figures["rolling_update_seconds"] = round(time.perf_counter() - began, 2)
            figures["rolling_update_parallelism"] = args.update_parallelism
            figures["manager_rss_mib_end"] = round(manager.memory_info().rss / (1 << 20), 1)
            figures["manager_cpu_seconds_total"] = round(sum(manager.cpu_times()[:2]) - cpu_before, 1)
            stats = dict(client.call("GetClusterInfo", cpb.GetClusterInfoRequest()).stats)
            figures["manager_stats"] = {k: round(v, 3) for k, v in stats.items()}
        finally:
            if profiler is not None:
                profiler.send_signal(2)
                profiler.wait(60)
            for pool in pools:
                pool.close()
            cluster.close()
            etcd.stop()
    figures["machine"] = {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        "python": sys.version.split()[0],
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
