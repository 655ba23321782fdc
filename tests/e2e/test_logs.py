"""`shoal service logs` end to end, for both runtime backends.

The tasks' output lives on their nodes; the CLI asks a manager, which asks
each agent through its session and streams the lines on. What the user sees
is Docker's format: every line prefixed with ``<service>.<slot>.<task-id>@<node>``
(``--no-task-ids``: ``<service>.<slot>@<node>``), padded, then ``| ``;
``--timestamps`` puts an RFC 3339 time in front; stderr lines go to stderr.

Most tests run twice, once on a cluster of three agents with the process
runtime and once on one with the docker runtime (a real engine: skipped
without one, failed under CI). Each backend's cluster is built once for this
module and shared; every test makes services of its own there and removes
them at the end. The test of a node that goes down kills an agent, so it gets
a cluster of its own.

Tasks print lines some tenths of a second apart: lines written at the same
instant to stdout and stderr are read by separate copiers (Docker's too), so
their relative order would not be defined.
"""

from __future__ import annotations

import datetime
import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shoal.agent.runtime.docker import LABEL_TASK_ID
from tests.support.cluster import Cluster, start_cluster, wait_for
from tests.support.docker_engine import containers_of, engine_or_skip
from tests.support.etcd_server import EtcdServer

# A prefixed line: "web.1.<task-id>@node-2    | text".
PREFIXED = re.compile(r"^(?P<name>\S+)@(?P<node>\S+) +\| (?P<text>.*)$")
TIMESTAMPED = re.compile(r"^(?P<time>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z) (?P<rest>.*)$")
# After printing, a task waits until it is told to stop (busybox `sleep` as a
# container's PID 1 would ignore SIGTERM).
WAIT = "trap 'exit 0' TERM; sleep 3600 & wait"
# Each replica of `web`: two stdout lines with a stderr line between them.
WEB_SCRIPT = (
    'echo "first line of $SHOAL_TASK_SLOT"; sleep 0.3; echo "oops from $SHOAL_TASK_SLOT" >&2; sleep 0.3; '
    f'echo "last line of $SHOAL_TASK_SLOT"; {WAIT}'
)
IMAGE = "shoal-test:1"  # the docker backend runs it; the process backend ignores it


@dataclass
class Backend:
    name: str
    cluster: Cluster
    engine: Any  # docker.DockerClient for the docker backend, else None
    web: list[dict[str, Any]]  # the running tasks of `web`
    web_created_at: datetime.datetime


@pytest.fixture(scope="module", params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def shared(
    request: pytest.FixtureRequest, etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """A cluster of three agents of the backend, already running `web`:
    three replicas that printed WEB_SCRIPT's lines."""
    engine = engine_or_skip() if request.param == "docker" else None
    try:
        cluster = start_cluster(
            etcd_server,
            tmp_path_factory.mktemp(f"logs-{request.param}"),
            runtime=("docker" if request.param == "docker" else None),
        )
        try:
            created_at = datetime.datetime.now(datetime.UTC)
            create(cluster, "--name", "web", "--replicas", "3", IMAGE, "sh", "-c", WEB_SCRIPT)
            web = cluster.running("web")
            wait_for(
                lambda: len(cluster.cli("service", "logs", "web").out.splitlines()) == 6,
                15,
                what="web's six stdout lines",
            )
            yield Backend(request.param, cluster, engine, web, created_at)
        finally:
            cluster.close()
    finally:
        if engine is not None:
            engine.close()


@pytest.fixture
def backend(shared: Backend, request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The shared cluster of one backend; its daemons' logs are printed
    after a test that failed."""
    yield shared
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(shared.cluster.dump_logs())


def create(cluster: Cluster, *args: str) -> None:
    res = cluster.cli("service", "create", "--update-monitor", "0s", *args)
    assert res.code == 0, f"service create failed ({res.code}):\n{res.out}\n{res.err}"


def remove(cluster: Cluster, name: str) -> None:
    res = cluster.cli("service", "rm", name)
    assert res.code == 0, res.err


def logs(cluster: Cluster, *args: str, timeout: float = 60) -> tuple[list[str], list[str]]:
    """`shoal service logs ARGS`: its stdout and stderr lines."""
    res = cluster.cli("service", "logs", *args, timeout=timeout)
    assert res.code == 0, f"service logs {' '.join(args)} failed ({res.code}):\n{res.err}"
    return res.out.splitlines(), res.err.splitlines()


def parsed(lines: list[str]) -> list[tuple[str, str, str]]:
    """(name, node, text) of each prefixed line; fails on a line without one."""
    out = []
    for line in lines:
        m = PREFIXED.match(line)
        assert m, f"no `name@node | ` prefix: {line!r}"
        out.append((m["name"], m["node"], m["text"]))
    return out


def expected_lines(
    tasks: list[dict[str, Any]], texts: list[str], task_ids: bool = True
) -> set[tuple[str, str, str]]:
    """(name, node, text) for each task and text ("{slot}" filled in)."""
    return {
        (
            f"web.{t['slot']}.{t['id']}" if task_ids else f"web.{t['slot']}",
            t["node"],
            text.format(slot=t["slot"]),
        )
        for t in tasks
        for text in texts
    }


class Follower:
    """`shoal service logs -f ARGS` running in the background; a thread
    reads its stdout lines so that a test can wait for one with a deadline."""

    def __init__(self, cluster: Cluster, *args: str) -> None:
        self.proc = cluster.popen_cli("service", "logs", "-f", *args)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_line(self, pred: Callable[[str], bool], timeout: float, what: str) -> str:
        """The first line from now on for which pred holds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                raise AssertionError(
                    f"`service logs -f` showed no {what} within {timeout}s; it showed: {self.lines[-10:]}"
                ) from None
            if line is None:
                raise AssertionError(f"`service logs -f` ended before showing {what}: {self.stop()}")
            self.lines.append(line)
            if pred(line):
                return line

    def stop(self) -> str:
        """Terminate it; what it wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stdout.close()  # type: ignore[union-attr]
        self.proc.stderr.close()
        return err


@pytest.fixture
def followers() -> Iterator[list[Follower]]:
    """Followers a test starts; all terminated at its end."""
    made: list[Follower] = []
    yield made
    for follower in made:
        follower.stop()


def in_order(lines: list[str], texts: list[str]) -> bool:
    positions = [lines.index(t) for t in texts if t in lines]
    return len(positions) == len(texts) and positions == sorted(positions)


# ------------------------------------------------------------- both backends


def test_each_line_is_prefixed_with_service_slot_task_id_and_node(backend: Backend) -> None:
    out, err = logs(backend.cluster, "web")
    assert len(out) == 6
    assert set(parsed(out)) == expected_lines(backend.web, ["first line of {slot}", "last line of {slot}"])
    assert set(parsed(err)) == expected_lines(backend.web, ["oops from {slot}"]), "stderr lines go to stderr"
    for task in backend.web:
        mine = [text for name, _, text in parsed(out) if name == f"web.{task['slot']}.{task['id']}"]
        assert mine == [f"first line of {task['slot']}", f"last line of {task['slot']}"], (
            "a task's lines in order"
        )


def test_tail_1_returns_the_last_line_of_each_task(backend: Backend) -> None:
    out, err = logs(backend.cluster, "web", "--tail", "1")
    assert sorted(parsed(out + err)) == sorted(expected_lines(backend.web, ["last line of {slot}"])), (
        "each task's newest line"
    )
    if backend.name == "process":
        # The process backend keeps no per-line times (two plain files), so
        # beyond the last line it cannot interleave stdout and stderr: a
        # documented limit of that backend (docs/cli.md, service logs).
        return
    out, err = logs(backend.cluster, "web", "--tail", "2")
    assert sorted(parsed(out)) == sorted(expected_lines(backend.web, ["last line of {slot}"]))
    assert sorted(parsed(err)) == sorted(expected_lines(backend.web, ["oops from {slot}"]))


def test_timestamps_put_an_rfc3339_time_before_each_line(backend: Backend) -> None:
    plain, _ = logs(backend.cluster, "web")
    asked_at = datetime.datetime.now(datetime.UTC)
    stamped, err = logs(backend.cluster, "web", "--timestamps")
    rests = []
    for line in stamped + err:
        m = TIMESTAMPED.match(line)
        assert m, f"no RFC 3339 time in front: {line!r}"
        when = datetime.datetime.fromisoformat(m["time"])
        # When the line was written (as `docker service logs -t` shows it),
        # not when it was read: every line was there before we asked.
        assert backend.web_created_at - datetime.timedelta(seconds=1) <= when < asked_at, (
            f"{line!r}: the task printed it between {backend.web_created_at:%H:%M:%S.%f} and "
            f"{asked_at:%H:%M:%S.%f} (when `service logs --timestamps` started)"
        )
        rests.append(m["rest"])
    assert sorted(rests[: len(stamped)]) == sorted(plain)


def test_since_leaves_out_lines_written_before(backend: Backend) -> None:
    # web's tasks printed their lines as they started, seconds ago, and
    # nothing since.
    wait_for(
        lambda: datetime.datetime.now(datetime.UTC) - backend.web_created_at > datetime.timedelta(seconds=4),
        10,
        what="web's lines to be 3 s old",
    )
    out, err = logs(backend.cluster, "web", "--since", "10m")
    assert (len(out), len(err)) == (6, 3)
    out, err = logs(backend.cluster, "web", "--since", "2s")
    assert (out, err) == ([], []), "lines older than --since must be left out"


def test_no_task_ids_shortens_the_prefix_to_service_and_slot(backend: Backend) -> None:
    out, err = logs(backend.cluster, "web", "--no-task-ids")
    expected = expected_lines(backend.web, ["first line of {slot}", "last line of {slot}"], task_ids=False)
    assert set(parsed(out)) == expected
    assert set(parsed(err)) == expected_lines(backend.web, ["oops from {slot}"], task_ids=False)


def test_follow_shows_a_line_printed_after_it_started(
    backend: Backend, followers: list[Follower], tmp_path: Path
) -> None:
    cluster = backend.cluster
    # The task prints its second line once a file `go` appears in its
    # working directory: a folder of this test's (process backend), or the
    # container's /tmp.
    workdir = "/tmp" if backend.engine is not None else str(tmp_path)
    script = f'echo "before go"; while [ ! -e go ]; do sleep 0.1; done; echo "after go"; {WAIT}'
    create(cluster, "--name", "follow", "--workdir", workdir, IMAGE, "sh", "-c", script)
    try:
        (task,) = cluster.running("follow")
        follower = Follower(cluster, "follow")
        followers.append(follower)
        follower.wait_line(lambda line: line.endswith("| before go"), 15, what="the line printed before")
        release(backend, task, workdir)
        line = follower.wait_line(
            lambda line: "after go" in line, 15, what="the line printed after it started"
        )
        assert parsed([line]) == [(f"follow.1.{task['id']}", task["node"], "after go")]
        assert follower.proc.poll() is None, "-f keeps running"
    finally:
        remove(cluster, "follow")


def release(backend: Backend, task: dict[str, Any], workdir: str) -> None:
    """Create the file `go` in the task's working directory."""
    if backend.engine is None:
        (Path(workdir) / "go").touch()
        return
    (container,) = [
        c
        for c in containers_of(backend.engine, task["service"], {task["node_id"]})
        if c.labels[LABEL_TASK_ID] == task["id"]
    ]
    code, output = container.exec_run(["touch", f"{workdir}/go"])
    assert code == 0, output


def test_follow_picks_up_tasks_that_start_after_it(backend: Backend, followers: list[Follower]) -> None:
    cluster = backend.cluster
    script = f'echo "hello from slot $SHOAL_TASK_SLOT"; {WAIT}'
    create(cluster, "--name", "grow", IMAGE, "sh", "-c", script)
    try:
        follower = Follower(cluster, "grow")
        followers.append(follower)
        follower.wait_line(lambda line: line.endswith("| hello from slot 1"), 15, what="slot 1's line")
        res = cluster.cli("service", "scale", "grow=2")
        assert res.code == 0, res.out + res.err
        line = follower.wait_line(
            lambda line: line.endswith("| hello from slot 2"), 15, what="the new task's line"
        )
        (new,) = [t for t in cluster.running("grow") if t["slot"] == 2]
        assert parsed([line]) == [(f"grow.2.{new['id']}", new["node"], "hello from slot 2")]
    finally:
        remove(cluster, "grow")


def test_logs_of_a_task_that_ended_stay_readable_while_it_is_in_history(backend: Backend) -> None:
    cluster = backend.cluster
    create(
        cluster, "--name", "crashy", "--restart-delay", "500ms", "--restart-max-attempts", "1", "-d",
        IMAGE, "sh", "-c", 'echo "bye from $SHOAL_TASK_ID"; exit 3',
    )  # fmt: skip
    try:

        def replaced() -> list[dict[str, Any]] | None:
            tasks = cluster.tasks("crashy")
            done = [t for t in tasks if t["current_state"] == "failed"]
            return tasks if len(tasks) >= 2 and len(done) >= 2 else None

        tasks = wait_for(replaced, 30, what="two failed tasks of crashy")
        first = min(tasks, key=lambda t: t["created_at"])
        assert (first["desired_state"], first["error"]) == ("shutdown", "exit code 3")
        out, err = logs(cluster, first["id"])
        assert parsed(out) == [(f"crashy.1.{first['id']}", first["node"], f"bye from {first['id']}")]
        assert err == []
        out, _ = logs(cluster, "crashy")
        assert {text for _, _, text in parsed(out)} == {f"bye from {t['id']}" for t in tasks}
    finally:
        remove(cluster, "crashy")


def test_log_throughput_of_a_task_printing_100000_lines(backend: Backend) -> None:
    """Prints lines/s of `service logs --tail all` (a figure, not asserted)."""
    cluster = backend.cluster
    create(cluster, "--name", "flood", IMAGE, "sh", "-c", f"seq 1 100000; {WAIT}")
    try:
        wait_for(
            lambda: logs(cluster, "flood", "--tail", "1", "--raw")[0] == ["100000"],
            60,
            0.5,
            what="the task's last line",
        )
        started = time.monotonic()
        out, err = logs(cluster, "flood", "--tail", "all", timeout=120)
        elapsed = time.monotonic() - started
        started = time.monotonic()
        logs(cluster, "flood", "--tail", "0")
        overhead = time.monotonic() - started
        assert err == []
        assert [text for _, _, text in parsed(out)] == [str(i) for i in range(1, 100001)]
        print(
            f"\nFIGURE ({backend.name} backend): service logs --tail all of 100,000 lines: {elapsed:.2f}s, "
            f"{100_000 / elapsed:,.0f} lines/s (a CLI call that returns no line takes {overhead:.2f}s)"
        )
    finally:
        remove(cluster, "flood")


# ------------------------------------------------------- process backend only


def test_a_node_that_is_down_is_reported_on_stderr_and_logs_do_not_hang(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    script = f'echo "up on $SHOAL_TASK_SLOT"; {WAIT}'
    create(cluster, "--name", "web", "--replicas", "3", "app:1", "sh", "-c", script)
    tasks = cluster.running("web")
    wait_for(lambda: len(logs(cluster, "web")[0]) == 3, 15, what="three lines")
    cluster.agents[0].kill9()
    wait_for(
        lambda: any(n["hostname"] == "node-1" and n["status"] == "down" for n in cluster.nodes()),
        20,
        what="node-1 to be down",
    )
    started = time.monotonic()
    res = cluster.cli("service", "logs", "web", "--tail", "1", timeout=30)
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"service logs took {elapsed:.1f}s with a node down"
    assert res.code == 0, res.err
    warnings = [line for line in res.err.splitlines() if line.startswith("warning:")]
    assert warnings and all("node-1" in w for w in warnings), res.err
    lines = parsed(res.out.splitlines())
    alive = {
        (f"web.{t['slot']}.{t['id']}", t["node"], f"up on {t['slot']}")
        for t in tasks
        if t["node"] != "node-1"
    }
    assert len(alive) == 2
    assert alive <= set(lines), res.out
    assert all(node != "node-1" for _, node, _ in lines), res.out
