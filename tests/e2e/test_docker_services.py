"""Services as real containers: agents started with ``--runtime docker``,
three of them sharing this machine's Docker Engine, each with its own
advertise address (127.0.0.11, .12, .13).

Each test builds its own cluster and drives it only through the ``shoal`` CLI;
what really runs is read from the engine through the Docker SDK. Containers
are found by the labels shoal puts on them (``shoal.service.name``,
``shoal.node.id``, ``shoal.task.id`` …), kept to this cluster's node IDs since
other clusters may share the engine. Closing a cluster removes every container
of its nodes, even after a failure (``stop_agent_tasks``, then a sweep by
label: tests/support/cluster.py).

Without an engine these tests skip, except under CI (``CI`` set), where they
fail.
"""

from __future__ import annotations

import functools
import re
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

import docker.errors
import psutil
import pytest

from shoal.agent.runtime.docker import (
    LABEL_NODE_ID,
    LABEL_SERVICE_ID,
    LABEL_SERVICE_NAME,
    LABEL_SLOT,
    LABEL_TASK_ID,
)
from shoal.cli.progress import REJECT_LIMIT
from tests.support.cluster import Cluster, stays, wait_for
from tests.support.docker_engine import containers_of
from tests.support.etcd_server import free_port

pytestmark = pytest.mark.docker

MIB = 1024 * 1024
SLEEP = ["sleep", "3600"]
# A task that stops as soon as it is asked to: busybox `sleep` as a
# container's PID 1 ignores SIGTERM (the kernel drops signals to an init
# without a handler), so stopping it always takes the whole grace period.
STOPS_ON_TERM = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
HTTPD = ["httpd", "-f", "-p", "80", "-h", "/www"]


@pytest.fixture
def cluster(engine: Any, make_cluster: Any) -> Cluster:
    """A manager and three ready agents running tasks as containers."""
    made: Cluster = make_cluster(agents=3, runtime="docker")
    return made


def create(cluster: Cluster, *args: str) -> None:
    res = cluster.cli("service", "create", *args)
    assert res.code == 0, f"service create failed ({res.code}):\n{res.out}\n{res.err}"


def node_ids(cluster: Cluster) -> set[str]:
    return {n["id"] for n in cluster.nodes()}


def inspect_service(cluster: Cluster, name: str) -> dict[str, Any]:
    res = cluster.cli("service", "inspect", name)
    assert res.code == 0, res.err
    service: dict[str, Any] = res.json()[0]
    return service


def exactly(count: int, get: Callable[[], list[Any]]) -> Callable[[], list[Any] | None]:
    """A wait_for condition: get()'s result once it has `count` items."""

    def check() -> list[Any] | None:
        found = get()
        return found if len(found) == count else None

    return check


def command_of(container: Any) -> list[str]:
    config = container.attrs["Config"]
    return list(config["Entrypoint"] or []) + list(config["Cmd"] or [])


def shoal_version(container: Any) -> str:
    """What /etc/shoal-version says inside the running container."""
    code, output = container.exec_run(["cat", "/etc/shoal-version"])
    assert code == 0, output
    return str(output.decode().strip())


def http_get(url: str) -> str | None:
    """The body at url, or None while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body: bytes = response.read()
            return body.decode()
    except OSError:
        return None


def test_replicas_run_as_containers_labelled_with_their_task_node_and_service(
    cluster: Cluster, engine: Any
) -> None:
    create(
        cluster, "--name", "web", "--replicas", "3", "--stop-grace-period", "1s", "--update-monitor", "0s",
        "shoal-test:1", *SLEEP,
    )  # fmt: skip
    nodes = node_ids(cluster)
    running = cluster.running("web")
    assert len(running) == 3
    assert {t["node_id"] for t in running} == nodes, "three replicas on three agents: one each"
    service_id = inspect_service(cluster, "web")["id"]

    found = wait_for(exactly(3, lambda: containers_of(engine, "web", nodes)), 10, what="3 running containers")
    by_task = {c.labels[LABEL_TASK_ID]: c for c in found}
    assert set(by_task) == {t["id"] for t in running}, "one container per running task"
    for task in running:
        container = by_task[task["id"]]
        assert container.labels[LABEL_NODE_ID] == task["node_id"]
        assert container.labels[LABEL_SERVICE_ID] == service_id
        assert container.labels[LABEL_SERVICE_NAME] == "web"
        assert container.labels[LABEL_SLOT] == str(task["slot"])
        assert container.attrs["Config"]["Image"] == "shoal-test:1"
        assert command_of(container) == SLEEP

    table = cluster.cli("service", "ps", "web")
    assert table.code == 0, table.err
    for task in running:
        (row,) = [line for line in table.out.splitlines() if line.startswith(task["id"][:12])]
        assert " Running " in row, row

    res = cluster.cli("service", "rm", "web")
    assert res.code == 0, res.err
    wait_for(
        lambda: not containers_of(engine, "web", nodes, running_only=False),
        20,
        what="service rm to remove all 3 containers",
    )


# Both ways of putting one web server on each of the three nodes.
ONE_PER_NODE = {
    "global": ["--mode", "global"],
    "replicated": ["--replicas", "3", "--replicas-max-per-node", "1"],
}


@pytest.mark.parametrize("mode", list(ONE_PER_NODE))
def test_host_mode_port_answers_on_every_node_and_a_second_claim_on_it_stays_pending(
    cluster: Cluster, engine: Any, mode: str
) -> None:
    port = free_port()
    publish = f"published={port},target=80,mode=host"
    create(
        cluster, "--name", "web", *ONE_PER_NODE[mode], "--publish", publish, "--update-monitor", "0s",
        "shoal-test:1", *HTTPD,
    )  # fmt: skip
    addresses = sorted(n["address"] for n in cluster.nodes())
    assert addresses == ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
    for address in addresses:
        url = f"http://{address}:{port}/"
        body = wait_for(functools.partial(http_get, url), 10, what=f"an answer at {url}")
        assert body == "shoal test image 1\n"

    res = cluster.cli(
        "service", "create", "--name", "web2", *ONE_PER_NODE[mode], "--publish", publish, "-d",
        "shoal-test:1", *HTTPD,
    )  # fmt: skip
    assert res.code == 0, f"a host-mode port is claimed per node, not refused for the cluster:\n{res.err}"

    seen: list[list[dict[str, Any]]] = [[]]

    def all_pending_on_the_port() -> bool:
        seen[0] = cluster.tasks("web2")
        return len(seen[0]) == 3 and all(
            t["current_state"] == "pending" and "host-mode port already in use" in t["error"] for t in seen[0]
        )

    try:
        wait_for(all_pending_on_the_port, 10)
    except AssertionError:
        states = [(t["name"], t["current_state"], t["error"]) for t in seen[0]]
        raise AssertionError(f"expected web2's 3 tasks pending on the host port, got: {states}") from None
    nodes = node_ids(cluster)
    stays(
        lambda: all_pending_on_the_port() and not containers_of(engine, "web2", nodes, running_only=False),
        3,
        "web2 to stay pending, with no container",
    )
    for address in addresses:
        assert http_get(f"http://{address}:{port}/") == "shoal test image 1\n"


def test_rolling_update_replaces_containers_one_by_one_with_the_new_image(
    cluster: Cluster, engine: Any
) -> None:
    create(
        cluster, "--name", "web", "--replicas", "3", "--update-parallelism", "1", "--update-delay", "1s",
        "--update-monitor", "1s", "shoal-test:1", *STOPS_ON_TERM,
    )  # fmt: skip
    nodes = node_ids(cluster)
    old = wait_for(exactly(3, lambda: containers_of(engine, "web", nodes)), 10, what="3 running containers")
    assert [shoal_version(c) for c in old] == ["1", "1", "1"]
    old_ids = {c.id for c in old}

    res = cluster.cli("service", "update", "--image", "shoal-test:2", "-d", "web")
    assert res.code == 0, res.out + res.err
    samples: list[tuple[int, int]] = []  # (old running, new running), as seen over time
    deadline = time.monotonic() + 90
    while True:
        running = containers_of(engine, "web", nodes)
        kept = sum(c.id in old_ids for c in running)
        samples.append((kept, len(running) - kept))
        if samples[-1] == (0, 3):
            break
        assert time.monotonic() < deadline, f"update not done after 90s; seen (old, new): {samples[-20:]}"
        time.sleep(0.1)

    assert all(kept + new >= 2 for kept, new in samples), f"more than one replica down at once: {samples}"
    new_counts = [new for _, new in samples]
    assert new_counts == sorted(new_counts), f"a new container went away during the update: {samples}"
    assert {1, 2} <= set(new_counts), (
        f"the containers were not replaced one at a time: {sorted(set(samples))}"
    )

    running = containers_of(engine, "web", nodes)
    assert [c.attrs["Config"]["Image"] for c in running] == ["shoal-test:2"] * 3
    assert [shoal_version(c) for c in running] == ["2", "2", "2"]
    tasks = cluster.tasks("web")
    assert sorted((t["image"], t["desired_state"]) for t in tasks) == [
        ("shoal-test:1", "shutdown"),
        ("shoal-test:1", "shutdown"),
        ("shoal-test:1", "shutdown"),
        ("shoal-test:2", "running"),
        ("shoal-test:2", "running"),
        ("shoal-test:2", "running"),
    ]
    wait_for(
        lambda: (inspect_service(cluster, "web")["update_status"] or {}).get("state") == "completed",
        10,
        what="update_status completed",
    )


def test_missing_image_is_rejected_with_the_engines_message_and_not_retried_in_a_hot_loop(
    cluster: Cluster, engine: Any
) -> None:
    with pytest.raises(docker.errors.APIError) as pulled:
        engine.api.pull("shoal-test", tag="nope")
    engine_says = str(pulled.value.explanation)

    res = cluster.cli(
        "service", "create", "--name", "nope", "--restart-delay", "2s", "-d", "shoal-test:nope", "true"
    )
    assert res.code == 0, res.err
    created = time.monotonic()

    def rejected() -> list[dict[str, Any]]:
        return [t for t in cluster.tasks("nope") if t["current_state"] == "rejected"]

    first = wait_for(rejected, 15, what="a rejected task")[0]
    assert first["error"] == f"pulling image shoal-test:nope failed: {engine_says}"
    table = cluster.cli("service", "ps", "nope")
    assert "pulling image shoal-test:nope failed" in table.out, table.out

    # With a 2 s restart delay, about 5 s after creation there are 3 tasks:
    # a hot loop would have made dozens.
    remaining = 5.5 - (time.monotonic() - created)
    stays(lambda: len(cluster.tasks("nope")) <= 4, max(remaining, 0), "at most 4 tasks")
    tasks = cluster.tasks("nope")
    assert 2 <= len(tasks) <= 4, [(t["current_state"], t["created_at"]) for t in tasks]
    for task in tasks:
        if task["current_state"] == "rejected":
            assert task["error"] == first["error"]
    assert not containers_of(engine, "nope", node_ids(cluster), running_only=False)


def test_create_of_an_image_that_cannot_be_pulled_shows_why_and_ends_saying_the_service_exists(
    cluster: Cluster, engine: Any
) -> None:
    with pytest.raises(docker.errors.APIError) as pulled:
        engine.api.pull("shoal-test", tag="absent")
    why = f"pulling image shoal-test:absent failed: {pulled.value.explanation}"
    started = time.monotonic()
    res = cluster.cli(
        "service", "create", "--name", "absent", "--replicas", "2", "--restart-delay", "1s",
        "shoal-test:absent", "sleep", "3600", timeout=120,
    )  # fmt: skip
    took = time.monotonic() - started
    assert res.code == 1, f"{res.out}\n{res.err}"
    # Piped, each slot's line is printed whole when it changes.
    slot_lines = [line for line in res.out.splitlines() if re.match(r"^[12]/2: ", line)]
    assert any(line.endswith(f"rejected: {why}") for line in slot_lines), res.out
    first, *rest = res.err.splitlines()
    rejected = re.match(r"^Error: (\d+) tasks of service absent were rejected: (.*)$", first)
    assert rejected is not None and int(rejected[1]) >= REJECT_LIMIT and rejected[2] == why, first
    assert rest == [
        "The service absent exists and keeps trying: see why with `shoal service ps --no-trunc absent`, "
        "or remove it with `shoal service rm absent`.",
    ]
    print(f"create of an image that cannot be pulled gave up after {took:.1f}s")
    assert [s["name"] for s in cluster.services()] == ["absent"]
    whole = cluster.cli("service", "ps", "--no-trunc", "absent")
    assert why in whole.out, whole.out


def test_memory_limit_reaches_the_container_and_an_unhealthy_task_is_replaced(
    cluster: Cluster, engine: Any
) -> None:
    create(
        cluster, "--name", "sick", "--limit-memory", "64m",
        "--health-cmd", "false", "--health-interval", "500ms", "--health-retries", "1",
        "--restart-delay", "1s", "-d", "shoal-test:1", *STOPS_ON_TERM,
    )  # fmt: skip
    nodes = node_ids(cluster)
    (first,) = wait_for(
        lambda: containers_of(engine, "sick", nodes, running_only=False), 15, what="the first container"
    )
    assert first.attrs["HostConfig"]["Memory"] == 64 * MIB == 67108864
    check = first.attrs["Config"]["Healthcheck"]
    assert (check["Test"], check["Interval"], check["Retries"]) == (["CMD-SHELL", "false"], 500_000_000, 1)
    first_task = first.labels[LABEL_TASK_ID]

    def replaced() -> list[dict[str, Any]] | None:
        tasks = cluster.tasks("sick")
        failed = [t for t in tasks if t["id"] == first_task and t["current_state"] == "failed"]
        return tasks if failed and len(tasks) >= 2 else None

    tasks = wait_for(replaced, 30, what="the unhealthy task to fail and be replaced")
    (failed,) = [t for t in tasks if t["id"] == first_task]
    assert failed["error"].startswith("unhealthy"), failed
    assert failed["desired_state"] == "shutdown"
    newer = [t for t in tasks if t["id"] != first_task]
    assert all(t["slot"] == failed["slot"] and t["created_at"] >= failed["created_at"] for t in newer)


def test_killed_agent_adopts_its_containers_and_a_container_removed_behind_its_back_is_replaced(
    cluster: Cluster, engine: Any
) -> None:
    create(
        cluster, "--name", "web", "--replicas", "3", "--restart-delay", "1s", "--update-monitor", "0s",
        "shoal-test:1", *STOPS_ON_TERM,
    )  # fmt: skip
    nodes = node_ids(cluster)
    before = {c.id: c.labels[LABEL_TASK_ID] for c in containers_of(engine, "web", nodes)}
    assert len(before) == 3

    def containers_now() -> dict[str, str]:
        return {
            c.id: c.labels[LABEL_TASK_ID] for c in containers_of(engine, "web", nodes, running_only=False)
        }

    agent = cluster.agents[0]
    agent.kill9()
    assert containers_now() == before, "containers outlive their agent"
    cluster.restart(agent)
    wait_for(
        lambda: {n["id"]: n["status"] for n in cluster.nodes()} == dict.fromkeys(nodes, "ready"),
        20,
        what="the same three nodes, all ready",
    )
    stays(lambda: containers_now() == before, 3, "the same three containers (adopted, none duplicated)")
    assert {t["id"] for t in cluster.running("web")} == set(before.values())

    victim_id, victim_task = next(iter(before.items()))
    engine.api.remove_container(victim_id, force=True)

    def replacement() -> dict[str, str] | None:
        now = {c.id: c.labels[LABEL_TASK_ID] for c in containers_of(engine, "web", nodes)}
        return now if len(now) == 3 and victim_id not in now else None

    now = wait_for(replacement, 30, what="a new container in place of the removed one")
    (new_id,) = set(now) - set(before)
    assert now[new_id] not in before.values(), "the replacement is a new task"
    tasks = {t["id"]: t for t in cluster.tasks("web")}
    assert tasks[now[new_id]]["slot"] == tasks[victim_task]["slot"]
    assert tasks[victim_task]["desired_state"] == "shutdown"
    assert tasks[victim_task]["current_state"] in ("failed", "shutdown"), tasks[victim_task]
    stays(
        lambda: len(containers_of(engine, "web", nodes, running_only=False)) == 3, 2, "exactly 3 containers"
    )


def test_agent_with_runtime_auto_picks_docker_when_an_engine_answers(engine: Any, make_cluster: Any) -> None:
    cluster = make_cluster(agents=1, runtime="auto")
    (node,) = cluster.nodes()
    assert node["runtime"] == "docker"
    assert "using docker" in cluster.agents[0].output(), "the agent says which runtime it picked"
    create(cluster, "--name", "one", "--update-monitor", "0s", "shoal-test:1", *STOPS_ON_TERM)
    (container,) = containers_of(engine, "one", {node["id"]})
    assert container.labels[LABEL_NODE_ID] == node["id"]


def test_twenty_replicas_become_twenty_containers_spread_over_three_agents(
    cluster: Cluster, engine: Any
) -> None:
    """Also prints figures: time to 20 running containers, and agent RSS."""
    idle_rss = [psutil.Process(a.pid).memory_info().rss for a in cluster.agents]
    nodes = node_ids(cluster)
    started = time.monotonic()
    create(cluster, "--name", "many", "--replicas", "20", "-d", "shoal-test:1", *STOPS_ON_TERM)
    found = wait_for(
        exactly(20, lambda: containers_of(engine, "many", nodes)), 120, 0.05, what="20 running containers"
    )
    to_containers = time.monotonic() - started
    wait_for(lambda: len(cluster.running("many")) == 20, 30, what="service ps to show 20 running tasks")
    to_running = time.monotonic() - started
    assert sorted(Counter(c.labels[LABEL_NODE_ID] for c in found).values()) == [6, 7, 7]
    assert len({c.labels[LABEL_TASK_ID] for c in found}) == 20
    rss = [psutil.Process(a.pid).memory_info().rss for a in cluster.agents]
    print(
        f"\nFIGURE: service create --replicas 20 -> 20 running containers: {to_containers:.2f}s "
        f"(service ps shows 20 running: {to_running:.2f}s)"
        f"\nFIGURE: agent RSS idle: {', '.join(f'{r / MIB:.1f} MiB' for r in idle_rss)}; "
        f"with 20 containers over 3 agents: {', '.join(f'{r / MIB:.1f} MiB' for r in rss)}"
    )
