"""What a node's state means, decided once for every component.

The scheduler, the orchestrators and the updater all ask whether a node may
get new tasks or must give its tasks up; the dispatcher and the node monitor
both declare nodes down. Each question has its answer here.
"""

from __future__ import annotations

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
