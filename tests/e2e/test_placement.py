"""Placement and self-healing as a Swarm user expects them (issue 3).

Constraints, spread preferences, max replicas per node and reservations decide
where tasks go, and a task that fits nowhere stays pending saying why. Node
availability (drain, pause), labels, removal and death move tasks; global
services follow the nodes; jobs run to completion.

Each test builds its own cluster (a real etcd, a manager and three agents
labelled zone=a, a, b, running the process runtime, with a 1s heartbeat so a
dead node is declared down after 3s) and acts only through the ``shoal`` CLI,
as a user would. Every test's tasks carry a marker of their own
(``sleep 37NN.xxxxxx``, see ``sleep_seconds``) so that ``pids_of`` counts that
test's processes only.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.cluster import (
    CLIResult,
    Cluster,
    alive,
    assert_refused,
    pids_of,
    sleep_seconds,
    start_cluster,
    stays,
    wait_for,
    wait_pids,
)
from tests.support.etcd_server import EtcdServer
from tests.support.sampling import Sampling

ZONES = [{"zone": "a"}, {"zone": "a"}, {"zone": "b"}]  # node-1, node-2, node-3
# Heartbeat 1s x 3 grace, plus the time to reschedule and start the tasks.
DEAD_NODE_DEADLINE = 15.0


# ------------------------------------------------------------------ helpers


def create(cluster: Cluster, *args: str) -> CLIResult:
    res = cluster.cli("service", "create", *args)
    assert res.code == 0, f"service create failed ({res.code}):\n{res.out}\n{res.err}"
    return res


def hosts(tasks: list[dict[str, Any]]) -> Counter[str]:
    """How many of the tasks each node (by hostname) has."""
    return Counter(t["node"] for t in tasks)


def on_node(tasks: list[dict[str, Any]], hostname: str) -> list[dict[str, Any]]:
    return [t for t in tasks if t["node"] == hostname]


def desired_running(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in tasks if t["desired_state"] == "running"]


def node_status(cluster: Cluster, hostname: str) -> str:
    status: str = next(n["status"] for n in cluster.nodes() if n["hostname"] == hostname)
    return status


def running_of(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in tasks if t["current_state"] == "running" and t["desired_state"] == "running"]


def running_where(cluster: Cluster, service: str, expected: dict[str, int]) -> list[dict[str, Any]] | None:
    """The running tasks if they are spread exactly as `expected` (hostname:
    count) and nothing else of the service is meant to run, else None."""
    tasks = cluster.tasks(service)
    running = running_of(tasks)
    if hosts(running) != Counter(expected) or len(desired_running(tasks)) != len(running):
        return None
    return running


def start_replicas(
    cluster: Cluster, name: str, replicas: int, seconds: str, *flags: str
) -> list[dict[str, Any]]:
    create(
        cluster, "--name", name, "--replicas", str(replicas), "--update-monitor", "0s", *flags,
        "app:1", "sleep", seconds,
    )  # fmt: skip
    wait_pids(f"sleep {seconds}", replicas)
    running = cluster.running(name)
    assert len(running) == replicas
    return running


# ------------------------------------------------------------------ scheduling


def test_spread_preference_puts_half_the_replicas_in_each_zone(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3, labels=ZONES)
    running = start_replicas(
        cluster, "web", 4, sleep_seconds(3701), "--placement-pref", "spread=node.labels.zone"
    )
    zone = {"node-1": "a", "node-2": "a", "node-3": "b"}
    assert Counter(zone[t["node"]] for t in running) == {"a": 2, "b": 2}
    # Within zone a the two tasks are spread over its two nodes.
    assert hosts(running) == {"node-1": 1, "node-2": 1, "node-3": 2}


def test_constraint_places_every_replica_on_a_matching_node(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3, labels=ZONES)
    running = start_replicas(cluster, "web", 2, sleep_seconds(3702), "--constraint", "node.labels.zone==b")
    assert hosts(running) == {"node-3": 2}


def test_a_node_joined_with_the_manager_token_is_a_manager_for_placement_only(make_cluster: Any) -> None:
    cluster = make_cluster(agents=2)
    token = cluster.cli("join-token", "-q", "manager")
    assert token.code == 0 and token.out.strip() != cluster.token(), token.err
    cluster.start_agent(token=token.out.strip(), hostname="boss")
    cluster.wait_nodes_ready(3)
    assert {n["hostname"]: n["role"] for n in cluster.nodes()} == {
        "node-1": "worker",
        "node-2": "worker",
        "boss": "manager",
    }
    listing = cluster.cli("node", "ls").out.splitlines()
    assert "ROLE" in listing[0] and any("boss" in line and "manager" in line for line in listing[1:])
    db = start_replicas(cluster, "db", 2, sleep_seconds(3709), "--constraint", "node.role==manager")
    assert hosts(db) == {"boss": 2}
    web = start_replicas(cluster, "web", 4, sleep_seconds(3710), "--constraint", "node.role != manager")
    assert hosts(web) == {"node-1": 2, "node-2": 2}
    # Placement only: its certificate is a worker's, which the ControlAPI refuses.
    refused = cluster.cli_as(cluster.agent_dir(cluster.agents[-1]) / "node", "service", "ls")
    assert_refused(refused, "shoal-worker")


def test_max_replicas_per_node_leaves_a_task_pending_until_a_node_joins(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3, labels=ZONES)
    seconds = sleep_seconds(3703)
    create(
        cluster, "--name", "web", "--replicas", "4", "--replicas-max-per-node", "1", "--update-monitor", "0s",
        "-d", "app:1", "sleep", seconds,
    )  # fmt: skip

    def three_running_one_pending() -> list[dict[str, Any]] | None:
        tasks = cluster.tasks("web")
        running = running_of(tasks)
        pending = [t for t in tasks if t["current_state"] == "pending"]
        return pending if len(running) == 3 and len(pending) == 1 and pending[0]["error"] else None

    (pending,) = wait_for(three_running_one_pending, 20, what="3 running tasks and 1 pending with an error")
    assert hosts(cluster.running("web")) == {"node-1": 1, "node-2": 1, "node-3": 1}
    assert pending["node"] == "" and pending["node_id"] == ""
    assert pending["error"].startswith("no suitable node ("), pending["error"]
    assert "max replicas per node" in pending["error"], pending["error"]
    assert "3 nodes" in pending["error"], pending["error"]
    assert len(pids_of(f"sleep {seconds}")) == 3

    cluster.start_agent(labels={"zone": "b"})
    cluster.wait_nodes_ready(4)
    wait_for(
        lambda: running_where(cluster, "web", {"node-1": 1, "node-2": 1, "node-3": 1, "node-4": 1}),
        20,
        what="one running task on each of the four nodes",
    )
    wait_pids(f"sleep {seconds}", 4)


def test_memory_reservation_larger_than_any_node_stays_pending_and_create_says_why(
    make_cluster: Any,
) -> None:
    cluster = make_cluster(agents=3, labels=ZONES)
    seconds = sleep_seconds(3704)
    reason = "insufficient memory on 3 nodes"
    biggest = max(n["resources"]["memory_bytes"] for n in cluster.nodes())
    assert biggest < 1000 * 2**30, "the test assumes nodes with less than 1000 GiB of memory"

    res = cluster.cli(
        "service", "create", "--name", "huge", "--reserve-memory", "1000g", "app:1", "sleep", seconds,
        timeout=60,
    )  # fmt: skip
    assert res.code != 0, f"nothing can converge: the CLI must not report success:\n{res.out}\n{res.err}"
    assert "Traceback" not in res.out + res.err
    errors = [line for line in res.err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and reason in errors[0], (
        f"the CLI must say why on one 'Error:' line; stderr was:\n{res.err}"
    )
    # The service exists though (a second create would say the name is taken): it says so.
    assert res.err.splitlines()[1:] == [
        "The service huge exists and keeps trying: see why with `shoal service ps --no-trunc huge`, "
        "or remove it with `shoal service rm huge`."
    ]

    (task,) = cluster.tasks("huge")
    assert (task["current_state"], task["desired_state"]) == ("pending", "running")
    assert task["error"] == f"no suitable node ({reason})"
    assert not pids_of(f"sleep {seconds}")


# ------------------------------------------------------------------ availability


def test_drained_node_tasks_move_to_other_nodes_and_stay_there_when_it_is_active_again(
    make_cluster: Any,
) -> None:
    cluster = make_cluster(agents=3, labels=ZONES)
    seconds = sleep_seconds(3705)
    marker = f"sleep {seconds}"
    running = start_replicas(cluster, "web", 6, seconds)
    assert sorted(hosts(running).values()) == [2, 2, 2]
    drained_pids = [t["pid"] for t in on_node(running, "node-1")]
    assert len(drained_pids) == 2 and all(drained_pids)

    res = cluster.cli("node", "update", "--availability", "drain", "node-1")
    assert res.code == 0, res.err
    after = wait_for(
        lambda: running_where(cluster, "web", {"node-2": 3, "node-3": 3}),
        20,
        what="3 running tasks on node-2 and node-3 each, none on node-1",
    )
    wait_for(lambda: not any(alive(p) for p in drained_pids), 10, what="the drained node's processes to end")
    wait_pids(marker, 6)
    assert not on_node(desired_running(cluster.tasks("web")), "node-1")
    untouched = {t["id"] for t in running} - {t["id"] for t in on_node(running, "node-1")}
    assert untouched <= {t["id"] for t in after}, "a drain must not touch the tasks on other nodes"

    res = cluster.cli("node", "update", "--availability", "active", "node-1")
    assert res.code == 0, res.err
    placed = {(t["id"], t["node"]) for t in after}
    stays(
        lambda: {(t["id"], t["node"]) for t in cluster.running("web")} == placed,
        3.0,
        "the same tasks on the same nodes (no rebalancing when a node is active again)",
    )
    assert len(pids_of(marker)) == 6

    # Pause node-2: it keeps its tasks, but new ones go elsewhere.
    res = cluster.cli("node", "update", "--availability", "pause", "node-2")
    assert res.code == 0, res.err
    res = cluster.cli("service", "scale", "web=9")
    assert res.code == 0, res.out + res.err
    now = cluster.running("web")
    assert len(now) == 9
    new = [t for t in now if (t["id"], t["node"]) not in placed]
    assert len(new) == 3
    assert not on_node(new, "node-2"), f"new tasks were placed on the paused node: {new}"
    assert on_node(new, "node-1"), "the node made active again takes new tasks"
    assert {t["id"] for t in on_node(after, "node-2")} == {t["id"] for t in on_node(now, "node-2")}, (
        "pause must not stop the tasks a node already runs"
    )
    wait_pids(marker, 9)


def test_node_ps_lists_the_tasks_of_that_node(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3, labels=ZONES)
    running = start_replicas(cluster, "web", 6, sleep_seconds(3706))
    res = cluster.cli("node", "ps", "node-2", "--format", "json")
    assert res.code == 0, res.err
    listed = res.json()
    assert {t["id"] for t in listed} == {t["id"] for t in on_node(running, "node-2")}
    assert all(t["node"] == "node-2" and t["service"] == "web" for t in listed)

    table = cluster.cli("node", "ps", "node-2")
    assert table.code == 0, table.err
    for task in listed:
        assert task["id"][:12] in table.out


def test_node_rm_refuses_a_ready_node_and_with_force_its_tasks_are_replaced(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3, labels=ZONES)
    running = start_replicas(cluster, "web", 6, sleep_seconds(3707))
    nodes_before = cluster.nodes()

    assert_refused(cluster.cli("node", "rm", "node-1"), "node-1")
    assert cluster.nodes() == nodes_before, "a refused request changes nothing"
    assert {t["id"] for t in cluster.running("web")} == {t["id"] for t in running}

    res = cluster.cli("node", "rm", "--force", "node-1")
    assert res.code == 0, res.err
    assert "node-1" not in [n["hostname"] for n in cluster.nodes()]
    wait_for(
        lambda: running_where(cluster, "web", {"node-2": 3, "node-3": 3}),
        20,
        what="the removed node's tasks to run on node-2 and node-3",
    )
    stays(
        lambda: "node-1" not in [n["hostname"] for n in cluster.nodes()],
        2.0,
        "the removed node to stay removed (its agent may not come back as that node)",
    )
    # The removed node's tasks are orphaned (their node is gone: nobody can
    # report on them any more); they may also have left the history already.
    history = {t["id"]: t for t in cluster.tasks("web")}
    for task in on_node(running, "node-1"):
        if task["id"] in history:
            old = history[task["id"]]
            assert (old["desired_state"], old["current_state"]) != ("running", "running")
            assert old["current_state"] == "orphaned", f"node rm --force must orphan the node's tasks: {old}"


def test_label_change_moves_tasks_off_a_node_that_no_longer_satisfies_the_constraint(
    make_cluster: Any,
) -> None:
    cluster = make_cluster(agents=3, labels=ZONES)
    seconds = sleep_seconds(3708)
    running = start_replicas(cluster, "web", 4, seconds, "--constraint", "node.labels.zone==a")
    assert hosts(running) == {"node-1": 2, "node-2": 2}
    moved_pids = [t["pid"] for t in on_node(running, "node-1")]

    res = cluster.cli("node", "update", "--label-add", "zone=b", "node-1")
    assert res.code == 0, res.err
    node1 = next(n for n in cluster.nodes() if n["hostname"] == "node-1")
    assert node1["labels"]["zone"] == "b"
    wait_for(
        lambda: running_where(cluster, "web", {"node-2": 4}),
        15,
        what="all four tasks on node-2, the only zone-a node left",
    )
    wait_for(lambda: not any(alive(p) for p in moved_pids), 10, what="node-1's task processes to end")
    wait_pids(f"sleep {seconds}", 4)


# ------------------------------------------------------------------ global services


def test_global_service_follows_nodes_joining_draining_and_dying(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3, labels=ZONES)
    seconds = sleep_seconds(3709)
    marker = f"sleep {seconds}"
    create(cluster, "--name", "mon", "--mode", "global", "--update-monitor", "0s", "app:1", "sleep", seconds)
    running = cluster.running("mon")
    assert hosts(running) == {"node-1": 1, "node-2": 1, "node-3": 1}
    assert all(t["name"] == f"mon.{t['node_id']}" for t in running)
    wait_pids(marker, 3)

    cluster.start_agent(labels={"zone": "b"})
    cluster.wait_nodes_ready(4)
    wait_for(
        lambda: running_where(cluster, "mon", {"node-1": 1, "node-2": 1, "node-3": 1, "node-4": 1}),
        20,
        what="a global task on the node that joined",
    )
    wait_pids(marker, 4)

    res = cluster.cli("node", "update", "--availability", "drain", "node-4")
    assert res.code == 0, res.err
    wait_for(
        lambda: running_where(cluster, "mon", {"node-1": 1, "node-2": 1, "node-3": 1}),
        15,
        what="the drained node to lose its global task",
    )
    wait_pids(marker, 3)

    dying = cluster.agents[1]  # node-2
    dying.kill9()
    assert cluster.kill_tasks_of(dying), "node-2's task should have been running"
    wait_pids(marker, 2)
    wait_for(lambda: node_status(cluster, "node-2") == "down", DEAD_NODE_DEADLINE, what="node-2 to be down")
    wait_for(
        lambda: not on_node(desired_running(cluster.tasks("mon")), "node-2"),
        10,
        what="the down node's global task to be shut down",
    )

    def one_per_ready_active_node() -> bool:
        tasks = cluster.tasks("mon")
        return (
            hosts(running_of(tasks)) == {"node-1": 1, "node-3": 1}
            and len(desired_running(tasks)) == 2
            and len(pids_of(marker)) == 2
        )

    stays(one_per_ready_active_node, 3.0, "one running task on each ready, active node, nothing moved")


# ------------------------------------------------------------------ dead nodes


def test_dead_node_tasks_run_elsewhere_and_the_node_returns_without_extra_tasks(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3, labels=ZONES)
    seconds = sleep_seconds(3710)
    marker = f"sleep {seconds}"
    running = start_replicas(cluster, "web", 6, seconds)
    assert hosts(running)["node-1"] == 2

    agent = cluster.agents[0]
    agent.kill9()
    killed_at = time.monotonic()
    assert len(cluster.kill_tasks_of(agent)) == 2
    wait_pids(marker, 4)

    wait_for(
        lambda: running_where(cluster, "web", {"node-2": 3, "node-3": 3}),
        DEAD_NODE_DEADLINE,
        what="the dead node's tasks to run on node-2 and node-3",
    )
    took = time.monotonic() - killed_at
    assert node_status(cluster, "node-1") == "down"
    table = cluster.cli("node", "ls").out
    assert "down" in next(line for line in table.splitlines() if "node-1" in line).lower(), table
    wait_pids(marker, 6)
    print(f"tasks of the dead node ran elsewhere {took:.1f}s after SIGKILL")

    cluster.restart(agent)
    wait_for(lambda: node_status(cluster, "node-1") == "ready", 20, what="node-1 to be ready again")
    stays(lambda: len(pids_of(marker)) == 6, 3.0, "exactly 6 live task processes")
    assert len(cluster.running("web")) == 6


def test_agent_back_from_the_dead_stops_the_tasks_that_were_replaced(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3, labels=ZONES)
    seconds = sleep_seconds(3711)
    marker = f"sleep {seconds}"
    running = start_replicas(cluster, "web", 6, seconds)
    stale_pids = [t["pid"] for t in on_node(running, "node-1")]
    assert len(stale_pids) == 2

    agent = cluster.agents[0]
    agent.kill9()  # its tasks live on, unknown to the cluster once the node is down
    wait_for(lambda: node_status(cluster, "node-1") == "down", DEAD_NODE_DEADLINE, what="node-1 to be down")
    wait_for(
        lambda: running_where(cluster, "web", {"node-2": 3, "node-3": 3}),
        DEAD_NODE_DEADLINE,
        what="replacements on node-2 and node-3",
    )
    wait_pids(marker, 8)  # the 6 desired, and the 2 the dead agent left behind

    cluster.restart(agent)
    wait_for(lambda: node_status(cluster, "node-1") == "ready", 20, what="node-1 to be ready again")
    wait_pids(marker, 6)
    assert not any(alive(p) for p in stale_pids), "the returning agent must stop the tasks that were replaced"
    stays(lambda: len(pids_of(marker)) == 6, 3.0, "exactly 6 live task processes")
    assert hosts(cluster.running("web")) == {"node-2": 3, "node-3": 3}


def ls_row(cluster: Cluster, service: str) -> list[str]:
    """The `service ls` table's row of a service, as its columns."""
    table = cluster.cli("service", "ls").out
    return next(line.split() for line in table.splitlines() if line.split()[1:2] == [service])


def test_scale_and_update_wait_for_live_nodes_only_while_a_node_is_dead(make_cluster: Any) -> None:
    """Without -d, scale and update follow the service until it converges.
    A dead node's tasks keep the status their agent last reported (running)
    and never report stopping; the wait must end once the tasks on live
    nodes run, as in Swarm."""
    cluster = make_cluster(agents=3, labels=ZONES)
    seconds = sleep_seconds(3712)
    marker = f"sleep {seconds}"
    running = start_replicas(cluster, "web", 3, seconds)
    assert hosts(running)["node-1"] == 1
    create(cluster, "--name", "mon", "--mode", "global", "--update-monitor", "0s", "app:1", "sleep", seconds)
    wait_pids(marker, 6)

    agent = cluster.agents[0]
    agent.kill9()
    cluster.kill_tasks_of(agent)
    wait_for(lambda: node_status(cluster, "node-1") == "down", DEAD_NODE_DEADLINE, what="node-1 to be down")

    scaled = cluster.cli("service", "scale", "web=5")
    assert scaled.code == 0, f"scale failed ({scaled.code}):\n{scaled.out}\n{scaled.err}"
    assert "verify: Service web converged" in scaled.out, scaled.out
    assert ls_row(cluster, "web")[3] == "5/5"

    updated = cluster.cli("service", "update", "--image", "app:2", "web")
    assert updated.code == 0, f"update failed ({updated.code}):\n{updated.out}\n{updated.err}"
    assert ls_row(cluster, "web")[3:5] == ["5/5", "app:2"]
    web = cluster.running("web")
    assert {t["image"] for t in web} == {"app:2"} and "node-1" not in hosts(web)

    # A global service: the dead node's task is shut down, never reported stopped.
    updated = cluster.cli("service", "update", "--image", "app:2", "mon")
    assert updated.code == 0, f"update failed ({updated.code}):\n{updated.out}\n{updated.err}"
    assert ls_row(cluster, "mon")[3:5] == ["2/2", "app:2"]

    made = cluster.cli("service", "create", "--name", "api", "--replicas", "2", "app:1", "sleep", seconds)
    assert made.code == 0, f"create failed ({made.code}):\n{made.out}\n{made.err}"
    assert ls_row(cluster, "api")[3] == "2/2"


# ------------------------------------------------------------------ jobs


class PeakCounter(Sampling):
    """Samples count() in a background thread and keeps the largest value."""

    def __init__(self, count: Callable[[], int], interval: float) -> None:
        super().__init__(interval, "peak-counter")
        self.count = count
        self.peak = 0
        self.samples = 0

    def sample(self) -> None:
        self.peak = max(self.peak, self.count())
        self.samples += 1

    def __enter__(self) -> PeakCounter:
        super().__enter__()
        return self


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def test_replicated_job_completes_running_at_most_max_concurrent_at_once(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3, labels=ZONES)
    seconds = sleep_seconds(1)  # "1.xxxxxx": one second, and a marker
    marker = f"sleep {seconds}"
    # The marker reaches `sleep` through the environment, so that each task
    # has one process with the marker in its command line, not two.
    script = 'date +%s.%N; sleep "$NAP"; date +%s.%N'

    def running_tasks() -> int:
        res = cluster.cli("service", "ps", "batch", "--format", "json")
        return sum(t["current_state"] == "running" for t in res.json()) if res.code == 0 else 0

    with (
        PeakCounter(lambda: len(pids_of(marker)), 0.05) as processes,
        PeakCounter(running_tasks, 0.2) as tasks,
    ):
        res = cluster.cli(
            "service", "create", "--name", "batch", "--mode", "replicated-job", "--replicas", "5",
            "--max-concurrent", "2", "--env", f"NAP={seconds}", "app:1", "sh", "-c", script,
        )  # fmt: skip
    assert res.code == 0, f"a job that completes must exit 0:\n{res.out}\n{res.err}"

    (summary,) = [s for s in cluster.services() if s["name"] == "batch"]
    assert summary["mode"] == "replicated-job"
    assert summary["completed"] == 5
    table = cluster.cli("service", "ls")
    assert "5/5 completed" in table.out, table.out

    tasks_now = cluster.tasks("batch")
    assert len(tasks_now) == 5, "a job's tasks that succeeded are not run again"
    assert all(t["current_state"] == "complete" and t["error"] == "" for t in tasks_now)
    intervals = []
    for task in tasks_now:
        lines = (cluster.task_dir(task["id"]) / "stdout.log").read_text().split()
        assert len(lines) == 2, lines
        intervals.append((float(lines[0]), float(lines[1])))
    assert most_at_once(intervals) <= 2, f"run intervals overlap more than 2 deep: {sorted(intervals)}"
    assert not pids_of(marker)
    assert processes.peak == 2, f"at most (and, with 5 to do, exactly) 2 at once; saw {processes.peak}"
    assert tasks.samples >= 3 and tasks.peak <= 2, f"service ps showed {tasks.peak} running at once"


def test_global_job_runs_once_on_every_node_and_completes(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3, labels=ZONES)
    res = cluster.cli(
        "service", "create", "--name", "setup", "--mode", "global-job", "app:1", "sh", "-c", "exit 0"
    )
    assert res.code == 0, f"a job that completes must exit 0:\n{res.out}\n{res.err}"

    def once_per_node_all_complete() -> bool:
        tasks = cluster.tasks("setup")
        return hosts(tasks) == {"node-1": 1, "node-2": 1, "node-3": 1} and all(
            t["current_state"] == "complete" for t in tasks
        )

    assert once_per_node_all_complete()
    (summary,) = [s for s in cluster.services() if s["name"] == "setup"]
    assert summary["mode"] == "global-job"
    assert summary["completed"] == 3
    stays(once_per_node_all_complete, 1.5, "one completed task per node and no more")


# ------------------------------------------------------------------ bad input


@pytest.fixture(scope="module")
def quiet_cluster(etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One agent and no services: for requests that must be refused."""
    c = start_cluster(etcd_server, tmp_path_factory.mktemp("placement-errors"), agents=1, labels=ZONES)
    try:
        yield c
    finally:
        c.close()


NEW = ["service", "create", "--name", "newsvc", "-d"]
RUN = ["app:1", "sleep", sleep_seconds(3719)]


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        pytest.param(
            [*NEW, "--constraint", "node.lables.zone==a", *RUN],
            [
                "node.lables.zone",
                "node.id",
                "node.hostname",
                "node.role",
                "node.platform.os",
                "node.platform.arch",
                "node.labels.KEY",
            ],
            id="unknown-constraint-field",
        ),
        pytest.param(
            [*NEW, "--constraint", "node.labels.zone~=a", *RUN],
            ["node.labels.zone~=a", "==", "!="],
            id="unknown-constraint-operator",
        ),
        pytest.param(
            [*NEW, "--mode", "global", "--replicas", "2", *RUN],
            ["replicas", "global"],
            id="replicas-with-global",
        ),
        pytest.param(
            [*NEW, "--placement-pref", "binpack=node.labels.zone", *RUN],
            ["binpack", "spread"],
            id="binpack-preference",
        ),
    ],
)
def test_bad_placement_input_is_refused_with_one_error_line(
    quiet_cluster: Cluster, args: list[str], mentions: list[str], request: pytest.FixtureRequest
) -> None:
    res = quiet_cluster.cli(*args)
    try:
        assert_refused(res, *mentions)
        assert quiet_cluster.services() == [], "a refused request changes nothing"
    except AssertionError:
        print(quiet_cluster.dump_logs())
        raise
