"""Placement: which node each pending task of one service version goes to.

A pure function over a snapshot (``NodeInfo`` per node), so it is tested
without a cluster and timed without etcd. Filtering (``filters.Pipeline``)
decides which nodes may take a task; ranking here decides which of them does:

- spread the service's tasks evenly; ties go to the node with the fewest tasks
  overall (SwarmKit's rule);
- with ``--placement-pref spread=node.labels.KEY`` (repeatable) the nodes form a
  tree, one level per preference, grouped by the label's value (nodes without
  the label form their own group); tasks are spread over the groups of the
  first level, then within each group over the next level, and so on.

Each level is a heap keyed by (tasks of this service, tasks overall), so
placing a task costs O(depth × log nodes), not a scan of every node: a batch
of 10,000 tasks on 1,000 nodes is a few hundred thousand heap operations.
Filters are re-checked when a node is picked, because placing tasks changes
its reservations, ports and per-node count; a node that fails is dropped from
the tree for this batch.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from shoal.manager.scheduler.filters import NodeInfo, Pipeline
from shoal.rules.constraints import node_label


@dataclass
class PlacementResult:
    assigned: dict[str, str] = field(default_factory=dict)  # task ID -> node ID
    unplaced: list[str] = field(default_factory=list)
    reason: str = ""


class _Branch:
    """One group of the preference tree: either leaves (nodes) or branches."""

    def __init__(self, service_id: str) -> None:
        self.service_id = service_id
        self.count = 0  # tasks of the service under this branch
        self.total = 0  # tasks overall under this branch
        self.heap: list[tuple[int, int, str, _Branch | NodeInfo]] = []

    def push(self, key: str, item: _Branch | NodeInfo) -> None:
        entry: tuple[int, int, str, _Branch | NodeInfo]
        if isinstance(item, NodeInfo):
            entry = (item.tasks_by_service[self.service_id], item.total_tasks, key, item)
        else:
            entry = (item.count, item.total, key, item)
        heapq.heappush(self.heap, entry)

    def pick(self, pipeline: Pipeline, land: Callable[[NodeInfo], None]) -> NodeInfo | None:
        """Choose a node for one task and ``land`` it there (which updates the
        node's counts), or return None when no node under this branch fits."""
        while self.heap:
            _, _, key, item = heapq.heappop(self.heap)
            if isinstance(item, NodeInfo):
                if pipeline.check(item):
                    land(item)
                    self.push(key, item)  # re-keyed with its new counts
                    return item
                continue
            chosen = item.pick(pipeline, land)
            if chosen is not None:
                item.count += 1
                item.total += 1
                self.push(key, item)
                return chosen
        return None


def _build_tree(service_id: str, nodes: list[NodeInfo], prefs: list[str]) -> _Branch:
    root = _Branch(service_id)
    if not prefs:
        for info in nodes:
            root.push(info.id, info)
        return root
    label = prefs[0]
    groups: dict[str, list[NodeInfo]] = {}
    for info in nodes:
        value = node_label(info.node, label)
        groups.setdefault("" if value is None else "=" + value, []).append(info)
    for value, members in groups.items():
        child = _build_tree(service_id, members, prefs[1:])
        child.count = sum(m.tasks_by_service[service_id] for m in members)
        child.total = sum(m.total_tasks for m in members)
        root.push(value, child)
    return root


def spread_label(pref: str) -> str:
    """``node.labels.zone`` -> ``zone`` (validated by the ControlAPI)."""
    return pref[len("node.labels.") :]


def place(
    service_id: str,
    task_ids: list[str],
    nodes: list[NodeInfo],
    pipeline: Pipeline,
    preferences: list[str],
    land: Callable[[NodeInfo, str], None],
) -> PlacementResult:
    """Choose nodes for ``task_ids`` (all of one service version).

    ``land(info, task_id)`` must record the task on the node (``NodeInfo.add``)
    so that the next pick sees its counts, reservations and ports.
    """
    result = PlacementResult()
    tree = _build_tree(service_id, nodes, [spread_label(p) for p in preferences])
    for i, task_id in enumerate(task_ids):
        info = tree.pick(pipeline, lambda n, t=task_id: land(n, t))  # type: ignore[misc]
        if info is None:
            result.unplaced = task_ids[i:]
            result.reason = pipeline.explain()
            break
        result.assigned[task_id] = info.id
    return result
