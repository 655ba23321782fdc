"""A task's output, read back from its ``stdout.log`` and ``stderr.log``.

The wrapper points the task's stdout and stderr at two files in the task's
directory (appended to, never rotated). ``read_logs`` serves them as
``LogLine``s: one file after the other, then, when following, whatever either
file gains, polled, until the task has ended and all it wrote was read (as
the engine ends a followed container's log when it stops). The files hold
no per-line times, so a line's time is an estimate (see ``read_logs``);
``tail_offset`` and ``read_lines`` are the file arithmetic beneath, with no
asyncio in them.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from shoal.agent.runtime.base import LogLine, TaskFailed
from shoal.agent.runtime.process.handle import running
from shoal.agent.runtime.process.taskdir import TaskDir

# read_logs(follow=True) re-reads the files this often (polling is simpler
# than inotify and cheap at this rate).
LOG_POLL_INTERVAL = 0.2
_LOG_CHUNK = 1 << 20
_TAIL_BLOCK = 8192
STREAMS = ("stdout", "stderr")


def mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def tail_offset(path: Path, lines: int) -> int:
    """The byte offset where the last `lines` lines of the file begin. It reads
    backwards in blocks, so a long log costs only what is shown."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return 0
    with f:
        size = f.seek(0, os.SEEK_END)
        if lines <= 0:
            return size
        end = size
        if size:
            f.seek(size - 1)
            if f.read(1) == b"\n":  # the final newline ends the last line
                end = size - 1
        found = 0
        pos = end
        while pos > 0:
            start = max(0, pos - _TAIL_BLOCK)
            f.seek(start)
            block = f.read(pos - start)
            idx = len(block)
            while (idx := block.rfind(b"\n", 0, idx)) >= 0:
                found += 1
                if found == lines:
                    return start + idx + 1
            pos = start
        return 0


def read_lines(path: Path, offset: int, partial: bool) -> tuple[list[bytes], int]:
    """Lines from offset on (at most about a chunk), and the offset after them.
    An unterminated last line is kept back unless `partial` is set, because
    the writer may still be writing it."""
    try:
        with path.open("rb") as f:
            if f.seek(0, os.SEEK_END) < offset:  # truncated: start over
                offset = 0
            f.seek(offset)
            data = f.read(_LOG_CHUNK)
    except FileNotFoundError:
        return [], offset
    lines = data.splitlines(keepends=True)
    if lines and not lines[-1].endswith(b"\n"):
        at_eof = len(data) < _LOG_CHUNK
        # At EOF the writer may be mid-line. Before EOF, read on from the
        # line's start, unless the line alone fills the chunk: then pass it
        # on in pieces rather than never.
        if (at_eof and not partial) or (not at_eof and len(lines) > 1):
            lines.pop()
    return lines, offset + sum(len(line) for line in lines)


async def read_logs(task_dir: Path, follow: bool, tail: int | None) -> AsyncIterator[LogLine]:
    """Yield the task's lines with the newline kept: one stream after the
    other, the one written to last at the end. The files hold no timestamps,
    so written_at is the file's last change for what was already there (and
    tail counts each file on its own, the last line excepted); lines that
    appear while following are stamped when read, within LOG_POLL_INTERVAL
    of being written."""
    offsets: dict[str, int] = {}
    # With no per-line times, the file written to last goes last, so that
    # the final line (what `--tail 1` shows) is the task's last word.
    order = sorted(STREAMS, key=lambda s: mtime_ns(task_dir / f"{s}.log"))
    for stream in order:
        path = task_dir / f"{stream}.log"
        offset = 0 if tail is None else tail_offset(path, tail)
        while True:
            lines, new_offset = read_lines(path, offset, partial=not follow)
            # No per-line times on disk: a line already there is stamped
            # with its file's last change, an upper bound of when it was
            # written (so --since errs on the side of showing it).
            written = mtime_ns(path)
            for line in lines:
                yield LogLine(stream, line, written)
            if new_offset == offset:
                break
            offset = new_offset
            await asyncio.sleep(0)  # let the loop breathe between chunks
        offsets[stream] = offset
    while follow:
        # Looked at before reading: once the task has ended, what this read
        # finds is all there is, and then the output has ended too.
        ended = task_ended(task_dir)
        got = False
        for stream in STREAMS:
            lines, offsets[stream] = read_lines(task_dir / f"{stream}.log", offsets[stream], partial=ended)
            now = time.time_ns()
            for line in lines:
                yield LogLine(stream, line, now)
            got = got or bool(lines)
        if ended and not got:
            return
        if not got:
            await asyncio.sleep(LOG_POLL_INTERVAL)


def task_ended(task_dir: Path) -> bool:
    """Whether the task has run and ended (its wrapper recorded how, or is
    gone), or its directory is gone: then its output is complete. A task
    not yet started has not ended."""
    if (task_dir / "exit_code").exists() or not task_dir.is_dir():
        return True
    try:
        handle = TaskDir(task_dir).handle()
    except TaskFailed:
        return True
    return handle is not None and not running(handle)
