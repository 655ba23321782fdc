"""Benchmark: what the trust machinery costs.

Real etcd, manager and agent processes. Prints:

- renewal: the round trip of a certificate renewal over an open session
  (CSR sent -> certificate back, signed and recorded on the node object);
  the session itself is not interrupted (tests/e2e/test_cert_lifecycle.py);
- flood: `shoal service ls` (a whole CLI process) and one ListServices RPC,
  idle and while 1,000 idle connections are held open against the manager;
- fuzz: the manager's CPU seconds and RSS before and after 300 generated
  specs thrown at CreateService (the generator of tests/e2e/test_bounds.py).

    python3 -m tests.bench.trust [--renewals 10] [--calls 10] [--specs 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from shoal import pki
from shoal.protos import control_pb2 as cpb
from shoal.protos import control_pb2_grpc as cgrpc
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import dispatcher_pb2_grpc as dgrpc
from tests.support import raw_session
from tests.support.cluster import Cluster
from tests.support.etcd_server import EtcdServer

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE / (1 << 20)


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


async def renewal_round_trips(addr: str, files: pki.TLSFiles, count: int) -> list[float]:
    """Renew `count` times over one session (1 s apart: the dispatcher's limit)."""
    queue: asyncio.Queue[dpb.AgentMessage | None] = asyncio.Queue()

    async def outgoing() -> AsyncIterator[dpb.AgentMessage]:
        while (msg := await queue.get()) is not None:
            yield msg

    creds = pki.channel_credentials(files.ca_pem, files.cert_pem, files.key_pem)
    times: list[float] = []
    async with grpc.aio.secure_channel(addr, creds, options=pki.CHANNEL_OPTIONS) as channel:
        call = dgrpc.DispatcherStub(channel).Session(outgoing())
        await queue.put(raw_session.register("bench-node"))
        stream = call.__aiter__()
        while (await stream.__anext__()).WhichOneof("msg") != "assignments":
            pass
        for _ in range(count):
            await asyncio.sleep(1.1)
            key = pki.new_private_key_pem()
            started = time.perf_counter()
            await queue.put(
                dpb.AgentMessage(cert_request=dpb.CertificateRequest(csr_pem=pki.new_csr_pem(key)))
            )
            while True:
                msg = await stream.__anext__()
                if msg.WhichOneof("msg") == "certificate":
                    assert msg.certificate.cert_pem, msg.certificate.error
                    times.append(time.perf_counter() - started)
                    break
        await queue.put(None)
        call.cancel()
    return times


def cli_seconds(cluster: Cluster, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        assert cluster.cli("service", "ls").code == 0
        times.append(time.perf_counter() - started)
    return times


def rpc_seconds(stub: cgrpc.ControlStub, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        stub.ListServices(cpb.ListServicesRequest(), timeout=10)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--renewals", type=int, default=10)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--specs", type=int, default=300)
    parser.add_argument("--connections", type=int, default=1000)
    args = parser.parse_args()
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        etcd = EtcdServer(Path(tmp) / "etcd")
        cluster = Cluster(etcd, Path(tmp) / "cluster")
        try:
            cluster.start_manager()
            agent = cluster.start_agent()
            cluster.wait_nodes_ready(1)
            manager_pid = cluster.managers[0].pid
            addr = cluster.manager_addrs[0]
            files = pki.read_tls_dir(cluster.agent_dir(agent) / "node")
            assert files is not None
            agent.stop()  # its identity is used by the bench's own session
            trips = asyncio.run(renewal_round_trips(addr, files, args.renewals))
            out["renewal_round_trip_ms"] = {"median": median_ms(trips), "max": round(max(trips) * 1000, 1)}

            admin = pki.read_tls_dir(cluster.tls_dir)
            assert admin is not None
            creds = pki.channel_credentials(admin.ca_pem, admin.cert_pem, admin.key_pem)
            with grpc.secure_channel(addr, creds, options=pki.CHANNEL_OPTIONS) as channel:
                stub = cgrpc.ControlStub(channel)
                idle_cli, idle_rpc = cli_seconds(cluster, args.calls), rpc_seconds(stub, args.calls)
                host, port = addr.rsplit(":", 1)
                socks = [socket.create_connection((host, int(port))) for _ in range(args.connections)]
                try:
                    flood_cli, flood_rpc = cli_seconds(cluster, args.calls), rpc_seconds(stub, args.calls)
                finally:
                    for s in socks:
                        s.close()
                out["service_ls_cli_ms"] = {"idle": median_ms(idle_cli), "flood": median_ms(flood_cli)}
                out["list_services_rpc_ms"] = {"idle": median_ms(idle_rpc), "flood": median_ms(flood_rpc)}

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    from tests.e2e.test_bounds import service_specs

                    specs = [service_specs().example() for _ in range(args.specs)]
                cpu0, rss0 = cpu_seconds(manager_pid), rss_mib(manager_pid)
                refused = accepted = 0
                started = time.perf_counter()
                for spec in specs:
                    try:
                        created = stub.CreateService(cpb.CreateServiceRequest(spec=spec), timeout=10)
                        stub.RemoveService(cpb.ObjectRef(ref=created.meta.id), timeout=10)
                        accepted += 1
                    except grpc.RpcError:
                        refused += 1
                wall = time.perf_counter() - started
                out["fuzz"] = {
                    "specs": args.specs,
                    "refused": refused,
                    "accepted": accepted,
                    "seconds": round(wall, 2),
                    "manager_cpu_seconds": round(cpu_seconds(manager_pid) - cpu0, 2),
                    "manager_rss_mib_before": round(rss0, 1),
                    "manager_rss_mib_after": round(rss_mib(manager_pid), 1),
                }
        finally:
            cluster.close()
            etcd.stop()
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
