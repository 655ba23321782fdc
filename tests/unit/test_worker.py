"""The agent's worker over the scripted fake runtime: the statuses it
reports for each task's life, what it asks of the runtime, and that no
report ever moves a task backwards (checked at the end of every test)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from shoal.agent.runtime.base import Health
from shoal.agent.runtime.fake import FakeRuntime, HealthStep, TaskScript
from shoal.agent.worker import Worker
from shoal.protos import objects_pb2 as pb
from tests.support.fake_tasks import TO_RUNNING, make_task, run, start_errors, wait_until

S = pb.TaskState


class Reports:
    """The statuses a Worker reports, by task."""

    def __init__(self) -> None:
        self.seen: dict[str, list[pb.TaskStatus]] = {}

    def __call__(self, task_id: str, status: pb.TaskStatus) -> None:
        self.seen.setdefault(task_id, []).append(status)

    def last(self, task_id: str) -> pb.TaskStatus | None:
        statuses = self.seen.get(task_id)
        return statuses[-1] if statuses else None

    def states(self, task_id: str) -> list[int]:
        return [s.state for s in self.seen.get(task_id, [])]

    async def reach(self, task_id: str, state: int, timeout: float = 5.0) -> pb.TaskStatus:
        await wait_until(lambda: state in self.states(task_id), timeout)
        status = self.last(task_id)
        assert status is not None
        return status

    def assert_never_backwards(self) -> None:
        for task_id, statuses in self.seen.items():
            states = [S.Name(s.state) for s in statuses]
            assert [s.state for s in statuses] == sorted(s.state for s in statuses), (task_id, states)


@asynccontextmanager
async def node(rt: FakeRuntime) -> AsyncIterator[tuple[Worker, Reports]]:
    """A worker over `rt`; closed at the end, its reports checked."""
    reports = Reports()
    worker = Worker(rt, "node-1", reports)
    try:
        yield worker, reports
    finally:
        await worker.close()
    reports.assert_never_backwards()


def calls_of(rt: FakeRuntime, task_id: str) -> list[str]:
    return [method for tid, method in rt.calls if tid == task_id]


def test_worker_reports_a_scripted_exit_code_as_failed() -> None:
    async def main() -> None:
        rt = FakeRuntime({"t1": TaskScript(run_for=0.1, exit_code=4), "t2": TaskScript(run_for=0.1)})
        async with node(rt) as (worker, reports):
            await worker.assign([make_task("t1"), make_task("t2")], [], full=False)
            status = await reports.reach("t1", pb.TASK_STATE_FAILED)
            assert (status.err, status.exit_code) == ("exit code 4", 4)
            assert pb.TASK_STATE_RUNNING in reports.states("t1")
            done = await reports.reach("t2", pb.TASK_STATE_COMPLETE)
            assert (done.message, done.exit_code) == ("finished", 0)
            assert reports.states("t2") == [*TO_RUNNING, S.TASK_STATE_COMPLETE]

    run(main())


def test_worker_fails_an_unhealthy_task_with_the_checks_message() -> None:
    steps = (
        HealthStep(0.0, Health.STARTING),
        HealthStep(0.3, Health.UNHEALTHY, "health check exit code 1: no"),
    )

    async def main() -> None:
        rt = FakeRuntime({"t1": TaskScript(health=steps)})
        async with node(rt) as (worker, reports):
            await worker.assign([make_task("t1", healthcheck=["CMD", "check"])], [], full=False)
            status = await reports.reach("t1", pb.TASK_STATE_FAILED)
            assert status.err == "unhealthy: health check exit code 1: no"
            assert status.health == pb.HEALTH_UNHEALTHY
            assert pb.TASK_STATE_RUNNING not in reports.states("t1")
            assert rt.tasks["t1"].signals == [signal.SIGTERM]  # the worker stopped it

    run(main())


def test_worker_replaces_health_running_then_unhealthy_by_stopping_and_failing_it() -> None:
    steps = (
        HealthStep(0.0, Health.STARTING),
        HealthStep(0.1, Health.HEALTHY),
        HealthStep(0.4, Health.UNHEALTHY, "health check exit code 1: down"),
    )

    async def main() -> None:
        rt = FakeRuntime({"t1": TaskScript(health=steps)})
        async with node(rt) as (worker, reports):
            await worker.assign([make_task("t1", healthcheck=["CMD", "check"])], [], full=False)
            failed = await reports.reach("t1", pb.TASK_STATE_FAILED)
            assert failed.err == "unhealthy: health check exit code 1: down"
            healths = [(S.Name(s.state), s.health) for s in reports.seen["t1"] if s.health]
            assert healths == [
                ("TASK_STATE_STARTING", pb.HEALTH_STARTING),
                ("TASK_STATE_RUNNING", pb.HEALTH_HEALTHY),
                ("TASK_STATE_FAILED", pb.HEALTH_UNHEALTHY),
            ]
            assert rt.running() == []

    run(main())


def test_worker_runs_a_healthy_task_and_rejects_a_rejected_one() -> None:
    async def main() -> None:
        rt = FakeRuntime({"bad": TaskScript(reject="no such image: example/app:1")})
        async with node(rt) as (worker, reports):
            tasks = [make_task("good", healthcheck=["CMD", "check"]), make_task("bad")]
            await worker.assign(tasks, [], full=False)
            running = await reports.reach("good", pb.TASK_STATE_RUNNING)
            assert (running.message, running.health) == ("started (healthy)", pb.HEALTH_HEALTHY)
            rejected = await reports.reach("bad", pb.TASK_STATE_REJECTED)
            assert rejected.err == "no such image: example/app:1"

    run(main())


def test_worker_adopts_a_running_task_and_discards_one_it_was_not_assigned() -> None:
    async def main() -> None:
        rt = FakeRuntime()
        rt.adopt("kept")
        half = rt.adopt("half")
        stray = rt.adopt("stray")
        async with node(rt) as (worker, reports):
            kept = make_task("kept", state=pb.TASK_STATE_RUNNING)
            # Its start was never reported: the agent died right after it.
            half_started = make_task("half", state=pb.TASK_STATE_STARTING)
            await worker.assign([kept, half_started], [], full=True)
            await wait_until(lambda: "stray" not in rt.tasks)
            assert stray.signals == [signal.SIGTERM]
            assert sorted(rt.running()) == ["half", "kept"]
            running = await reports.reach("half", pb.TASK_STATE_RUNNING)
            assert (running.message, running.pid) == ("started", half.pid)
            assert rt.starts == {}
            assert "start" not in calls_of(rt, "kept") + calls_of(rt, "half")
            assert reports.states("kept") == []  # nothing new to say
            rt.exit("kept", 3)  # the adopted task is watched as any other
            assert (await reports.reach("kept", pb.TASK_STATE_FAILED)).err == "exit code 3"

    run(main())


def test_worker_stops_a_task_desired_shutdown_and_removes_it_once_unassigned() -> None:
    async def main() -> None:
        rt = FakeRuntime()
        async with node(rt) as (worker, reports):
            task = make_task("t1", stop_signal="SIGINT")
            await worker.assign([task], [], full=False)
            running = await reports.reach("t1", pb.TASK_STATE_RUNNING)
            task.desired_state = pb.TASK_STATE_SHUTDOWN
            task.status.CopyFrom(running)
            await worker.assign([task], [], full=False)
            shut = await reports.reach("t1", pb.TASK_STATE_SHUTDOWN)
            assert shut.message == "shutdown"
            assert rt.tasks["t1"].signals == [signal.SIGINT]
            assert "t1" in rt.tasks  # kept (its logs) until unassigned
            await worker.assign([], ["t1"], full=False)
            await wait_until(lambda: "t1" not in rt.tasks)
            assert calls_of(rt, "t1")[-1] == "remove"

    run(main())


def test_worker_holds_a_delayed_restart_in_accepted_until_desired_running() -> None:
    async def main() -> None:
        rt = FakeRuntime()
        async with node(rt) as (worker, reports):
            task = make_task("t1", desired=pb.TASK_STATE_READY)
            await worker.assign([task], [], full=False)
            await reports.reach("t1", pb.TASK_STATE_ACCEPTED)
            await asyncio.sleep(0.1)  # time to go wrong, were it to prepare early
            assert calls_of(rt, "t1") == ["inspect"]
            assert reports.states("t1") == [pb.TASK_STATE_ACCEPTED]
            task.desired_state = pb.TASK_STATE_RUNNING
            task.status.state = pb.TASK_STATE_ACCEPTED
            await worker.assign([task], [], full=False)
            await reports.reach("t1", pb.TASK_STATE_RUNNING)
            assert rt.starts == {"t1": 1}

    run(main())


def test_worker_stops_and_removes_a_task_that_is_unassigned() -> None:
    async def main() -> None:
        rt = FakeRuntime()
        async with node(rt) as (worker, reports):
            await worker.assign([make_task("t1"), make_task("t2")], [], full=False)
            await reports.reach("t1", pb.TASK_STATE_RUNNING)
            await reports.reach("t2", pb.TASK_STATE_RUNNING)
            record = rt.tasks["t1"]
            await worker.assign([make_task("t2", state=pb.TASK_STATE_RUNNING)], [], full=True)
            shut = await reports.reach("t1", pb.TASK_STATE_SHUTDOWN)
            assert shut.message == "shutdown"
            await wait_until(lambda: "t1" not in rt.tasks)
            assert record.signals == [signal.SIGTERM]
            assert calls_of(rt, "t1")[-2:] == ["shutdown", "remove"]
            assert rt.running() == ["t2"]

    run(main())


def test_worker_rejects_a_task_whose_start_is_refused_and_fails_one_whose_start_breaks() -> None:
    async def main() -> None:
        rt = FakeRuntime(start_errors())
        async with node(rt) as (worker, reports):
            await worker.assign([make_task("port"), make_task("broke")], [], full=False)
            rejected = await reports.reach("port", pb.TASK_STATE_REJECTED)
            assert (rejected.message, rejected.err) == ("rejected", "port 80 already allocated")
            failed = await reports.reach("broke", pb.TASK_STATE_FAILED)
            assert (failed.message, failed.err) == ("runtime error", "wrapper vanished")
            assert S.TASK_STATE_RUNNING not in reports.states("port") + reports.states("broke")
            assert rt.starts == {}

    run(main())


def test_worker_resends_its_last_report_when_the_manager_missed_it() -> None:
    async def main() -> None:
        rt = FakeRuntime()
        async with node(rt) as (worker, reports):
            task = make_task("t1")
            await worker.assign([task], [], full=False)
            running = await reports.reach("t1", pb.TASK_STATE_RUNNING)
            sent = len(reports.seen["t1"])
            # A session broke: the manager still shows the task as assigned.
            await worker.assign([task], [], full=True)
            assert reports.seen["t1"][sent:] == [running]
            assert rt.starts == {"t1": 1}

    run(main())
