"""The userspace data path: relays that listen on a published port.

``TcpRelay`` accepts connections on the node's address and the published
port and joins each to a backend, taken round robin; a backend that refuses
is skipped for the next one (a task that just died, not yet out of the
rotation), up to every backend once. With the PROXY protocol on, the header
naming the client goes first. Bytes are moved by asyncio protocols (no
stream objects, reads of up to 256 KiB, write buffers of ``HIGH_WATER``) and
each direction stops reading while the other side cannot take more, so a
slow reader never makes the agent buffer without bound. Half-closes are
passed on (a client that shuts down its sending side still gets its answer).

``UdpRelay`` keeps one flow per client address: a socket connected to a
backend chosen when the flow starts; answers go back to the client from the
published port. A flow idle for ``UDP_IDLE`` is closed, and at most
``UDP_MAX_FLOWS`` are kept (the oldest goes first).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, cast

from shoal.agent.mesh.proxyproto import header

log = logging.getLogger(__name__)

HIGH_WATER = 1024 * 1024
CONNECT_TIMEOUT = 3.0
# conntrack's timeout for unreplied UDP flows: answers come within it.
UDP_IDLE = 30.0
UDP_MAX_FLOWS = 10_000

Target = tuple[str, int]


class _Rotation:
    """Backends taken in turn; the list may change at any moment."""

    def __init__(self) -> None:
        self.backends: list[Target] = []
        self._turn = itertools.count()

    def set(self, backends: Sequence[Target]) -> None:
        self.backends = list(backends)

    def order(self) -> list[Target]:
        """Every backend once, starting with the next in turn."""
        n = len(self.backends)
        if not n:
            return []
        start = next(self._turn) % n
        return self.backends[start:] + self.backends[:start]


class _Pipe(asyncio.Protocol):
    """One side of a relayed connection: what it reads goes to its peer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self.eof = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None or peer.closed:
            return False
        if peer.eof:
            peer.transport.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
        return True  # keep the other direction open

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.closed:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()  # after what is buffered is written


class _Client(_Pipe):
    """A client's connection: joined to a backend once one answers.

    What the client sends before then is held (and reading paused) rather
    than dropped: a pause asked for in ``connection_made`` does not hold on
    every Python (3.11.2's selector transport starts reading after it), so
    the first bytes and even the client's EOF may arrive before the join.
    """

    def __init__(self, relay: TcpRelay) -> None:
        super().__init__()
        self.relay = relay
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()
        self.relay.spawn(self._join())

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self.early.append(data)
            if self.transport is not None and self.transport.is_reading():
                self.transport.pause_reading()
            return
        super().data_received(data)

    def eof_received(self) -> bool:
        if self.peer is None:
            self.eof = True
            return True  # passed on at the join; the answer still comes back
        return super().eof_received()

    async def _join(self) -> None:
        assert self.transport is not None
        client = self.transport.get_extra_info("peername")
        dest = self.transport.get_extra_info("sockname")
        loop = asyncio.get_running_loop()
        for host, port in self.relay.rotation.order():
            if self.closed:
                return
            backend = _Pipe()
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda b=backend: b, host, port, local_addr=self.relay.source),
                    CONNECT_TIMEOUT,
                )
            except (OSError, TimeoutError) as err:
                log.debug(
                    "port %s: backend %s:%d failed (%s); trying the next", self.relay.name, host, port, err
                )
                continue
            assert backend.transport is not None
            if self.closed:
                backend.transport.close()
                return
            backend.peer, self.peer = self, backend
            if self.relay.proxy_protocol:
                backend.transport.write(header(self.relay.proxy_protocol, client, dest))
            for data in self.early:
                backend.transport.write(data)
            self.early = []
            if self.eof:
                if backend.transport.can_write_eof():
                    backend.transport.write_eof()
            else:
                self.transport.resume_reading()
            return
        self.relay.refused += 1
        # No backend answered: reset the connection (linger 0), so the
        # client sees a refusal, not an empty answer, even when what it sent
        # was read already.
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


class TcpRelay:
    """A published TCP port served in userspace."""

    def __init__(self, name: str, addr: str, port: int, proxy_protocol: str = "") -> None:
        self.name = name
        self.addr = addr
        self.port = port
        self.proxy_protocol = proxy_protocol
        # Backend connections come from the node's address (any, without one).
        self.source = (addr, 0) if addr and addr != "0.0.0.0" else None
        self.rotation = _Rotation()
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Client(self), self.addr or "0.0.0.0", self.port, reuse_address=True, backlog=1024
        )

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop listening; connections under way carry on until they end."""
        if self._server is not None:
            self._server.close()
            self._server = None


class _Flow(asyncio.DatagramProtocol):
    """One client's datagrams to its backend, and the answers back."""

    def __init__(self, relay: UdpRelay, client: Target) -> None:
        self.relay = relay
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: list[bytes] = []
        self.used = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (asyncio's datagram transport does not subclass DatagramTransport.)
        self.transport = cast(asyncio.DatagramTransport, transport)
        for data in self.waiting:
            self.transport.sendto(data)
        self.waiting.clear()

    def send(self, data: bytes) -> None:
        self.used = time.monotonic()
        if self.transport is None:
            self.waiting.append(data)
        else:
            self.transport.sendto(data)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.used = time.monotonic()
        self.relay.answer(data, self.client)

    def error_received(self, exc: Exception) -> None:
        log.debug("port %s: flow of %s: %s", self.relay.name, self.client, exc)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class UdpRelay(asyncio.DatagramProtocol):
    """A published UDP port served in userspace."""

    def __init__(self, name: str, addr: str, port: int) -> None:
        self.name = name
        self.addr = addr
        self.port = port
        self.source = (addr, 0) if addr and addr != "0.0.0.0" else ("0.0.0.0", 0)
        self.rotation = _Rotation()
        self.refused = 0
        self.flows: OrderedDict[Target, _Flow] = OrderedDict()
        self._transport: asyncio.DatagramTransport | None = None
        self._janitor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.addr or "0.0.0.0", self.port)
        )
        self._transport = transport
        self._janitor = asyncio.create_task(self._sweep())

    def datagram_received(self, data: bytes, addr: Any) -> None:
        client = (str(addr[0]), int(addr[1]))
        flow = self.flows.get(client)
        if flow is None:
            order = self.rotation.order()
            if not order:
                self.refused += 1
                return
            flow = _Flow(self, client)
            self.flows[client] = flow
            while len(self.flows) > UDP_MAX_FLOWS:
                self.flows.popitem(last=False)[1].close()
            task = asyncio.create_task(self._connect(flow, order[0]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self.flows.move_to_end(client)
        flow.send(data)

    async def _connect(self, flow: _Flow, backend: Target) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(lambda: flow, local_addr=self.source, remote_addr=backend)
        except OSError as err:
            log.debug("port %s: backend %s:%d: %s", self.name, backend[0], backend[1], err)
            self.flows.pop(flow.client, None)

    def answer(self, data: bytes, client: Target) -> None:
        if self._transport is not None:
            self._transport.sendto(data, client)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(UDP_IDLE / 3)
            now = time.monotonic()
            for client, flow in list(self.flows.items()):
                if now - flow.used > UDP_IDLE:
                    del self.flows[client]
                    flow.close()

    async def close(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
        for flow in self.flows.values():
            flow.close()
        self.flows.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None


def can_bind(addr: str) -> bool:
    """Whether addr is an address of this host (a backend there is reached
    without leaving it)."""
    with socket.socket() as s:
        try:
            s.bind((addr, 0))
        except OSError:
            return False
    return True
