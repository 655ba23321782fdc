"""The fault model, broken for real: several managers, hung and killed
managers, leader changes in the middle of work, racing writers, an etcd
member that stops, etcd gone entirely, compaction, a garbled state dir.

Every cluster here has three managers (one leads) and agents with a one-second
heartbeat; faults are SIGKILL, SIGSTOP and SIGTERM of the real processes.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from shoal import pki
from shoal.ids import new_id
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb
from tests.support.cluster import Cluster, Proc, sleep_seconds, stays, wait_for, wait_pids
from tests.support.etcd_cluster import EtcdCluster
from tests.support.etcd_server import EtcdServer


def start(etcd: Any, root: Path, managers: int = 3, agents: int = 3, *manager_flags: str) -> Cluster:
    c = Cluster(etcd, root)
    try:
        for _ in range(managers):
            c.start_manager(*manager_flags)
        for _ in range(agents):
            c.start_agent()
        if agents:
            c.wait_nodes_ready(agents)
    except BaseException:
        print(c.dump_logs())
        c.close()
        raise
    return c


@pytest.fixture
def cluster3(etcd_server: EtcdServer, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    c = start(etcd_server, tmp_path / "c")
    yield c
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        print(c.dump_logs())
    c.close()


def remembered(c: Cluster, agent: Proc) -> str:
    path = c.agent_dir(agent) / "managers.json"
    return path.read_text() if path.exists() else ""


def none_down(c: Cluster) -> bool:
    res = c.cli("node", "ls", "--format", "json", timeout=30)
    return res.code != 0 or all(n["status"] != "down" for n in res.json())


def session_managers(c: Cluster) -> set[str]:
    return {n["manager_id"] for n in c.nodes()}


def test_agents_move_to_a_manager_that_started_after_them(etcd_server: EtcdServer, tmp_path: Path) -> None:
    c = start(etcd_server, tmp_path / "c", managers=1)
    try:
        first = c.managers[0]
        assert session_managers(c) == {c.manager_id(first)}
        second = c.start_manager()
        # The agents learn of it over their sessions (and write it down).
        wait_for(
            lambda: all(c.manager_addrs[1] in remembered(c, a) for a in c.agents),
            timeout=20,
            what="agents told of the second manager",
        )
        first.stop()
        wait_for(
            lambda: session_managers(c) == {c.manager_id(second)}, timeout=30, what="agents on manager 2"
        )
        stays(lambda: none_down(c), 8, "no node marked down")
        assert (
            c.cli("service", "create", "--name", "after", "--replicas", "3", "app:1", "sleep", "3600").code
            == 0
        )
    finally:
        c.close()


def test_a_killed_leader_is_replaced_and_nothing_else_notices(cluster3: Cluster) -> None:
    c = cluster3
    marker = sleep_seconds(3670)
    assert c.cli("service", "create", "--name", "calm", "--replicas", "3", "app:1", "sleep", marker).code == 0
    pids = wait_pids(f"sleep {marker}", 3)
    leader = wait_for(c.leader, what="a leader")
    killed_at = time.monotonic()
    leader.kill9()
    new = wait_for(lambda: (lead := c.leader()) is not None and lead is not leader and lead, timeout=30)
    took = time.monotonic() - killed_at
    print(f"new leader {took:.1f}s after kill -9 of the old one")
    assert took < 5 + 2 + 3, "within the lease TTL plus 2 s (and 3 s for the CLI on a busy machine)"
    assert new.alive()
    assert c.cli("service", "scale", "calm=5").code == 0
    assert c.cli("service", "create", "--name", "more", "-d", "app:1", "sleep", "3600").code == 0
    stays(lambda: none_down(c), 5, "no node marked down")
    assert pids <= wait_pids(f"sleep {marker}", 5), "no task of the first three restarted"


def test_agents_leave_a_hung_manager_and_it_comes_back_as_a_follower(cluster3: Cluster) -> None:
    c = cluster3
    marker = sleep_seconds(3671)
    assert c.cli("service", "create", "--name", "hang", "--replicas", "3", "app:1", "sleep", marker).code == 0
    wait_pids(f"sleep {marker}", 3)
    held = Counter(n["manager_id"] for n in c.nodes())
    hung_id = held.most_common(1)[0][0]
    hung = next(m for m in c.managers if c.manager_id(m) == hung_id)
    others = [a for m, a in zip(c.managers, c.manager_addrs, strict=True) if m is not hung]
    assert hung.popen is not None
    hung.popen.send_signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    addrs = list(c.manager_addrs)
    try:
        # The CLI asks the others first (a hung manager takes seconds to skip).
        c.manager_addrs[:] = others + [a for a in addrs if a not in others]
        wait_for(lambda: hung_id not in session_managers(c), timeout=30, what="agents off the hung manager")
        print(f"agents left the hung manager {time.monotonic() - stopped_at:.1f}s after SIGSTOP")
        assert c.cli("service", "scale", "hang=6").code == 0
        wait_pids(f"sleep {marker}", 6, timeout=30)
        remaining = 30 - (time.monotonic() - stopped_at)
        stays(lambda: none_down(c), max(1.0, remaining), "no node marked down while the manager hangs")
    finally:
        hung.popen.send_signal(signal.SIGCONT)
        c.manager_addrs[:] = addrs
    wait_for(lambda: c.leader() is not None, what="a leader")
    stays(lambda: none_down(c), 5, "no node marked down after the manager woke up")
    assert len(wait_pids(f"sleep {marker}", 6)) == 6
    assert hung.alive()


def _two_running_in_a_slot(c: Cluster, service: str) -> list[int]:
    tasks = c.service_ps(service) or []
    per_slot = Counter(
        t["slot"] for t in tasks if t["current_state"] == "running" and t["desired_state"] == "running"
    )
    return [slot for slot, n in per_slot.items() if n > 1]


@pytest.mark.parametrize("order", ["stop-first", "start-first"])
def test_a_rolling_update_survives_a_killed_leader(cluster3: Cluster, order: str) -> None:
    c = cluster3
    args = ["--name", "roll", "--replicas", "4", "--update-order", order, "--update-delay", "1s"]
    assert c.cli("service", "create", *args, "--update-monitor", "1s", "app:1", "sleep", "3600").code == 0
    wait_for(lambda: len(c.running("roll")) == 4, what="4 running")
    doubles: list[list[int]] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            if order == "stop-first" and (slots := _two_running_in_a_slot(c, "roll")):
                doubles.append(slots)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        assert c.cli("service", "update", "-d", "--image", "app:2", "roll").code == 0
        wait_for(
            lambda: any(t["image"] == "app:2:latest" or t["image"] == "app:2" for t in c.running("roll")),
            what="the first new task",
        )
        leader = wait_for(c.leader, what="a leader")
        leader.kill9()

        def done() -> bool:
            res = c.cli("service", "inspect", "roll", timeout=30)
            if res.code != 0:
                return False
            status = res.json()[0]["update_status"]
            return bool(status.get("state") == "completed")

        wait_for(done, timeout=120, what="the update to complete under the new leader")
        running = wait_for(lambda: len(r := c.running("roll")) == 4 and r, timeout=60, what="4 running")
        assert {t["image"] for t in running} == {"app:2"}
        assert sorted(t["slot"] for t in running) == [1, 2, 3, 4]
    finally:
        sampling.set()
        sampler.join(5)
    assert doubles == [], f"slots with two running tasks during a stop-first update: {doubles}"
    assert _two_running_in_a_slot(c, "roll") == []


def test_creates_racing_through_two_managers_make_one_service_per_name(cluster3: Cluster) -> None:
    c = cluster3
    chan1, stub1 = c.control(c.managers[0])
    chan2, stub2 = c.control(c.managers[1])
    try:
        for round_ in range(20):
            name = f"dup{round_}"
            spec = pb.ServiceSpec(name=name)
            spec.task.container.image = "app:1"
            spec.task.container.args.extend(["sleep", "3600"])
            spec.task.placement.constraints.append("node.labels.nowhere==1")
            outcomes: list[str] = []

            def create(stub: Any, spec: pb.ServiceSpec = spec, outcomes: list[str] = outcomes) -> None:
                try:
                    stub.CreateService(cpb.CreateServiceRequest(spec=spec, id=new_id()), timeout=15)
                    outcomes.append("created")
                except grpc.RpcError as err:
                    outcomes.append(err.code().name)

            threads = [threading.Thread(target=create, args=(s,)) for s in (stub1, stub2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            names = [s.service.spec.name for s in stub1.ListServices(cpb.ListServicesRequest()).services]
            assert names.count(name) == 1, (name, outcomes)
            assert sorted(outcomes) == ["ALREADY_EXISTS", "created"], outcomes
            stub1.RemoveService(cpb.ObjectRef(ref=name))
        # A create whose answer was lost (the client gave up at once) and
        # that is sent again with its ID is the same create.
        spec = pb.ServiceSpec(name="retried")
        spec.task.container.image = "app:1"
        spec.task.placement.constraints.append("node.labels.nowhere==1")
        request = cpb.CreateServiceRequest(spec=spec, id=new_id())
        with contextlib.suppress(grpc.RpcError):
            stub1.CreateService(request, timeout=0.001)
        again = stub2.CreateService(request, timeout=15)
        assert again.meta.id == request.id
        time.sleep(1)
        names = [s.service.spec.name for s in stub2.ListServices(cpb.ListServicesRequest()).services]
        assert names.count("retried") == 1
    finally:
        chan1.close()
        chan2.close()


def test_sigterm_of_the_leader_hands_over_within_a_second(cluster3: Cluster) -> None:
    c = cluster3
    leader = wait_for(c.leader, what="a leader")
    follower = next(m for m in c.managers if m is not leader)
    channel, stub = c.control(follower)
    try:
        assert leader.popen is not None
        leader.popen.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        leader_id = c.manager_id(leader)

        def someone_else() -> bool:
            info = stub.GetClusterInfo(cpb.GetClusterInfoRequest(), timeout=5)
            return any(m.leader and m.id != leader_id for m in info.managers)

        wait_for(someone_else, timeout=10, interval=0.02, what="a new leader")
        took = time.monotonic() - sent
        print(f"next leader in office {took:.2f}s after SIGTERM")
        assert took < 1.0, "within a second"
    finally:
        channel.close()
    assert leader.wait_exit(30) == 0


def test_a_garbled_certificate_gives_one_clear_error(cluster3: Cluster) -> None:
    c = cluster3
    agent = c.agents[0]
    agent.stop()
    cert = c.agent_dir(agent) / "node" / "cert.pem"
    for garbage in (b"", b"-----BEGIN CERTIFICATE-----\nnot base64!\n"):
        cert.write_bytes(garbage)
        before = len(agent.output())
        c.restart(agent)
        assert agent.wait_exit(30) == 1
        out = agent.output()[before:]
        assert "Traceback" not in out
        errors = [line for line in out.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, out
        assert str(cert) in errors[0] and "join again" in errors[0]


# ---------------------------------------------------------------- etcd faults


@pytest.fixture
def on_etcd_cluster(tmp_path: Path) -> Iterator[tuple[EtcdCluster, Cluster]]:
    etcd = EtcdCluster(tmp_path / "etcd")
    c = None
    try:
        c = start(etcd, tmp_path / "c", 3, 3, "--compaction-interval", "2s")
        yield etcd, c
    finally:
        if c is not None:
            c.close()
        etcd.stop()


def test_a_stopped_etcd_member_and_a_dead_etcd_are_ridden_out(
    on_etcd_cluster: tuple[EtcdCluster, Cluster],
) -> None:
    etcd, c = on_etcd_cluster
    marker = sleep_seconds(3672)
    assert c.cli("service", "create", "--name", "keep", "--replicas", "3", "app:1", "sleep", marker).code == 0
    pids = wait_pids(f"sleep {marker}", 3)

    etcd.signal(0, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        wait_for(
            lambda: c.cli("service", "scale", "keep=4", timeout=30).code == 0, timeout=30, what="a write"
        )
        print(f"writes served {time.monotonic() - stopped:.1f}s after SIGSTOP of an etcd member")
        wait_pids(f"sleep {marker}", 4, timeout=30)
    finally:
        etcd.signal(0, signal.SIGCONT)
    etcd.wait_healthy()

    pids = wait_pids(f"sleep {marker}", 4)
    for i in range(3):
        etcd.kill(i)
    try:
        began = time.monotonic()
        res = c.cli("service", "scale", "keep=5", timeout=60)
        assert res.code == 1
        assert "cluster store unavailable (etcd)" in res.err
        print(f"a write failed after {time.monotonic() - began:.1f}s with etcd gone")
        time.sleep(max(0.0, 10 - (time.monotonic() - began)))
        assert wait_pids(f"sleep {marker}", 4) == pids, "tasks keep running without etcd"
    finally:
        for i in range(3):
            etcd.start(i)
    etcd.wait_healthy()
    back = time.monotonic()
    wait_for(
        lambda: c.cli("service", "scale", "keep=5", timeout=30).code == 0, timeout=30, what="writes again"
    )
    wait_pids(f"sleep {marker}", 5, timeout=30)
    print(f"full service {time.monotonic() - back:.1f}s after etcd came back")
    assert time.monotonic() - back < 15 + 10
    assert pids <= wait_pids(f"sleep {marker}", 5), "no task restarted"
    stays(lambda: none_down(c), 5, "no node marked down")


def test_history_is_compacted_and_watches_carry_on(on_etcd_cluster: tuple[EtcdCluster, Cluster]) -> None:
    _, c = on_etcd_cluster
    assert (
        c.cli(
            "service", "create", "--name", "churn", "-d", "--constraint", "node.labels.no==1", "app:1", "true"
        ).code
        == 0
    )
    for n in range(30):
        assert c.cli("service", "scale", "-d", f"churn={n % 7 + 1}").code == 0
    time.sleep(5)  # two compaction intervals
    for proc in c.managers:
        channel, stub = c.control(proc)
        try:
            info = stub.GetClusterInfo(cpb.GetClusterInfoRequest(), timeout=10)
            summaries = stub.ListServices(cpb.ListServicesRequest(), timeout=10).services
        finally:
            channel.close()
        assert info.stats["view_relists"] <= 2, "no relist storm"
        assert [(s.service.spec.name, s.service.spec.replicas) for s in summaries] == [("churn", 29 % 7 + 1)]
    logs = "".join(m.output() for m in c.managers)
    assert "compacted etcd history up to revision" in logs


def test_with_etcd_quorum_lost_writes_fail_in_bounded_time_and_nothing_is_half_done(
    on_etcd_cluster: tuple[EtcdCluster, Cluster],
) -> None:
    etcd, c = on_etcd_cluster
    assert (
        c.cli(
            "service", "create", "--name", "q", "-d", "--constraint", "node.labels.no==1", "app:1", "true"
        ).code
        == 0
    )
    etcd.kill(1)
    etcd.kill(2)
    try:
        began = time.monotonic()
        res = c.cli("service", "create", "--name", "half", "-d", "app:1", "true", timeout=60)
        took = time.monotonic() - began
        assert res.code == 1
        assert "cluster store unavailable (etcd)" in res.err
        print(f"a write failed {took:.1f}s after etcd lost its quorum")
        assert took < 15, "bounded: a call timeout or two, not forever"
    finally:
        etcd.start(1)
        etcd.start(2)
    etcd.wait_healthy()
    wait_for(lambda: c.cli("service", "ls").code == 0, what="the cluster back")
    names = sorted(s["name"] for s in c.services())
    assert names == ["q"] or names == ["half", "q"], names
    # The refused create left no claim behind: the name is free (or its own).
    created = c.cli("service", "create", "--name", "half", "-d", "app:1", "true")
    assert created.code == 0 or "already in use" in created.err


def test_when_most_nodes_vanish_their_tasks_move_one_node_at_a_time(cluster3: Cluster) -> None:
    c = cluster3
    marker = sleep_seconds(3673)
    create = ["--name", "spread", "--replicas", "6", "--replicas-max-per-node", "6", "app:1", "sleep", marker]
    assert c.cli("service", "create", *create).code == 0
    wait_pids(f"sleep {marker}", 6)
    survivor = c.agents[0]
    lost = c.agents[1:]
    lost_ids = {
        pki.identity_from_cert((c.agent_dir(a) / "node" / "cert.pem").read_bytes()).node_id for a in lost
    }
    for agent in lost:
        c.kill_tasks_of(agent)
        agent.kill9()
    # Both lost nodes go down; then one node's tasks move, and the other's only later.
    wait_for(lambda: sum(n["status"] == "down" for n in c.nodes()) == 2, timeout=30, what="two nodes down")
    down_at = time.monotonic()

    def moved_from() -> set[str]:
        tasks = c.service_ps("spread") or []
        return {t["node_id"] for t in tasks if t["node_id"] in lost_ids and t["desired_state"] != "running"}

    wait_for(lambda: len(moved_from()) >= 1, timeout=30, what="the first node's tasks moved")
    assert len(moved_from()) == 1, "only one node at a time"
    wait_for(lambda: len(moved_from()) == 2, timeout=60, what="the second node's tasks moved")
    print(f"second node's tasks moved {time.monotonic() - down_at:.1f}s after the nodes went down")
    assert time.monotonic() - down_at >= 5, "held back for (most of) the 10 s interval"
    wait_for(lambda: len(c.running("spread")) == 6, timeout=60, what="6 running on the survivor")
    assert survivor.alive()
