"""The userspace data path on real sockets (127.0.0.1): round robin,
failover past a backend that refuses, half-close, the PROXY protocol
headers, UDP flows; and the nft rules the kernel path renders."""

from __future__ import annotations

import asyncio
import socket

from shoal.agent.mesh import nft
from shoal.agent.mesh.proxyproto import V2_SIGNATURE, header
from shoal.agent.mesh.relay import TcpRelay, UdpRelay
from shoal.defaults import MESH
from tests.support.fake_tasks import run


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def backend(name: str) -> tuple[asyncio.Server, int, list[bytes]]:
    """A server that answers "<name> <everything it read until EOF>"."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        seen.append(data)
        writer.write(name.encode() + b" " + data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


async def request(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    writer.write_eof()  # half-close: the answer must still come
    data = await reader.read()
    writer.close()
    return data


def test_tcp_relay_takes_backends_in_turn_skips_a_dead_one_and_passes_half_closes() -> None:
    async def main() -> None:
        a, pa, _ = await backend("A")
        b, pb_, _ = await backend("B")
        dead = free_port()
        relay = TcpRelay("test", "127.0.0.1", free_port())
        await relay.start()
        relay.rotation.set([("127.0.0.1", pa), ("127.0.0.1", dead), ("127.0.0.1", pb_)])
        answers = [await request(relay.port, b"x" * 100_000) for _ in range(6)]
        assert [len(x) for x in answers] == [100_002] * 6
        assert {x[:1] for x in answers} == {b"A", b"B"}, "every answer came, the dead one skipped"
        relay.rotation.set([("127.0.0.1", dead)])
        try:
            await request(relay.port, b"y")
            raise AssertionError("nothing behind the port: the connection must fail")
        except (ConnectionError, OSError):
            pass
        await relay.close()
        for s in (a, b):
            s.close()

    run(main())


def test_proxy_protocol_headers_name_the_client() -> None:
    assert (
        header("v1", ("192.0.2.7", 40000), ("10.0.0.1", 8080))
        == b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 8080\r\n"
    )
    v2 = header("v2", ("192.0.2.7", 40000), ("10.0.0.1", 8080))
    assert v2[:12] == V2_SIGNATURE and v2[12:16] == bytes([0x21, 0x11, 0, 12])
    assert v2[16:20] == bytes([192, 0, 2, 7]) and v2[24:26] == (40000).to_bytes(2, "big")
    assert header("v1", ("::1", 1), ("10.0.0.1", 2)) == b"PROXY UNKNOWN\r\n"
    assert header("", ("192.0.2.7", 1), ("10.0.0.1", 2)) == b""

    async def main() -> None:
        server, port, seen = await backend("A")
        relay = TcpRelay("test", "127.0.0.1", free_port(), proxy_protocol="v1")
        await relay.start()
        relay.rotation.set([("127.0.0.1", port)])
        await request(relay.port, b"hi")
        assert seen[0].startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 ") and seen[0].endswith(b"\r\nhi")
        await relay.close()
        server.close()

    run(main())


def test_udp_relay_keeps_a_flow_per_client() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        class Echo(asyncio.DatagramProtocol):
            def __init__(self, name: bytes) -> None:
                self.name = name

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                self.transport.sendto(self.name + data, addr)  # type: ignore[attr-defined]

        ports = []
        for name in (b"A", b"B"):
            transport, _ = await loop.create_datagram_endpoint(
                lambda n=name: Echo(n), local_addr=("127.0.0.1", 0)
            )
            ports.append(transport.get_extra_info("sockname")[1])
        relay = UdpRelay("test", "127.0.0.1", free_port(socket.SOCK_DGRAM))
        await relay.start()
        relay.rotation.set([("127.0.0.1", p) for p in ports])

        def ask(sock: socket.socket) -> bytes:
            sock.sendto(b"x", ("127.0.0.1", relay.port))
            return sock.recvfrom(100)[0]

        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        for c in clients:
            c.settimeout(3)
        first = [await asyncio.to_thread(ask, c) for c in clients]
        again = [await asyncio.to_thread(ask, c) for c in clients]
        assert first == again, "a client stays with its backend"
        assert sorted(first) == [b"Ax", b"Bx"], "two clients, two backends"
        for c in clients:
            c.close()
        await relay.close()

    run(main())


def test_nft_rules_for_a_port() -> None:
    table = nft.table_name("abc123")
    script = nft.set_port(table, ("tcp", 8080), [("127.0.0.12", 20001), ("10.0.0.1", 8080)], existed=False)
    assert "dnat ip to numgen inc mod 2 map { 0 : 127.0.0.12 . 20001, 1 : 10.0.0.1 . 8080 }" in script
    assert "add element ip shoal-abc123 ports { tcp . 8080 : jump p_tcp_8080 }" in script
    assert "add element" not in nft.set_port(table, ("tcp", 8080), [("127.0.0.12", 20001)], existed=True)
    assert nft.drop_port(table, ("udp", 53)).splitlines() == [
        "delete element ip shoal-abc123 ports { udp . 53 }",
        "delete chain ip shoal-abc123 p_udp_53",
    ]
    create = nft.create_table(table, "10.0.0.1")
    assert create.startswith("table ip shoal-abc123\ndelete table ip shoal-abc123\n"), "a leftover goes first"
    assert create.count("ip daddr 10.0.0.1 meta l4proto . th dport vmap @ports") == 2
    unrouted = f"ip daddr {{ {MESH.vip_net}, {MESH.task_addr_net} }} meta l4proto tcp reject with tcp reset"
    assert unrouted in create, "an address with no route yet is refused, not sent out"
