"""The one shape every manager control loop has (STYLE habit 2).

A component is built with the view and the store, and runs as
``await component.run()``: it takes stock of the whole view once, then reacts
to batches of watch events. Events are debounced (collected for ``DEBOUNCE``
seconds) so that a burst of a thousand task updates becomes one pass, and a
component that asks for it is also woken at a deadline (restart delays).

The leader starts its components together in an ``asyncio.TaskGroup`` and
cancels them when it loses leadership; a component that raises is logged and
restarted by ``supervise``, never silently lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import tenacity

from shoal.manager.store import Event, LeadershipLost, Store, StoreError, Subscription, View

log = logging.getLogger(__name__)

# Collect events this long before a pass: SwarmKit's scheduler uses 50 ms.
DEBOUNCE = 0.05


class LeaderLoop(Protocol):
    """What the leader runs: a named loop (the components below, the node
    monitor, the compactor). ``run`` returns only when cancelled or failed."""

    name: str

    async def run(self) -> None: ...


class Component:
    """Base of the leader's control loops: subclasses implement ``reconcile_all``
    and ``handle``; they may set ``self.wake_at`` (monotonic seconds)."""

    name = "component"
    kinds: tuple[str, ...] = ("nodes", "services", "tasks")

    def __init__(self, view: View, store: Store) -> None:
        self.view = view
        self.store = store
        self.wake_at: float | None = None
        self._sub: Subscription | None = None

    async def reconcile_all(self) -> None:
        """Look at everything once (start, or after a relist)."""

    async def handle(self, events: list[Event]) -> None:
        """React to a batch of changes."""

    async def tick(self) -> None:
        """Called when wake_at has passed."""

    async def run(self) -> None:
        self._sub = self.view.subscribe(self.kinds)
        try:
            await self.reconcile_all()
            while True:
                timeout = None
                if self.wake_at is not None:
                    timeout = max(0.0, self.wake_at - time.monotonic())
                events = await self._sub.get_batch(timeout)
                if events:
                    await asyncio.sleep(DEBOUNCE)
                    events.extend(await self._sub.get_batch(0))
                    await self.handle(events)
                if self.wake_at is not None and time.monotonic() >= self.wake_at:
                    self.wake_at = None
                    await self.tick()
        finally:
            self._sub.close()


async def supervise(
    name: str,
    make: Callable[[], Awaitable[None]],
    delay: float = 0.5,
    resync: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run a loop forever; log and restart it when it fails with a store error
    or a bug. Cancellation (losing leadership, shutdown) ends it.

    After a store error a write may have gone through without its writer
    hearing so; with ``resync`` (the view's ``catch_up``) the loop starts
    again only once the view holds everything etcd holds, so it never
    decides twice on the same half-seen state (two tasks for one slot)."""
    while True:
        try:
            await make()
            return
        except (asyncio.CancelledError, LeadershipLost):
            raise
        except StoreError as err:
            log.warning("%s: %s; restarting", name, err)
            if resync is not None:
                await _resync(name, resync, delay)
                continue
        except Exception:
            log.exception("%s crashed; restarting", name)
        await asyncio.sleep(delay)


async def _resync(name: str, resync: Callable[[], Awaitable[None]], delay: float) -> None:
    retrying = tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type((StoreError, TimeoutError)),
        wait=tenacity.wait_random_exponential(multiplier=delay, max=5.0),
        reraise=True,
    )
    await asyncio.sleep(delay)
    async for attempt in retrying:
        with attempt:
            await resync()
