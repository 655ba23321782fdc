"""The seam between the ControlAPI (which serves ``shoal exec`` and ``shoal
commit``) and the dispatcher (which holds the nodes' sessions), so neither
imports the other; and how one manager reaches another when a node's
session is held there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import grpc

from shoal.protos import taskio_pb2 as tpb


class NodeBusy(Exception):
    """The node runs as many execs as it may (execflow.MAX_EXECS_PER_NODE)."""


class ExecChannel(Protocol):
    """One exec on a node, as its relay holds it."""

    def send(self, msg: tpb.ExecInput) -> None:
        """A client's message, on to the agent (CreditExceeded when it
        acknowledges output it was never sent)."""
        ...

    async def next(self) -> tpb.ExecOutput:
        """The next message from the agent; the last has ``exit``."""
        ...


class TaskIOSource(Protocol):
    def has_session(self, node_id: str) -> bool:
        """Whether the node's agent holds its session with this manager."""
        ...

    def open_exec(self, node_id: str, opened: tpb.ExecOpen) -> ExecChannel:
        """Start an exec on a node whose session is here (NodeNotConnected
        otherwise, NodeBusy when it runs as many as it may)."""
        ...

    def close_exec(self, channel: ExecChannel, hangup: bool) -> None:
        """The client is done; with hangup the command is hung up."""
        ...

    async def commit(self, node_id: str, request: tpb.CommitTaskRequest) -> tpb.CommitTaskResponse:
        """Ask a node whose session is here to commit a task."""
        ...


@dataclass(frozen=True)
class Peers:
    """How this manager reaches the others: the address of one by its ID
    (None: not registered, or this manager), and the credentials to dial
    with (its own certificate, which has the manager role)."""

    address: Callable[[str], Awaitable[str | None]]
    credentials: Callable[[], grpc.ChannelCredentials]
