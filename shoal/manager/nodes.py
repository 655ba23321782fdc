"""What a node's state means, decided once for every component.

The scheduler, the orchestrators and the updater all ask whether a node may
get new tasks or must give its tasks up; the dispatcher and the node monitor
both declare nodes down; the listings ask which "running" tasks nobody can
vouch for any more. Each question has its answer here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from shoal.manager.store import clone, now_ns
from shoal.protos import objects_pb2 as pb


def takes_new_tasks(node: pb.Node | None) -> bool:
    """Ready and active: the scheduler may place tasks there."""
    return (
        node is not None
        and node.status.state == pb.NODE_STATE_READY
        and node.spec.availability == pb.NODE_AVAILABILITY_ACTIVE
    )


def can_run_tasks(node: pb.Node | None) -> bool:
    """False for a node that is gone, down or drained: its tasks must move
    (a paused node keeps the tasks it has, but gets no new ones)."""
    return (
        node is not None
        and node.status.state != pb.NODE_STATE_DOWN
        and node.spec.availability != pb.NODE_AVAILABILITY_DRAIN
    )


def marked_down(node: pb.Node, message: str) -> pb.Node:
    """A copy of node declared down, saying why."""
    down = clone(node)
    down.status.state = pb.NODE_STATE_DOWN
    down.status.message = message
    down.status.timestamp = now_ns()
    return down


def running_on_down_nodes(
    nodes: Mapping[str, pb.Node], tasks_by_node: Mapping[str, Mapping[str, pb.Task]]
) -> Counter[str]:
    """Per service ID, the tasks desired and last reported running on nodes
    that are down. Their status is the last their agent sent, and nobody
    will report on them until the node returns: counts of running tasks
    (``service ls``, ``info``) leave them out, as Swarm's do. Usually none:
    the orchestrators shut such tasks down at once, except for a moment, or
    while a mass failure holds a node's tasks. Costs one look at each node,
    and at the tasks of the down ones."""
    found: Counter[str] = Counter()
    for node_id, node in nodes.items():
        if node.status.state != pb.NODE_STATE_DOWN:
            continue
        for task in tasks_by_node.get(node_id, {}).values():
            if task.status.state == pb.TASK_STATE_RUNNING and task.desired_state <= pb.TASK_STATE_RUNNING:
                found[task.service_id] += 1
    return found
