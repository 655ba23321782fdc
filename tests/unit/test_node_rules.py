"""What a node's state means for its tasks (``shoal.manager.nodes``)."""

from __future__ import annotations

from shoal.manager.nodes import running_on_down_nodes
from shoal.protos import objects_pb2 as pb

RUNNING = pb.TASK_STATE_RUNNING


def node(node_id: str, state: int) -> pb.Node:
    n = pb.Node(status=pb.NodeStatus(state=state))  # type: ignore[arg-type]
    n.meta.id = node_id
    return n


def task(task_id: str, service: str, node_id: str, state: int = RUNNING, desired: int = RUNNING) -> pb.Task:
    t = pb.Task(service_id=service, node_id=node_id, desired_state=desired)  # type: ignore[arg-type]
    t.meta.id = task_id
    t.status.state = state  # type: ignore[assignment]
    return t


def test_only_tasks_still_meant_to_run_on_a_down_node_go_uncounted() -> None:
    nodes = {"n1": node("n1", pb.NODE_STATE_DOWN), "n2": node("n2", pb.NODE_STATE_READY)}
    tasks = [
        task("held", "web", "n1"),  # a mass failure holds it: last said running
        task("held-api", "api", "n1"),
        task("replaced", "web", "n1", desired=pb.TASK_STATE_SHUTDOWN),  # not counted anyway
        task("starting", "web", "n1", state=pb.TASK_STATE_STARTING),  # never was running
        task("live", "web", "n2"),
    ]
    by_node: dict[str, dict[str, pb.Task]] = {}
    for t in tasks:
        by_node.setdefault(t.node_id, {})[t.meta.id] = t
    assert running_on_down_nodes(nodes, by_node) == {"web": 1, "api": 1}
    nodes["n1"] = node("n1", pb.NODE_STATE_READY)  # back: its agent reports for them again
    assert running_on_down_nodes(nodes, by_node) == {}
