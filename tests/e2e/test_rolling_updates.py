"""Rolling updates, rollbacks and health checks a team can trust (issue 4).

`service update` replaces tasks in batches of `--update-parallelism`, waits
`--update-delay` between batches and watches each new task for
`--update-monitor`; a failure pauses the update or rolls it back, and the CLI
says so with its exit status. A manager that dies mid-update picks the same
update up where it stopped.

Each test builds its own cluster (a real etcd, a manager and three agents
running the process runtime, 1s heartbeat) and acts through the ``shoal`` CLI.
While an operation runs, a background thread reads what `service ps --format
json` shows every 200 ms (in-process, see ``Cluster.service_ps``) so that
"never fewer than N running" is checked across the whole rollout, not only at
its end. Every test's tasks carry a marker of their own (``sleep 38NN.xxxxxx``,
see ``sleep_seconds``) so that ``pids_of`` counts that test's processes only.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from typing import Any

from tests.support.cluster import (
    CLIResult,
    Cluster,
    alive,
    pids_of,
    sleep_seconds,
    stays,
    wait_for,
    wait_pids,
)
from tests.support.sampling import Sampling

REPLICAS = 6


# ------------------------------------------------------------------ helpers


def running_of(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in tasks if t["current_state"] == "running" and t["desired_state"] == "running"]


class Sampler(Sampling):
    """Reads the service's tasks every `interval` seconds in a background
    thread, for claims about every moment of an operation. A sample is the
    task list, or None when no manager answered."""

    def __init__(self, cluster: Cluster, service: str, interval: float = 0.2) -> None:
        super().__init__(interval, f"sampler-{service}")
        self.cluster = cluster
        self.service = service
        self.samples: list[tuple[float, list[dict[str, Any]] | None]] = []

    def sample(self) -> None:
        self.samples.append((time.monotonic(), self.cluster.service_ps(self.service)))

    def __enter__(self) -> Sampler:
        super().__enter__()
        return self

    def assert_never_below(self, floor: int, what: str) -> None:
        """Every sample a manager answered had at least `floor` running tasks."""
        start = self.samples[0][0] if self.samples else 0.0
        counts = [
            (round(t - start, 1), len(running_of(tasks))) for t, tasks in self.samples if tasks is not None
        ]
        assert len(counts) >= 5, f"too few samples to judge ({len(counts)}): the operation was too quick?"
        low = [(t, n) for t, n in counts if n < floor]
        assert not low, f"{what}: fewer than {floor} tasks running at (seconds, count) {low}"


def create(cluster: Cluster, *args: str) -> CLIResult:
    res = cluster.cli("service", "create", *args)
    assert res.code == 0, f"service create failed ({res.code}):\n{res.out}\n{res.err}"
    return res


def start_web(cluster: Cluster, seconds: str, *flags: str, replicas: int = REPLICAS) -> list[dict[str, Any]]:
    """Service `web`: `replicas` tasks of app:1 running `sleep <seconds>`."""
    create(cluster, "--name", "web", "--replicas", str(replicas), *flags, "app:1", "sleep", seconds)
    wait_pids(f"sleep {seconds}", replicas)
    running = cluster.running("web")
    assert len(running) == replicas
    return running


def inspect(cluster: Cluster, service: str = "web") -> dict[str, Any]:
    res = cluster.cli("service", "inspect", service)
    assert res.code == 0, res.err
    (svc,) = res.json()
    return dict(svc)


def state_of(cluster: Cluster, service: str = "web") -> str:
    status = inspect(cluster, service)["update_status"] or {}
    return str(status.get("state", ""))


def args_of(svc_spec: dict[str, Any]) -> list[str]:
    return list(svc_spec["task"]["container"].get("args", []))


def error_lines(res: CLIResult) -> list[str]:
    return [line for line in res.err.splitlines() if line.startswith("Error:")]


# ------------------------------------------------------------------ rollouts


def test_rolling_update_replaces_two_at_a_time_keeping_four_running(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    seconds = sleep_seconds(3801)
    old = start_web(
        cluster, seconds, "--update-parallelism", "2", "--update-delay", "1s", "--update-monitor", "500ms"
    )

    with Sampler(cluster, "web") as sampler:
        res = cluster.cli("service", "update", "--image", "app:2", "web")
    assert res.code == 0, f"a rollout that converged must exit 0:\n{res.out}\n{res.err}"
    sampler.assert_never_below(4, "parallelism 2 of 6 replicas")

    running = cluster.running("web")
    assert len(running) == REPLICAS
    assert {t["image"] for t in running} == {"app:2"}
    assert not {t["id"] for t in running} & {t["id"] for t in old}
    wait_pids(f"sleep {seconds}", REPLICAS)
    history = [t for t in cluster.tasks("web") if t["desired_state"] == "shutdown"]
    assert {t["id"] for t in history} == {t["id"] for t in old}, "the 6 replaced tasks are the history"
    assert {t["image"] for t in history} == {"app:1"}
    assert all(t["current_state"] == "shutdown" for t in history)
    svc = inspect(cluster)
    assert svc["update_status"]["state"] == "completed"
    assert svc["previous_spec"]["task"]["container"]["image"] == "app:1"
    assert svc["spec"]["task"]["container"]["image"] == "app:2"


def test_update_to_a_failing_command_pauses_and_rollback_restores_the_previous_spec(
    make_cluster: Any,
) -> None:
    cluster = make_cluster(agents=3)
    seconds = sleep_seconds(3802)
    marker = f"sleep {seconds}"
    start_web(cluster, seconds, "--update-monitor", "2s", "--rollback-monitor", "500ms")

    res = cluster.cli("service", "update", "--args", "sh -c 'exit 1'", "web")
    assert res.code != 0, f"a paused update must not exit 0:\n{res.out}\n{res.err}"
    assert "Traceback" not in res.out + res.err
    errors = error_lines(res)
    assert len(errors) == 1 and "paused" in errors[0], f"stderr must say the update paused:\n{res.err}"
    svc = inspect(cluster)
    assert svc["update_status"]["state"] == "paused"
    assert svc["update_status"]["message"], "a paused update says why"
    assert args_of(svc["spec"]) == ["sh", "-c", "exit 1"]
    survivors = {t["id"] for t in cluster.running("web") if t["image"] == "app:1"}
    assert len(survivors) >= REPLICAS - 1, "the update must stop after the first failed batch"
    assert len(pids_of(marker)) >= REPLICAS - 1

    res = cluster.cli("service", "rollback", "web")
    assert res.code == 0, f"a rollback that converged must exit 0:\n{res.out}\n{res.err}"
    svc = inspect(cluster)
    assert args_of(svc["spec"]) == ["sleep", seconds], "rollback returns to the previous spec"
    assert svc["update_status"]["state"] == "rollback_completed"
    running = cluster.running("web")
    assert len(running) == REPLICAS
    wait_pids(marker, REPLICAS)
    # As in Swarm, the rollback replaces only what the update changed.
    kept = survivors & {t["id"] for t in running}
    assert kept == survivors, (
        f"the rollback replaced {len(survivors - kept)} tasks that ran the previous spec"
    )


def test_failure_action_rollback_returns_to_the_old_spec_by_itself(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    seconds = sleep_seconds(3803)
    marker = f"sleep {seconds}"
    old = start_web(
        cluster,
        seconds,
        "--update-monitor",
        "2s",
        "--rollback-monitor",
        "500ms",
        "--update-failure-action",
        "rollback",
    )

    res = cluster.cli("service", "update", "--args", "sh -c 'exit 1'", "web")
    assert res.code != 0, f"an update that rolled back must not exit 0:\n{res.out}\n{res.err}"
    assert "Traceback" not in res.out + res.err
    assert len(error_lines(res)) == 1, f"the CLI must say why on one 'Error:' line:\n{res.err}"

    wait_for(lambda: state_of(cluster) == "rollback_completed", 30, what="update_status rollback_completed")
    svc = inspect(cluster)
    assert args_of(svc["spec"]) == ["sleep", seconds]
    wait_for(lambda: len(cluster.running("web")) == REPLICAS, 15, what=f"{REPLICAS} running tasks")
    running = cluster.running("web")
    assert {t["image"] for t in running} == {"app:1"}
    wait_pids(marker, REPLICAS)
    # Parallelism 1: the update got as far as one slot; the rollback only
    # needs to replace that one.
    kept = {t["id"] for t in old} & {t["id"] for t in running}
    assert len(kept) >= REPLICAS - 1, (
        f"the rollback replaced {REPLICAS - len(kept)} tasks, not only the failed one"
    )


def test_start_first_update_never_drops_below_the_desired_count(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    seconds = sleep_seconds(3804)
    start_web(cluster, seconds, "--update-order", "start-first", "--update-monitor", "500ms")

    with Sampler(cluster, "web") as sampler:
        res = cluster.cli("service", "update", "--image", "app:2", "web")
    assert res.code == 0, f"a rollout that converged must exit 0:\n{res.out}\n{res.err}"
    sampler.assert_never_below(REPLICAS, "start-first")
    running = cluster.running("web")
    assert len(running) == REPLICAS and {t["image"] for t in running} == {"app:2"}
    wait_pids(f"sleep {seconds}", REPLICAS)


def test_update_without_changes_replaces_nothing_and_force_replaces_everything(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    seconds = sleep_seconds(3805)
    marker = f"sleep {seconds}"
    old = {
        t["id"] for t in start_web(cluster, seconds, "--update-monitor", "500ms", "--update-parallelism", "3")
    }
    pids = wait_pids(marker, REPLICAS)

    res = cluster.cli("service", "update", "web")
    assert res.code == 0, res.out + res.err
    stays(
        lambda: {t["id"] for t in cluster.tasks("web")} == old and pids_of(marker) == pids,
        2.0,
        "the same tasks and processes after an update that changes nothing",
    )

    res = cluster.cli("service", "update", "--force", "web")
    assert res.code == 0, res.out + res.err
    running = cluster.running("web")
    assert len(running) == REPLICAS
    assert not {t["id"] for t in running} & old, "--force replaces every task"
    new_pids = wait_pids(marker, REPLICAS)
    assert not new_pids & pids and not any(alive(p) for p in pids)


# ------------------------------------------------------------------ health


def test_task_whose_health_check_starts_failing_is_replaced(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    # Healthy while ./ok exists (the task's own working directory); it goes
    # after 5 seconds.
    script = f"touch ok; sleep 5; rm ok; exec sleep {sleep_seconds(3806)}"
    create(
        cluster, "--name", "hc", "--health-cmd", "test -f ok", "--health-interval", "200ms",
        "--health-retries", "2", "--restart-delay", "200ms", "--update-monitor", "500ms",
        "app:1", "sh", "-c", script,
    )  # fmt: skip
    (first,) = cluster.running("hc")
    assert first["health"] == "healthy", "create converges once the task is healthy"

    def failed_unhealthy() -> dict[str, Any] | None:
        return next(
            (t for t in cluster.tasks("hc") if t["id"] == first["id"] and t["current_state"] == "failed"),
            None,
        )

    failed = wait_for(failed_unhealthy, 20, what="the task to fail its health check")
    assert "unhealthy" in failed["error"], failed
    assert failed["health"] == "unhealthy"
    table = cluster.cli("service", "ps", "hc")
    assert table.code == 0, table.err
    row = next(line for line in table.out.splitlines() if line.startswith(first["id"][:12]))
    assert "unhealthy" in row.lower(), f"service ps shows the health:\n{table.out}"

    replacement = wait_for(
        lambda: [t for t in cluster.running("hc") if t["id"] != first["id"] and t["health"] == "healthy"],
        20,
        what="a healthy replacement",
    )
    assert replacement[0]["slot"] == first["slot"]


def test_update_whose_health_check_never_passes_pauses(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    seconds = sleep_seconds(3807)
    start_web(cluster, seconds, "--update-monitor", "2s")

    res = cluster.cli(
        "service", "update", "--health-cmd", "false", "--health-retries", "1", "--health-interval", "200ms",
        "web",
    )  # fmt: skip
    assert res.code != 0, f"an update whose tasks are never healthy must not exit 0:\n{res.out}\n{res.err}"
    errors = error_lines(res)
    assert len(errors) == 1 and "paused" in errors[0], res.err
    status = inspect(cluster)["update_status"]
    assert status["state"] == "paused"
    assert "unhealthy" in status["message"], f"the pause names the reason: {status}"
    assert len(pids_of(f"sleep {seconds}")) >= REPLICAS - 1


# ------------------------------------------------------------------ manager crash


def test_update_survives_a_manager_crash_without_redoing_slots(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    seconds = sleep_seconds(3808)
    replicas = 10
    start_web(
        cluster, seconds, "--update-parallelism", "1", "--update-delay", "1s", "--update-monitor", "500ms",
        replicas=replicas,
    )  # fmt: skip

    def new_running() -> int:
        tasks = cluster.service_ps("web") or []
        return sum(t["image"] == "app:2" for t in running_of(tasks))

    manager = cluster.managers[0]
    with Sampler(cluster, "web") as sampler:
        res = cluster.cli("service", "update", "-d", "--image", "app:2", "web")
        assert res.code == 0, res.out + res.err
        wait_for(lambda: new_running() >= 3, 60, interval=0.05, what="3 slots on app:2")
        manager.kill9()
        killed_at = time.monotonic()
        done_at_kill = new_running()
        # A manager takes seconds to come back (a restart, a failover): the
        # agents retry meanwhile, and must get the time to reconnect.
        time.sleep(4.0)
        cluster.restart(manager)
        wait_for(lambda: cluster.cli("info").code == 0, 30, what="the restarted manager to answer")
        wait_for(lambda: state_of(cluster) == "completed", 90, interval=0.5, what="the update to complete")
    assert done_at_kill < replicas, "the manager died after the update had finished: nothing was tested"

    running = cluster.running("web")
    assert len(running) == replicas and {t["image"] for t in running} == {"app:2"}
    per_slot = Counter(t["slot"] for t in cluster.tasks("web") if t["image"] == "app:2")
    assert per_slot == {slot: 1 for slot in range(1, replicas + 1)}, (
        f"each slot is updated exactly once (new-image tasks per slot: {dict(per_slot)})"
    )
    sampler.assert_never_below(replicas - 1, "parallelism 1, across the manager crash")
    answered_after = [t for t, tasks in sampler.samples if tasks is not None and t > killed_at]
    assert answered_after, "the sampler must have seen the update continue after the restart"
    wait_pids(f"sleep {seconds}", replicas)


# ------------------------------------------------------------------ concurrent updates


# One `shoal` CLI process that imports everything, then waits for a line on
# stdin before it runs: two of these released together race for real, not
# only as far as their (long, uneven) interpreter start-ups allow.
_READY_THEN_RUN = (
    "import sys\n"
    "from shoal.cli.main import cli\n"
    "print('ready', flush=True)\n"
    "sys.stdin.readline()\n"
    "cli.main(sys.argv[1:], prog_name='shoal')\n"
)


def racing_updates(cluster: Cluster, values: list[str]) -> list[CLIResult]:
    """Run one `service update -d --env-add COLOR=<value> web` per value, all
    released at the same moment."""
    procs = []
    for value in values:
        args = [
            "--host", ",".join(cluster.manager_addrs), "--tls-dir", str(cluster.tls_dir),
            "service", "update", "-d", "--env-add", f"COLOR={value}", "web",
        ]  # fmt: skip
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _READY_THEN_RUN, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=cluster.env,
            )
        )
    for p in procs:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        results.append(CLIResult(p.returncode, out, err))
    return results


def color(spec: dict[str, Any] | None) -> str | None:
    if spec is None:
        return None
    env = dict(e.partition("=")[::2] for e in spec["task"]["container"].get("env", []))
    return env.get("COLOR")


def test_concurrent_updates_one_wins_and_the_other_is_told_to_retry(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    start_web(cluster, sleep_seconds(3809), "--update-monitor", "0s", replicas=2)

    conflicts = 0
    for attempt in range(8):
        before = color(inspect(cluster)["spec"])
        values = [f"red-{attempt}", f"blue-{attempt}"]
        results = racing_updates(cluster, values)
        for res in results:
            assert "Traceback" not in res.out + res.err, res.err
        svc = inspect(cluster)
        won = [v for v, res in zip(values, results, strict=True) if res.code == 0]
        lost = [res for res in results if res.code != 0]
        assert won, f"attempt {attempt}: one of two concurrent updates must win: {[r.err for r in results]}"
        if lost:
            (winner,) = won
            (loser,) = lost
            errors = error_lines(loser)
            assert len(errors) == 1, loser.err
            assert "conflict" in errors[0].lower() and "retry" in errors[0].lower(), errors[0]
            assert color(svc["spec"]) == winner, f"attempt {attempt}: the winner's value is kept"
            assert color(svc["previous_spec"]) == before
            conflicts += 1
        else:
            # Both succeeded: then they ran one after the other, and the
            # first one's spec must be the previous spec of the second.
            assert {color(svc["spec"]), color(svc["previous_spec"])} == set(values), (
                f"attempt {attempt}: both updates exited 0 but one of them was lost: "
                f"spec {color(svc['spec'])}, previous {color(svc['previous_spec'])}"
            )
        if conflicts >= 1 and attempt >= 2:
            break
    assert conflicts >= 1, "no attempt produced a version conflict: the race was never lost"
