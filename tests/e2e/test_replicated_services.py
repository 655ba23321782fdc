"""Replicated services end to end: spread, scaling, JSON output, the task's
environment, restart policies, task history and removal.

Each test builds its own cluster (a real etcd, a manager and three agents
running the process runtime) and drives it only through the ``shoal`` CLI.
Every test's tasks run a command with a marker of its own (``sleep 36NN.xxxxxx``,
see ``sleep_seconds``), so ``pids_of(marker)`` counts that test's processes only.
"""

from __future__ import annotations

import datetime
import re
from collections import Counter
from pathlib import Path
from typing import Any

from tests.support.cluster import Cluster, alive, pids_of, sleep_seconds, stays, wait_for, wait_pids

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def per_node(tasks: list[dict[str, Any]]) -> list[int]:
    """How many of the tasks each node runs, smallest first."""
    return sorted(Counter(t["node_id"] for t in tasks).values())


def in_slot(tasks: list[dict[str, Any]], slot: int) -> list[dict[str, Any]]:
    return [t for t in tasks if t["slot"] == slot]


def moment(text: str) -> datetime.datetime:
    assert RFC3339_UTC.match(text), f"not an RFC 3339 UTC time: {text!r}"
    return datetime.datetime.fromisoformat(text)


def create(cluster: Cluster, *args: str) -> None:
    res = cluster.cli("service", "create", *args)
    assert res.code == 0, f"service create failed ({res.code}):\n{res.out}\n{res.err}"


def test_replicas_spread_evenly_and_follow_scale_up_scale_down_and_rm(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    seconds = sleep_seconds(3602)
    marker = f"sleep {seconds}"
    create(cluster, "--name", "web", "--replicas", "6", "--update-monitor", "0s", "app:1", "sleep", seconds)

    running = cluster.running("web")
    assert len(running) == 6
    assert per_node(running) == [2, 2, 2]
    six = wait_pids(marker, 6)

    res = cluster.cli("service", "scale", "web=9")
    assert res.code == 0, res.out + res.err
    running = cluster.running("web")
    assert len(running) == 9
    assert per_node(running) == [3, 3, 3]
    nine = wait_pids(marker, 9)
    assert six <= nine, "scaling up must not restart the tasks that already ran"

    res = cluster.cli("service", "scale", "web=2")
    assert res.code == 0, res.out + res.err
    assert len(cluster.running("web")) == 2
    remaining = pids_of(marker)
    assert len(remaining) == 2, f"processes still running after scaling to 2: {sorted(remaining)}"
    assert remaining <= six, "the two tasks kept must be ones that were already running"
    removed = nine - remaining
    assert len(removed) == 7
    assert not [pid for pid in removed if alive(pid)], "removed tasks' processes must be gone"

    res = cluster.cli("service", "rm", "web")
    assert res.code == 0, res.err
    wait_for(lambda: not pids_of(marker), 15, what="the last task processes to stop")
    assert "web" not in [s["name"] for s in cluster.services()]


def test_json_output_has_the_documented_fields(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    seconds = sleep_seconds(3603)
    create(cluster, "--name", "web", "--replicas", "3", "--update-monitor", "0s", "app:1", "sleep", seconds)
    create(cluster, "--name", "untagged", "-d", "busybox", "sleep", seconds)

    services = {s["name"]: s for s in cluster.services()}
    web = services["web"]
    assert set(web) >= {"id", "name", "mode", "replicas_desired", "replicas_running", "image", "ports"}
    assert web["mode"] == "replicated"
    assert (web["replicas_desired"], web["replicas_running"]) == (3, 3)
    assert web["image"] == "app:1"
    assert web["ports"] == []
    assert services["untagged"]["image"] == "busybox:latest", "an image without a tag means :latest"

    nodes = cluster.nodes()
    assert sorted(n["hostname"] for n in nodes) == ["node-1", "node-2", "node-3"]
    for node in nodes:
        assert set(node) >= {
            "id", "hostname", "role", "status", "availability", "address",
            "labels", "platform", "resources", "runtime",
        }  # fmt: skip
        assert (node["role"], node["status"], node["availability"]) == ("worker", "ready", "active")
        assert node["labels"] == {}
        assert node["platform"]["os"] == "linux" and node["platform"]["arch"]
        assert node["resources"]["nano_cpus"] > 0 and node["resources"]["memory_bytes"] > 0
        assert node["runtime"] == "process"
        assert node["address"].startswith("127.0.0.1")
    node_ids = {n["id"]: n["hostname"] for n in nodes}

    tasks = cluster.tasks("web")
    assert sorted(t["name"] for t in tasks) == ["web.1", "web.2", "web.3"]
    for task in tasks:
        assert set(task) >= {
            "id", "name", "service", "slot", "node_id", "node", "image", "desired_state",
            "current_state", "error", "created_at", "updated_at",
        }  # fmt: skip
        assert task["name"] == f"web.{task['slot']}"
        assert task["service"] == "web"
        assert node_ids[task["node_id"]] == task["node"]
        assert task["image"] == "app:1"
        assert (task["desired_state"], task["current_state"], task["error"]) == ("running", "running", "")
        assert moment(task["created_at"]) <= moment(task["updated_at"])
    assert cluster.tasks("untagged")[0]["image"] == "busybox:latest"

    res = cluster.cli("service", "inspect", "web")
    assert res.code == 0, res.err
    inspected = res.json()
    assert isinstance(inspected, list) and len(inspected) == 1
    svc = inspected[0]
    assert set(svc) >= {"spec", "previous_spec", "update_status", "version", "created_at", "updated_at"}
    assert svc["id"] == web["id"]
    assert svc["spec"]["name"] == "web"
    assert svc["spec"]["replicas"] == 3
    assert svc["spec"]["task"]["container"]["image"] == "app:1"
    assert svc["previous_spec"] is None, "a service never updated has no previous spec"
    assert moment(svc["created_at"]) <= moment(svc["updated_at"])
    res = cluster.cli("service", "inspect", "untagged")
    assert res.json()[0]["spec"]["task"]["container"]["image"] == "busybox:latest"


def test_env_workdir_and_task_variables_reach_the_process(make_cluster: Any, tmp_path: Path) -> None:
    cluster = make_cluster(agents=3)
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    script = (
        'echo "$FOO $SHOAL_SERVICE_NAME $SHOAL_TASK_SLOT"; '
        'echo "$SHOAL_TASK_ID $SHOAL_NODE_ID $SHOAL_TASK_IMAGE"; '
        f"pwd; sleep {sleep_seconds(3604)}"
    )
    create(
        cluster, "--name", "envy", "--env", "FOO=bar", "--workdir", str(workdir),
        "--update-monitor", "0s", "app:1", "sh", "-c", script,
    )  # fmt: skip

    (task,) = cluster.running("envy")
    stdout = cluster.task_dir(task["id"]) / "stdout.log"
    lines = wait_for(
        lambda: stdout.exists() and len(text := stdout.read_text().splitlines()) >= 3 and text,
        10,
        what=f"three lines in {stdout}",
    )
    assert lines[0] == "bar envy 1"
    assert lines[1] == f"{task['id']} {task['node_id']} app:1"
    assert Path(lines[2]).resolve() == workdir.resolve()


def test_failed_task_is_replaced_after_the_restart_delay(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    create(cluster, "--name", "crashy", "--restart-delay", "1s", "-d", "app:1", "sh", "-c", "exit 3")

    def two_failed() -> list[dict[str, Any]] | None:
        slot = in_slot(cluster.tasks("crashy"), 1)
        failed = [t for t in slot if t["current_state"] == "failed"]
        return slot if len(failed) >= 2 else None

    slot = wait_for(two_failed, 20, what="two failed tasks in slot 1")
    assert all(t["name"] == "crashy.1" for t in slot)
    created = [moment(t["created_at"]) for t in slot]
    assert created == sorted(created, reverse=True), "service ps lists a slot's tasks newest first"
    oldest, second = slot[-1], slot[-2]
    assert oldest["error"] == "exit code 3"
    assert oldest["desired_state"] == "shutdown", "a replaced task is no longer desired running"
    assert second["error"] == "exit code 3"
    gap = (moment(second["updated_at"]) - moment(oldest["updated_at"])).total_seconds()
    assert gap >= 0.95, f"the replacement ran {gap:.2f}s after the first failure; the restart delay is 1s"


def test_restart_condition_none_leaves_the_failed_task_and_the_cli_says_so(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    res = cluster.cli(
        "service", "create", "--name", "once", "--restart-condition", "none", "--update-monitor", "0s",
        "app:1", "sh", "-c", "exit 3",
    )  # fmt: skip
    assert res.code != 0, "nothing will ever converge: the CLI must not report success"
    assert "exit code 3" in res.out + res.err, f"the CLI must name the failure:\n{res.out}\n{res.err}"

    def only_one_failed() -> bool:
        tasks = cluster.tasks("once")
        return len(tasks) == 1 and tasks[0]["current_state"] == "failed"

    stays(only_one_failed, 1.5, "a single, failed task")
    assert cluster.tasks("once")[0]["error"] == "exit code 3"
    errors = [line for line in res.err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "exit code 3" in errors[0], (
        f"the failure must reach stderr as one 'Error:' line (CLI.md, Errors); stderr was:\n{res.err}"
    )


def test_restart_condition_on_failure_does_not_restart_a_task_that_succeeded(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    create(
        cluster, "--name", "oneshot", "--restart-condition", "on-failure", "--restart-delay", "200ms", "-d",
        "app:1", "sh", "-c", "exit 0",
    )  # fmt: skip
    wait_for(
        lambda: [t for t in cluster.tasks("oneshot") if t["current_state"] == "complete"],
        15,
        what="the task to complete",
    )

    def just_the_completed_one() -> bool:
        tasks = cluster.tasks("oneshot")
        return len(tasks) == 1 and tasks[0]["current_state"] == "complete" and tasks[0]["error"] == ""

    stays(just_the_completed_one, 1.5, "a single, completed task")


def test_restart_max_attempts_stops_replacing_after_that_many_restarts(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    create(
        cluster, "--name", "flaky", "--restart-max-attempts", "2", "--restart-delay", "200ms", "-d",
        "app:1", "sh", "-c", "exit 1",
    )  # fmt: skip
    wait_for(
        lambda: [t for t in cluster.tasks("flaky") if t["current_state"] == "failed"][2:],
        20,
        what="three failed tasks",
    )

    def three_failed_tasks() -> bool:
        tasks = cluster.tasks("flaky")
        return len(tasks) == 3 and all(t["current_state"] == "failed" for t in tasks)

    stays(three_failed_tasks, 2.0, "exactly three tasks, all failed")


def test_task_history_is_capped_at_five_per_slot(make_cluster: Any, tmp_path: Path) -> None:
    cluster = make_cluster(agents=3)
    runs = tmp_path / "runs"
    create(
        cluster, "--name", "churn", "--restart-delay", "100ms", "-d",
        "app:1", "sh", "-c", f"echo run >> {runs}; exit 1",
    )  # fmt: skip
    wait_for(
        lambda: runs.exists() and len(runs.read_text().splitlines()) >= 9, 30, what="nine runs of the task"
    )
    # Past the cap: one current task and the five most recent ended ones.
    # (A slot above the cap would never come back down to 6.)
    wait_for(lambda: len(in_slot(cluster.tasks("churn"), 1)) == 6, 10, what="6 tasks in slot 1")


def test_a_command_that_does_not_exist_is_rejected(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    create(cluster, "--name", "ghost", "--restart-condition", "none", "-d", "app:1", "nosuchcommand-xyz")
    (task,) = wait_for(
        lambda: [t for t in cluster.tasks("ghost") if t["current_state"] == "rejected"],
        15,
        what="the task to be rejected",
    )
    assert "executable file not found" in task["error"]
    assert "nosuchcommand-xyz" in task["error"]


def test_service_rm_stops_its_running_tasks(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    seconds = sleep_seconds(3609)
    marker = f"sleep {seconds}"
    create(cluster, "--name", "old", "--replicas", "3", "--update-monitor", "0s", "app:1", "sleep", seconds)
    pids = wait_pids(marker, 3)

    res = cluster.cli("service", "rm", "old")
    assert res.code == 0, res.err
    wait_for(lambda: not any(alive(p) for p in pids) and not pids_of(marker), 15, what="the tasks to stop")
    assert cluster.services() == []
