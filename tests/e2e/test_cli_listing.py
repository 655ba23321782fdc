"""Listing as the docker CLI does it: ``-f/--filter``, Go-template
``--format``, ``--no-trunc``, several services at once, ``inspect --pretty``,
and why a task on a dead node has no news.

One cluster for the module (a manager and three agents labelled zone=a, a, b,
process runtime), with three services made once: ``web`` (2 replicas,
label tier=front, 256 MiB reserved), ``webhook`` (1) and ``api`` (global).
The tests only read it, through the real ``shoal`` CLI; the one that kills an
agent builds a cluster of its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.cluster import Cluster, assert_refused, sleep_seconds, start_cluster, wait_for, wait_pids
from tests.support.etcd_server import EtcdServer

ZONES = [{"zone": "a"}, {"zone": "a"}, {"zone": "b"}]
SECONDS = sleep_seconds(3801)
SLEEP = ["app:1", "sleep", SECONDS]


@pytest.fixture(scope="module")
def shared(etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(etcd_server, tmp_path_factory.mktemp("listing"), agents=3, labels=ZONES)
    try:
        for name, flags in (
            ("web", ["--replicas", "2", "--label", "tier=front", "--reserve-memory", "256m"]),
            ("webhook", ["--replicas", "1", "--restart-delay", "1m30s"]),
            ("api", ["--mode", "global"]),
        ):
            res = c.cli("service", "create", "-d", "--name", name, *flags, *SLEEP)
            assert res.code == 0, res.err
        wait_pids(f"sleep {SECONDS}", 6)
        wait_for(lambda: sum(len(c.running(s)) for s in ("web", "webhook", "api")) == 6, what="6 running")
        yield c
    finally:
        c.close()


@pytest.fixture
def cluster(shared: Cluster, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield shared
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(shared.dump_logs())


def out(cluster: Cluster, *args: str) -> str:
    res = cluster.cli(*args)
    assert res.code == 0, f"shoal {' '.join(args)} failed ({res.code}):\n{res.out}\n{res.err}"
    return res.out


def test_service_ls_filters_by_name_prefix_and_prints_a_template(cluster: Cluster) -> None:
    listed = out(cluster, "service", "ls", "-f", "name=we", "--format", "{{.Name}} {{.Replicas}}")
    assert sorted(listed.splitlines()) == ["web 2/2", "webhook 1/1"]
    by_label = out(cluster, "service", "ls", "-f", "label=tier=front", "--format", "{{.Name}}")
    assert by_label.split() == ["web"]
    modes = out(cluster, "service", "ls", "-f", "mode=global", "-f", "mode=replicated-job", "-q")
    (api,) = [s for s in cluster.services() if s["name"] == "api"]
    assert modes.split() == [api["id"]]


def test_service_ls_table_template_has_dockers_headers_and_json_rows_dockers_fields(cluster: Cluster) -> None:
    table = out(cluster, "service", "ls", "--format", r"table {{.Name}}\t{{.Mode}}\t{{.Replicas}}")
    lines = table.splitlines()
    assert lines[0].split() == ["NAME", "MODE", "REPLICAS"]
    assert sorted(line.split() for line in lines[1:]) == [
        ["api", "global", "3/3"],
        ["web", "replicated", "2/2"],
        ["webhook", "replicated", "1/1"],
    ]
    rows = [json.loads(line) for line in out(cluster, "service", "ls", "--format", "{{json .}}").splitlines()]
    assert all(set(r) == {"ID", "Name", "Mode", "Replicas", "Image", "Ports"} for r in rows)
    assert {r["Name"]: len(r["ID"]) for r in rows} == {"api": 12, "web": 12, "webhook": 12}
    whole = out(cluster, "service", "ls", "--no-trunc", "--format", "{{.ID}}").split()
    assert sorted(whole) == sorted(s["id"] for s in cluster.services())


def test_json_output_keeps_the_shapes_of_cli_md(cluster: Cluster) -> None:
    services = json.loads(out(cluster, "service", "ls", "--format", "json"))
    assert {frozenset(s) for s in services} == {
        frozenset({"id", "name", "mode", "replicas_desired", "replicas_running", "image", "ports"})
    }
    tasks = json.loads(out(cluster, "service", "ps", "web", "--format", "json"))
    assert {"id", "name", "service", "slot", "node_id", "node", "image", "desired_state"} <= set(tasks[0])
    assert {"current_state", "error", "created_at", "updated_at"} <= set(tasks[0])
    nodes = json.loads(out(cluster, "node", "ls", "--format", "json"))
    assert {"id", "hostname", "role", "status", "availability", "address", "labels", "platform"} <= set(
        nodes[0]
    )


def test_service_ps_of_several_services_whole_with_no_trunc(cluster: Cluster) -> None:
    web, webhook = cluster.tasks("web"), cluster.tasks("webhook")
    table = out(cluster, "service", "ps", "--no-trunc", "web", "webhook")
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["ID", "NAME", "IMAGE"]
    assert "DESIRED STATE" in lines[0] and "CURRENT STATE" in lines[0] and "ERROR" in lines[0]
    shown_ids = {line.split()[0] for line in lines[1:]}
    assert shown_ids == {t["id"] for t in web + webhook}, "every task of both, whole IDs"
    names = {line.split()[1] for line in lines[1:]}
    assert names == {"web.1", "web.2", "webhook.1"}


def test_service_ps_filters_by_node_and_desired_state_and_prints_templates(cluster: Cluster) -> None:
    api = cluster.tasks("api")
    on_node1 = out(
        cluster, "service", "ps", "api", "-f", "node=node-1", "--format", "{{.Node}} {{.DesiredState}}"
    )
    assert on_node1.splitlines() == ["node-1 Running"]
    both = out(cluster, "service", "ps", "api", "web", "-f", "node=node-1", "-f", "node=node-3", "-q")
    expected = {t["id"] for t in api + cluster.tasks("web") if t["node"] in ("node-1", "node-3")}
    assert set(both.split()) == expected
    assert out(cluster, "service", "ps", "api", "-f", "desired-state=shutdown", "-q") == ""
    names = out(cluster, "service", "ps", "web", "--format", "{{upper .Name}}").split()
    assert sorted(names) == ["WEB.1", "WEB.2"]


def test_node_ls_and_node_ps_filter_like_docker(cluster: Cluster) -> None:
    workers = out(cluster, "node", "ls", "-f", "role=worker", "--format", "{{.Hostname}}").split()
    assert sorted(workers) == ["node-1", "node-2", "node-3"]
    assert out(cluster, "node", "ls", "-f", "role=manager", "-q") == ""
    zone_a = out(cluster, "node", "ls", "-f", "node.label=zone=a", "--format", "{{.Hostname}}").split()
    assert sorted(zone_a) == ["node-1", "node-2"]
    table = out(cluster, "node", "ls", "-f", "name=node-3").splitlines()
    assert table[0].split() == ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "ROLE", "ADDRESS", "RUNTIME"]
    assert len(table) == 2 and table[1].split()[1:5] == ["node-3", "Ready", "Active", "worker"]
    listed = out(cluster, "node", "ps", "node-1", "node-3", "--format", "{{.Name}}@{{.Node}}").split()
    assert {entry.split("@")[1] for entry in listed} == {"node-1", "node-3"}
    assert len([e for e in listed if e.startswith("api.")]) == 2


def test_inspect_pretty_shows_human_units(cluster: Cluster) -> None:
    text = out(cluster, "service", "inspect", "--pretty", "web")
    assert re.search(r"^Name:\s+web$", text, re.M), text
    assert re.search(r"^ Replicas:\s+2$", text, re.M), text
    assert re.search(r"^  Memory:\s+256MiB$", text, re.M), text
    assert re.search(r"^ Monitoring Period:\s+5s$", text, re.M), text
    assert re.search(r"^ Stop Grace Period:\s+10s$", text, re.M), text
    assert "tier=front" in text
    assert re.search(r"^ Delay:\s+1m30s$", out(cluster, "service", "inspect", "--pretty", "webhook"), re.M)
    node = out(cluster, "node", "inspect", "--pretty", "node-1")
    assert re.search(r"^Hostname:\s+node-1$", node, re.M), node
    assert re.search(r"^ State:\s+Ready$", node, re.M), node
    assert re.search(r"^ Memory:\s+[\d.]+[KMGT]iB$", node, re.M), node
    assert "zone=a" in node


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["service", "ls", "-f", "colour=red"], ['unknown key "colour"', "id, name, label, mode"]),
        (["service", "ls", "-f", "mode=swarm"], ["mode must be one of"]),
        (["service", "ps", "web", "-f", "nodename"], ["expected KEY=VALUE"]),
        (["node", "ls", "--format", "{{.Nope}}"], ['no field "Nope"']),
        (["service", "ls", "--format", "{{if .Name}}x{{end}}"], ['"if" is not supported']),
        (["service", "ps", "web", "nosuch"], ["nosuch"]),
    ],
)
def test_bad_filters_and_formats_are_refused_with_one_error_line(
    cluster: Cluster, args: list[str], mentions: list[str]
) -> None:
    res = cluster.cli(*args)
    assert res.code == 1
    assert res.out == ""
    assert_refused(res, *mentions)


def test_a_task_on_a_dead_node_says_so_in_error(make_cluster: Any) -> None:
    c: Cluster = make_cluster(agents=2)
    seconds = sleep_seconds(3802)
    res = c.cli("service", "create", "-d", "--name", "web", "--replicas", "2", "app:1", "sleep", seconds)
    assert res.code == 0, res.err
    wait_pids(f"sleep {seconds}", 2)
    wait_for(lambda: len(c.running("web")) == 2, what="2 running")
    (on_node2,) = [t for t in c.running("web") if t["node"] == "node-2"]
    c.agents[1].kill9()

    def row_of_that_task() -> str | None:
        table = c.cli("service", "ps", "web").out
        row = next((line for line in table.splitlines() if line.startswith(on_node2["id"][:12])), None)
        return row if row is not None and "is down" in row else None

    row = wait_for(row_of_that_task, 30, what="the dead node's task to say why")
    assert "node node-2 is down: heartbeat failure" in row, row
