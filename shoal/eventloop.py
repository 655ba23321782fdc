"""The event loop each daemon runs on: uvloop for the manager, asyncio's own
for the agent.

uvloop (libuv under asyncio's API) makes each loop iteration, timer and
callback cheaper; a manager with a thousand sessions spends much of its time
there, and grpc.aio runs on it unchanged.

The agent stays on asyncio's loop because it starts children (nft, health
check commands, task processes). libuv starts a child with fork(), which runs
the pthread_atfork handlers; gRPC's handler then aborts in the child
(``ev_epoll1_linux.cc: Check failed: next_worker->state == KICKED``) and the
command never runs. asyncio's subprocess path (vfork/exec in
``_posixsubprocess``) does not run those handlers.

``SHOAL_EVENT_LOOP=asyncio`` or ``=uvloop`` overrides the choice (to compare,
or to rule uvloop out when chasing a bug).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from shoal import gcpolicy

T = TypeVar("T")


def loop_factory(*, starts_children: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None (asyncio's standard loop)."""
    chosen = os.environ.get("SHOAL_EVENT_LOOP", "")
    if chosen == "asyncio" or (starts_children and chosen != "uvloop"):
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], *, starts_children: bool) -> T:
    """asyncio.run(main) on the loop chosen above, with the collector tuned
    for a long-lived process (shoal.gcpolicy)."""
    gcpolicy.tune_for_daemon()
    with asyncio.Runner(loop_factory=loop_factory(starts_children=starts_children)) as runner:
        return runner.run(main)
