"""The routing mesh with real containers (docker runtime): three agents on
127.0.0.11-13 sharing this machine's engine, busybox httpd tasks that serve
their own slot number, requests over loopback.

The acceptance of issue 15 on the docker runtime: a published port answers
on every node (those without a task too), spreads over the tasks, a dead
node's task leaves the rotation within the heartbeat grace, and a scale-down
leaves only the task that stays.
"""

from __future__ import annotations

import re
import socket
from collections import Counter
from typing import Any

import pytest

from tests.support.cluster import Cluster, wait_for
from tests.support.mesh import CLIENT_ADDR, free_published_port

pytestmark = pytest.mark.docker

NODES = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
# Each task serves its slot number at /.
SLOT_HTTPD = ["sh", "-c", "echo $SHOAL_TASK_SLOT > /www/index.html; exec httpd -f -p 80 -h /www"]


def get(addr: str, port: int) -> str:
    """The body of GET / at addr:port ("!" when the request failed)."""
    try:
        with socket.create_connection((addr, port), timeout=3, source_address=(CLIENT_ADDR, 0)) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while more := s.recv(65536):
                data += more
    except OSError:
        return "!"
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    return body.strip() if head.startswith("HTTP/1.") and " 200 " in head else "!"


def served(addr: str, port: int, requests: int = 30) -> Counter[str]:
    return Counter(get(addr, port) for _ in range(requests))


def test_published_port_answers_on_every_node_survives_a_dead_node_and_scaling(
    engine: Any, make_cluster: Any
) -> None:
    cluster: Cluster = make_cluster(agents=3, runtime="docker")
    port = free_published_port()
    res = cluster.cli(
        "service", "create", "--name", "web", "--replicas", "3", "--replicas-max-per-node", "1",
        "--stop-grace-period", "1s", "--publish", f"{port}:80", "shoal-test:1", *SLOT_HTTPD,
    )  # fmt: skip
    assert res.code == 0, res.err
    for addr in NODES:
        wait_for(
            lambda a=addr: set(served(a, port)) == {"1", "2", "3"}, what=f"all three tasks behind {addr}"
        )

    # Node 3 dies with its task: requests to node 1 succeed again within the
    # heartbeat grace (3 x 1s) plus a second (and a margin for a busy
    # machine), then never reach the dead task.
    node3 = next(n["id"] for n in cluster.nodes() if n["hostname"] == "node-3")
    dead = next(t for t in cluster.running("web") if t["node_id"] == node3)
    cluster.agents[2].kill9()
    for c in engine.containers.list(filters={"label": f"shoal.node.id={node3}"}):
        c.kill()
    wait_for(lambda: "!" not in served(NODES[0], port, 10), timeout=30, what="requests to succeed again")
    seen = served(NODES[0], port)
    assert str(dead["slot"]) not in seen and "!" not in seen, seen

    # Scaled to one: only that task answers, on the nodes without a task too.
    # (-d: the dead node's task never reports that it stopped.)
    assert cluster.cli("service", "scale", "-d", "web=1").code == 0
    (kept,) = wait_for(
        lambda: r if len(r := [t for t in cluster.running("web") if t["node_id"] != node3]) == 1 else None
    )
    for addr in NODES[:2]:
        wait_for(
            lambda a=addr: set(served(a, port, 6)) == {str(kept["slot"])},
            what=f"only the kept task on {addr}",
        )


def _cgi(name: str, then: str) -> str:
    """A task that answers /cgi-bin/x with its name, then what `then` prints."""
    return f"""\
      - sh
      - -c
      - |
        mkdir -p /www/cgi-bin
        printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho {name}\\n{then}\\n' > /www/cgi-bin/x
        chmod +x /www/cgi-bin/x
        exec httpd -f -p 80 -h /www
"""


def test_a_stack_whose_services_find_each_other_by_name(
    engine: Any, make_cluster: Any, tmp_path: Any
) -> None:
    cluster: Cluster = make_cluster(agents=3, runtime="docker")
    port = free_published_port()
    compose = tmp_path / "stack.yml"
    compose.write_text(
        f"""\
services:
  web:
    image: shoal-test:1
    ports: ["{port}:80"]
    stop_grace_period: 1s
    command:
{_cgi("web", "wget -qO- http://api/cgi-bin/x")}
  api:
    image: shoal-test:1
    expose: [80]
    stop_grace_period: 1s
    command:
{_cgi("api", "wget -qO- http://cache/")}
  cache:
    image: shoal-test:1
    expose: [80]
    stop_grace_period: 1s
    command: ["sh", "-c", "echo cache-$$SHOAL_TASK_SLOT > /www/index.html && exec httpd -f -p 80 -h /www"]
    deploy: {{replicas: 3}}
  other:
    image: shoal-test:1
    command: ["sleep", "3600"]
    networks: [isolated]
networks:
  isolated:
"""
    )
    res = cluster.cli("stack", "deploy", "-c", str(compose), "shop", timeout=240)
    assert res.code == 0, res.out + res.err
    assert "Creating network shop_default" in res.out and "Creating network shop_isolated" in res.out
    # web -> api -> cache, each found by its short name, from any node.
    for addr in NODES:
        body = wait_for(lambda a=addr: _chain(a, port), what=f"the chain through {addr}")
        assert body.split()[:2] == ["web", "api"], body

    nodes = {n["id"] for n in cluster.nodes()}

    def container(service: str) -> Any:
        found = engine.containers.list(filters={"label": f"shoal.service.name=shop_{service}"})
        return next(c for c in found if c.labels.get("shoal.node.id") in nodes)

    # tasks.cache: one address per task, each reaching that task.
    web = container("web")
    code, out = web.exec_run(["nslookup", "tasks.cache"])
    addresses = [line.split()[-1] for line in out.decode().splitlines() if line.startswith("Address:")][1:]
    assert code == 0 and len(addresses) == 3, out.decode()
    served = {web.exec_run(["wget", "-qO-", f"http://{a}/"]).output.decode().strip() for a in addresses}
    assert served == {"cache-1", "cache-2", "cache-3"}
    # A service on another network cannot resolve them.
    code, out = container("other").exec_run(["nslookup", "api"])
    assert code != 0 or "10.2" not in out.decode(), out.decode()

    assert cluster.cli("stack", "rm", "shop").code == 0
    left = cluster.cli("network", "ls", "--format", "json").json()
    assert not [n for n in left if n["name"].startswith("shop_")], left


def _chain(addr: str, port: int) -> str | None:
    body = _get(addr, port, "/cgi-bin/x")
    return body if "cache-" in body else None


def _get(addr: str, port: int, path: str) -> str:
    try:
        with socket.create_connection((addr, port), timeout=5) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            data = b""
            while more := s.recv(65536):
                data += more
    except OSError:
        return ""
    # A CGI's own header lines end in a bare newline.
    return re.split(r"\r?\n\r?\n", data.decode(errors="replace"), maxsplit=1)[-1].strip()
