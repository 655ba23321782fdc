"""The node's resolver: service names for its tasks, anything else upstream.

A small DNS server (UDP) on the addresses the runtime gives it: the gateway
of the docker runtime's bridge (containers use it: Docker's embedded
resolver forwards what it does not know there), or the node's address on a
port of its own (process tasks find it in ``SHOAL_DNS``). For each query it
asks ``Discovery.resolve`` with the service of the asking task (placed by
its source address, ``who``); a name that is a service's gets its A records
(an AAAA query gets none: IPv4 only), anything else is forwarded to the
host's resolvers (``/etc/resolv.conf``) and their answer relayed. Answers
for names of ours are never cached by anyone for long (TTL 5 s): the tasks
behind ``tasks.NAME`` change.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

log = logging.getLogger(__name__)

TTL = 5
UPSTREAM_TIMEOUT = 2.0
# Answers that fit a classic 512-byte UDP message (the rest are cut, with
# the truncated flag, as a server may).
MAX_ANSWERS = 28
TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1
RCODE_NXDOMAIN, RCODE_SERVFAIL, RCODE_FORMERR = 3, 2, 1

Resolve = Callable[[str, str], list[str] | None]  # (name, asker address) -> addresses


def parse_question(data: bytes) -> tuple[int, str, int, int, int]:
    """(id, name, qtype, qclass, end of the question); ValueError when malformed."""
    if len(data) < 12:
        raise ValueError("short message")
    qid, flags, qdcount = struct.unpack("!HHH", data[:6])
    if qdcount != 1 or flags & 0x8000:
        raise ValueError("not one question")
    labels, i = [], 12
    while True:
        if i >= len(data):
            raise ValueError("name runs past the message")
        n = data[i]
        if n == 0:
            i += 1
            break
        if n & 0xC0 or i + 1 + n > len(data):
            raise ValueError("bad label")
        labels.append(data[i + 1 : i + 1 + n].decode("ascii", errors="replace"))
        i += 1 + n
    if i + 4 > len(data):
        raise ValueError("short question")
    qtype, qclass = struct.unpack("!HH", data[i : i + 4])
    return qid, ".".join(labels), qtype, qclass, i + 4


def response(query: bytes, end: int, addresses: list[str] | None, rcode: int = 0) -> bytes:
    """An answer to `query` (its question ends at `end`): A records for
    addresses, or none with rcode."""
    qid, flags = struct.unpack("!HH", query[:4])
    records = (addresses or [])[:MAX_ANSWERS]
    truncated = 0x0200 if addresses and len(addresses) > MAX_ANSWERS else 0
    # QR, the query's opcode and RD, AA (ours), RA, the rcode.
    out_flags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | truncated | rcode
    head = struct.pack("!HHHHHH", qid, out_flags, 1, len(records), 0, 0)
    body = b"".join(
        struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4) + socket.inet_aton(a) for a in records
    )
    return head + query[12:end] + body


def upstream_servers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return []
    return [line.split()[1] for line in lines if line.startswith("nameserver") and len(line.split()) > 1]


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, done: asyncio.Future[bytes]) -> None:
        self.done = done

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class DnsServer(asyncio.DatagramProtocol):
    def __init__(self, resolve: Resolve, upstream: list[str] | None = None) -> None:
        self.resolve = resolve
        self.upstream = upstream if upstream is not None else upstream_servers()
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.answered = 0

    @classmethod
    async def serve(cls, addr: str, port: int, resolve: Resolve) -> DnsServer:
        server = cls(resolve)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: server, local_addr=(addr, port))
        return server

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        sock = self.transport.get_extra_info("sockname")
        return str(sock[0]), int(sock[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            _, name, qtype, qclass, end = parse_question(data)
        except ValueError:
            return  # not a query we can answer: drop, as resolvers do with garbage
        client = (str(addr[0]), int(addr[1]))
        found = self.resolve(name, client[0]) if qclass == CLASS_IN else None
        if found is not None:
            self.answered += 1
            self._send(response(data, end, found if qtype == TYPE_A else []), client)
            return
        task = asyncio.create_task(self._forward(data, end, client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, data: bytes, end: int, client: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        for server in self.upstream:
            done: asyncio.Future[bytes] = loop.create_future()
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    functools.partial(_Upstream, done), remote_addr=(server, 53)
                )
            except OSError:
                continue
            try:
                transport.sendto(data)
                answer = await asyncio.wait_for(done, UPSTREAM_TIMEOUT)
            except (OSError, TimeoutError):
                continue
            finally:
                transport.close()
            self._send(answer, client)
            return
        self._send(response(data, end, None, RCODE_SERVFAIL if self.upstream else RCODE_NXDOMAIN), client)

    def _send(self, data: bytes, client: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, client)

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
