"""How tasks (and a stack's services) are named, the same for the agent, the manager and the CLI."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


# The scope of services that name no network, and the routing mesh's
# network as swarm mode names it: both names are taken, no network may have
# them.
DEFAULT_NETWORK = "default"
INGRESS_NETWORK = "ingress"

# The label that makes a service part of a stack (Docker's, so that the
# docker CLI's stacks and shoal's are the same thing).
STACK_LABEL = "com.docker.stack.namespace"


def stack_short_name(name: str, labels: Mapping[str, str]) -> str:
    """A stack service's name within its stack (``web`` of ``shop_web``,
    which its stack's services resolve too); "" outside a stack."""
    stack = labels.get(STACK_LABEL, "")
    return name[len(stack) + 1 :] if stack and name.startswith(stack + "_") else ""
