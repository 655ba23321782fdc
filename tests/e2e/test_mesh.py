"""The routing mesh and task endpoints, on the process runtime: three
agents on 127.0.0.11-13, real traffic over loopback."""

from __future__ import annotations

from typing import Any

from shoal.defaults import MESH
from tests.support.cluster import wait_for
from tests.support.mesh import SERVER_COMMAND, ask, free_published_port


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
