"""Task output, relayed from a node's session to whoever asked.

``LogRelay.request`` sends a LogRequest over the node's session and yields
the chunks the agent sends back for it, until every task is done (or,
following, until the caller stops: then the agent is told to cancel).
Chunks are accepted only from the session the request went to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from shoal.ids import new_id
from shoal.manager.dispatcher.session import NodeSession
from shoal.manager.logsource import NodeNotConnected
from shoal.protos import dispatcher_pb2 as dpb


class LogRelay:
    def __init__(self) -> None:
        # Requests in flight: request ID -> (session, queue of chunks)
        self._pending: dict[str, tuple[NodeSession, asyncio.Queue[dpb.LogChunk | None]]] = {}

    def deliver(self, session: NodeSession, chunk: dpb.LogChunk) -> None:
        waiting = self._pending.get(chunk.request_id)
        if waiting is not None and waiting[0] is session:
            waiting[1].put_nowait(chunk)

    def session_ended(self, session: NodeSession) -> None:
        for owner, queue in list(self._pending.values()):
            if owner is session:
                queue.put_nowait(None)

    async def request(
        self,
        session: NodeSession,
        still_current: Callable[[], bool],
        task_ids: list[str],
        follow: bool,
        tail: int,
        since: int,
    ) -> AsyncIterator[dpb.LogChunk]:
        request_id = new_id()
        queue: asyncio.Queue[dpb.LogChunk | None] = asyncio.Queue()
        self._pending[request_id] = (session, queue)
        msg = dpb.ManagerMessage()
        msg.log_request.request_id = request_id
        msg.log_request.task_ids.extend(task_ids)
        msg.log_request.follow = follow
        msg.log_request.tail = tail
        msg.log_request.since = since
        session.send(msg)
        remaining = set(task_ids)
        try:
            while remaining:
                chunk = await queue.get()
                if chunk is None:
                    raise NodeNotConnected(session.node_id)
                if chunk.done:
                    remaining.discard(chunk.task_id)
                yield chunk
        finally:
            del self._pending[request_id]
            if remaining and still_current():
                cancel = dpb.ManagerMessage()
                cancel.log_cancel.request_id = request_id
                session.send(cancel)
