"""Discovery on a node: which names resolve for whom (networks, stacks),
node-local task addresses, the routes that follow; and the resolver's wire
format on a real UDP socket."""

from __future__ import annotations

import asyncio
import socket
import struct

from shoal.agent.mesh.discovery import Discovery
from shoal.agent.mesh.dns import DnsServer, parse_question, response
from shoal.agent.mesh.table import MeshTable
from shoal.protos import dispatcher_pb2 as dpb
from tests.support.fake_tasks import run


def service(
    sid: str, name: str, vip: str, networks: tuple[str, ...] = (), stack: str = ""
) -> dpb.MeshService:
    svc = dpb.MeshService(service_id=sid, name=name, virtual_ip=vip, networks=list(networks), stack=stack)
    svc.targets.add(protocol="tcp", target_port=80)
    return svc


def backend(task_id: str, sid: str, addr: str, host_port: int) -> dpb.MeshBackend:
    b = dpb.MeshBackend(task_id=task_id, service_id=sid, addr=addr, slot=1)
    b.endpoints.add(protocol="tcp", target_port=80, host_port=host_port)
    return b


def table_with(
    *services: dpb.MeshService, backends: tuple[dpb.MeshBackend, ...] = ()
) -> tuple[MeshTable, Discovery]:
    table = MeshTable()
    table.apply(dpb.MeshUpdate(full=True, services=list(services), backends=list(backends)))
    table.take_changes()
    return table, Discovery(table)


def test_names_resolve_within_shared_networks_and_stacks() -> None:
    table, disc = table_with(
        service("w", "shop_web", "10.208.0.1", ("shop_default",), stack="shop"),
        service("a", "shop_api", "10.208.0.2", ("shop_default",), stack="shop"),
        service("o", "other", "10.208.0.3", ("elsewhere",)),
        service("d", "plain", "10.208.0.4"),
        service("e", "also-plain", "10.208.0.5"),
    )
    disc.update(*table.take_services())
    assert disc.resolve("shop_api", "w") == ["10.208.0.2"]
    assert disc.resolve("api", "w") == ["10.208.0.2"], "the short name inside the stack"
    assert disc.resolve("api", "d") is None, "not outside it"
    assert disc.resolve("shop_api", "o") is None, "another network cannot resolve it"
    assert disc.resolve("PLAIN.", "e") == ["10.208.0.4"], "both on the default network; case and dot"
    assert disc.resolve("plain", None) == ["10.208.0.4"], "an asker the node cannot place sees all"
    assert disc.resolve("nothing", "e") is None


def test_task_addresses_are_the_nodes_own_and_routes_follow_the_backends() -> None:
    table, disc = table_with(
        service("w", "web", "10.208.0.1"),
        backends=(backend("t1", "w", "10.0.0.1", 20001), backend("t2", "w", "10.0.0.2", 20002)),
    )
    vips, tasks = disc.update(*table.take_services())
    assert {k: v.targets for k, v in vips.items() if v} == {
        ("10.208.0.1", "tcp", 80): (("10.0.0.1", 20001), ("10.0.0.2", 20002))
    }
    addrs = disc.resolve("tasks.web", None)
    assert addrs is not None and len(set(addrs)) == 2
    assert {tasks[(a, "tcp", 80)] for a in addrs} == {("10.0.0.1", 20001), ("10.0.0.2", 20002)}
    # t1 leaves: its address and route go, t2 keeps its own.
    kept = disc.task_addrs["t2"]
    table.apply(dpb.MeshUpdate(removed_backends=["t1"]))
    table.take_changes()
    vips, tasks = disc.update(*table.take_services())
    assert {k: v.targets for k, v in vips.items() if v} == {("10.208.0.1", "tcp", 80): (("10.0.0.2", 20002),)}
    assert list(tasks.values()) == [None] and disc.resolve("tasks.web", None) == [kept]
    # The service goes: every route goes with it.
    table.apply(dpb.MeshUpdate(removed_services=["w"]))
    table.take_changes()
    vips, tasks = disc.update(*table.take_services())
    assert vips == {("10.208.0.1", "tcp", 80): None} and tasks == {(kept, "tcp", 80): None}
    assert disc.resolve("web", None) is None and disc.task_addrs == {}


def query(name: str, qtype: int = 1) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + struct.pack("!HH", qtype, 1)


def test_dns_answers_a_records_and_nothing_for_aaaa() -> None:
    q = query("tasks.web")
    qid, name, qtype, _, end = parse_question(q)
    assert (qid, name, qtype) == (7, "tasks.web", 1)
    answer = response(q, end, ["10.212.0.9", "10.212.0.10"])
    assert struct.unpack("!HHHH", answer[:8]) == (7, 0x8580, 1, 2)
    assert answer.endswith(socket.inet_aton("10.212.0.10"))
    assert struct.unpack("!H", response(q, end, [])[6:8]) == (0,)

    async def main() -> None:
        seen: list[tuple[str, str]] = []

        def resolve(n: str, asker: str) -> list[str] | None:
            seen.append((n, asker))
            return ["10.208.0.1"] if n == "web" else None

        server = DnsServer(resolve, upstream=[])
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
        addr = server.address

        def ask(q: bytes) -> bytes:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", 0))
                s.settimeout(3)
                s.sendto(q, addr)
                return s.recvfrom(512)[0]

        found = await asyncio.to_thread(ask, query("web"))
        assert found.endswith(socket.inet_aton("10.208.0.1"))
        assert seen == [("web", "127.0.0.1")]
        missing = await asyncio.to_thread(ask, query("nowhere"))
        assert struct.unpack("!H", missing[2:4])[0] & 0xF == 3, "no upstream: NXDOMAIN"
        await server.close()

    run(main())
