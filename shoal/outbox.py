"""The messages waiting to go out on a session stream, in two classes.

A session carries the cluster's own traffic (registration, heartbeats and
their acknowledgements, task statuses, assignments, certificates) and bulk
data (task logs, exec input and output). Bulk may be plenty, so it must never
hold the cluster's traffic back: ``Outbox.get`` hands out every queued
control message before the next bulk one, so a heartbeat waits behind at most
the one bulk message being written. Bulk itself is bounded by its producers
(exec credit, log chunking), not here.

Both ends use it: the agent for what it sends its manager, the dispatcher for
what it sends each node. ``None`` (``end``) is a control message that tells
the reader to stop; bulk still queued then is dropped with the stream.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

M = TypeVar("M")


class Outbox(Generic[M]):
    def __init__(self) -> None:
        self._control: deque[M | None] = deque()
        self._bulk: deque[M] = deque()
        self._ready = asyncio.Event()

    def put_nowait(self, msg: M | None) -> None:
        """Queue a control message (or None: the end)."""
        self._control.append(msg)
        self._ready.set()

    async def put(self, msg: M | None) -> None:
        self.put_nowait(msg)

    def put_bulk(self, msg: M) -> None:
        """Queue a bulk message: sent once no control message waits."""
        self._bulk.append(msg)
        self._ready.set()

    def end(self) -> None:
        self.put_nowait(None)

    def qsize(self) -> int:
        return len(self._control) + len(self._bulk)

    async def get(self) -> M | None:
        """The next message: control first, then bulk, in order within each."""
        while True:
            if self._control:
                return self._control.popleft()
            if self._bulk:
                return self._bulk.popleft()
            self._ready.clear()
            await self._ready.wait()
