"""Benchmark: a thousand nodes, a hundred thousand tasks, and five thousand nodes.

Real etcd, a real manager process, and N simulated nodes running the real
agent code (tests/bench/harness.py) in a few processes. Every phase's CPU is
accounted per process (manager, etcd, harness, this driver, and the rest of
the machine), with the load average before and after, so the figures say
whose cost they are and how busy the machine was (``accounting.py``).

Default: the full scenario on 1,000 nodes with 10 services of 10,000 tasks
(join, converge, etcd alone for the same keys, reads, idle heartbeats, a
tenth of the nodes lost, a rolling update with parallelism 500), then 5,000
nodes with 250,000 tasks (join, converge, idle heartbeats). ``--sweep`` runs
100, 1,000 and 5,000 nodes with 100 tasks per node: the full scenario up to
100,000 tasks, join, converge and idle heartbeats beyond.

With ``--publish``, service s0 of each point but the large one publishes a
port in ingress mode: its tasks report endpoints and every node's mesh
receives the endpoint sets (the simulated nodes apply them to no data path);
the figures then include the time until every node holds every backend
(``mesh_converge_seconds``). The large point never publishes: each of its
5,000 nodes would hold s0's 25,000 backends, which measures the harness.

    python3 -m tests.bench.scale --json out.json         # ~13 minutes on 2 cores
    python3 -m tests.bench.scale --nodes 200 --replicas 2000 --large-nodes 0
    python3 -m tests.bench.scale --sweep --json sweep.json   # 100 / 1,000 / 5,000 nodes
    python3 -m tests.bench.scale --profile prof/        # py-spy of the manager per phase
    python3 -m tests.bench.scale --services 1 --replicas 10000 --large-nodes 0 --converge-only --publish

A benchmark prints figures; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import psutil

from tests.bench.accounting import load, wait_for_quiet
from tests.bench.scale_point import Point, run_point

SWEEP = (100, 1000, 5000)
# The sweep's tasks per node (100 nodes: 10,000 tasks ... 5,000: 500,000);
# the large point's (5,000 nodes: 250,000 tasks, the figure).
TASKS_PER_NODE = 100
LARGE_TASKS_PER_NODE = 50
# The sweep's largest size that also loses nodes and rolls an update.
FULL_SCENARIO_TASKS = 100_000


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        "python": sys.version.split()[0],
        "loadavg_at_start": list(load()),
    }


def sweep_table(points: list[dict[str, Any]]) -> str:
    """How cost grows with the cluster: per task, at each size."""
    head = (
        f"{'nodes':>7}{'tasks':>9}{'join s':>8}{'conv. s':>9}{'tasks/s':>9}{'mgr ms/t':>10}"
        f"{'agent ms/t':>11}{'etcd ms/t':>10}{'RSS MiB':>9}{'B/task':>8}{'idle mgr%':>10}"
        f"{'replace s':>10}{'update s':>9}"
    )
    lines = [head, "-" * len(head)]
    for f in points:
        lines.append(
            f"{f['nodes']:>7,}{f['tasks']:>9,}{f['join_seconds']:>8.1f}{f['converge_seconds']:>9.1f}"
            f"{f['tasks_running_per_second']:>9,.0f}{f['manager_cpu_ms_per_task']:>10.3f}"
            f"{f['agent_cpu_ms_per_task']:>11.3f}{f['etcd_cpu_ms_per_task']:>10.3f}"
            f"{f['manager_rss_mib']:>9.0f}{f['manager_bytes_per_task']:>8,}"
            f"{f['idle_manager_cpu_percent']:>10.1f}"
            f"{f.get('detection_to_replaced_seconds', float('nan')):>10.1f}"
            f"{f.get('rolling_update_seconds', float('nan')):>9.1f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=0, help="per service (default: nodes x 10)")
    parser.add_argument("--pools", type=int, default=0, help="harness processes (default: 1 per 500 nodes)")
    parser.add_argument("--kill", type=int, default=0, help="nodes to kill (default: a tenth)")
    parser.add_argument("--heartbeat", default="5s")
    parser.add_argument("--update-parallelism", type=int, default=500)
    parser.add_argument("--idle", type=float, default=15.0, help="seconds of idle heartbeats measured")
    parser.add_argument(
        "--large-nodes",
        type=int,
        default=5000,
        help="then a second cluster of this many nodes (tasks x100): join, converge, idle; 0: none",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="100, 1,000, 5,000 nodes (node loss and update up to 100,000 tasks)",
    )
    parser.add_argument(
        "--tasks-per-node", type=int, default=TASKS_PER_NODE, help="the sweep's tasks per node (default 100)"
    )
    parser.add_argument("--converge-only", action="store_true", help="no node loss or rolling update")
    parser.add_argument("--no-ceiling", action="store_true", help="skip etcd alone for the same keys")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=Path, help="a directory: py-spy profiles of the manager per phase")
    parser.add_argument(
        "--publish", action="store_true", help="s0 publishes a port (ingress): the mesh at scale"
    )
    parser.add_argument(
        "--quiet-load",
        type=float,
        default=0.0,
        help="wait (up to 10 minutes) for the 1-minute load average to drop below this first",
    )
    args = parser.parse_args()
    if args.quiet_load:
        print(f"waiting for the load to drop below {args.quiet_load} (now {load()[0]})", flush=True)
        wait_for_quiet(args.quiet_load, 600)
    out: dict[str, Any] = {"machine": machine()}
    print(f"machine: {out['machine']}", flush=True)

    def point(
        nodes: int,
        replicas: int = 0,
        full: bool = True,
        ceiling: bool = True,
        per_node: int = TASKS_PER_NODE,
        publish: bool = True,
    ) -> Point:
        return Point(
            nodes=nodes,
            services=args.services,
            replicas=replicas or nodes * per_node // args.services,
            pools=args.pools,
            kill=args.kill if nodes == args.nodes else 0,
            heartbeat=args.heartbeat,
            update_parallelism=args.update_parallelism,
            idle=args.idle,
            full=full and not args.converge_only,
            ceiling=ceiling and not args.no_ceiling,
            profile=args.profile,
            publish=publish and args.publish,
        )

    def save() -> None:
        if args.json:
            args.json.write_text(json.dumps(out, indent=2) + "\n")

    if args.sweep:
        out["sweep"] = []
        for nodes in SWEEP:
            # Node loss and the rolling update up to 100,000 tasks; beyond,
            # an update of every task (500,000 at 500 per batch) would take
            # most of an hour to show the same per-batch cost again.
            full = nodes * args.tasks_per_node <= FULL_SCENARIO_TASKS
            figures, _ = run_point(point(nodes, per_node=args.tasks_per_node, full=full))
            out["sweep"].append(figures)
            save()
        print(sweep_table(out["sweep"]))
    else:
        figures, _ = run_point(point(args.nodes, args.replicas))
        out.update(figures)
        save()
        if args.large_nodes:
            large, _ = run_point(
                point(
                    args.large_nodes,
                    full=False,
                    ceiling=False,
                    per_node=LARGE_TASKS_PER_NODE,
                    publish=False,
                )
            )
            out["large"] = large
            print(sweep_table([figures, large]))
    out["machine"]["loadavg_at_end"] = list(load())
    save()


if __name__ == "__main__":
    main()
