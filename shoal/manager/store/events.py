"""What the view tells components: events, and one subscription per component.

The view (``view.py``) turns every change it applies into an ``Event`` (old
and new object) and hands each burst to every ``Subscription`` whose kinds
match; a component drains its subscription with ``get_batch``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    """One change seen by the view: old is None for a create, new for a delete."""

    kind: str
    id: str
    old: Any | None
    new: Any | None


class Subscription:
    """The events for one component, in order; drain them with ``get_batch``.
    A plain list and one wake-up event: a burst of a hundred thousand task
    changes is appended in one go per subscriber, not queued one by one."""

    def __init__(self, kinds: set[str] | None, on_close: Callable[[Subscription], None]) -> None:
        self._on_close = on_close
        self.kinds = kinds
        self._events: list[Event] = []
        self._ready = asyncio.Event()

    def put(self, event: Event) -> None:
        self.put_many([event])

    def put_many(self, events: list[Event]) -> None:
        if self.kinds is None:
            self._events.extend(events)
        else:
            kinds = self.kinds
            self._events.extend(ev for ev in events if ev.kind in kinds)
        if self._events:
            self._ready.set()

    async def get_batch(self, timeout: float | None = None) -> list[Event]:
        """Wait for at least one event (or the timeout), then take all queued."""
        if not self._events:
            try:
                if timeout is None:
                    await self._ready.wait()
                else:
                    await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return []
        out, self._events = self._events, []
        self._ready.clear()
        return out

    def close(self) -> None:
        self._on_close(self)
