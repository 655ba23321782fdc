"""How tasks are named, the same for the agent, the manager and the CLI."""

from __future__ import annotations

from shoal.protos import objects_pb2 as pb


def task_name(task: pb.Task) -> str:
    """Docker's task name: service.slot.id (global tasks: service.node.id)."""
    middle = str(task.slot) if task.slot else task.node_id
    return f"{task.service_name}.{middle}.{task.meta.id}"
