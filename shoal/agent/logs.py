"""Task output on request: the agent side of ``shoal service logs``.

The manager sends a LogRequest over the session (agents open no port); for
each task named, the streamer reads the runtime's output (``LogReading``) and
sends it back in LogChunks of up to ``CHUNK_LINES`` lines or ``CHUNK_DELAY``
seconds, then a final chunk marked done (unless following, which lasts until
the manager cancels the request or the session ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from shoal.agent.runtime.base import LogReading
from shoal.agent.worker import Worker
from shoal.protos import dispatcher_pb2 as dpb

log = logging.getLogger(__name__)

CHUNK_LINES = 500
CHUNK_DELAY = 0.1

Send = Callable[[dpb.AgentMessage], None]


class LogStreamer:
    def __init__(self, worker: Worker, send: Send) -> None:
        self.worker = worker
        self.send = send
        self.requests: dict[str, list[asyncio.Task[None]]] = {}

    def start(self, req: dpb.LogRequest) -> None:
        tasks = [
            asyncio.create_task(self._stream(req, task_id), name=f"logs-{req.request_id}-{task_id}")
            for task_id in req.task_ids
        ]
        self.requests[req.request_id] = tasks

    def cancel(self, request_id: str) -> None:
        for task in self.requests.pop(request_id, []):
            task.cancel()

    async def close(self) -> None:
        for request_id in list(self.requests):
            tasks = self.requests.pop(request_id)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _chunk(self, req: dpb.LogRequest, task_id: str) -> dpb.AgentMessage:
        msg = dpb.AgentMessage()
        msg.log_chunk.request_id = req.request_id
        msg.log_chunk.task_id = task_id
        return msg

    async def _stream(self, req: dpb.LogRequest, task_id: str) -> None:
        runner = self.worker.runners.get(task_id)
        controller = runner.controller if runner is not None else None
        if controller is None or not isinstance(controller, LogReading):
            msg = self._chunk(req, task_id)
            msg.log_chunk.done = True
            msg.log_chunk.error = (
                "task not found on this node" if controller is None else "this runtime cannot read task logs"
            )
            self.send(msg)
            return
        lines: asyncio.Queue[tuple[str, bytes, int] | None] = asyncio.Queue(maxsize=10 * CHUNK_LINES)
        error = ""

        async def read() -> None:
            nonlocal error
            try:
                tail = None if req.tail < 0 else int(req.tail)
                if req.follow or tail is None:
                    async for item in controller.logs(req.follow, tail):
                        await lines.put(item)
                else:
                    # The runtime tails each stream; the user asked for the
                    # last lines of the task's output as a whole.
                    items = [item async for item in controller.logs(False, tail)]
                    for item in items[len(items) - tail :] if tail else []:
                        await lines.put(item)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("reading logs of task %s failed: %s", task_id, err)
                error = f"reading logs failed: {err}"
            await lines.put(None)

        reader = asyncio.create_task(read())
        msg = self._chunk(req, task_id)
        last_flush = time.monotonic()
        try:
            while True:
                try:
                    item = await asyncio.wait_for(lines.get(), CHUNK_DELAY)
                except TimeoutError:
                    item = ("", b"", 0)  # nothing new: flush what we have
                if item is None:
                    break
                stream, data, written = item
                if stream:
                    # Runtimes that cannot tell when a line was written get
                    # the time it was read.
                    ts = written or time.time_ns()
                    if not (req.since and ts < req.since):
                        msg.log_chunk.lines.add(stream=stream, data=data.rstrip(b"\n"), timestamp=ts)
                full = len(msg.log_chunk.lines) >= CHUNK_LINES
                due = time.monotonic() - last_flush >= CHUNK_DELAY
                if msg.log_chunk.lines and (not stream or full or due):
                    self.send(msg)
                    msg, last_flush = self._chunk(req, task_id), time.monotonic()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        msg.log_chunk.error = error
        msg.log_chunk.done = True
        self.send(msg)
