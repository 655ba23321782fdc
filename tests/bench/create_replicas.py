"""Benchmark: `service create --replicas N` to N running tasks on 3 local agents.

Prints: time from the create request to all N running (process runtime, real
manager and agent processes, real etcd); etcd write transactions and keys
written per task started (from etcd's own counters); manager and agent RSS.
A benchmark, not a test: it prints figures and asserts nothing about time.

    python3 -m tests.bench.create_replicas [--replicas 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

from tests.support.cluster import pids_of, start_cluster, wait_for
from tests.support.etcd_server import EtcdServer


def etcd_counters(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    out = {}
    for name in ("etcd_mvcc_txn_total", "etcd_mvcc_put_total", "etcd_mvcc_delete_total"):
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        out[name] = float(m.group(1)) if m else 0.0
    return out


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / (1 << 20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        etcd = EtcdServer(root / "etcd")
        cluster = start_cluster(etcd, root / "cluster", agents=args.agents, heartbeat="5s")
        try:
            marker = f"sleep {int(time.time()) % 100000 + 100000}"
            before = etcd_counters(etcd.url)
            started = time.monotonic()
            cluster.create_service("bench", args.replicas, "app:1", *marker.split())
            wait_for(
                lambda: len(cluster.running("bench")) == args.replicas,
                timeout=300,
                interval=0.05,
                what="all replicas running",
            )
            converge = time.monotonic() - started
            after = etcd_counters(etcd.url)
            processes = len(pids_of(marker))
            txns = after["etcd_mvcc_txn_total"] - before["etcd_mvcc_txn_total"]
            keys = after["etcd_mvcc_put_total"] - before["etcd_mvcc_put_total"]
            figures = {
                "replicas": args.replicas,
                "agents": args.agents,
                "converge_seconds": round(converge, 3),
                "tasks_per_second": round(args.replicas / converge, 1),
                "task_processes": processes,
                "etcd_txns": txns,
                "etcd_txns_per_task": round(txns / args.replicas, 3),
                "etcd_keys_written": keys,
                "etcd_keys_per_task": round(keys / args.replicas, 3),
                "manager_rss_mib": round(rss_mib(cluster.managers[0].pid), 1),
                "agent_rss_mib": [round(rss_mib(a.pid), 1) for a in cluster.agents],
            }
            cluster.cli("service", "rm", "bench")
            wait_for(lambda: not pids_of(marker), timeout=60, what="tasks to stop")
        finally:
            cluster.close()
            etcd.stop()
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
