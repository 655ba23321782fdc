"""The scale harness in small: 50 simulated nodes, 2,000 tasks.

Real manager process, real etcd, real agent code (sessions, TLS, worker) on
the simulated runtime. Asserts correctness only, never time: every task runs
exactly once, replacement after node loss is complete, nothing that fits
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


def running_total(cluster: Any) -> int:
    res = cluster.cli("service", "ls", "--format", "json")
    assert res.code == 0, res.err
    return sum(s["replicas_running"] for s in res.json())


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
        assert stats["running"] == total
        assert stats["started_twice"] == 0
        tasks = cluster.tasks("s0")
        zones = {n["id"]: n["labels"]["zone"] for n in cluster.cli("node", "ls", "--format", "json").json()}
        assert all(zones[t["node_id"]] != "c" for t in tasks if t["desired_state"] == "running")

        killed = pool.ask("kill", count=5)["killed"]
        assert len(killed) == 5
        wait_for(
            lambda: (
                sum(1 for n in cluster.cli("node", "ls", "--format", "json").json() if n["status"] == "down")
                == 5
            ),
            timeout=60,
            what="dead nodes detected",
        )
        wait_for(
            lambda: running_total(cluster) == total, timeout=180, interval=0.5, what="replacements running"
        )
        stats = pool.ask("stats")
        assert stats["running"] == total
        assert stats["started_twice"] == 0
        for i in range(SERVICES):
            pending = [t for t in cluster.tasks(f"s{i}") if t["current_state"] in ("pending", "new")]
            assert pending == []
    finally:
        pool.close()
