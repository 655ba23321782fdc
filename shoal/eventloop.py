"""The event loop the daemons run on: uvloop where it is installed.

uvloop (libuv under asyncio's API) makes each loop iteration, timer and
callback cheaper; a manager with a thousand sessions, or a process playing
many nodes, spends much of its time there. grpc.aio runs on it unchanged.
``SHOAL_EVENT_LOOP=asyncio`` keeps the standard loop (to compare, or to rule
uvloop out when chasing a bug).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None (the standard loop)."""
    if os.environ.get("SHOAL_EVENT_LOOP", "") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main), on uvloop when it is there."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
