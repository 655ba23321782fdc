"""Tasks for the unit tests of the agent over the scripted fake runtime
(``shoal.agent.runtime.fake``): the task a manager would send, its context,
and a runner for a test's async body with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from shoal.agent.runtime.base import TaskContext, TaskFailed
from shoal.agent.runtime.fake import TaskScript
from shoal.agent.worker import task_env
from shoal.protos import objects_pb2 as pb

T = TypeVar("T")
SECOND = 1_000_000_000

# The states an agent reports on the way to running, in order.
TO_RUNNING = [
    state
    for state in sorted(pb.TaskState.values())
    if pb.TASK_STATE_ACCEPTED <= state <= pb.TASK_STATE_RUNNING
]


def start_errors() -> dict[str, TaskScript]:
    """Scripts by task ID: "port" cannot start here (TaskRejected, as a host
    port taken), "broke" breaks while starting (TaskFailed)."""
    return {
        "port": TaskScript(start_error="port 80 already allocated"),
        "broke": TaskScript(start_error="wrapper vanished", start_error_type=TaskFailed),
    }


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one test's async body with a deadline, so a hang fails the test."""
    return asyncio.run(asyncio.wait_for(coro, 20))


def make_task(
    task_id: str,
    image: str = "example/app:1",
    healthcheck: list[str] | None = None,
    *,
    state: int = pb.TASK_STATE_ASSIGNED,
    desired: int = pb.TASK_STATE_RUNNING,
    stop_signal: str = "",
    grace: float = 1.0,
) -> pb.Task:
    """A task as the dispatcher sends it: observed `state`, desired `desired`."""
    spec = pb.TaskSpec(
        container=pb.ContainerSpec(
            image=image,
            command=["serve"],
            healthcheck=pb.HealthCheck(test=healthcheck or []),
            stop_grace_period=int(grace * SECOND),
            stop_signal=stop_signal,
        )
    )
    return pb.Task(
        meta=pb.Meta(id=task_id),
        service_id="svc-1",
        service_name="web",
        slot=1,
        spec=spec,
        desired_state=desired,  # type: ignore[arg-type]
        status=pb.TaskStatus(state=state),  # type: ignore[arg-type]
    )


def make_ctx(task_id: str, image: str = "example/app:1", healthcheck: list[str] | None = None) -> TaskContext:
    task = make_task(task_id, image, healthcheck)
    return TaskContext(task=task, node_id="node-1", env=task_env(task, "node-1"))


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the deadline")
        await asyncio.sleep(0.01)
