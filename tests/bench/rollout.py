"""Benchmark: roll 100 replicas to a new image with parallelism 10.

Real etcd, manager and three agent processes (process runtime). Prints the
total time of `service update` (waiting for convergence), the part of it the
configured delays and monitor windows account for, shoal's own overhead, and
etcd writes per replaced task.

    python3 -m tests.bench.rollout [--replicas 100] [--parallelism 10] [--delay 1s] [--monitor 1s]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from shoal.durations import parse_duration
from tests.bench.create_replicas import etcd_counters
from tests.support.cluster import start_cluster, wait_for
from tests.support.etcd_server import EtcdServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--parallelism", type=int, default=10)
    parser.add_argument("--delay", default="1s")
    parser.add_argument("--monitor", default="1s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        etcd = EtcdServer(root / "etcd")
        cluster = start_cluster(etcd, root / "cluster", agents=3, heartbeat="5s")
        try:
            cluster.create_service(
                "web",
                args.replicas,
                "--update-parallelism",
                str(args.parallelism),
                "--update-delay",
                args.delay,
                "--update-monitor",
                args.monitor,
                "app:1",
                "sleep",
                "3600",
            )
            wait_for(lambda: len(cluster.running("web")) == args.replicas, timeout=300)
            before = etcd_counters(etcd.url)
            began = time.perf_counter()
            res = cluster.cli("service", "update", "--image", "app:2", "web", timeout=900)
            took = time.perf_counter() - began
            assert res.code == 0, res.err
            after = etcd_counters(etcd.url)
            batches = math.ceil(args.replicas / args.parallelism)
            delay, monitor = parse_duration(args.delay) / 1e9, parse_duration(args.monitor) / 1e9
            # The CLI also waits one monitor window to verify, as Docker's does.
            configured = (batches - 1) * delay + batches * monitor + monitor
            keys = after["etcd_mvcc_put_total"] - before["etcd_mvcc_put_total"]
            txns = after["etcd_mvcc_txn_total"] - before["etcd_mvcc_txn_total"]
            print(
                f"replicas {args.replicas}, parallelism {args.parallelism}, delay {args.delay}, "
                f"monitor {args.monitor} ({batches} batches)"
            )
            print(f"update, create to converged: {took:6.2f} s")
            print(f"configured delays + monitor windows: {configured:6.2f} s")
            print(
                f"shoal's own overhead: {took - configured:6.2f} s "
                f"({(took - configured) / batches:.2f} s per batch)"
            )
            print(
                f"etcd keys written per replaced task: {keys / args.replicas:.2f}; "
                f"transactions per replaced task: {txns / args.replicas:.2f}"
            )
        finally:
            cluster.close()
            etcd.stop()


if __name__ == "__main__":
    main()
