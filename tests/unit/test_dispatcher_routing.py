"""Which task changes the dispatcher sends to the task's node."""

from __future__ import annotations

from shoal.manager.dispatcher.session import own_report
from shoal.protos import objects_pb2 as pb


def task(state: int, desired: int = pb.TASK_STATE_RUNNING, version: int = 1) -> pb.Task:
    t = pb.Task(node_id="n1", desired_state=desired, spec_version=version)  # type: ignore[arg-type]
    t.meta.id = "t1"
    t.status.state = state  # type: ignore[assignment]
    return t


def test_a_status_the_node_reported_is_not_sent_back() -> None:
    assert own_report(task(pb.TASK_STATE_ASSIGNED), task(pb.TASK_STATE_RUNNING))
    assert own_report(task(pb.TASK_STATE_RUNNING), task(pb.TASK_STATE_FAILED))


def test_what_the_agent_acts_on_is_sent() -> None:
    # The first assignment (the scheduler's status), a desired-state change,
    # a new spec version, and a status a manager wrote (node rm).
    assert not own_report(None, task(pb.TASK_STATE_ASSIGNED))
    assert not own_report(task(pb.TASK_STATE_PENDING), task(pb.TASK_STATE_ASSIGNED))
    running = task(pb.TASK_STATE_RUNNING)
    assert not own_report(running, task(pb.TASK_STATE_RUNNING, desired=pb.TASK_STATE_SHUTDOWN))
    assert not own_report(running, task(pb.TASK_STATE_RUNNING, version=2))
    assert not own_report(running, task(pb.TASK_STATE_ORPHANED))
