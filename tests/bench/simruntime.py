"""The benchmarks' simulated runtime: shoal's FakeRuntime, tasks "run" in memory.

``shoal.agent.runtime.fake`` implements the agent's Runtime seam with no
processes at all, so one machine can play a thousand nodes with the real
agent code (session, worker, status batching). The benchmarks use its
default script: a task runs at once and until it is stopped (exit 143 on
SIGTERM). A test ends a task with ``exit(task_id, code)``, counts starts in
``starts`` (no task may run twice), and ``vanish()`` loses a node's tasks as
a host that lost power would.
"""

from __future__ import annotations

from shoal.agent.runtime.fake import FakeRuntime, TaskScript


class SimRuntime(FakeRuntime):
    """A FakeRuntime whose every task follows the default script."""

    name = "sim"

    def __init__(self) -> None:
        super().__init__(default=TaskScript())
