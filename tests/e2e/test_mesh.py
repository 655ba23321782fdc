"""The routing mesh and task endpoints, on the process runtime: three
agents on 127.0.0.11-13, real traffic over loopback."""

from __future__ import annotations

import socket
from collections import Counter
from typing import Any

import pytest

from shoal.agent.mesh.nft import table_name, tables
from shoal.defaults import MESH
from tests.support.cluster import Cluster, assert_refused, wait_for
from tests.support.mesh import CLIENT_ADDR, SERVER_COMMAND, ask, ask_udp, free_published_port, try_ask

# One cluster, three data paths: node-1 and node-3 use the kernel (nft),
# node-2 the userspace relay; every test below holds on each.
MODES = ("kernel", "userspace", "auto")
NODES = ("127.0.0.11", "127.0.0.12", "127.0.0.13")


def mesh_cluster(make_cluster: Any) -> Cluster:
    cluster: Cluster = make_cluster(agents=0)
    for mode in MODES:
        cluster.start_agent(mesh=mode)
    cluster.wait_nodes_ready(3)
    return cluster


def slots_seen(addr: str, port: int, requests: int = 30) -> Counter[str]:
    """Which tasks answered `requests` requests to addr:port (failures as "!")."""
    return Counter((a.slot if (a := try_ask(addr, port)) is not None else "!") for _ in range(requests))


def answered_by(addr: str, port: int, slots: set[str], requests: int = 30) -> bool:
    """Whether `requests` requests to addr:port were all answered, by
    exactly the tasks of these slots."""
    return set(slots_seen(addr, port, requests)) == slots


def mesh_ports(cluster: Cluster, node: str, backends: int) -> list[dict[str, Any]] | None:
    """The ports node's mesh reports with `backends` backends (None: none yet)."""
    (shown,) = cluster.cli("node", "inspect", node).json()
    return [p for p in shown["mesh"]["ports"] if p["backends"] == backends] or None


def test_tasks_get_endpoints_they_listen_on_shown_by_ps_and_inspect(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    port = free_published_port()
    cluster.create_service("web", 3, "--publish", f"{port}:80", "app:1", *SERVER_COMMAND)
    addrs = {n["id"]: n["address"] for n in cluster.nodes()}

    def endpoints() -> list[dict[str, Any]] | None:
        running = cluster.running("web")
        return running if len(running) == 3 and all(t["endpoints"] for t in running) else None

    tasks = wait_for(endpoints, what="3 running tasks with endpoints")
    for t in tasks:
        (e,) = t["endpoints"]
        assert (e["protocol"], e["target_port"], e["addr"]) == ("tcp", 80, addrs[t["node_id"]])
        assert MESH.dynamic_port_min <= e["host_port"] <= MESH.dynamic_port_max
        # The task listens there: it was told SHOAL_PORT_80 / PORT.
        answer = wait_for(lambda e=e: _try(e["addr"], e["host_port"]), what="the task to answer")
        assert answer.slot == str(t["slot"])
    res = cluster.cli("service", "ps", "web")
    assert "PORTS" in res.out and "->80/tcp" in res.out, res.out
    (inspected,) = cluster.cli("service", "inspect", "web").json()
    assert inspected["endpoint"]["ports"][0]["publish_mode"] == "ingress"
    shown = {t["id"]: t["endpoints"] for t in inspected["endpoint"]["tasks"]}
    assert shown == {t["id"]: t["endpoints"] for t in tasks}


def _try(addr: str, port: int) -> Any:
    try:
        return ask(addr, port)
    except OSError:
        return None


def test_published_port_answers_on_every_node_spreads_and_follows_scaling(make_cluster: Any) -> None:
    cluster = mesh_cluster(make_cluster)
    port = free_published_port()
    cluster.create_service(
        "web", 3, "--publish", f"{port}:80", "--publish", f"{port}:80/udp", "app:1", *SERVER_COMMAND
    )
    for addr in NODES:
        # All three tasks answer on every node, whichever runs them.
        wait_for(lambda a=addr: answered_by(a, port, {"1", "2", "3"}), what=f"all three tasks on {addr}")
        answer = wait_for(lambda a=addr: ask_udp(a, port), what=f"a UDP answer on {addr}")
        assert answer.slot in {"1", "2", "3"}
    # node inspect shows what each node serves.
    for i, mode in enumerate(MODES, start=1):
        ports = wait_for(
            lambda i=i: (
                [
                    p
                    for p in cluster.cli("node", "inspect", f"node-{i}").json()[0]["mesh"]["ports"]
                    if p["backends"] == 3
                ]
                or None
            ),
            what=f"node-{i} to report its mesh",
        )
        assert {(p["port"], p["protocol"]) for p in ports} == {(port, "tcp"), (port, "udp")}
        expected = "userspace" if mode == "userspace" else "kernel"
        assert {p["path"] for p in ports} == {expected}, ports

    assert cluster.cli("service", "scale", "web=1").code == 0
    (kept,) = cluster.running("web")
    for addr in NODES:
        wait_for(
            lambda a=addr: set(slots_seen(a, port, 6)) == {str(kept["slot"])},
            what=f"only the kept task on {addr}",
        )

    assert cluster.cli("service", "rm", "web").code == 0
    for addr in NODES:
        wait_for(lambda a=addr: try_ask(a, port) is None, what=f"{addr}:{port} to stop answering")
        wait_for(lambda a=addr: _bindable(a, port), what=f"{addr}:{port} to be free")


def test_a_task_on_a_dead_node_leaves_the_rotation_within_the_grace(make_cluster: Any) -> None:
    cluster = mesh_cluster(make_cluster)
    port = free_published_port()
    cluster.create_service(
        "web", 3, "--replicas-max-per-node", "1", "--publish", f"{port}:80", "app:1", *SERVER_COMMAND
    )
    wait_for(lambda: answered_by(NODES[0], port, {"1", "2", "3"}), what="all three tasks in rotation")
    dead = next(t for t in cluster.running("web") if t["node"] == "node-3")
    agent = cluster.agents[2]
    agent.kill9()
    cluster.kill_tasks_of(agent)
    # Within the heartbeat grace (3 x 1s) plus a second (and a margin for a
    # busy machine): every request to node-1 is answered again...
    wait_for(lambda: "!" not in slots_seen(NODES[0], port, 10), timeout=30, what="requests to succeed again")
    # ...and never by the dead task.
    seen = slots_seen(NODES[0], port)
    assert str(dead["slot"]) not in seen and "!" not in seen, seen


def test_proxy_protocol_and_the_clients_address(make_cluster: Any) -> None:
    cluster = mesh_cluster(make_cluster)
    v1, v2, plain = free_published_port(), free_published_port(), free_published_port()
    cluster.create_service(
        "web",
        1,
        "--constraint",
        "node.hostname==node-1",
        "--publish",
        f"{v1}:80,proxy-protocol=v1",
        "--publish",
        f"published={v2},target=81,proxy-protocol=v2",
        "--publish",
        f"{plain}:82",
        "app:1",
        *SERVER_COMMAND,
    )
    for addr in NODES:
        for port in (v1, v2):
            answer = wait_for(lambda a=addr, p=port: try_ask(a, p), what=f"{addr}:{port} to answer")
            # The PROXY header names the client, whichever node it came in by.
            assert answer.proxy.startswith(CLIENT_ADDR + ":"), (addr, port, answer)
    # The task runs on node-1, whose mesh forwards in the kernel: it sees the
    # client itself; through node-2's userspace relay it sees node-2.
    assert wait_for(lambda: try_ask(NODES[0], plain)).peer_ip == CLIENT_ADDR
    assert wait_for(lambda: try_ask(NODES[1], plain)).peer_ip == NODES[1]
    # Refused: the PROXY protocol on a host-mode or udp port.
    bad = cluster.cli(
        "service",
        "create",
        "--name",
        "x",
        "--publish",
        f"published={v1 + 1},target=80,mode=host,proxy-protocol=v1",
        "app:1",
        "true",
    )
    assert_refused(bad, "proxy-protocol")


def test_a_second_service_on_the_port_is_refused_and_agents_clean_up(make_cluster: Any) -> None:
    cluster = mesh_cluster(make_cluster)
    port = free_published_port()
    cluster.create_service("web", 1, "--publish", f"{port}:80", "app:1", *SERVER_COMMAND)
    res = cluster.cli("service", "create", "--name", "other", "--publish", f"{port}:8080", "app:1", "true")
    assert_refused(res, f"port {port}/tcp", "web")
    node_ids = [n["id"] for n in cluster.nodes()]
    assert table_name(node_ids[0]) in tables(), "node-1 runs the kernel path"
    for agent in cluster.agents:
        agent.stop()
    assert not {table_name(n) for n in node_ids} & tables(), "an agent that stops removes its nft table"
    for addr in NODES:
        assert try_ask(addr, port) is None


def _bindable(addr: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((addr, port))
        except OSError:
            return False
    return True


def test_a_process_task_reaches_another_service_by_name_through_shoal_dns(make_cluster: Any) -> None:
    cluster = mesh_cluster(make_cluster)
    # A service with no task has an address but no route yet: connecting is
    # refused on the spot, and nothing leaves the host for that address.
    cluster.create_service("idle", 0, "--expose", "80", "app:1", *SERVER_COMMAND)
    idle_vip = cluster.cli("service", "inspect", "idle").json()[0]["endpoint"]["virtual_ip"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((idle_vip, 80), timeout=5).close()
    cluster.create_service("api", 2, "--expose", "80", "app:1", *SERVER_COMMAND)
    cluster.create_service("client", 1, "app:1", *SERVER_COMMAND, "ask", "api", "80")
    (task,) = wait_for(lambda: cluster.running("client"), what="the client to run")
    answer = cluster.task_dir(task["id"]) / "work" / "answer.txt"
    text = wait_for(
        lambda: answer.exists() and answer.read_text(), timeout=60, what="the client to reach api by name"
    )
    vip = cluster.cli("service", "inspect", "api").json()[0]["endpoint"]["virtual_ip"]
    # It asked SHOAL_DNS for "api", got the service's virtual address, and
    # one of api's tasks answered there.
    assert text.startswith(f"api={vip} slot="), text
    # Networks: unique names, checked references, no removal while in use.
    assert cluster.cli("network", "create", "front").code == 0
    assert_refused(cluster.cli("network", "create", "front"), "front", "already in use")
    for taken in ("default", "ingress"):
        assert_refused(cluster.cli("network", "create", taken), f'name "{taken}"', "choose another")
    bad = cluster.cli("service", "create", "--name", "x", "--network", "nope", "app:1", "true")
    assert_refused(bad, "network nope not found")
    assert cluster.cli("service", "update", "-d", "--network-add", "front", "api").code == 0
    assert_refused(cluster.cli("network", "rm", "front"), "in use", "api")
    assert cluster.cli("service", "update", "-d", "--network-rm", "front", "api").code == 0
    assert cluster.cli("network", "rm", "front").code == 0
    assert cluster.cli("network", "ls", "-q").out.strip() == ""
