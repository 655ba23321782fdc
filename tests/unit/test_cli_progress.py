"""The progress of create/update/scale: what each slot's line says, when the
wait gives up and what it says then, and how it looks on a terminal (a tiny
terminal below replays the escape codes) and piped."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest

from shoal.cli import progress, progress_frame
from shoal.cli.client import CLIError
from shoal.cli.printer import Printer
from shoal.cli.progress import REJECT_LIMIT, _step, _Watch, follow
from shoal.cli.progress_frame import snapshot
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb

PULL = "pulling image app:nope failed: manifest for app:nope not found: manifest unknown"
NO_NODE = "no suitable node (insufficient memory on 3 nodes)"


def svc(replicas: int = 3, monitor_s: float = 5, name: str = "web") -> pb.Service:
    spec = pb.ServiceSpec(name=name, replicas=replicas)
    spec.update.monitor = int(monitor_s * 1e9)
    return pb.Service(meta=pb.Meta(id="svc1"), spec=spec, spec_version=1)


_made = [0]


def task(
    slot: int, state: int, err: str = "", desired: int = pb.TASK_STATE_RUNNING, node: str = "n1"
) -> pb.Task:
    _made[0] += 1
    return pb.Task(
        meta=pb.Meta(id=f"t{_made[0]}", created_at=_made[0]),
        service_name="web",
        slot=slot,
        node_id=node if state >= pb.TASK_STATE_ASSIGNED else "",
        spec_version=1,
        desired_state=desired,
        status=pb.TaskStatus(state=state, err=err),
    )


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def screen(written: str, rows: int = 40) -> list[str]:
    """What a terminal shows after written: a VT100 that knows the codes the
    printer uses (cursor up, clear line, clear below)."""
    lines = [""] * rows
    row, col = 0, 0
    for token in re.findall(r"\x1b\[\d*[A-Za-z]|\n|[^\x1b\n]+", written):
        if token == "\n":
            row, col = row + 1, 0
        elif token.startswith("\x1b["):
            code, n = token[-1], int(token[2:-1] or 0)
            if code == "A":
                row = max(0, row - (n or 1))
            elif code == "K" and n == 2:
                lines[row] = ""
            elif code == "J":
                lines[row] = lines[row][:col]
                lines[row + 1 :] = [""] * (rows - row - 1)
        else:
            lines[row] = lines[row][:col].ljust(col) + token + lines[row][col + len(token) :]
            col += len(token)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def test_each_slot_shows_its_tasks_error_or_state() -> None:
    frame = snapshot(
        svc(),
        [
            task(1, pb.TASK_STATE_RUNNING),
            task(2, pb.TASK_STATE_PENDING, NO_NODE),
            task(3, pb.TASK_STATE_REJECTED, PULL),
        ],
    )
    assert frame.lines[0] == "overall progress: 1 out of 3 tasks"
    assert frame.lines[1].startswith("1/3: running   [") and frame.lines[1].endswith(">]")
    assert frame.lines[2] == f"2/3: {NO_NODE}"
    assert frame.lines[3] == f"3/3: rejected: {PULL}"
    assert not frame.converged


def test_a_replacement_shows_why_the_last_attempt_of_its_slot_ended() -> None:
    old = task(1, pb.TASK_STATE_REJECTED, PULL, desired=pb.TASK_STATE_SHUTDOWN)
    new = task(1, pb.TASK_STATE_PREPARING)
    frame = snapshot(svc(replicas=1), [old, new])
    assert frame.lines[1] == f"1/1: preparing last attempt rejected: {PULL}"
    assert frame.rejected == {PULL: {old.meta.id}}


HOSTS = {"n1": "node-1", "n2": "node-2", "n3": "node-3"}
N1_DOWN = {"n1": "heartbeat failure"}


def test_a_task_on_a_down_node_does_not_count_as_running_and_its_slot_says_why() -> None:
    # Its agent last said "running"; nobody can say more until it is replaced.
    tasks = [
        task(1, pb.TASK_STATE_RUNNING, node="n1"),
        *(task(s, pb.TASK_STATE_RUNNING, node="n2") for s in (2, 3)),
    ]
    frame = snapshot(svc(), tasks, HOSTS, N1_DOWN)
    assert frame.lines[0] == "overall progress: 2 out of 3 tasks"
    assert frame.lines[1] == "1/3: node node-1 is down: heartbeat failure"
    assert not frame.converged and not frame.stuck
    assert snapshot(svc(), tasks, HOSTS).converged  # the same tasks with node-1 up


def test_a_replaced_task_on_a_down_node_is_not_waited_for_to_stop() -> None:
    replaced = task(1, pb.TASK_STATE_RUNNING, desired=pb.TASK_STATE_SHUTDOWN, node="n1")
    tasks = [replaced, *(task(s, pb.TASK_STATE_RUNNING, node="n2") for s in (1, 2, 3))]
    frame = snapshot(svc(), tasks, HOSTS, N1_DOWN)
    assert frame.converged
    assert frame.lines[0] == "overall progress: 3 out of 3 tasks"
    # On a live node, a task still running that is to stop is waited for.
    assert not snapshot(svc(), tasks, HOSTS).converged


def test_a_global_service_converges_on_its_live_nodes_when_a_node_is_down() -> None:
    service = svc()
    service.spec.mode = pb.SERVICE_MODE_GLOBAL
    shut_down = task(0, pb.TASK_STATE_RUNNING, desired=pb.TASK_STATE_SHUTDOWN, node="n1")
    tasks = [shut_down, task(0, pb.TASK_STATE_RUNNING, node="n2"), task(0, pb.TASK_STATE_RUNNING, node="n3")]
    frame = snapshot(service, tasks, HOSTS, N1_DOWN)
    assert frame.converged
    assert frame.lines[0] == "overall progress: 2 out of 2 tasks"
    assert [line.split(":")[0] for line in frame.lines[1:]] == ["node-2", "node-3"]
    assert not snapshot(service, tasks, HOSTS).converged
    # Still desired running there (not shut down yet): shown, not counted.
    held = task(0, pb.TASK_STATE_RUNNING, node="n1")
    frame = snapshot(service, [held, *tasks[1:]], HOSTS, N1_DOWN)
    assert not frame.converged
    assert frame.lines[:2] == [
        "overall progress: 2 out of 3 tasks",
        "node-1: node node-1 is down: heartbeat failure",
    ]


def test_a_jobs_active_tasks_leave_out_those_on_a_down_node() -> None:
    service = svc(replicas=2)
    service.spec.mode = pb.SERVICE_MODE_REPLICATED_JOB
    tasks = [task(1, pb.TASK_STATE_RUNNING, node="n1"), task(2, pb.TASK_STATE_RUNNING, node="n2")]
    assert snapshot(service, tasks, HOSTS, N1_DOWN).lines[1] == "active tasks: 1 out of 2 tasks"


def test_the_wait_ends_while_a_replaced_task_sits_on_a_down_node() -> None:
    """What ListTasks says of down nodes reaches the frame (the follow loop
    passes it on): scale without -d converges, verify step included."""
    replaced = task(1, pb.TASK_STATE_RUNNING, desired=pb.TASK_STATE_SHUTDOWN, node="n1")
    tasks = [replaced, *(task(s, pb.TASK_STATE_RUNNING, node="n2") for s in (1, 2, 3, 4, 5))]
    resp = cpb.ListTasksResponse(tasks=tasks, node_hostnames=HOSTS, node_down=N1_DOWN)
    out = io.StringIO()
    printer = Printer(out)
    watch = _Watch("web", rollback=False)
    now = 0.0
    while (code := _step(printer, watch, svc(replicas=5, monitor_s=1), resp, now)) is None:
        assert now < 10, out.getvalue()
        now += 0.2
    assert code == 0
    assert out.getvalue().splitlines()[-1] == "verify: Service web converged"


def step(watch: _Watch, tasks: list[pb.Task], now: float, service: pb.Service | None = None) -> int | None:
    resp = cpb.ListTasksResponse(tasks=tasks)
    return _step(Printer(io.StringIO()), watch, service or svc(), resp, now)


def test_tasks_rejected_again_and_again_for_one_reason_end_the_wait_saying_the_service_exists(
    capsys: pytest.CaptureFixture[str],
) -> None:
    watch = _Watch("web", rollback=False)
    rejected: list[pb.Task] = []
    for attempt in range(REJECT_LIMIT):
        assert step(watch, [*rejected, task(1, pb.TASK_STATE_PENDING)], attempt) is None
        rejected.append(task(1, pb.TASK_STATE_REJECTED, PULL, desired=pb.TASK_STATE_SHUTDOWN))
    # The cluster forgot the oldest one meanwhile (task history): still counted.
    assert step(watch, rejected[1:], 10.0) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"Error: {REJECT_LIMIT} tasks of service web were rejected: {PULL}",
        "The service web exists and keeps trying: see why with `shoal service ps --no-trunc web`, "
        "or remove it with `shoal service rm web`.",
    ]


def test_rejections_for_different_reasons_are_counted_apart() -> None:
    watch = _Watch("web", rollback=False)
    tasks = [
        task(1, pb.TASK_STATE_REJECTED, f"reason {i % 2}", desired=pb.TASK_STATE_SHUTDOWN)
        for i in range(REJECT_LIMIT)
    ]
    assert step(watch, [*tasks, task(1, pb.TASK_STATE_PENDING)], 0.0) is None


def test_a_task_that_fits_no_node_ends_the_wait_once_it_lasts(capsys: pytest.CaptureFixture[str]) -> None:
    watch = _Watch("web", rollback=False)
    pending = [task(1, pb.TASK_STATE_PENDING, NO_NODE)]
    assert step(watch, pending, 0.0, svc(replicas=1)) is None
    assert step(watch, pending, progress.STUCK_AFTER - 0.1, svc(replicas=1)) is None
    assert step(watch, pending, progress.STUCK_AFTER, svc(replicas=1)) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"Error: {NO_NODE}"
    assert err[1].startswith("The service web exists and keeps trying: see why with")


def test_on_a_terminal_lines_are_cut_to_its_width_and_old_tails_are_cleared() -> None:
    out = TTY()
    printer = Printer(out, width=40)
    printer.show(["overall progress: 1 out of 1 tasks", f"1/1: rejected: {PULL}"])
    printer.show(
        [
            "overall progress: 1 out of 1 tasks",
            "1/1: running",
            "verify: Waiting 5 seconds to verify that tasks are stable...",
        ]
    )
    printer.show(["overall progress: 1 out of 1 tasks", "1/1: running"])
    printer.say("verify: Service web converged")
    shown = screen(out.getvalue())
    assert shown == [
        "overall progress: 1 out of 1 tasks",
        "1/1: running",
        "verify: Service web converged",
    ]
    first = screen(out.getvalue().split("\x1b[2A")[0])
    assert first[1] == "1/1: rejected: pulling image app:nope …"
    assert all(len(line) <= 39 for line in screen(out.getvalue().split("\x1b[3A")[0]))


def test_a_block_taller_than_the_terminal_keeps_its_first_and_last_lines() -> None:
    out = TTY()
    printer = Printer(out, width=80, height=8)
    lines = ["overall progress: 0 out of 20 tasks", *(f"{i}/20: pending" for i in range(1, 21)), "verify: x"]
    printer.show(lines)
    printer.show(lines)
    assert screen(out.getvalue()) == [*lines[:5], "... 16 more lines", "verify: x"]


def test_piped_a_line_is_printed_whole_and_only_when_it_changes() -> None:
    out = io.StringIO()
    printer = Printer(out)
    lines = ["overall progress: 0 out of 1 tasks", f"1/1: rejected: {PULL}"]
    printer.show(lines)
    printer.show(lines)
    printer.show(["overall progress: 1 out of 1 tasks", f"1/1: rejected: {PULL}"])
    assert out.getvalue().splitlines() == [*lines, "overall progress: 1 out of 1 tasks"]


def test_piped_the_verify_countdown_is_printed_once() -> None:
    out = io.StringIO()
    printer = Printer(out)
    watch = _Watch("web", rollback=False)
    running = [task(1, pb.TASK_STATE_RUNNING)]
    resp = cpb.ListTasksResponse(tasks=running)
    service = svc(replicas=1, monitor_s=5)
    now = 0.0
    while (code := _step(printer, watch, service, resp, now)) is None:
        now += 0.2
    assert code == 0
    assert out.getvalue().splitlines() == [
        "overall progress: 1 out of 1 tasks",
        f"1/1: running   {progress_frame._bar(pb.TASK_STATE_RUNNING)}",
        "verify: Waiting 5 seconds to verify that tasks are stable...",
        "verify: Service web converged",
    ]


class ScriptedClient:
    """Answers follow's two calls from a script (a fake of our own Client):
    the service converging, then gone."""

    def __init__(self, service: pb.Service, polls_before_removal: int) -> None:
        self.service = service
        self.left = polls_before_removal

    def call(self, method: str, request: Any, **_: Any) -> Any:
        if self.left <= 0:
            raise CLIError(f"service {self.service.meta.id} not found", "NOT_FOUND")
        if method == "GetService":
            return self.service
        self.left -= 1
        return cpb.ListTasksResponse(tasks=[task(1, pb.TASK_STATE_PENDING)])


def test_a_service_removed_while_waiting_is_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "POLL", 0.0)
    client = ScriptedClient(svc(replicas=1, name="web"), polls_before_removal=2)
    assert follow(client, "svc1", out=io.StringIO()) == 1  # type: ignore[arg-type]
    assert capsys.readouterr().err == "Error: service web was removed while waiting for it\n"
