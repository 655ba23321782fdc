"""The scale harness in small: 50 simulated nodes, 2,000 tasks.

Real manager process, real etcd, real agent code (sessions, TLS, worker) on
the simulated runtime. Asserts correctness only, never time: every task runs
exactly once (each slot has one running task, no task started twice, as many
starts as tasks), replacement after node loss is complete (one start per lost
task, each lost task shut down, replaced in its slot), and nothing that fits
stays pending.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.bench.simpool import SimPool, create_sim_services
from tests.support.cluster import wait_for

NODES = 50
SERVICES = 4
REPLICAS = 500
KILLED = 5


def running_total(cluster: Any) -> int:
    res = cluster.cli("service", "ls", "--format", "json")
    assert res.code == 0, res.err
    return sum(s["replicas_running"] for s in res.json())


def assert_each_slot_runs_once(cluster: Any, down: set[str]) -> None:
    for i in range(SERVICES):
        tasks = cluster.tasks(f"s{i}")
        running = [t for t in tasks if t["desired_state"] == "running"]
        assert sorted(t["slot"] for t in running) == list(range(1, REPLICAS + 1))
        assert all(t["current_state"] == "running" and t["node_id"] not in down for t in running)
        # Nothing that fits stays pending (every node left takes tasks).
        assert [t for t in tasks if t["current_state"] in ("pending", "new")] == []


def test_two_thousand_tasks_on_fifty_nodes_run_once_and_survive_node_loss(
    make_cluster: Any, tmp_path: Path
) -> None:
    cluster = make_cluster(agents=0, heartbeat="1s")
    pool = SimPool(cluster.manager_addrs[0], cluster.token(), NODES, tmp_path / "sim")
    try:
        assert pool.ask("ready") == {"nodes": NODES}
        cluster.wait_nodes_ready(NODES, timeout=120)
        create_sim_services(cluster, SERVICES, REPLICAS)
        total = SERVICES * REPLICAS
        wait_for(lambda: running_total(cluster) == total, timeout=180, interval=0.5, what="all tasks running")
        stats = pool.ask("stats")
        # No service publishes a port: no node's mesh holds a backend.
        assert stats == {
            "running": total,
            "started_twice": 0,
            "starts": total,
            "nodes": NODES,
            "mesh_backends": 0,
        }
        assert_each_slot_runs_once(cluster, set())
        nodes = cluster.cli("node", "ls", "--format", "json").json()
        zones = {n["id"]: n["labels"]["zone"] for n in nodes}
        assert all(zones[t["node_id"]] != "c" for t in cluster.running("s0"))

        killed = pool.ask("kill", count=KILLED)
        assert len(killed["killed"]) == KILLED and killed["lost"] > 0
        down_ids = {n["id"] for n in nodes if n["hostname"] in killed["killed"]}

        def down() -> set[str]:
            listed = cluster.cli("node", "ls", "--format", "json").json()
            return {n["id"] for n in listed if n["status"] == "down"}

        wait_for(lambda: down() == down_ids, timeout=60, what="dead nodes detected")
        wait_for(
            lambda: running_total(cluster) == total, timeout=180, interval=0.5, what="replacements running"
        )
        stats = pool.ask("stats")
        # Each lost task was started once more, elsewhere; none twice.
        assert stats == {
            "running": total,
            "started_twice": 0,
            "starts": total + killed["lost"],
            "nodes": NODES - KILLED,
            "mesh_backends": 0,
        }
        assert_each_slot_runs_once(cluster, down_ids)
        for i in range(SERVICES):
            lost = [t for t in cluster.tasks(f"s{i}") if t["node_id"] in down_ids]
            assert lost and all(t["desired_state"] == "shutdown" for t in lost)
    finally:
        pool.close()
