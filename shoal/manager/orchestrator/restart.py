"""The restart policy: should an ended task be replaced, and after how long.

Pure functions of the task, its service's policy and the slot's recent
history, so that the rule is written once and tested without a cluster.
Swarm's defaults apply when the service was created: condition ``any``,
delay 5 s, unlimited attempts, unbounded window.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shoal.protos import objects_pb2 as pb


@dataclass(frozen=True)
class RestartDecision:
    restart: bool
    delay_ns: int = 0
    reason: str = ""


def decide_restart(
    task: pb.Task, policy: pb.RestartPolicy, slot_history: Iterable[pb.Task], now_ns: int
) -> RestartDecision:
    """Whether to replace ``task``, which has ended while desired running.

    ``slot_history`` holds the other tasks of the same slot (kept history),
    used to count attempts inside ``policy.window``.
    """
    condition = policy.condition
    if condition == pb.RESTART_CONDITION_NONE:
        return RestartDecision(False, reason="restart condition is none")
    succeeded = task.status.state == pb.TASK_STATE_COMPLETE
    if condition == pb.RESTART_CONDITION_ON_FAILURE and succeeded:
        return RestartDecision(False, reason="task completed and restart condition is on-failure")
    if policy.max_attempts > 0:
        if policy.window > 0:
            since = now_ns - policy.window
            attempts = sum(1 for t in slot_history if t.meta.created_at >= since and t.attempt > 0)
            attempts += 1 if task.attempt > 0 and task.meta.created_at >= since else 0
        else:
            attempts = task.attempt
        if attempts >= policy.max_attempts:
            return RestartDecision(False, reason=f"restart attempts exhausted ({policy.max_attempts})")
    return RestartDecision(True, delay_ns=max(0, policy.delay))
