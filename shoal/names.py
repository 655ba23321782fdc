"""How tasks are named, the same for the agent, the manager and the CLI."""

from __future__ import annotations

from collections.abc import Iterable

from shoal.protos import objects_pb2 as pb


def task_name(task: pb.Task) -> str:
    """Docker's task name: service.slot.id (global tasks: service.node.id)."""
    middle = str(task.slot) if task.slot else task.node_id
    return f"{task.service_name}.{middle}.{task.meta.id}"


def slot_name(task: pb.Task) -> str:
    """How `service ps` names a task: service.slot (global: service.node)."""
    return f"{task.service_name}.{task.slot or task.node_id}"


def command_line(argv: Iterable[str], limit: int = 200) -> str:
    """A command as a log line shows it: shell-quoted, cut when long."""
    import shlex

    text = shlex.join(argv)
    return text if len(text) <= limit else text[: limit - 1] + "…"
