"""Flow control of exec streams, which the CLI, the managers and the agents share.

An exec's output travels agent -> manager (the node's session) -> maybe a
second manager -> client; its stdin the other way. Nothing on that path may
hold more than a window of one exec's data, whatever the command prints and
however slowly the client reads:

- the sender cuts data into chunks of at most ``CHUNK`` bytes;
- it may have at most ``WINDOW`` bytes sent and not yet acknowledged;
- the receiver at the far end acknowledges a chunk (``output_ack`` /
  ``stdin_ack``, in bytes) only once it has *taken* it: written to the
  user's terminal, or to the command's stdin. Credit therefore returns at the
  pace of the slowest hop, and every hop in between holds at most a window.

Each relay (a manager) checks the sender against the same window with a
``Credit`` of its own and ends the exec of a sender that oversteps, so a
misbehaving agent or client cannot make a manager buffer more.
"""

from __future__ import annotations

import asyncio

# Bytes in one chunk: small enough that a heartbeat waits behind little, big
# enough that a fast command is not slowed by the per-message cost.
CHUNK = 32 * 1024
# Bytes sent and not yet acknowledged, per exec and direction: 8 chunks keep
# a loopback or LAN path busy.
WINDOW = 256 * 1024
# Execs at once on one node (its agent and the manager holding its session
# each refuse more): with both windows full, 64 MiB at the very worst.
MAX_EXECS_PER_NODE = 128


class CreditExceeded(Exception):
    """A sender went beyond its window (a bug or a hostile peer)."""


class Credit:
    """The window of one direction of one exec, as a sender (``take``
    waits for room) or as a relay that checks a sender (``charge``)."""

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self.outstanding = 0
        self._room = asyncio.Event()
        self._room.set()

    def charge(self, size: int) -> None:
        """Count bytes the peer sent; CreditExceeded if it has no room for them."""
        if size > CHUNK:
            raise CreditExceeded(f"a chunk of {size} bytes (at most {CHUNK})")
        if self.outstanding + size > self.window:
            raise CreditExceeded(
                f"{self.outstanding + size} bytes unacknowledged (the window is {self.window})"
            )
        self.outstanding += size
        if self.outstanding >= self.window:
            self._room.clear()

    def release(self, size: int) -> None:
        """The receiver took `size` more bytes. A peer acknowledging more
        than was sent is an error as well."""
        if size < 0 or size > self.outstanding:
            raise CreditExceeded(f"an acknowledgement of {size} bytes ({self.outstanding} outstanding)")
        self.outstanding -= size
        if self.outstanding < self.window:
            self._room.set()

    def open_wide(self) -> None:
        """Stop counting: nobody acknowledges any more (the receiver went
        away and what is still sent is dropped on the way)."""
        self.window = 1 << 62
        self._room.set()

    async def take(self, size: int) -> None:
        """Wait until `size` bytes fit in the window, then count them."""
        while self.outstanding + size > self.window:
            self._room.clear()
            await self._room.wait()
        self.charge(size)


def chunks(data: bytes) -> list[bytes]:
    """data cut into pieces of at most CHUNK bytes."""
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
