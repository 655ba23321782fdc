"""The seam between the ControlAPI (which serves ``service logs``) and the
dispatcher (which holds agent sessions), so neither imports the other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from shoal.protos import dispatcher_pb2 as dpb


class NodeNotConnected(Exception):
    """The node has no session with this manager (down, or on another)."""


class LogSource(Protocol):
    def has_session(self, node_id: str) -> bool:
        """Whether the node's agent holds its session with this manager."""
        ...

    def request_logs(
        self, node_id: str, task_ids: list[str], follow: bool, tail: int, since: int
    ) -> AsyncIterator[dpb.LogChunk]:
        """The output of some tasks of a connected node, as chunks."""
        ...
