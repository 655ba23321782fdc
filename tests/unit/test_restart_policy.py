"""When an ended task is replaced, and after how long (Swarm's rules)."""

from __future__ import annotations

from shoal.manager.orchestrator.restart import decide_restart
from shoal.protos import objects_pb2 as pb

S = 1_000_000_000


def ended(state: int, attempt: int = 0, created: int = 0) -> pb.Task:
    t = pb.Task(attempt=attempt)
    t.status.state = state  # type: ignore[assignment]
    t.meta.created_at = created
    return t


def policy(
    condition: int = pb.RESTART_CONDITION_ANY, delay: int = 5 * S, max_attempts: int = 0, window: int = 0
) -> pb.RestartPolicy:
    return pb.RestartPolicy(condition=condition, delay=delay, max_attempts=max_attempts, window=window)  # type: ignore[arg-type]


def test_any_restarts_success_and_failure_after_the_delay() -> None:
    for state in (pb.TASK_STATE_COMPLETE, pb.TASK_STATE_FAILED, pb.TASK_STATE_REJECTED):
        d = decide_restart(ended(state), policy(), [], 0)
        assert d.restart and d.delay_ns == 5 * S


def test_on_failure_does_not_restart_a_completed_task() -> None:
    on_failure = policy(pb.RESTART_CONDITION_ON_FAILURE)
    assert not decide_restart(ended(pb.TASK_STATE_COMPLETE), on_failure, [], 0).restart
    assert decide_restart(ended(pb.TASK_STATE_FAILED), on_failure, [], 0).restart


def test_none_never_restarts() -> None:
    assert not decide_restart(ended(pb.TASK_STATE_FAILED), policy(pb.RESTART_CONDITION_NONE), [], 0).restart


def test_max_attempts_counts_restarts_of_the_slot() -> None:
    p = policy(max_attempts=2)
    assert decide_restart(ended(pb.TASK_STATE_FAILED, attempt=1), p, [], 0).restart
    assert not decide_restart(ended(pb.TASK_STATE_FAILED, attempt=2), p, [], 0).restart


def test_max_attempts_within_a_window_forgets_old_attempts() -> None:
    p = policy(max_attempts=2, window=60 * S)
    now = 1000 * S
    old = [ended(pb.TASK_STATE_FAILED, attempt=i, created=now - 600 * S) for i in range(1, 5)]
    assert decide_restart(ended(pb.TASK_STATE_FAILED, attempt=5, created=now - 1 * S), p, old, now).restart
    recent = [ended(pb.TASK_STATE_FAILED, attempt=i, created=now - 10 * S) for i in range(1, 3)]
    assert not decide_restart(ended(pb.TASK_STATE_FAILED, attempt=3, created=now), p, recent, now).restart
