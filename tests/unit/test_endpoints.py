"""Task endpoints on the agent: which ports get a host port, that the
allocation survives an agent restart and is released, that it avoids ports
in use, and that the worker reports it with every status (and rejects a
task it cannot give a port)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from shoal.agent.endpoints import EndpointAllocator, NoFreePort, env_for, port_free, wanted
from shoal.agent.runtime.fake import FakeRuntime
from shoal.agent.worker import Worker
from shoal.protos import objects_pb2 as pb
from tests.support.fake_tasks import make_task, run, wait_until


def web_task(task_id: str) -> pb.Task:
    task = make_task(task_id)
    task.ports.extend(
        [
            pb.PortConfig(protocol="tcp", target_port=80, published_port=8080, publish_mode="ingress"),
            pb.PortConfig(protocol="tcp", target_port=80, published_port=8081, publish_mode="ingress"),
            pb.PortConfig(protocol="udp", target_port=53, published_port=53, publish_mode="ingress"),
            pb.PortConfig(protocol="tcp", target_port=9000, published_port=9000, publish_mode="host"),
        ]
    )
    return task


def test_ingress_targets_get_one_host_port_each_and_host_mode_keeps_its_own(tmp_path: Path) -> None:
    task = web_task("t1")
    assert wanted(task) == [("tcp", 80), ("udp", 53)]
    alloc = EndpointAllocator(tmp_path, None, low=21000, high=21010)
    got = alloc.allocate(task)
    assert [(e.protocol, e.target_port) for e in got] == [("tcp", 80), ("udp", 53), ("tcp", 9000)]
    assert all(21000 <= e.host_port <= 21010 for e in got[:2])
    assert got[2].host_port == 9000
    env = env_for(got[:2], "127.0.0.11")
    assert env["SHOAL_PORT_80"] == str(got[0].host_port)
    assert env["SHOAL_PORT_53_UDP"] == str(got[1].host_port)
    assert env["SHOAL_TASK_ADDR"] == "127.0.0.11" and "PORT" not in env
    assert env_for(got[:1], "")["PORT"] == str(got[0].host_port)


def test_allocations_survive_a_restart_and_are_released(tmp_path: Path) -> None:
    first = EndpointAllocator(tmp_path, None, low=21000, high=21000)
    a = first.allocate(web_task("a"))
    assert [e.host_port for e in a] == [21000, 21000, 9000], "one port, once per protocol"
    again = EndpointAllocator(tmp_path, None, low=21000, high=21000)
    assert again.allocate(web_task("a")) == a, "an adopted task keeps its ports"
    b_task = make_task("b")
    b_task.ports.add(protocol="tcp", target_port=80, published_port=1, publish_mode="ingress")
    with pytest.raises(NoFreePort, match="no free tcp port in 21000-21000"):
        again.allocate(b_task)
    # Forgotten with a full assignment set (or released): the port is b's.
    again.keep_only({"b"})
    assert [e.host_port for e in again.allocate(b_task)] == [21000]
    assert set(EndpointAllocator(tmp_path, None).tasks) == {"b"}
    again.release("b")
    assert EndpointAllocator(tmp_path, None).tasks == {}


def test_ports_in_use_on_the_address_are_skipped(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        taken = busy.getsockname()[1]
        alloc = EndpointAllocator(None, port_free("127.0.0.1"), low=taken, high=taken)
        task = make_task("t")
        task.ports.add(protocol="tcp", target_port=80, published_port=1, publish_mode="ingress")
        with pytest.raises(NoFreePort):
            alloc.allocate(task)


def test_the_worker_reports_endpoints_with_every_status_and_rejects_a_task_without_a_port() -> None:
    async def main() -> None:
        seen: dict[str, list[pb.TaskStatus]] = {}
        rt = FakeRuntime()
        alloc = EndpointAllocator(None, None, low=22000, high=22001)
        worker = Worker(rt, "node-1", lambda tid, s: seen.setdefault(tid, []).append(s), alloc, "127.0.0.11")
        try:
            await worker.assign([web_task("t1")], [], full=False)
            await wait_until(lambda: any(s.state == pb.TASK_STATE_RUNNING for s in seen.get("t1", [])))
            assert all(len(s.endpoints) == 3 for s in seen["t1"])
            greedy = make_task("t2")
            greedy.ports.add(protocol="tcp", target_port=1, published_port=1, publish_mode="ingress")
            greedy.ports.add(protocol="tcp", target_port=2, published_port=2, publish_mode="ingress")
            await worker.assign([greedy], [], full=False)
            await wait_until(lambda: any(s.state == pb.TASK_STATE_REJECTED for s in seen.get("t2", [])))
            assert "no free tcp port" in seen["t2"][-1].err
            assert rt.starts["t2"] == 0
        finally:
            await worker.close()

    run(main())
