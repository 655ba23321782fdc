"""The scripted fake runtime: each script field does what it says, the stop
protocol runs on it as on the real backends, adoption and discarding work
by task ID. (The worker over fake tasks: test_worker.py.)"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import pytest

from shoal.agent.runtime.base import (
    ExitStatus,
    Health,
    HealthReport,
    HealthReporting,
    LogReading,
    RuntimeState,
    TaskFailed,
    TaskRejected,
)
from shoal.agent.runtime.fake import FakeRuntime, FakeTaskController, HealthStep, TaskScript
from tests.support.fake_tasks import make_ctx, run


async def waited_on(rt: FakeRuntime, task_id: str) -> tuple[FakeTaskController, asyncio.Task[ExitStatus]]:
    """A started task and a wait() on it that has begun waiting."""
    ctl = rt.controller(make_ctx(task_id))
    await ctl.start()
    waiter = asyncio.create_task(ctl.wait())
    await asyncio.sleep(0)
    return ctl, waiter


def test_default_task_runs_until_stopped_and_exits_with_the_signal() -> None:
    async def main() -> None:
        rt = FakeRuntime()
        ctl = rt.controller(make_ctx("t1"))
        assert await ctl.inspect() == RuntimeState(exists=False, running=False)
        await ctl.prepare()
        assert await ctl.inspect() == RuntimeState(exists=True, running=False)
        pid = await ctl.start()
        assert await ctl.start() == pid  # idempotent: still one start
        state = await ctl.inspect()
        assert state.running and state.pid == pid > 0
        assert rt.running() == ["t1"]
        waiter = asyncio.create_task(ctl.wait())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await ctl.shutdown(5.0, "")
        assert await waiter == ExitStatus(128 + signal.SIGTERM)
        assert rt.tasks["t1"].signals == [signal.SIGTERM]
        assert rt.starts == {"t1": 1}
        assert await ctl.wait() == ExitStatus(143)  # again, after the fact
        assert [method for _, method in rt.calls] == [
            "inspect",
            "prepare",
            "inspect",
            "start",
            "start",
            "inspect",
            "wait",
            "shutdown",
            "wait",
        ]

    run(main())


def test_task_exits_with_its_code_after_run_for() -> None:
    async def main() -> None:
        rt = FakeRuntime({"t1": TaskScript(run_for=0.2, exit_code=3, exit_message="oops")})
        ctl = rt.controller(make_ctx("t1"))
        await ctl.prepare()
        await ctl.start()
        assert (await ctl.inspect()).running
        t0 = time.monotonic()
        assert await ctl.wait() == ExitStatus(3, "oops")
        assert 0.15 <= time.monotonic() - t0 < 2.0
        state = await ctl.inspect()
        assert (state.exists, state.running, state.exit) == (True, False, ExitStatus(3, "oops"))
        assert rt.running() == []

    run(main())


def test_task_that_exits_at_once_is_started_then_ended() -> None:
    async def main() -> None:
        rt = FakeRuntime(default=TaskScript(run_for=0))
        ctl = rt.controller(make_ctx("t1"))
        await ctl.start()  # without prepare, as the real backends allow
        assert (await ctl.inspect()).exit == ExitStatus(0)
        assert await ctl.wait() == ExitStatus(0)
        assert rt.starts == {"t1": 1}

    run(main())


def test_reject_refuses_the_task_at_prepare_and_start_with_its_message() -> None:
    async def main() -> None:
        rt = FakeRuntime({"t1": TaskScript(reject="no such image")})
        ctl = rt.controller(make_ctx("t1"))
        with pytest.raises(TaskRejected, match=r"^no such image$"):
            await ctl.prepare()
        with pytest.raises(TaskRejected, match=r"^no such image$"):
            await ctl.start()
        assert await rt.known_task_ids() == set()
        assert rt.starts == {}

    run(main())


def test_start_error_raises_the_scripts_error_type() -> None:
    async def main() -> None:
        rt = FakeRuntime(
            {
                "rejected": TaskScript(start_error="port 80 already allocated"),
                "failed": TaskScript(start_error="wrapper vanished", start_error_type=TaskFailed),
            }
        )
        rejected = rt.controller(make_ctx("rejected"))
        await rejected.prepare()
        with pytest.raises(TaskRejected, match="port 80 already allocated"):
            await rejected.start()
        failed = rt.controller(make_ctx("failed"))
        await failed.prepare()
        with pytest.raises(TaskFailed, match="wrapper vanished") as info:
            await failed.start()
        assert not isinstance(info.value, TaskRejected)
        assert rt.starts == {}
        assert (await failed.inspect()) == RuntimeState(exists=True, running=False)

    run(main())


def test_scripts_are_chosen_by_task_id_then_image_then_default() -> None:
    by_id, by_image, default = TaskScript(exit_code=1), TaskScript(exit_code=2), TaskScript(exit_code=3)
    rt = FakeRuntime({"t1": by_id, "app:2": by_image}, default=default)
    assert rt.script_for(make_ctx("t1", image="app:2")) is by_id
    assert rt.script_for(make_ctx("t2", image="app:2")) is by_image
    assert rt.script_for(make_ctx("t3", image="app:3")) is default
    assert FakeRuntime().script_for(make_ctx("t4")) == TaskScript()


def test_health_follows_the_scripted_steps() -> None:
    steps = (
        HealthStep(0.1, Health.HEALTHY),
        HealthStep(0.25, Health.UNHEALTHY, "health check exit code 1: down"),
    )

    async def main() -> None:
        rt = FakeRuntime({"t1": TaskScript(health=steps)})
        ctl = rt.controller(make_ctx("t1", healthcheck=["CMD", "true"]))
        assert isinstance(ctl, HealthReporting)
        assert not isinstance(ctl, LogReading)
        assert await ctl.health() == HealthReport(Health.NONE)  # no task yet
        await ctl.prepare()
        assert await ctl.health() == HealthReport(Health.STARTING)
        await ctl.start()
        assert await ctl.health() == HealthReport(Health.STARTING)
        await asyncio.sleep(0.15)
        assert await ctl.health() == HealthReport(Health.HEALTHY)
        await asyncio.sleep(0.15)
        assert await ctl.health() == HealthReport(Health.UNHEALTHY, "health check exit code 1: down")

    run(main())


def test_without_steps_health_is_none_or_a_check_that_always_passes() -> None:
    async def main() -> None:
        rt = FakeRuntime()
        plain = rt.controller(make_ctx("plain"))
        checked = rt.controller(make_ctx("checked", healthcheck=["CMD", "true"]))
        disabled = rt.controller(make_ctx("disabled", healthcheck=["NONE"]))
        for ctl in (plain, checked, disabled):
            await ctl.prepare()
        assert await checked.health() == HealthReport(Health.STARTING)
        for ctl in (plain, checked, disabled):
            await ctl.start()
        assert await plain.health() == HealthReport(Health.NONE)
        assert await disabled.health() == HealthReport(Health.NONE)
        assert await checked.health() == HealthReport(Health.HEALTHY)

    run(main())


def test_task_ignoring_the_stop_signal_is_killed_after_the_grace_period() -> None:
    async def main() -> None:
        rt = FakeRuntime({"t1": TaskScript(ignore_stop=True)})
        ctl = rt.controller(make_ctx("t1"))
        await ctl.start()
        t0 = time.monotonic()
        await ctl.shutdown(0.3, "SIGINT")
        assert 0.3 <= time.monotonic() - t0 < 2.0
        assert rt.tasks["t1"].signals == [signal.SIGINT, signal.SIGKILL]
        assert await ctl.wait() == ExitStatus(137)

    run(main())


def test_sigkill_as_stop_signal_kills_at_once_and_an_unknown_one_means_sigterm(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        rt = FakeRuntime(default=TaskScript(ignore_stop=True))
        killed = rt.controller(make_ctx("killed"))
        odd = rt.controller(make_ctx("odd"))
        await killed.start()
        await odd.start()
        t0 = time.monotonic()
        await killed.shutdown(30.0, "KILL")
        assert time.monotonic() - t0 < 1.0
        assert rt.tasks["killed"].signals == [signal.SIGKILL]
        rt.scripts["odd"] = TaskScript()  # a controller keeps the script it was made with
        await odd.shutdown(0.1, "SIGNOPE")
        assert rt.tasks["odd"].signals == [signal.SIGTERM, signal.SIGKILL]

    caplog.set_level(logging.INFO, logger="shoal.agent.runtime")
    run(main())
    assert "task odd: unknown stop signal 'SIGNOPE'; using SIGTERM" in caplog.text
    assert "task odd: still running 0.1s after SIGTERM; killing it" in caplog.text


def test_adopted_task_runs_on_without_a_second_start() -> None:
    async def main() -> None:
        rt = FakeRuntime()
        planted = rt.adopt("t1", TaskScript(run_for=0.5, exit_code=5), started_ago=0.3)
        assert await rt.known_task_ids() == {"t1"}
        ctl = rt.controller(make_ctx("t1"))
        assert await ctl.inspect() == RuntimeState(exists=True, running=True, pid=planted.pid)
        await ctl.start()
        assert rt.starts == {}
        t0 = time.monotonic()
        assert await ctl.wait() == ExitStatus(5)  # the adopted task's own script
        assert time.monotonic() - t0 < 0.45

    run(main())


def test_a_task_whose_run_for_passed_while_nobody_looked_reports_its_exit() -> None:
    async def main() -> None:
        rt = FakeRuntime()
        rt.adopt("t1", TaskScript(run_for=1.0, exit_code=2), started_ago=5.0)
        state = await rt.controller(make_ctx("t1")).inspect()
        assert (state.exists, state.running, state.exit) == (True, False, ExitStatus(2))

    run(main())


def test_exit_ends_a_running_task_from_outside() -> None:
    async def main() -> None:
        rt = FakeRuntime()
        ctl, waiter = await waited_on(rt, "t1")
        rt.exit("t1", 7, "told to")
        assert await waiter == ExitStatus(7, "told to")
        rt.exit("t1", 9)  # ended already: no change
        assert await ctl.wait() == ExitStatus(7, "told to")

    run(main())


def test_discard_stops_and_forgets_a_task_known_only_by_id() -> None:
    async def main() -> None:
        rt = FakeRuntime()
        record = rt.adopt("orphan")
        await rt.discard("orphan")
        assert record.signals == [signal.SIGTERM]
        assert await rt.known_task_ids() == set()
        await rt.discard("orphan")  # nothing left: no error

    run(main())


def test_remove_kills_and_forgets_and_is_idempotent() -> None:
    async def main() -> None:
        rt = FakeRuntime()
        ctl = rt.controller(make_ctx("t1"))
        await ctl.start()
        record = rt.tasks["t1"]
        await ctl.remove()
        assert record.signals == [signal.SIGKILL]
        assert await ctl.inspect() == RuntimeState(exists=False, running=False)
        await ctl.remove()
        await ctl.shutdown(1.0, "")
        with pytest.raises(TaskFailed, match="never started"):
            await ctl.wait()

    run(main())


def test_vanish_loses_every_task_and_fails_their_waiters() -> None:
    async def main() -> None:
        rt = FakeRuntime()
        ctl, waiter = await waited_on(rt, "t1")
        rt.vanish()
        with pytest.raises(TaskFailed, match="vanished"):
            await waiter
        assert await rt.known_task_ids() == set()
        assert await ctl.inspect() == RuntimeState(exists=False, running=False)

    run(main())
