"""The process backend against real processes: exit codes, stopping, adoption
after an agent restart, what the task sees, and its logs.

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
) -> TaskContext:
    spec = pb.TaskSpec(
        container=pb.ContainerSpec(
            image="example/image:1", command=command, args=args or [], workdir=workdir
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
        assert time.monotonic() - t0 < 2.0
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
        assert time.monotonic() - t0 < 2.0
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
        assert 0.5 <= elapsed < 5.0
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
        await ctl.start()
        assert pgrep(marker) == {pid}

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
        tasks = [await started(rt, make_ctx(f"t{i}", argv)) for i in range(2)]
        pids = {(await ctl.inspect()).pid for ctl in tasks}
        assert len(pids) == 2
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
        return [item async for item in ctl.logs(follow=False, tail=tail)]

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
            async for item in ctl.logs(follow=True, tail=None):
                seen.append(item)
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
