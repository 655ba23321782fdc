"""A container's log, read through the engine's log endpoint.

The SDK's log stream blocks for as long as it is followed, so each stream
(stdout, stderr) gets a thread of its own (``_LogPump``) rather than a slot in
the engine's pool. The threads hand lines, each with the engine's RFC 3339
timestamp, to asyncio queues (bounded: a slow consumer holds the threads back
instead of filling memory); ``container_logs`` takes them from there, merges
the two streams by timestamp when not following, and yields ``LogLine``s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import threading
from collections.abc import AsyncGenerator
from typing import Any

from shoal.agent.runtime.base import LogLine
from shoal.agent.runtime.docker.engine import translate

# How many log lines may wait for a slow consumer before the log threads
# stop reading (back pressure instead of unbounded memory).
LOG_QUEUE_SIZE = 1024
# A log thread checks this often whether its consumer has gone.
_LOG_STOP_CHECK = 0.5
_STREAMS = ("stdout", "stderr")

# A line of one stream: (stream, timestamp, line). The engine's RFC 3339
# timestamps have a fixed width, so they compare as bytes.
_Stamped = tuple[str, bytes, bytes]
_LogItem = _Stamped | BaseException | None  # None: the stream ended


class _LogPump:
    """Reads one stream of a container's log in a thread of its own (it
    blocks for as long as the log is followed) and hands its lines to an
    asyncio.Queue, waiting while the queue is full."""

    def __init__(
        self,
        api: Any,
        container_id: str,
        stream: str,
        follow: bool,
        tail: int | None,
        queue: asyncio.Queue[_LogItem],
    ) -> None:
        self._api = api
        self._container_id = container_id
        self._stream_name = stream
        self._follow = follow
        self._tail = tail
        self._queue = queue
        self._loop = asyncio.get_running_loop()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=f"shoal-docker-logs-{stream}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Make the thread end soon: closing the response's socket wakes a
        read that blocks while a followed container is quiet."""
        self._stopped.set()
        with self._lock:
            response, self._response = self._response, None
        if response is not None:
            with contextlib.suppress(Exception):
                response.close()

    def _run(self) -> None:
        try:
            self._read()
        except BaseException as err:
            if not self._stopped.is_set():
                self._put(err)
        finally:
            self._put(None)

    def _read(self) -> None:
        response = self._api.logs(
            self._container_id,
            stdout=self._stream_name == "stdout",
            stderr=self._stream_name == "stderr",
            stream=True,
            follow=self._follow,
            tail="all" if self._tail is None else max(self._tail, 0),
            timestamps=True,
        )
        with self._lock:
            if self._stopped.is_set():
                response.close()
                return
            self._response = response
        pending = bytearray()
        since = b""  # the timestamp of the message the pending line began in
        # Each frame is one log message with its timestamp; a line longer than
        # the log driver's buffer (16 KiB) comes in several.
        for frame in response:
            if self._stopped.is_set():
                return
            stamp, _, text = bytes(frame).partition(b" ")
            if not pending:
                since = stamp
            pending += text
            while (end := pending.find(b"\n")) >= 0:
                self._put((self._stream_name, since, bytes(pending[: end + 1])))
                del pending[: end + 1]
                since = stamp
        if pending:
            self._put((self._stream_name, since, bytes(pending)))

    def _put(self, item: _LogItem) -> None:
        try:
            put = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
        except RuntimeError:  # the loop is closed: nobody reads any more
            self._stopped.set()
            return
        while True:
            try:
                put.result(timeout=_LOG_STOP_CHECK)
                return
            except concurrent.futures.TimeoutError:
                if self._stopped.is_set():
                    put.cancel()
                    return
            except (concurrent.futures.CancelledError, RuntimeError):
                return


async def _next_line(queue: asyncio.Queue[_LogItem]) -> _Stamped | None:
    item = await queue.get()
    if isinstance(item, BaseException):
        err = translate(item, "reading the logs")
        if err is item:
            raise item
        raise err from item
    return item


def _stamp_ns(stamp: bytes) -> int:
    """The engine's RFC 3339 timestamp (nanosecond digits) as Unix ns; 0 if
    it cannot be read."""
    text = stamp.decode(errors="replace").rstrip("Z")
    whole, _, fraction = text.partition(".")
    try:
        seconds = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC).timestamp()
    except ValueError:
        return 0
    return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9] or 0)


def _earliest(heads: list[_Stamped | None]) -> int | None:
    """The index of the line logged first (stdout first on a tie); None when
    every stream has ended."""
    best: int | None = None
    for i, head in enumerate(heads):
        if head is None:
            continue
        current = heads[best] if best is not None else None
        if current is None or head[1] < current[1]:
            best = i
    return best


async def container_logs(
    api: Any, container_id: str, follow: bool, tail: int | None
) -> AsyncGenerator[LogLine, None]:
    """Yield the container's lines with the newline kept and the engine's
    timestamp of each (Unix ns). tail keeps the last lines of the log, both
    streams counted together (as `docker logs --tail`). The engine serves
    each stream separately: without follow they are merged back in the order
    the engine logged them; with follow, lines come as they arrive until the
    container stops or the consumer stops iterating (close the generator so
    that its threads end at once)."""
    shared: asyncio.Queue[_LogItem] = asyncio.Queue(LOG_QUEUE_SIZE)
    queues = [shared, shared] if follow else [asyncio.Queue(LOG_QUEUE_SIZE) for _ in _STREAMS]
    pumps = [
        _LogPump(api, container_id, stream, follow, tail, queue)
        for stream, queue in zip(_STREAMS, queues, strict=True)
    ]
    for pump in pumps:
        pump.start()
    try:
        if follow:
            ended = 0
            while ended < len(pumps):
                line = await _next_line(shared)
                if line is None:
                    ended += 1
                else:
                    yield LogLine(line[0], line[2], _stamp_ns(line[1]))
        else:
            heads = [await _next_line(queue) for queue in queues]
            while (first := _earliest(heads)) is not None:
                head = heads[first]
                assert head is not None
                yield LogLine(head[0], head[2], _stamp_ns(head[1]))
                heads[first] = await _next_line(queues[first])
    finally:
        for pump in pumps:
            pump.stop()
