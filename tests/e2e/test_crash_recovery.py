"""Daemons that die or stop while tasks run: nothing the tasks do may change.

The process runtime's tasks do not depend on the agent that started them, and
all cluster state lives in etcd, so:

- an agent killed with SIGKILL, or stopped with SIGTERM, leaves its tasks
  running; started again on the same state dir it is the same node and
  adopts them (no second copy is started);
- a manager killed with SIGKILL and started again finds the cluster as it was:
  same tasks, same processes, nodes ready again.
"""

from __future__ import annotations

import time
from typing import Any

from tests.support.cluster import Cluster, pids_of, sleep_seconds, wait_for, wait_pids

REPLICAS = 6


def start_service(cluster: Cluster, name: str, seconds: str) -> tuple[set[int], set[str]]:
    """A service of six `sleep <seconds>` tasks; their PIDs and task IDs."""
    res = cluster.cli(
        "service", "create", "--name", name, "--replicas", str(REPLICAS), "--update-monitor", "0s",
        "app:1", "sleep", seconds,
    )  # fmt: skip
    assert res.code == 0, res.out + res.err
    pids = wait_pids(f"sleep {seconds}", REPLICAS)
    return pids, {t["id"] for t in cluster.running(name)}


def same_processes_for(marker: str, pids: set[int], seconds: float) -> None:
    """The task processes stay exactly `pids` for a while: none restarted,
    none duplicated (a duplicate would appear within moments of adoption)."""
    deadline = time.monotonic() + seconds
    while True:
        now = pids_of(marker)
        assert now == pids, f"task processes changed: gone {sorted(pids - now)}, new {sorted(now - pids)}"
        if time.monotonic() >= deadline:
            return
        time.sleep(0.2)


def all_running(cluster: Cluster, name: str) -> bool:
    summary = next(s for s in cluster.services() if s["name"] == name)
    return bool(summary["replicas_running"] == summary["replicas_desired"] == REPLICAS)


def node_ids(cluster: Cluster) -> dict[str, str]:
    return {n["id"]: n["status"] for n in cluster.nodes()}


def test_killed_agent_leaves_tasks_running_and_adopts_them_on_restart(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    seconds = sleep_seconds(3611)
    marker = f"sleep {seconds}"
    pids, _ = start_service(cluster, "web", seconds)
    nodes_before = set(node_ids(cluster))

    agent = cluster.agents[0]
    agent.kill9()
    assert pids_of(marker) == pids, "a task must outlive its agent"

    cluster.restart(agent)
    wait_for(
        lambda: (ids := node_ids(cluster)).keys() == nodes_before and set(ids.values()) == {"ready"},
        20,
        what="the same three nodes, all ready",
    )
    same_processes_for(marker, pids, 3.0)
    assert set(node_ids(cluster)) == nodes_before, "a restarted agent is the same node, not a new one"
    wait_for(lambda: all_running(cluster, "web"), 10, what="service ls to show 6/6")


def test_killed_manager_restarts_without_touching_running_tasks(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    seconds = sleep_seconds(3612)
    marker = f"sleep {seconds}"
    pids, task_ids = start_service(cluster, "web", seconds)
    nodes_before = set(node_ids(cluster))

    manager = cluster.managers[0]
    manager.kill9()
    assert pids_of(marker) == pids
    cluster.restart(manager)
    wait_for(lambda: cluster.cli("info").code == 0, 30, what="the restarted manager to answer")

    wait_for(
        lambda: (ids := node_ids(cluster)).keys() == nodes_before and set(ids.values()) == {"ready"},
        20,
        what="the three nodes to be ready again",
    )
    wait_for(lambda: all_running(cluster, "web"), 10, what="service ls to show 6/6")
    same_processes_for(marker, pids, 3.0)
    tasks = cluster.tasks("web")
    assert {t["id"] for t in tasks} == task_ids, "no task may be replaced after a manager restart"
    assert all(t["current_state"] == "running" for t in tasks)
    assert all_running(cluster, "web")


def test_stopped_agent_leaves_tasks_running_and_adopts_them_on_restart(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    seconds = sleep_seconds(3613)
    marker = f"sleep {seconds}"
    pids, task_ids = start_service(cluster, "web", seconds)
    nodes_before = set(node_ids(cluster))

    agent = cluster.agents[1]
    agent.stop()
    assert agent.popen is not None and agent.popen.returncode == 0, "SIGTERM: the agent exits 0"
    assert pids_of(marker) == pids, "an agent stopped with SIGTERM leaves its tasks running"

    cluster.restart(agent)
    wait_for(
        lambda: (ids := node_ids(cluster)).keys() == nodes_before and set(ids.values()) == {"ready"},
        20,
        what="the same three nodes, all ready",
    )
    same_processes_for(marker, pids, 3.0)
    wait_for(lambda: all_running(cluster, "web"), 10, what="service ls to show 6/6")
    assert {t["id"] for t in cluster.running("web")} == task_ids
