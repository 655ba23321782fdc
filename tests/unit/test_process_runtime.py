"""The process backend against real processes: exit codes, stopping, adoption
after an agent restart, what the task sees, its logs and its health checks.

Every test uses the ``state_dir`` fixture, whose teardown SIGKILLs the process
group of every task recorded there, so that a failing test leaves nothing
running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from shoal.agent.runtime.base import (
    ExitStatus,
    Health,
    HealthReport,
    HealthReporting,
    LogReading,
    RuntimeState,
    TaskContext,
    TaskRejected,
)
from shoal.agent.runtime.process import KILLED_EXIT_CODE, ProcessRuntime, ProcessTaskController
from shoal.protos import objects_pb2 as pb

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one test's async body with a deadline, so a hang fails the test."""
    return asyncio.run(asyncio.wait_for(coro, 30))


def make_ctx(
    task_id: str,
    command: list[str],
    args: list[str] | None = None,
    *,
    env: dict[str, str] | None = None,
    workdir: str = "",
    memory_bytes: int = 0,
    healthcheck: pb.HealthCheck | None = None,
) -> TaskContext:
    spec = pb.TaskSpec(
        container=pb.ContainerSpec(
            image="example/image:1",
            command=command,
            args=args or [],
            workdir=workdir,
            healthcheck=healthcheck,
        ),
        resources=pb.ResourceRequirements(limits=pb.Resources(memory_bytes=memory_bytes)),
    )
    return TaskContext(task=pb.Task(meta=pb.Meta(id=task_id), spec=spec), node_id="node-1", env=env or {})


async def started(rt: ProcessRuntime, ctx: TaskContext) -> ProcessTaskController:
    ctl = rt.controller(ctx)
    await ctl.prepare()
    await ctl.start()
    return ctl


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the deadline")
        await asyncio.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 :].split()[0] not in (b"Z", b"X")


def pgrep(pattern: str) -> set[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return {int(line) for line in out.split()}


def pgrep_copies(pattern: str) -> set[int]:
    """pgrep, without the task's own children: a shell loop's child carries
    the shell's command line between fork and exec, which is no second copy
    of the task."""
    found = pgrep(pattern)

    def parent(pid: int) -> int:
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            return 0
        return int(stat[stat.rindex(b")") + 2 :].split()[1])

    return {pid for pid in found if parent(pid) not in found}


def kill_recorded_tasks(state_dir: Path) -> None:
    """SIGKILL every task group recorded under state_dir. This deliberately
    uses none of the code under test."""
    for handle_file in state_dir.glob("tasks/*/handle.json"):
        handle = json.loads(handle_file.read_text())
        pid, start_time = handle["pid"], handle["start_time"]
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
            if int(stat[stat.rindex(b")") + 2 :].split()[19]) != start_time:
                continue  # the pid is someone else's now
        except OSError:
            pass  # wrapper gone; the group may still hold stragglers
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # adopted: not our child
            os.waitpid(pid, 0)


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "state"
    try:
        yield path
    finally:
        kill_recorded_tasks(path)


def test_exit_codes_are_reported(state_dir: Path) -> None:
    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        ok = await started(rt, make_ctx("ok", ["true"]))
        # command empty: args alone are the argv
        three = await started(rt, make_ctx("three", [], ["sh", "-c", "exit 3"]))
        # command + args
        four = await started(rt, make_ctx("four", ["sh", "-c"], ["exit 4"]))

        assert await ok.wait() == ExitStatus(0)
        assert await three.wait() == ExitStatus(3)
        assert await four.wait() == ExitStatus(4)
        state = await three.inspect()
        assert (state.exists, state.running, state.exit) == (True, False, ExitStatus(3))
        # wait() again after the fact gives the same answer
        assert await three.wait() == ExitStatus(3)

    run(main())


def test_sigterm_stops_a_sleeping_task_promptly(state_dir: Path) -> None:
    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        ctl = await started(rt, make_ctx("sleeper", ["sleep", "30"]))
        state = await ctl.inspect()
        assert state.running and alive(state.pid)

        t0 = time.monotonic()
        await ctl.shutdown(10.0, "SIGTERM")
        # Stopped by the signal, not killed after the 10 s grace period
        # (the exit status below says so too).
        assert time.monotonic() - t0 < 9.0
        assert not alive(state.pid)
        assert await ctl.wait() == ExitStatus(128 + signal.SIGTERM)
        # idempotent once it is gone
        await ctl.shutdown(10.0, "SIGTERM")

    run(main())


def test_sigint_as_stop_signal_stops_the_task(state_dir: Path) -> None:
    # A non-interactive sh starts background jobs with SIGINT ignored; the
    # wrapper must not, or this stop signal would do nothing.
    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        ctl = await started(rt, make_ctx("int", ["sleep", "30"]))
        t0 = time.monotonic()
        await ctl.shutdown(10.0, "INT")
        assert time.monotonic() - t0 < 9.0  # the signal did it, not the grace period's kill
        assert await ctl.wait() == ExitStatus(128 + signal.SIGINT)

    run(main())


def test_task_ignoring_sigterm_is_killed_after_the_grace_period(state_dir: Path) -> None:
    marker = f"shoal-test-{uuid.uuid4().hex}"
    script = f"trap '' TERM; echo ready; sleep 30; : {marker}"

    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        ctl = await started(rt, make_ctx("stubborn", ["sh", "-c", script]))
        stdout = ctl.task_dir / "stdout.log"
        await wait_until(lambda: stdout.exists() and b"ready" in stdout.read_bytes())

        t0 = time.monotonic()
        await ctl.shutdown(0.5, "SIGTERM")
        elapsed = time.monotonic() - t0
        assert 0.5 <= elapsed < 15.0  # the grace period was given, then the kill
        assert pgrep(marker) == set()
        assert await ctl.wait() == ExitStatus(KILLED_EXIT_CODE, "task process was killed")
        state = await ctl.inspect()
        assert not state.running

    run(main())


def test_missing_or_unusable_command_is_rejected(state_dir: Path, tmp_path: Path) -> None:
    not_executable = tmp_path / "script"
    not_executable.write_text("#!/bin/sh\n")
    not_executable.chmod(0o644)

    async def rejection(ctx: TaskContext) -> str:
        with pytest.raises(TaskRejected) as info:
            await ProcessRuntime(state_dir).controller(ctx).prepare()
        return str(info.value)

    async def main() -> None:
        assert (
            await rejection(make_ctx("a", ["nosuchcmd"]))
            == 'exec: "nosuchcmd": executable file not found in $PATH'
        )
        assert (
            await rejection(make_ctx("b", [str(not_executable)]))
            == f'exec: "{not_executable}": permission denied'
        )
        assert (
            await rejection(make_ctx("c", ["/nonexistent/x"]))
            == 'exec: "/nonexistent/x": stat /nonexistent/x: no such file or directory'
        )
        assert await rejection(make_ctx("d", [])) == "no command given"
        assert (
            await rejection(make_ctx("e", ["true"], workdir="/nonexistent-dir"))
            == "container.workdir: directory '/nonexistent-dir' does not exist"
        )
        # the lookup uses the task's PATH, not the agent's
        assert (
            await rejection(make_ctx("f", ["sleep"], env={"PATH": str(tmp_path)}))
            == 'exec: "sleep": executable file not found in $PATH'
        )
        # start() without prepare() checks the same
        ctl = ProcessRuntime(state_dir).controller(make_ctx("g", ["nosuchcmd"]))
        with pytest.raises(TaskRejected):
            await ctl.start()

    run(main())


def test_env_and_workdir_reach_the_process(state_dir: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "wd"
    workdir.mkdir()
    env = {"FOO": "bar baz", "SHOAL_TASK_IMAGE": "example/image:1"}

    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        explicit = await started(
            rt, make_ctx("explicit", ["sh", "-c", 'echo "$FOO"; pwd'], env=env, workdir=str(workdir))
        )
        default = await started(rt, make_ctx("default", ["pwd"], env=env))
        exact = await started(rt, make_ctx("exact", ["env", "-0"], env=env))
        for ctl in (explicit, default, exact):
            assert await ctl.wait() == ExitStatus(0)

        assert (explicit.task_dir / "stdout.log").read_text() == f"bar baz\n{workdir}\n"
        assert (default.task_dir / "stdout.log").read_text() == f"{default.task_dir / 'work'}\n"
        seen = dict(
            item.split("=", 1) for item in (exact.task_dir / "stdout.log").read_text().split("\0")[:-1]
        )
        # exactly ctx.env plus the agent's PATH and HOME: nothing the shell added
        assert seen == {**env, "PATH": os.environ["PATH"], "HOME": os.environ["HOME"]}

    run(main())


def test_restarted_agent_adopts_the_running_task(state_dir: Path) -> None:
    # A separate Python process plays the agent that started the task and
    # then died, so the task is not a child of the agent that adopts it.
    first_agent = textwrap.dedent(
        """
        import asyncio, sys
        from pathlib import Path
        from shoal.agent.runtime.base import TaskContext
        from shoal.agent.runtime.process import ProcessRuntime
        from shoal.protos import objects_pb2 as pb

        async def main():
            spec = pb.TaskSpec(container=pb.ContainerSpec(command=sys.argv[2:]))
            ctx = TaskContext(task=pb.Task(meta=pb.Meta(id="adopted"), spec=spec), node_id="n")
            ctl = ProcessRuntime(Path(sys.argv[1])).controller(ctx)
            await ctl.prepare()
            await ctl.start()
            print((await ctl.inspect()).pid)

        asyncio.run(main())
        """
    )
    marker = f"shoal-test-{uuid.uuid4().hex}"
    script = f"while [ ! -e go ]; do sleep 0.05; done; exit 5; : {marker}"
    out = subprocess.run(
        [sys.executable, "-c", first_agent, str(state_dir), "sh", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    pid = int(out.stdout)

    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        assert await rt.known_task_ids() == {"adopted"}
        ctl = rt.controller(make_ctx("adopted", ["sh", "-c", script]))
        assert await ctl.inspect() == RuntimeState(exists=True, running=True, pid=pid)
        # start() on an adopted task must not start a second copy
        assert await ctl.start() == pid
        assert pgrep_copies(marker) == {pid}

        waiter = asyncio.create_task(ctl.wait())
        await asyncio.sleep(0.2)
        assert not waiter.done()
        (ctl.task_dir / "work" / "go").touch()
        assert await waiter == ExitStatus(5)
        assert (await ctl.inspect()).exit == ExitStatus(5)

    run(main())


def test_pgrep_finds_exactly_one_process_per_task(state_dir: Path) -> None:
    marker = f"shoal-test-{uuid.uuid4().hex}"
    argv = ["sh", "-c", f"sleep 30; : {marker}"]

    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        tasks = [rt.controller(make_ctx(f"t{i}", argv)) for i in range(2)]
        started_pids = set()
        for ctl in tasks:
            await ctl.prepare()
            started_pids.add(await ctl.start())
        pids = {(await ctl.inspect()).pid for ctl in tasks}
        assert len(pids) == 2
        assert pids == started_pids
        # start() may return while the task's shell is still between fork
        # and exec on a busy machine: wait until what pgrep sees settles,
        # then it must be exactly one process per task.
        with contextlib.suppress(AssertionError):
            await wait_until(lambda: pgrep(marker) == pids, timeout=15.0)
        assert pgrep(marker) == pids
        for ctl in tasks:
            await ctl.shutdown(5.0, "")
        assert pgrep(marker) == set()

    run(main())


def test_remove_kills_the_task_and_deletes_its_dir(state_dir: Path) -> None:
    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        ctl = await started(rt, make_ctx("doomed", ["sleep", "30"]))
        pid = (await ctl.inspect()).pid
        await ctl.remove()
        assert not ctl.task_dir.exists()
        assert not alive(pid)
        assert await rt.known_task_ids() == set()
        assert await ctl.inspect() == RuntimeState(exists=False, running=False)
        await ctl.remove()  # idempotent

    run(main())


def test_discard_stops_and_deletes_a_task_known_only_by_id(state_dir: Path) -> None:
    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        ctl = await started(rt, make_ctx("orphan", ["sleep", "30"]))
        pid = (await ctl.inspect()).pid
        await ProcessRuntime(state_dir).discard("orphan")
        assert not alive(pid)
        assert await rt.known_task_ids() == set()
        await rt.discard("orphan")  # idempotent
        await rt.close()

    run(main())


def test_memory_limit_is_applied_as_address_space_limit(state_dir: Path) -> None:
    limit = 512 * 1024 * 1024

    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        ctl = await started(rt, make_ctx("limited", ["sleep", "30"], memory_bytes=limit))
        pid = (await ctl.inspect()).pid
        limits = Path(f"/proc/{pid}/limits").read_text().splitlines()
        address_space = next(line for line in limits if line.startswith("Max address space"))
        assert address_space.split()[3:5] == [str(limit), str(limit)]
        await ctl.shutdown(5.0, "")

    run(main())


def test_logs_tail_returns_the_last_lines_of_each_stream(state_dir: Path) -> None:
    script = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; printf partial"

    async def collect(ctl: LogReading, tail: int | None) -> list[tuple[str, bytes]]:
        return [(stream, line) async for stream, line, _ in ctl.logs(follow=False, tail=tail)]

    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        ctl = await started(rt, make_ctx("chatty", ["sh", "-c", script]))
        assert await ctl.wait() == ExitStatus(0)
        assert isinstance(ctl, LogReading)
        assert await collect(ctl, 2) == [
            ("stdout", b"out5\n"),
            ("stdout", b"partial"),
            ("stderr", b"err4\n"),
            ("stderr", b"err5\n"),
        ]
        everything = await collect(ctl, None)
        assert len(everything) == 11
        assert everything[0] == ("stdout", b"out1\n")
        assert await collect(ctl, 0) == []

    run(main())


def test_logs_follow_yields_lines_as_they_are_written(state_dir: Path) -> None:
    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        ctl = await started(rt, make_ctx("follow", ["sh", "-c", "echo a; sleep 0.5; echo b >&2; sleep 30"]))
        seen: list[tuple[str, bytes]] = []

        async def follow() -> None:
            async for stream, line, _ in ctl.logs(follow=True, tail=None):
                seen.append((stream, line))
                if len(seen) == 2:
                    return

        try:
            await asyncio.wait_for(follow(), 10)
            assert seen == [("stdout", b"a\n"), ("stderr", b"b\n")]
        finally:
            await ctl.shutdown(5.0, "")

    run(main())


def test_unknown_stop_signal_falls_back_to_sigterm(state_dir: Path) -> None:
    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        ctl = await started(rt, make_ctx("odd", ["sleep", "30"]))
        await ctl.shutdown(5.0, "SIGNOPE")
        assert await ctl.wait() == ExitStatus(128 + signal.SIGTERM)

    run(main())


# ------------------------------------------------------------- health checks

NS_PER_S = 1_000_000_000


def health_check(
    *test: str, interval: float = 0.1, timeout: float = 0, retries: int = 0, start_period: float = 0
) -> pb.HealthCheck:
    return pb.HealthCheck(
        test=list(test),
        interval=int(interval * NS_PER_S),
        timeout=int(timeout * NS_PER_S),
        retries=retries,
        start_period=int(start_period * NS_PER_S),
    )


async def wait_for_health(ctl: HealthReporting, wanted: Health, timeout: float = 5.0) -> float:
    """Poll health() until it reports `wanted`; return how long that took."""
    t0 = time.monotonic()
    while (status := (await ctl.health()).state) != wanted:
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"health is {status.name}, not {wanted.name}, after {timeout}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


def background_tasks() -> set[asyncio.Task[Any]]:
    """The asyncio tasks besides the test's own (run() wraps it in wait_for)."""
    me = asyncio.current_task()
    return {
        t
        for t in asyncio.all_tasks()
        if t is not me and getattr(t.get_coro(), "__qualname__", "") != "wait_for"
    }


def test_health_goes_from_starting_to_healthy_once_the_task_is_ready(state_dir: Path) -> None:
    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        ready = state_dir.parent / "ready"
        check = health_check("CMD-SHELL", f"test -f {ready}", retries=100)
        ctl = await started(rt, make_ctx("web", ["sleep", "30"], healthcheck=check))
        assert isinstance(ctl, HealthReporting)
        assert (await ctl.health()).state == Health.STARTING
        # Checks fail while the task is not ready: still starting, not unhealthy.
        failed = HealthReport(Health.STARTING, "health check exit code 1")
        while (report := await ctl.health()) != failed:
            assert report.state == Health.STARTING, report
            await asyncio.sleep(0.02)
        ready.touch()
        await wait_for_health(ctl, Health.HEALTHY, timeout=15.0)
        await ctl.shutdown(5.0, "")

    run(main())


def test_failing_check_makes_the_task_unhealthy_after_retries_but_not_within_start_period(
    state_dir: Path,
) -> None:
    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        check = health_check("CMD", "sh", "-c", "echo not ready >&2; exit 3", retries=2, start_period=0.8)
        t0 = time.monotonic()
        ctl = await started(rt, make_ctx("broken", ["sleep", "30"], healthcheck=check))
        await wait_for_health(ctl, Health.UNHEALTHY, timeout=15.0)
        # checks run from 0.1s on; only those from 0.8s count, and it takes two
        assert time.monotonic() - t0 >= 0.85
        assert (await ctl.health()).message == "health check exit code 3: not ready"
        await ctl.shutdown(5.0, "")

    run(main())


def test_unhealthy_task_becomes_healthy_again_on_the_next_success(state_dir: Path) -> None:
    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        check = health_check("CMD-SHELL", "test -f ok", retries=1)
        ctl = await started(rt, make_ctx("flaky", ["sleep", "30"], healthcheck=check))
        await wait_for_health(ctl, Health.UNHEALTHY)
        (ctl.task_dir / "work" / "ok").touch()
        await wait_for_health(ctl, Health.HEALTHY)
        (ctl.task_dir / "work" / "ok").unlink()
        await wait_for_health(ctl, Health.UNHEALTHY)
        await ctl.shutdown(5.0, "")

    run(main())


def test_check_that_outlives_its_timeout_fails_and_is_killed(state_dir: Path) -> None:
    marker = f"shoal-test-{uuid.uuid4().hex}"

    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        check = health_check("CMD-SHELL", f"echo slow; sleep 5; : {marker}", timeout=0.15, retries=2)
        ctl = await started(rt, make_ctx("slow", ["sleep", "30"], healthcheck=check))
        # two checks of 0.15s, 0.1s apart, starting at 0.1s: far below sleep 5
        assert await wait_for_health(ctl, Health.UNHEALTHY) < 2.0
        assert (await ctl.health()).message == "health check timed out after 0.15s: slow"
        await ctl.shutdown(5.0, "")
        assert pgrep(marker) == set()

    run(main())


def test_check_runs_with_the_task_env_and_workdir(state_dir: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "wd"
    workdir.mkdir()
    (workdir / "marker").touch()
    check = health_check("CMD-SHELL", 'test "$FOO" = bar && test -f marker', retries=1)

    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        good = await started(
            rt,
            make_ctx("good", ["sleep", "30"], env={"FOO": "bar"}, workdir=str(workdir), healthcheck=check),
        )
        wrong_env = await started(
            rt,
            make_ctx("wrong", ["sleep", "30"], env={"FOO": "baz"}, workdir=str(workdir), healthcheck=check),
        )
        await wait_for_health(good, Health.HEALTHY)
        await wait_for_health(wrong_env, Health.UNHEALTHY)
        for ctl in (good, wrong_env):
            await ctl.shutdown(5.0, "")

    run(main())


def test_first_check_runs_a_second_after_start_even_with_the_default_interval(state_dir: Path) -> None:
    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        check = health_check("CMD", "true", interval=0)  # Docker's 30s
        ctl = await started(rt, make_ctx("default", ["sleep", "30"], healthcheck=check))
        assert 0.9 <= await wait_for_health(ctl, Health.HEALTHY) < 2.0
        await ctl.shutdown(5.0, "")

    run(main())


def test_command_that_cannot_run_fails_the_check(state_dir: Path) -> None:
    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        check = health_check("CMD", "no-such-check", retries=1)
        ctl = await started(rt, make_ctx("nocmd", ["sleep", "30"], healthcheck=check))
        await wait_for_health(ctl, Health.UNHEALTHY)
        assert (
            await ctl.health()
        ).message == 'health check: exec: "no-such-check": executable file not found in $PATH'
        await ctl.shutdown(5.0, "")

    run(main())


def test_task_without_health_check_reports_none(state_dir: Path) -> None:
    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        plain = await started(rt, make_ctx("plain", ["sleep", "30"]))
        disabled = await started(rt, make_ctx("disabled", ["sleep", "30"], healthcheck=health_check("NONE")))
        for ctl in (plain, disabled):
            assert await ctl.health() == HealthReport(Health.NONE, "")
        assert background_tasks() == set()
        for ctl in (plain, disabled):
            await ctl.shutdown(5.0, "")

    run(main())


def test_shutdown_stops_the_check_loop_and_kills_a_running_check(state_dir: Path) -> None:
    marker = f"shoal-test-{uuid.uuid4().hex}"

    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        check = health_check("CMD-SHELL", f"sleep 5; : {marker}", timeout=10)
        ctl = await started(rt, make_ctx("busy", ["sleep", "30"], healthcheck=check))
        await wait_until(lambda: pgrep(marker) != set())
        assert len(background_tasks()) > 0
        await ctl.shutdown(5.0, "")
        assert background_tasks() == set()
        assert pgrep(marker) == set()
        # health() after the fact does not start checking again
        assert (await ctl.health()).state == Health.STARTING
        assert background_tasks() == set()

    run(main())


def test_check_loop_ends_when_the_task_exits(state_dir: Path) -> None:
    async def main() -> None:
        rt = ProcessRuntime(state_dir)
        check = health_check("CMD", "true")
        ctl = await started(rt, make_ctx("short", ["sleep", "0.5"], healthcheck=check))
        await wait_for_health(ctl, Health.HEALTHY)
        assert await ctl.wait() == ExitStatus(0)
        assert background_tasks() == set()
        # the loop also ends by itself when nobody waits for the task
        lone = await started(rt, make_ctx("lone", ["sleep", "0.3"], healthcheck=check))
        await wait_until(lambda: not background_tasks())
        assert (await lone.health()).state == Health.HEALTHY
        # remove() and close() stop checking a task that still runs
        removed = await started(rt, make_ctx("removed", ["sleep", "30"], healthcheck=check))
        kept = await started(rt, make_ctx("kept", ["sleep", "30"], healthcheck=check))
        await removed.remove()
        await rt.close()
        assert background_tasks() == set()
        assert (await kept.inspect()).running
        await kept.shutdown(5.0, "")

    run(main())


def test_restarted_agent_checks_the_health_of_an_adopted_task(state_dir: Path) -> None:
    first_agent = textwrap.dedent(
        """
        import asyncio, sys
        from pathlib import Path
        from shoal.agent.runtime.base import TaskContext
        from shoal.agent.runtime.process import ProcessRuntime
        from shoal.protos import objects_pb2 as pb

        async def main():
            spec = pb.TaskSpec(container=pb.ContainerSpec(command=["sleep", "30"]))
            ctx = TaskContext(task=pb.Task(meta=pb.Meta(id="adopted"), spec=spec), node_id="n")
            ctl = ProcessRuntime(Path(sys.argv[1])).controller(ctx)
            await ctl.prepare()
            await ctl.start()

        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", first_agent, str(state_dir)], check=True, timeout=30)
    check = health_check("CMD-SHELL", "test -f ok", retries=100)

    async def main() -> None:
        ctl = ProcessRuntime(state_dir).controller(make_ctx("adopted", ["sleep", "30"], healthcheck=check))
        assert (await ctl.inspect()).running  # starts the checks
        (ctl.task_dir / "work" / "ok").touch()
        await wait_for_health(ctl, Health.HEALTHY)
        await ctl.shutdown(5.0, "")
        assert background_tasks() == set()

    run(main())


def test_a_task_with_mounts_is_rejected_not_run_without_them(tmp_path: Path) -> None:
    async def main() -> None:
        runtime = ProcessRuntime(tmp_path)
        ctx = make_ctx("t-mounts", ["sleep", "1"])
        ctx.task.spec.container.mounts.add(type="bind", source="/tmp", target="/data")
        with pytest.raises(TaskRejected, match="cannot mount"):
            await runtime.controller(ctx).prepare()

    asyncio.run(main())
