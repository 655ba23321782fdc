"""The agent's step function (``shoal.agent.progress``) over the scripted
fake runtime: each row of its state table, at most one controller call per
step, and never a step back.

Walks are bounded: ``walk`` fails as soon as a step goes nowhere or the
walk takes more steps than the table has rows, so a step that loops fails
fast instead of hanging."""

from __future__ import annotations

import signal

from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.agent.progress import adopt, advance
from shoal.agent.runtime.base import ExitStatus, Health, HealthReport, TaskContext, TaskFailed, TaskRejected
from shoal.agent.runtime.fake import FakeRuntime, FakeTaskController, TaskScript
from shoal.agent.worker import task_env
from shoal.protos import objects_pb2 as pb
from tests.support.fake_tasks import TO_RUNNING, make_task, run, start_errors

S = pb.TaskState
CHECK = ["CMD", "check"]
# More steps than any walk through the table takes.
MAX_STEPS = 10


class Stepper:
    """One task over a FakeRuntime: takes steps as the worker would and
    checks each (one controller call at most, never backwards)."""

    def __init__(self, task: pb.Task, rt: FakeRuntime | None = None) -> None:
        self.task = task
        self.rt = rt or FakeRuntime()
        ctx = TaskContext(task=task, node_id="node-1", env=task_env(task, "node-1"))
        self.ctl: FakeTaskController = self.rt.controller(ctx)
        self.status = pb.TaskStatus(state=task.status.state)
        self.unassigned = False
        # The controller call each step made ("" for none), in order.
        self.steps: list[str] = []

    def _calls(self) -> list[str]:
        return [method for task_id, method in self.rt.calls if task_id == self.task.meta.id]

    def _check(self, before: pb.TaskStatus, after: pb.TaskStatus, calls_before: int) -> None:
        made = self._calls()[calls_before:]
        assert len(made) <= 1, f"one step made {made}"
        assert after.state >= before.state, f"{S.Name(before.state)} went back to {S.Name(after.state)}"
        self.steps.append(made[0] if made else "")

    async def adopt(self) -> pb.TaskStatus:
        before, calls = self.status, len(self._calls())
        self.status = await adopt(self.task, self.status, self.ctl)
        self._check(before, self.status, calls)
        return self.status

    async def step(self, seen: ExitStatus | HealthReport | None = None) -> pb.TaskStatus:
        before, calls = self.status, len(self._calls())
        self.status = await advance(self.task, self.status, self.ctl, seen, unassigned=self.unassigned)
        self._check(before, self.status, calls)
        return self.status

    async def walk(self, until: int) -> list[tuple[str, str]]:
        """Step until the task reaches `until` or later; the (state, message)
        of each step. Fails when a step goes nowhere."""
        seen: list[tuple[str, str]] = []
        for _ in range(MAX_STEPS):
            before = self.status
            after = await self.step()
            assert after != before, f"a step from {S.Name(before.state)} went nowhere"
            seen.append((S.Name(after.state), after.message))
            if after.state >= until:
                return seen
        raise AssertionError(f"not at {S.Name(until)} after {MAX_STEPS} steps: {seen}")


def test_a_task_walks_the_table_to_running_then_completes_on_exit_0() -> None:
    async def main() -> None:
        t = Stepper(make_task("t1"))
        assert await t.walk(S.TASK_STATE_RUNNING) == [
            ("TASK_STATE_ACCEPTED", "accepted"),
            ("TASK_STATE_PREPARING", "preparing"),
            ("TASK_STATE_READY", "ready"),
            ("TASK_STATE_STARTING", "starting"),
            ("TASK_STATE_RUNNING", "started"),
        ]
        assert t.steps == ["", "", "prepare", "", "start"]
        assert t.status.pid == t.rt.tasks["t1"].pid > 0
        assert await t.step() == t.status  # running, nothing seen: no change
        t.rt.exit("t1", 0)
        done = await t.step(await t.ctl.wait())
        assert (done.state, done.message, done.exit_code, done.pid) == (
            S.TASK_STATE_COMPLETE,
            "finished",
            0,
            t.rt.tasks["t1"].pid,
        )
        assert await t.step() == done  # ended: nothing moves it
        assert t.rt.starts == {"t1": 1}

    run(main())


def test_a_non_zero_exit_fails_the_task_with_its_code_and_message() -> None:
    async def main() -> None:
        t = Stepper(
            make_task("t1"), FakeRuntime({"t1": TaskScript(run_for=0, exit_code=3, exit_message="oops")})
        )
        await t.walk(S.TASK_STATE_RUNNING)
        failed = await t.step(await t.ctl.wait())
        assert (failed.state, failed.message, failed.err, failed.exit_code) == (
            S.TASK_STATE_FAILED,
            "failed",
            "exit code 3 (oops)",
            3,
        )

    run(main())


def test_a_rejected_task_is_never_started() -> None:
    async def main() -> None:
        t = Stepper(make_task("t1"), FakeRuntime({"t1": TaskScript(reject="no such image: example/app:1")}))
        assert (await t.walk(S.TASK_STATE_REJECTED))[-1] == ("TASK_STATE_REJECTED", "rejected")
        assert t.status.err == "no such image: example/app:1"
        assert t.steps[-1] == "prepare"
        assert "start" not in t.steps and t.rt.starts == {}

    run(main())


def test_a_start_error_rejects_the_task_and_a_start_that_breaks_fails_it() -> None:
    async def main() -> None:
        rt = FakeRuntime(start_errors())
        port = Stepper(make_task("port"), rt)
        await port.walk(S.TASK_STATE_REJECTED)
        assert (port.status.state, port.status.err, port.steps[-1]) == (
            S.TASK_STATE_REJECTED,
            "port 80 already allocated",
            "start",
        )
        broke = Stepper(make_task("broke"), rt)
        await broke.walk(S.TASK_STATE_FAILED)
        assert (broke.status.state, broke.status.message, broke.status.err) == (
            S.TASK_STATE_FAILED,
            "runtime error",
            "wrapper vanished",
        )
        assert rt.starts == {}

    run(main())


def test_a_health_check_holds_the_task_starting_until_healthy_and_unhealthy_stops_and_fails_it() -> None:
    async def main() -> None:
        t = Stepper(make_task("t1", healthcheck=CHECK))
        await t.walk(S.TASK_STATE_STARTING)
        started = await t.step()
        assert (started.state, started.message, started.health, t.steps[-1]) == (
            S.TASK_STATE_STARTING,
            "starting (waiting for the health check)",
            pb.HEALTH_STARTING,
            "start",
        )
        assert started.pid == t.rt.tasks["t1"].pid
        assert await t.step() == t.status  # started, nothing seen yet
        assert await t.step(HealthReport(Health.STARTING)) == t.status
        running = await t.step(HealthReport(Health.HEALTHY))
        assert (running.state, running.message, running.health) == (
            S.TASK_STATE_RUNNING,
            "started (healthy)",
            pb.HEALTH_HEALTHY,
        )
        assert await t.step(HealthReport(Health.HEALTHY, "an old failure")) == running
        failed = await t.step(HealthReport(Health.UNHEALTHY, "health check exit code 1: down"))
        assert (failed.state, failed.message, failed.err, failed.health, failed.exit_code) == (
            S.TASK_STATE_FAILED,
            "unhealthy",
            "unhealthy: health check exit code 1: down",
            pb.HEALTH_UNHEALTHY,
            0,
        )
        assert t.steps[-1] == "shutdown"
        assert t.rt.tasks["t1"].signals == [signal.SIGTERM] and t.rt.running() == []

    run(main())


def test_a_task_that_never_turns_healthy_fails_from_starting_with_a_default_reason() -> None:
    async def main() -> None:
        t = Stepper(make_task("t1", healthcheck=CHECK))
        await t.walk(S.TASK_STATE_STARTING)
        await t.step()  # started
        failed = await t.step(HealthReport(Health.UNHEALTHY))
        assert (failed.state, failed.err) == (S.TASK_STATE_FAILED, "unhealthy: health check failed")

    run(main())


def test_health_disabled_by_none_starts_the_task_running() -> None:
    async def main() -> None:
        t = Stepper(make_task("t1", healthcheck=["NONE"]))
        assert (await t.walk(S.TASK_STATE_RUNNING))[-1] == ("TASK_STATE_RUNNING", "started")

    run(main())


def test_shutdown_before_start_stops_the_walk_from_any_state_before_running() -> None:
    async def main() -> None:
        for state in (
            S.TASK_STATE_ASSIGNED,
            S.TASK_STATE_PREPARING,
            S.TASK_STATE_READY,
            S.TASK_STATE_STARTING,
        ):
            for desired in (S.TASK_STATE_SHUTDOWN, S.TASK_STATE_REMOVE):
                t = Stepper(make_task(f"t-{state}-{desired}", state=state, desired=desired))
                shut = await t.step()
                assert (shut.state, shut.message) == (S.TASK_STATE_SHUTDOWN, "shut down before it started")
                assert t.steps == [""]
                assert t.rt.starts == {}

    run(main())


def test_shutdown_during_prepare_stops_before_prepare_is_called() -> None:
    async def main() -> None:
        t = Stepper(make_task("t1"))
        await t.walk(S.TASK_STATE_PREPARING)
        t.task.desired_state = S.TASK_STATE_SHUTDOWN
        assert (await t.step()).state == S.TASK_STATE_SHUTDOWN
        assert "prepare" not in t.steps

    run(main())


def test_an_unassigned_task_is_not_started() -> None:
    async def main() -> None:
        t = Stepper(make_task("t1"))
        await t.walk(S.TASK_STATE_STARTING)
        t.unassigned = True
        assert (await t.step()).state == S.TASK_STATE_SHUTDOWN
        assert t.rt.starts == {}

    run(main())


def test_shutdown_of_a_running_task_sends_its_stop_signal_then_kills_after_the_grace_period() -> None:
    async def main() -> None:
        rt = FakeRuntime({"stubborn": TaskScript(ignore_stop=True)})
        polite = Stepper(make_task("polite", stop_signal="SIGINT"), rt)
        stubborn = Stepper(make_task("stubborn", stop_signal="SIGINT", grace=0.1), rt)
        for t in (polite, stubborn):
            await t.walk(S.TASK_STATE_RUNNING)
            t.task.desired_state = S.TASK_STATE_SHUTDOWN
            shut = await t.step()
            assert (shut.state, shut.message, t.steps[-1]) == (S.TASK_STATE_SHUTDOWN, "shutdown", "shutdown")
        assert rt.tasks["polite"].signals == [signal.SIGINT]
        assert rt.tasks["stubborn"].signals == [signal.SIGINT, signal.SIGKILL]
        assert rt.running() == []

    run(main())


def test_an_exit_seen_together_with_a_stop_reports_the_exit() -> None:
    async def main() -> None:
        t = Stepper(make_task("t1"))
        await t.walk(S.TASK_STATE_RUNNING)
        t.task.desired_state = S.TASK_STATE_SHUTDOWN
        t.rt.exit("t1", 2)
        assert (await t.step(await t.ctl.wait())).err == "exit code 2"
        assert t.steps[-1] == ""

    run(main())


def test_a_delayed_restart_is_accepted_and_held_until_desired_running() -> None:
    async def main() -> None:
        t = Stepper(make_task("t1", desired=S.TASK_STATE_READY))
        accepted = await t.step()
        assert accepted.state == S.TASK_STATE_ACCEPTED
        for _ in range(3):
            assert await t.step() is accepted  # held: no call, no change
        assert t.steps == ["", "", "", ""]
        t.task.desired_state = S.TASK_STATE_RUNNING
        await t.walk(S.TASK_STATE_RUNNING)
        assert t.rt.starts == {"t1": 1}

    run(main())


def test_a_running_task_is_adopted_without_a_second_start() -> None:
    async def main() -> None:
        rt = FakeRuntime()
        planted = rt.adopt("t1")
        t = Stepper(make_task("t1", state=S.TASK_STATE_RUNNING), rt)
        assert await t.adopt() == t.status
        assert await t.step() == t.status
        assert t.steps == ["inspect", ""]
        # Reported only as far as STARTING before the agent restarted: the
        # running task is reported started, with its own pid.
        rt.adopt("t2")
        t2 = Stepper(make_task("t2", state=S.TASK_STATE_STARTING), rt)
        started = await t2.adopt()
        assert (started.state, started.pid) == (S.TASK_STATE_RUNNING, rt.tasks["t2"].pid)
        assert await t2.step() == started
        assert rt.starts == {} and planted.running

    run(main())


def test_an_adopted_task_that_ended_meanwhile_reports_its_exit() -> None:
    async def main() -> None:
        rt = FakeRuntime()
        rt.adopt("failed", TaskScript(run_for=1.0, exit_code=2), started_ago=5.0)
        rt.adopt("done", TaskScript(run_for=1.0), started_ago=5.0)
        failed = await Stepper(make_task("failed", state=S.TASK_STATE_RUNNING), rt).adopt()
        assert (failed.state, failed.err, failed.exit_code) == (S.TASK_STATE_FAILED, "exit code 2", 2)
        done = await Stepper(make_task("done", state=S.TASK_STATE_STARTING), rt).adopt()
        assert (done.state, done.message) == (S.TASK_STATE_COMPLETE, "finished")

    run(main())


def test_an_adopted_task_that_vanished_is_failed_as_gone() -> None:
    async def main() -> None:
        t = Stepper(make_task("t1", state=S.TASK_STATE_RUNNING))
        gone = await t.adopt()
        assert (gone.state, gone.message, gone.err) == (
            S.TASK_STATE_FAILED,
            "task is gone",
            "the task's process or container disappeared",
        )

    run(main())


# ------------------------------------------------------ never a step back

AGENT_STATES = [
    S.TASK_STATE_ASSIGNED,
    *TO_RUNNING,
    S.TASK_STATE_COMPLETE,
    S.TASK_STATE_SHUTDOWN,
    S.TASK_STATE_FAILED,
    S.TASK_STATE_REJECTED,
]
DESIRED = [S.TASK_STATE_READY, S.TASK_STATE_RUNNING, S.TASK_STATE_SHUTDOWN, S.TASK_STATE_REMOVE]
scripts = st.builds(
    TaskScript,
    run_for=st.sampled_from([None, 0.0]),
    exit_code=st.sampled_from([0, 1, 137]),
    reject=st.sampled_from(["", "no such image"]),
    start_error=st.sampled_from(["", "port 80 already allocated"]),
    start_error_type=st.sampled_from([TaskRejected, TaskFailed]),
)
events = st.one_of(
    st.tuples(st.just("step"), st.none()),
    st.tuples(st.just("desired"), st.sampled_from(DESIRED)),
    st.tuples(st.just("unassign"), st.none()),
    st.tuples(st.just("exit"), st.sampled_from([0, 1, 143])),
    st.tuples(st.just("health"), st.sampled_from(list(Health))),
)


@settings(max_examples=150, deadline=None)
@given(
    script=scripts,
    checked=st.booleans(),
    running_already=st.booleans(),
    state=st.sampled_from(AGENT_STATES),
    desired=st.sampled_from(DESIRED),
    happenings=st.lists(events, max_size=14),
)
def test_no_step_moves_a_task_backwards(
    script: TaskScript,
    checked: bool,
    running_already: bool,
    state: int,
    desired: int,
    happenings: list[tuple[str, object]],
) -> None:
    async def main() -> None:
        rt = FakeRuntime({"t1": script})
        if running_already:
            rt.adopt("t1")
        task = make_task(
            "t1", healthcheck=CHECK if checked else None, state=state, desired=desired, grace=0.01
        )
        t = Stepper(task, rt)
        await t.adopt()
        for kind, value in happenings:
            if kind == "desired":
                t.task.desired_state = value  # type: ignore[assignment]
            elif kind == "unassign":
                t.unassigned = True
            elif kind == "exit":
                assert isinstance(value, int)
                await t.step(ExitStatus(value))
            elif kind == "health":
                assert isinstance(value, Health)
                await t.step(HealthReport(value, "checked"))
            else:
                await t.step()
        assert max(rt.starts.values(), default=0) <= 1  # never a second start

    run(main())
