"""The user's terminal during ``shoal exec -t`` and ``shoal run -t``.

``raw_terminal`` puts stdin's terminal in raw mode (every key, Ctrl-C and
Ctrl-D included, goes to the remote command, which has a terminal of its
own that interprets them) and restores it however the block ends: an
exception, SIGTERM or SIGHUP (turned into SystemExit first, so that the
restore runs). ``on_resize`` calls back with the window's new size on each
SIGWINCH.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from types import FrameType


def is_terminal(fd: int) -> bool:
    return os.isatty(fd)


def window_size(fd: int | None = None) -> tuple[int, int]:
    """(rows, columns) of the terminal on fd (stdout, else stdin); (0, 0)
    when there is none."""
    for candidate in [fd] if fd is not None else [sys.stdout.fileno(), sys.stdin.fileno()]:
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(candidate)
            return size.lines, size.columns
    return 0, 0


def _exit_on(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """stdin's terminal in raw mode for the block; restored on the way out."""
    saved = termios.tcgetattr(fd)
    previous = {sig: signal.signal(sig, _exit_on) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def on_resize(callback: Callable[[int, int], None]) -> Iterator[None]:
    """callback(rows, columns) whenever the window changes size."""

    def handler(signum: int, frame: FrameType | None) -> None:
        rows, cols = window_size()
        if rows and cols:
            callback(rows, cols)

    previous = signal.signal(signal.SIGWINCH, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)
