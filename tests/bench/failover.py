"""Benchmark: an agent dies (kill -9 with its tasks) -> its tasks run elsewhere.

Real etcd, manager and three agent processes (process runtime). Prints, for
each heartbeat period given, the time from the SIGKILL to the node being
marked down and to all replicas running again.

    python3 -m tests.bench.failover [--periods 1s,5s] [--replicas 30]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import tempfile
import time
from pathlib import Path

from tests.support.cluster import pids_of, start_cluster, wait_for
from tests.support.etcd_server import EtcdServer


def measure(period: str, replicas: int, root: Path, etcd: EtcdServer) -> dict[str, float]:
    cluster = start_cluster(etcd, root / f"cluster-{period}", agents=3, heartbeat=period)
    try:
        marker = f"sleep {int(time.time() * 1000) % 1000000 + 2000000}"
        cluster.create_service("web", replicas, "app:1", *marker.split())
        wait_for(lambda: len(cluster.running("web")) == replicas, timeout=120)
        victim = cluster.agents[0]
        node = next(n for n in cluster.nodes() if n["hostname"] == "node-1")
        doomed = [t["pid"] for t in cluster.running("web") if t["node_id"] == node["id"]]
        began = time.perf_counter()
        victim.kill9()
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
        wait_for(lambda: any(n["status"] == "down" for n in cluster.nodes()), timeout=120, interval=0.05)
        down = time.perf_counter() - began
        wait_for(lambda: len(cluster.running("web")) == replicas, timeout=120, interval=0.05)
        replaced = time.perf_counter() - began
        assert len(pids_of(marker)) == replicas
        return {"down_seconds": round(down, 2), "all_running_seconds": round(replaced, 2)}
    finally:
        cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--periods", default="1s,5s")
    parser.add_argument("--replicas", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        etcd = EtcdServer(root / "etcd")
        try:
            for period in args.periods.split(","):
                figures = measure(period, args.replicas, root, etcd)
                print(
                    f"heartbeat {period:>4}: node down after {figures['down_seconds']:6.2f} s, "
                    f"all {args.replicas} replicas running after {figures['all_running_seconds']:6.2f} s"
                )
        finally:
            etcd.stop()


if __name__ == "__main__":
    main()
