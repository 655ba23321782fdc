"""The unmodified docker CLI drives a shoal cluster (issue 16).

The real ``docker`` binary of Debian's docker.io (20.10, /usr/bin/docker:
the one CI has) talks to a manager started with ``--docker-api``, with
``DOCKER_HOST``/``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH`` pointing at the
cluster's admin bundle and a ``DOCKER_CONFIG`` of the test's own. No Docker
engine is involved: the agents run the process runtime, and what the tests
check is what a user sees from the docker CLI and what really runs (the
task processes, and shoal's own CLI).

One cluster of three agents serves the whole module; every test makes
services of its own and removes them at the end.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import shutil
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import CLIResult, Cluster, pids_of, sleep_seconds, wait_for, wait_pids
from tests.support.etcd_server import EtcdServer, free_port

DOCKER = "/usr/bin/docker"
IMAGE = "shoal-test:1"  # recorded, not pulled: the process runtime runs the command


class DockerCLI:
    """The docker CLI aimed at the cluster's Docker API with one TLS folder."""

    def __init__(self, port: int, cert_dir: Path, config_dir: Path) -> None:
        self.port = port
        self.cert_dir = cert_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.env.update(
            DOCKER_HOST=f"tcp://127.0.0.1:{port}",
            DOCKER_TLS_VERIFY="1",
            DOCKER_CERT_PATH=str(cert_dir),
            DOCKER_CONFIG=str(config_dir),
            NO_PROXY="127.0.0.1,localhost",
        )

    def __call__(self, *args: str, timeout: float = 120, stdin: str = "", **env: str) -> CLIResult:
        import subprocess

        res = subprocess.run(
            [DOCKER, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **env},
            input=stdin,
        )
        return CLIResult(res.returncode, res.stdout, res.stderr)

    def ok(self, *args: str, timeout: float = 120) -> CLIResult:
        res = self(*args, timeout=timeout)
        assert res.code == 0, f"docker {' '.join(args)} failed ({res.code}):\n{res.out}\n{res.err}"
        return res

    def http(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request with the same bundle, for what the CLI cannot send
        on purpose (a stale version)."""
        ctx = ssl.create_default_context(cafile=str(self.cert_dir / "ca.pem"))
        ctx.load_cert_chain(self.cert_dir / "cert.pem", self.cert_dir / "key.pem")
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=30)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
        finally:
            conn.close()


@pytest.fixture(scope="module")
def docker_cli_present() -> None:
    if not Path(DOCKER).exists():
        why = f"{DOCKER} (Debian's docker.io) is not installed: apt-get install -y docker.io"
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the docker CLI: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def setup(
    docker_cli_present: None, etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, DockerCLI]]:
    root = tmp_path_factory.mktemp("docker-api")
    port = free_port()
    cluster = Cluster(etcd_server, root)
    try:
        cluster.start_manager("--docker-api", f"127.0.0.1:{port}")
        for _ in range(3):
            cluster.start_agent()
        cluster.wait_nodes_ready(3)
        (root / "docker-config").mkdir()
        yield cluster, DockerCLI(port, cluster.tls_dir, root / "docker-config")
    finally:
        cluster.close()


@pytest.fixture
def env(
    setup: tuple[Cluster, DockerCLI], request: pytest.FixtureRequest
) -> Iterator[tuple[Cluster, DockerCLI]]:
    """The shared cluster; its daemons' logs are printed after a failed test."""
    yield setup
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(setup[0].dump_logs())


def shoal_services(cluster: Cluster) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in cluster.services()}


def remove_if_there(cluster: Cluster, *names: str) -> None:
    present = shoal_services(cluster)
    for name in names:
        if name in present:
            assert cluster.cli("service", "rm", name).code == 0


def test_docker_version_and_info_show_the_shoal_cluster(env: tuple[Cluster, DockerCLI]) -> None:
    cluster, docker = env
    out = docker.ok("version").out
    assert "Server: shoal" in out
    assert "API version:      1.41 (minimum version 1.24)" in out
    info = docker.ok("info").out
    cluster_id = cluster.cli("info", "--format", "json").json()["cluster_id"]
    assert "Swarm: active" in info
    assert f"ClusterID: {cluster_id}" in info
    assert "Is Manager: true" in info
    assert "Nodes: 3" in info
    assert "Managers: 1" in info
    fields = json.loads(docker.ok("info", "--format", "{{json .Swarm}}").out)
    assert fields["LocalNodeState"] == "active" and fields["ControlAvailable"] is True


def test_a_client_newer_than_the_api_is_told_the_engines_way(env: tuple[Cluster, DockerCLI]) -> None:
    _, docker = env
    res = docker("service", "ls", DOCKER_API_VERSION="1.45")
    assert res.code != 0
    assert "client version 1.45 is too new. Maximum supported API version is 1.41" in res.err


def test_node_ls_lists_the_nodes_and_drain_moves_their_tasks(env: tuple[Cluster, DockerCLI]) -> None:
    cluster, docker = env
    rows = docker.ok("node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.Availability}}").out.splitlines()
    assert sorted(rows) == ["node-1 Ready Active", "node-2 Ready Active", "node-3 Ready Active"]
    marker = sleep_seconds(3601)
    docker.ok("service", "create", "-d", "--name", "spread", "--replicas", "3", IMAGE, "sleep", marker)
    try:
        wait_for(lambda: len(cluster.running("spread")) == 3, 60, what="3 running tasks of spread")
        assert docker.ok("node", "update", "--availability", "drain", "node-3").out.strip() == "node-3"
        drained = docker.ok("node", "inspect", "node-3", "--format", "{{.Spec.Availability}}").out.strip()
        assert drained == "drain"
        assert (
            "node-3 Ready Drain"
            in docker.ok("node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.Availability}}").out
        )

        def moved() -> bool:
            running = cluster.running("spread")
            return len(running) == 3 and all(t["node"] != "node-3" for t in running)

        wait_for(moved, 60, what="spread's tasks to leave the drained node-3")
        # The ControlAPI's rule: a node that is up is removed only with --force.
        res = docker("node", "rm", "node-3")
        assert res.code == 1 and "is not down and can't be removed" in res.err
        assert len(cluster.nodes()) == 3
        wait_pids(f"sleep {marker}", 3, timeout=30)
    finally:
        docker("node", "update", "--availability", "active", "node-3")
        remove_if_there(cluster, "spread")


def test_a_service_created_with_the_docker_cli_converges_with_its_own_progress(
    env: tuple[Cluster, DockerCLI],
) -> None:
    cluster, docker = env
    marker = sleep_seconds(3602)
    try:
        res = docker.ok(
            "service", "create", "--detach=false", "--name", "web", "--replicas", "3", IMAGE, "sleep", marker
        )
        assert "overall progress: 3 out of 3 tasks" in res.out
        assert "verify: Service converged" in res.out
        service_id = res.out.splitlines()[0].strip()
        assert shoal_services(cluster)["web"]["id"] == service_id
        wait_pids(f"sleep {marker}", 3)

        ls = docker.ok("service", "ls", "--format", "{{.Name}} {{.Mode}} {{.Replicas}} {{.Image}}").out
        assert "web replicated 3/3 shoal-test:1" in ls.splitlines()
        ps = docker.ok(
            "service", "ps", "web", "--format", "{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}}"
        )
        rows = sorted(line.split(" ", 3) for line in ps.out.splitlines())
        assert [r[0] for r in rows] == ["web.1", "web.2", "web.3"]
        assert sorted(r[1] for r in rows) == ["node-1", "node-2", "node-3"]
        assert all(r[2] == "Running" and r[3].startswith("Running") for r in rows)

        res = docker.ok("service", "scale", "web=5")
        assert "web scaled to 5" in res.out
        assert "verify: Service converged" in res.out
        wait_pids(f"sleep {marker}", 5)
        assert (
            "web replicated 5/5"
            in docker.ok("service", "ls", "--format", "{{.Name}} {{.Mode}} {{.Replicas}}").out
        )

        spec = json.loads(docker.ok("service", "inspect", "web").out)[0]["Spec"]
        assert spec["Mode"] == {"Replicated": {"Replicas": 5}}
        assert spec["TaskTemplate"]["ContainerSpec"]["Args"] == ["sleep", marker]

        docker.ok("service", "rm", "web")
        wait_for(lambda: "web" not in shoal_services(cluster), 30, what="web to be gone")
        wait_for(lambda: not pids_of(f"sleep {marker}"), 30, what="web's processes to end")
    finally:
        remove_if_there(cluster, "web")


def _images(cluster: Cluster, name: str) -> set[str]:
    return {t["image"] for t in cluster.running(name)}


def test_update_and_rollback_roll_the_tasks_and_wait_as_docker_does(env: tuple[Cluster, DockerCLI]) -> None:
    cluster, docker = env
    marker = sleep_seconds(3603)
    try:
        docker.ok(
            "service", "create", "--detach=false", "--name", "roll", "--replicas", "2", IMAGE, "sleep", marker
        )
        res = docker.ok("service", "update", "--image", "shoal-test:2", "roll")
        assert "verify: Service converged" in res.out
        assert _images(cluster, "roll") == {"shoal-test:2"}
        assert len(cluster.running("roll")) == 2
        inspected = cluster.cli("service", "inspect", "roll").json()[0]
        assert inspected["spec"]["task"]["container"]["image"] == "shoal-test:2"
        assert inspected["update_status"]["state"] == "completed"

        res = docker.ok("service", "rollback", "roll")
        assert "verify: Service converged" in res.out
        assert _images(cluster, "roll") == {"shoal-test:1"}
        image = docker.ok(
            "service", "inspect", "roll", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"
        )
        assert image.out.strip() == "shoal-test:1"

        # After a finished rollout, a scale still waits for its tasks. (The
        # CLI's rollback ends about when shoal's updater does: let the
        # rollout end first, and a moment pass, as between a user's commands.)
        def rolled_back() -> dict[str, Any] | None:
            status: dict[str, Any] = cluster.cli("service", "inspect", "roll").json()[0]["update_status"]
            return status if status["state"] == "rollback_completed" else None

        status = wait_for(rolled_back, 30, what="the rollback to be completed")
        ended = datetime.datetime.fromisoformat(status["completed_at"].replace("Z", "+00:00")).timestamp()
        wait_for(lambda: time.time() > ended + 1, 5, what="a second after the rollback")
        res = docker.ok("service", "scale", "roll=3")
        assert "overall progress: 3 out of 3 tasks" in res.out
        wait_pids(f"sleep {marker}", 3)
    finally:
        remove_if_there(cluster, "roll")


def test_service_logs_through_the_docker_cli(env: tuple[Cluster, DockerCLI]) -> None:
    cluster, docker = env
    say = 'echo "hello from $SHOAL_TASK_SLOT"; echo "oops $SHOAL_TASK_SLOT" >&2'
    script = f"{say}; exec sleep {sleep_seconds(3604)}"
    try:
        docker.ok("service", "create", "-d", "--name", "talk", "--replicas", "2", IMAGE, "sh", "-c", script)
        wait_for(lambda: len(cluster.running("talk")) == 2, 60, what="2 running tasks of talk")
        tasks = {t["slot"]: t for t in cluster.running("talk")}

        def lines() -> tuple[list[str], list[str]] | None:
            res = docker("service", "logs", "talk")
            out, err = res.out.splitlines(), res.err.splitlines()
            return (out, err) if res.code == 0 and len(out) == 2 and len(err) == 2 else None

        out, err = wait_for(lines, 30, what="two stdout and two stderr lines")
        for slot, task in tasks.items():
            prefix = f"talk.{slot}.{task['id'][:12]}@{task['node']}"
            assert f"{prefix}    | hello from {slot}" in out
            assert f"{prefix}    | oops {slot}" in err
        stamped = docker.ok("service", "logs", "--timestamps", "--tail", "1", "--no-task-ids", "talk").out
        for line in stamped.splitlines():
            stamp, rest = line.split(" ", 1)
            assert stamp.endswith("Z") and "T" in stamp
            assert rest.startswith("talk.") and "| hello from" in rest
        one = tasks[1]
        res = docker.ok("service", "logs", one["id"])
        assert res.out.splitlines() == [f"talk.1.{one['id'][:12]}@{one['node']}    | hello from 1"]
    finally:
        remove_if_there(cluster, "talk")


def test_a_stale_version_is_refused_and_changes_nothing(env: tuple[Cluster, DockerCLI]) -> None:
    cluster, docker = env
    try:
        docker.ok("service", "create", "-d", "--name", "stale", IMAGE, "sleep", sleep_seconds(3605))
        status, read = docker.http("GET", "/v1.41/services/stale")
        assert status == 200
        docker.ok("service", "update", "-d", "--label-add", "by=docker", "stale")
        spec = read["Spec"]
        spec["Labels"]["stale"] = "yes"
        status, body = docker.http(
            "POST", f"/v1.41/services/stale/update?version={read['Version']['Index']}", spec
        )
        assert status == 409
        assert body["message"].startswith("update out of sequence")
        labels = json.loads(docker.ok("service", "inspect", "stale", "--format", "{{json .Spec.Labels}}").out)
        assert labels == {"by": "docker"}
    finally:
        remove_if_there(cluster, "stale")


def test_a_field_shoal_cannot_honour_is_a_warning_the_cli_prints(env: tuple[Cluster, DockerCLI]) -> None:
    cluster, docker = env
    try:
        res = docker.ok(
            "service", "create", "-d", "--name", "pids", "--limit-pids", "50", IMAGE, "sleep", "60"
        )
        assert "ignored TaskTemplate.Resources.Limits.Pids (--limit-pids)" in res.err
        assert "pids" in shoal_services(cluster)
    finally:
        remove_if_there(cluster, "pids")


def test_a_spec_the_controlapi_refuses_is_a_400_with_its_message(env: tuple[Cluster, DockerCLI]) -> None:
    cluster, docker = env
    res = docker(
        "service", "create", "-d", "--name", "bad", "--constraint", "node.color==red", IMAGE, "sleep", "1"
    )
    assert res.code == 1
    assert "Error response from daemon:" in res.err and "node.color" in res.err
    assert "bad" not in shoal_services(cluster)


def test_what_shoal_does_not_serve_is_named_not_a_bare_404(env: tuple[Cluster, DockerCLI]) -> None:
    _, docker = env
    res = docker("ps")
    assert res.code == 1
    assert "shoal does not serve GET /v1.41/containers/json" in res.err


def _bundle_without_admin(cluster: Cluster, folder: Path, node_cert: Path | None) -> Path:
    folder.mkdir(exist_ok=True)
    shutil.copy(cluster.tls_dir / "ca.pem", folder / "ca.pem")
    if node_cert is not None:
        shutil.copy(node_cert / "cert.pem", folder / "cert.pem")
        shutil.copy(node_cert / "key.pem", folder / "key.pem")
    return folder


def test_no_certificate_and_a_nodes_certificate_are_refused(
    env: tuple[Cluster, DockerCLI], tmp_path: Path
) -> None:
    cluster, docker = env
    anonymous = _bundle_without_admin(cluster, tmp_path / "anonymous", None)
    node = _bundle_without_admin(cluster, tmp_path / "node", cluster.root / "agent-1" / "node")
    for folder, said in (
        (anonymous, "a certificate issued by this cluster is required"),
        (node, "may not call this"),
    ):
        for args in (
            ("service", "ls"),
            ("node", "ls"),
            ("service", "create", "-d", "--name", "intruder", IMAGE, "sleep", "60"),
        ):
            res = docker(*args, DOCKER_CERT_PATH=str(folder))
            assert res.code == 1, res.out
            assert said in res.err, res.err
    assert "intruder" not in shoal_services(cluster)


def test_a_revoked_admin_bundle_works_until_it_is_revoked(
    env: tuple[Cluster, DockerCLI], tmp_path: Path
) -> None:
    cluster, docker = env
    res = cluster.cli("cluster", "admin-bundle", "--out", str(tmp_path / "ci"), "--note", "docker ci")
    assert res.code == 0, res.err
    bundle_id = res.out.split()[2]
    assert docker("service", "ls", DOCKER_CERT_PATH=str(tmp_path / "ci")).code == 0
    assert cluster.cli("cluster", "admin-bundle", "revoke", bundle_id).code == 0
    res = docker("service", "ls", DOCKER_CERT_PATH=str(tmp_path / "ci"))
    assert res.code == 1
    assert f"this admin bundle ({bundle_id}) was revoked" in res.err


def test_secrets_and_configs_through_the_docker_cli(env: tuple[Cluster, DockerCLI], tmp_path: Path) -> None:
    cluster, docker = env
    (tmp_path / "pw").write_text("hunter2\n")
    (tmp_path / "site.conf").write_text("color=blue\n")
    read = 'cat "$SHOAL_SECRETS_DIR/db-pw" "$SHOAL_CONFIGS_DIR/site"'
    try:
        secret_id = docker.ok(
            "secret", "create", "--label", "team=fish", "db-pw", str(tmp_path / "pw")
        ).out.strip()
        docker.ok("config", "create", "site", str(tmp_path / "site.conf"))
        assert docker.ok("secret", "ls", "--format", "{{.Name}}").out.split() == ["db-pw"]
        inspected = json.loads(docker.ok("secret", "inspect", "db-pw").out)[0]
        assert inspected["ID"] == secret_id and inspected["Spec"]["Labels"] == {"team": "fish"}
        assert "Data" not in inspected["Spec"]  # a secret's value never comes back
        data = docker.ok("config", "inspect", "site", "--format", "{{json .Spec.Data}}").out
        assert json.loads(data) == "Y29sb3I9Ymx1ZQo="  # base64 of the file
        command = f"{read}; exec sleep {sleep_seconds(3606)}"
        docker.ok(
            "service", "create", "--detach=false", "--name", "reader", "--secret", "db-pw",
            "--config", "source=site,target=site", IMAGE, "sh", "-c", command,
        )  # fmt: skip
        lines = wait_for(
            lambda: docker("service", "logs", "--raw", "reader").out.split(), 30, what="reader's output"
        )
        assert lines == ["hunter2", "color=blue"]
        res = docker("secret", "rm", "db-pw")
        assert res.code == 1 and "reader" in res.err  # in use: the ControlAPI names its user
        docker.ok("service", "rm", "reader")
        wait_for(lambda: docker("secret", "rm", "db-pw").code == 0, 30, what="db-pw to be removable")
        docker.ok("config", "rm", "site")
        assert docker.ok("secret", "ls", "-q").out.strip() == ""
    finally:
        remove_if_there(cluster, "reader")
        docker("secret", "rm", "db-pw")
        docker("config", "rm", "site")


def shoal_inspect(cluster: Cluster, service: str) -> dict[str, Any]:
    shown: dict[str, Any] = cluster.cli("service", "inspect", service).json()[0]
    return shown


def shoal_networks(cluster: Cluster) -> dict[str, dict[str, Any]]:
    listed = cluster.cli("network", "ls", "-q")
    assert listed.code == 0, listed.err
    if not listed.out.split():
        return {}
    return {n["name"]: n for n in cluster.cli("network", "inspect", *listed.out.split()).json()}


def test_networks_through_the_docker_cli_are_shoals_networks(env: tuple[Cluster, DockerCLI]) -> None:
    cluster, docker = env
    marker = sleep_seconds(3613)
    try:
        net_id = docker.ok("network", "create", "-d", "overlay", "--label", "team=fish", "net1").out.strip()
        made = shoal_networks(cluster)["net1"]
        assert (made["id"], made["driver"], made["labels"]) == (net_id, "overlay", {"team": "fish"})
        rows = docker.ok("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").out.splitlines()
        assert "net1 overlay swarm" in rows and "ingress overlay swarm" in rows
        assert docker.ok("network", "ls", "-q", "--no-trunc", "-f", "label=team=fish").out.split() == [net_id]
        shown = json.loads(docker.ok("network", "inspect", "net1").out)[0]
        assert (shown["Id"], shown["Scope"], shown["Driver"], shown["Labels"]) == (
            net_id,
            "swarm",
            "overlay",
            {"team": "fish"},
        )
        # A name in use, the docker CLI's default driver (a one-host bridge),
        # and what a shoal network cannot be: refused, nothing made.
        res = docker("network", "create", "-d", "overlay", "net1")
        assert res.code == 1 and "network with name net1 already exists" in res.err
        res = docker("network", "create", "net2")
        assert res.code == 1 and "unless told --driver overlay" in res.err
        res = docker("network", "create", "-d", "overlay", "--internal", "net2")
        assert res.code == 1 and "Internal (--internal)" in res.err
        assert set(shoal_networks(cluster)) == {"net1"}

        docker.ok("service", "create", "-d", "--name", "netweb", "--network", "net1", IMAGE, "sleep", marker)
        wait_pids(f"sleep {marker}", 1, timeout=60)
        assert shoal_inspect(cluster, "netweb")["spec"]["networks"] == ["net1"]
        service = json.loads(docker.ok("service", "inspect", "netweb").out)[0]
        assert service["Spec"]["TaskTemplate"]["Networks"] == [{"Target": net_id}]
        vip = shoal_inspect(cluster, "netweb")["endpoint"]["virtual_ip"]
        assert vip and service["Endpoint"]["VirtualIPs"][0]["NetworkID"] == net_id
        assert service["Endpoint"]["VirtualIPs"][0]["Addr"].split("/")[0] == vip

        res = docker("network", "rm", "net1")
        assert res.code == 1 and "network net1 is in use by service netweb" in res.err
        # The docker CLI's update names networks by ID; the task is not replaced.
        task_ids = sorted(docker.ok("service", "ps", "-q", "netweb").out.split())
        docker.ok("service", "update", "-d", "--network-rm", "net1", "netweb")
        assert shoal_inspect(cluster, "netweb")["spec"]["networks"] == []
        docker.ok("service", "update", "-d", "--network-add", "net1", "netweb")
        assert shoal_inspect(cluster, "netweb")["spec"]["networks"] == ["net1"]
        assert sorted(docker.ok("service", "ps", "-q", "netweb").out.split()) == task_ids
        res = docker("service", "create", "-d", "--name", "nowhere", "--network", "ingress", IMAGE, "true")
        assert res.code == 1 and "ingress" in res.err and "nowhere" not in shoal_services(cluster)

        docker.ok("service", "rm", "netweb")
        assert docker.ok("network", "rm", "net1").out.strip() == "net1"
        assert "net1" not in shoal_networks(cluster)
        res = docker("network", "rm", "ingress", stdin="y\n")
        assert res.code == 1 and "cannot be removed" in res.err
    finally:
        remove_if_there(cluster, "netweb", "nowhere")
        if "net1" in shoal_networks(cluster):
            cluster.cli("network", "rm", "net1")


STACK = """
version: "3.8"
services:
  web:
    image: shoal-test:1
    command: ["sh", "-c", "cat \\"$$SHOAL_SECRETS_DIR/token\\"; exec sleep {web}"]
    deploy:
      replicas: 2
    secrets: [token]
    networks: [front]
  worker:
    image: shoal-test:1
    command: ["sleep", "{worker}"]
    deploy:
      restart_policy:
        condition: on-failure
    networks:
      front:
      default:
secrets:
  token:
    file: ./token.txt
networks:
  front:
    driver: overlay
    labels:
      tier: front
"""


def test_docker_stack_deploy_services_and_rm(env: tuple[Cluster, DockerCLI], tmp_path: Path) -> None:
    cluster, docker = env
    web, worker = sleep_seconds(3607), sleep_seconds(3608)
    compose = tmp_path / "stack.yml"
    compose.write_text(STACK.format(web=web, worker=worker))
    (tmp_path / "token.txt").write_text("s3cret\n")
    try:
        res = docker.ok("stack", "deploy", "-c", str(compose), "demo")
        for line in (
            "Creating network demo_front",
            "Creating network demo_default",
            "Creating secret demo_token",
            "Creating service demo_web",
            "Creating service demo_worker",
        ):
            assert line in res.out
        # The stack's networks are shoal's, labelled as the stack's, and its
        # services are on them.
        made = shoal_networks(cluster)
        assert {"demo_front", "demo_default"} <= set(made)
        assert made["demo_front"]["labels"] == {"com.docker.stack.namespace": "demo", "tier": "front"}
        assert made["demo_default"]["labels"] == {"com.docker.stack.namespace": "demo"}
        assert shoal_inspect(cluster, "demo_web")["spec"]["networks"] == ["demo_front"]
        assert shoal_inspect(cluster, "demo_worker")["spec"]["networks"] == ["demo_default", "demo_front"]
        wait_pids(f"sleep {web}", 2, timeout=60)
        wait_pids(f"sleep {worker}", 1, timeout=60)
        assert docker.ok("stack", "ls", "--format", "{{.Name}} {{.Services}}").out.split() == ["demo", "2"]

        def replicas() -> list[str]:
            rows = docker.ok(
                "stack", "services", "demo", "--format", "{{.Name}} {{.Replicas}}"
            ).out.splitlines()
            return sorted(rows)

        wait_for(
            lambda: replicas() == ["demo_web 2/2", "demo_worker 1/1"],
            30,
            what="stack services at 2/2 and 1/1",
        )
        before = sorted(docker.ok("stack", "ps", "demo", "-q").out.split())
        assert len(before) == 3
        labels = cluster.cli("service", "inspect", "demo_web").json()[0]["spec"]["labels"]
        assert labels["com.docker.stack.namespace"] == "demo"
        lines = wait_for(
            lambda: docker("service", "logs", "--raw", "demo_web").out.split(), 30, what="web's lines"
        )
        assert lines == ["s3cret", "s3cret"]

        # Deployed again unchanged: services updated in place, no task replaced.
        res = docker.ok("stack", "deploy", "-c", str(compose), "demo")
        assert "Updating service demo_web" in res.out
        assert sorted(docker.ok("stack", "ps", "demo", "-q").out.split()) == before

        docker.ok("stack", "rm", "demo")
        wait_for(lambda: not shoal_services(cluster), 30, what="the stack's services to be gone")
        wait_for(lambda: not pids_of(f"sleep {web}") and not pids_of(f"sleep {worker}"), 30, what="its tasks")
        wait_for(lambda: docker.ok("secret", "ls", "-q").out.strip() == "", 30, what="its secret to be gone")
        assert not {"demo_front", "demo_default"} & set(shoal_networks(cluster))
    finally:
        remove_if_there(cluster, "demo_web", "demo_worker")
        docker("secret", "rm", "demo_token")
        for name in {"demo_front", "demo_default"} & set(shoal_networks(cluster)):
            cluster.cli("network", "rm", name)


def test_jobs_run_to_completion_with_the_clis_job_progress(env: tuple[Cluster, DockerCLI]) -> None:
    cluster, docker = env
    try:
        res = docker.ok(
            "service", "create", "--name", "batch", "--mode", "replicated-job", "--replicas", "3",
            "--max-concurrent", "2", IMAGE, "sh", "-c", "sleep 1",
        )  # fmt: skip
        assert "job complete" in res.out
        res = docker.ok("service", "create", "--name", "everywhere", "--mode", "global-job", IMAGE, "true")
        assert "job complete" in res.out
        rows = docker.ok("service", "ls", "--format", "{{.Name}} {{.Mode}} {{.Replicas}}").out.splitlines()
        assert "batch replicated job 0/0 (3/3 completed)" in rows
        assert "everywhere global job 0/0 (3/3 completed)" in rows
        states = docker.ok("service", "ps", "batch", "--format", "{{.DesiredState}} {{.CurrentState}}").out
        assert [line.split()[:2] for line in states.splitlines()] == [["Complete", "Complete"]] * 3
    finally:
        remove_if_there(cluster, "batch", "everywhere")


def test_the_listener_follows_a_ca_rotation(
    docker_cli_present: None, etcd_server: EtcdServer, tmp_path: Path
) -> None:
    """The Docker API presents the manager's certificates as they are renewed:
    after `cluster ca --rotate` the renewed admin bundle works and one from
    before the rotation does not, with no restart of the manager."""
    port = free_port()
    cluster = Cluster(etcd_server, tmp_path / "cluster")
    try:
        manager = cluster.start_manager("--docker-api", f"127.0.0.1:{port}")
        cluster.start_agent()
        cluster.wait_nodes_ready(1)
        (tmp_path / "docker-config").mkdir()
        docker = DockerCLI(port, cluster.tls_dir, tmp_path / "docker-config")
        old_bundle = tmp_path / "before-rotation"
        shutil.copytree(cluster.tls_dir, old_bundle)
        docker.ok("service", "ls")

        res = cluster.cli("cluster", "ca", "--rotate", timeout=180)
        assert res.code == 0 and "CA rotation complete" in res.out, res.err
        wait_for(
            lambda: docker("service", "ls").code == 0,
            60,
            what="the renewed admin bundle to work on the Docker API",
        )
        res = docker("service", "ls", DOCKER_CERT_PATH=str(old_bundle))
        assert res.code == 1
        assert manager.running_or_fail()
    finally:
        cluster.close()
