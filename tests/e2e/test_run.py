"""`shoal run` and `shoal commit` end to end, on both runtimes.

One cluster for the module (``support.taskio.mixed_cluster``: two process
nodes, a docker node, a second manager without sessions). Every run is
placed on one runtime's nodes with a ``node.labels.rt`` constraint; images
made by commits carry a name of this module's own and are removed at the end.
"""

from __future__ import annotations

import base64
import http.server
import json
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import CLIResult, Cluster, assert_refused, wait_for
from tests.support.docker_engine import containers_of
from tests.support.etcd_server import EtcdServer
from tests.support.taskio import IMAGE, Mixed, cli_via, mixed_cluster
from tests.support.terminal import Terminal

RUNTIMES = ["process", pytest.param("docker", marks=pytest.mark.docker)]
WAIT = "trap 'exit 0' TERM; sleep 3600 & wait"
# Images this module makes: removed at its end.
REPO = f"shoal-test-commit-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def mixed(etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mixed]:
    with mixed_cluster(etcd_server, tmp_path_factory.mktemp("run")) as mixed:
        try:
            yield mixed
        finally:
            if mixed.engine is not None:
                for image in mixed.engine.images.list():
                    for tag in image.tags:
                        if REPO in tag:
                            mixed.engine.images.remove(tag, force=True)


@pytest.fixture
def cluster(mixed: Mixed, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield mixed.cluster
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(mixed.cluster.dump_logs())


def on(runtime: str) -> tuple[str, str]:
    return ("--constraint", f"node.labels.rt=={runtime}")


def names(cluster: Cluster) -> set[str]:
    return {s["name"] for s in cluster.services()}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_rm_streams_the_output_and_exits_with_the_tasks_code_leaving_nothing(
    mixed: Mixed, cluster: Cluster, runtime: str
) -> None:
    mixed.need(runtime)
    name = f"once-{runtime}"
    res = cluster.cli(
        "run", "--rm", "--name", name, *on(runtime), IMAGE, "sh", "-c", "echo hi; echo oops >&2; exit 3"
    )
    assert (res.code, res.out, res.err) == (3, "hi\n", "oops\n")
    assert name not in names(cluster)
    if runtime == "docker":
        node_ids = {n["id"] for n in cluster.nodes()}
        wait_for(
            lambda: not containers_of(mixed.engine, name, node_ids, running_only=False), what="no container"
        )


def test_run_detached_prints_the_task_and_logs_follow_shows_its_output(cluster: Cluster) -> None:
    res = cluster.cli(
        "run", "-d", "--name", "later", *on("process"), IMAGE, "sh", "-c", "echo one; sleep 1; echo two"
    )
    assert res.code == 0, res.err
    task_id = res.out.strip()
    follow = cluster.cli("logs", "-f", task_id)
    assert (follow.code, follow.out) == (0, "one\ntwo\n")
    [task] = cluster.tasks("later")
    assert (task["id"], task["current_state"]) == (task_id, "complete")
    assert cluster.cli("service", "rm", "later").code == 0


def test_run_detached_rm_is_removed_by_the_manager_once_it_ends(cluster: Cluster) -> None:
    res = cluster.cli("run", "-d", "--rm", "--name", "gone", *on("process"), IMAGE, "sh", "-c", "sleep 1")
    assert res.code == 0, res.err
    assert "gone" in names(cluster)
    wait_for(lambda: "gone" not in names(cluster), 30, what="the finished job to be removed")


def test_a_run_that_fits_no_node_exits_125_saying_why_and_leaves_nothing(cluster: Cluster) -> None:
    res = cluster.cli("run", "--name", "nowhere", "--constraint", "node.labels.rt==none", IMAGE, "true")
    assert res.code == 125, res.err
    assert "no suitable node" in res.err and "scheduling constraints" in res.err
    assert "nowhere" not in names(cluster)


def test_a_rejected_run_exits_125_saying_why(cluster: Cluster) -> None:
    res = cluster.cli("run", "--rm", "--name", "typo", *on("process"), IMAGE, "no-such-command")
    assert res.code == 125, res.err
    assert "executable file not found" in res.err
    assert "typo" not in names(cluster)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_interactive_reads_stdin_and_the_task_ends_with_the_commands_code(
    mixed: Mixed, cluster: Cluster, runtime: str
) -> None:
    mixed.need(runtime)
    res = cluster.cli("run", "-i", "--rm", *on(runtime), IMAGE, "cat", stdin="hello\n")
    assert (res.code, res.out) == (0, "hello\n"), res.err
    name = f"kept-{runtime}"
    res = cluster.cli(
        "run", "-i", "--name", name, *on(runtime), IMAGE, "sh", "-c", "cat; exit 6", stdin="x\n"
    )
    assert (res.code, res.out) == (6, "x\n"), res.err

    def ended() -> dict[str, Any] | None:
        tasks = [t for t in cluster.tasks(name) if t["current_state"] == "failed"]
        return tasks[0] if tasks else None

    task = wait_for(ended, what="the task to end with the command")
    assert task["error"] == "exit code 6"
    assert cluster.cli("service", "rm", name).code == 0


def test_run_with_a_terminal_gives_a_shell_in_a_new_task(cluster: Cluster) -> None:
    term = Terminal(
        cluster.cli_argv("run", "-it", "--rm", "--name", "shellsvc", *on("process"), IMAGE), cluster.env
    )
    try:
        term.type("PS1='pro''mpt> '\r")  # the echo of this line is no prompt
        term.expect("prompt> ")
        term.type("echo in-$SHOAL_SERVICE_NAME\r")
        term.expect("in-shellsvc")
        term.type("exit 5\r")
        assert term.wait() == 5
        assert term.attributes_restored()
    finally:
        term.close()
    wait_for(lambda: "shellsvc" not in names(cluster), what="the run's service to go")


def test_ctrl_c_on_an_attached_run_rm_stops_and_removes_it(cluster: Cluster) -> None:
    client = cluster.popen_cli(
        "run", "--rm", "--name", "stopped", *on("process"), IMAGE, "sh", "-c", f"echo ready; {WAIT}"
    )
    try:
        assert client.stdout is not None
        assert client.stdout.readline() == "ready\n"
        client.send_signal(signal.SIGINT)
        assert client.wait(60) == 130
    finally:
        if client.poll() is None:
            client.kill()
        client.communicate()
    assert "stopped" not in names(cluster)


def test_run_refuses_what_makes_no_sense(cluster: Cluster) -> None:
    assert_refused(cluster.cli("run", "-d", "-it", IMAGE, "sh"), "-d cannot be combined")
    assert_refused(cluster.cli("run", "--replicas", "3", IMAGE, "true"), "replicas")


# ---------------------------------------------------------------- shoal commit


@pytest.fixture
def docker_task(mixed: Mixed, cluster: Cluster) -> Iterator[str]:
    """A running task on the docker node, in which a file was made."""
    mixed.need("docker")
    cluster.create_service("cweb", 1, *on("docker"), IMAGE, "sh", "-c", WAIT)
    try:
        wait_for(lambda: cluster.running("cweb"), what="cweb to run")
        made = cluster.cli("exec", "cweb.1", "sh", "-c", "echo made-in-the-task > /made")
        assert made.code == 0, made.err
        yield "cweb.1"
    finally:
        cluster.cli("service", "rm", "cweb")


@pytest.mark.docker
def test_commit_makes_an_image_holding_the_tasks_changes(
    mixed: Mixed, cluster: Cluster, docker_task: str
) -> None:
    res = cluster.cli(
        "commit",
        "-m",
        "from a test",
        "-a",
        "Tester <t@example.com>",
        "-c",
        "ENV COMMITTED=yes",
        docker_task,
        f"{REPO}:v1",
    )
    assert res.code == 0, res.err
    assert res.out.startswith("sha256:") and res.err.strip() == "on node node-3"
    image = mixed.engine.images.get(f"{REPO}:v1")
    assert image.id == res.out.strip()
    assert (image.attrs["Comment"], image.attrs["Author"]) == ("from a test", "Tester <t@example.com>")
    assert "COMMITTED=yes" in image.attrs["Config"]["Env"]
    ran = cluster.cli("run", "--rm", *on("docker"), f"{REPO}:v1", "sh", "-c", "cat /made; echo $COMMITTED")
    assert (ran.code, ran.out) == (0, "made-in-the-task\nyes\n"), ran.err
    # The tag defaults to latest; --no-pause; through a manager without the node's session.
    res = cli_via(cluster, 1, "commit", "--no-pause", docker_task, REPO)
    assert res.code == 0, res.err
    assert mixed.engine.images.get(f"{REPO}:latest").id == res.out.strip()


class _Registry(http.server.BaseHTTPRequestHandler):
    """A registry that asks for credentials, records them, then refuses the
    push: enough to see that the push was made with the user's credentials."""

    seen: list[str] = []

    def _answer(self) -> None:
        auth = self.headers.get("Authorization")
        self.send_response(401 if auth is None else 403)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        if auth is None:
            self.send_header("WWW-Authenticate", 'Basic realm="shoal-test"')
        else:
            self.seen.append(auth)
        body = json.dumps({"errors": [{"code": "DENIED", "message": "this test registry takes no pushes"}]})
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.docker
def test_commit_push_uses_the_users_credentials_and_reports_the_registrys_refusal(
    mixed: Mixed, cluster: Cluster, docker_task: str, tmp_path: Path
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    registry = f"127.0.0.1:{server.server_address[1]}"
    config = tmp_path / "docker-config"
    config.mkdir()
    secret = base64.b64encode(b"alice:registry-password").decode()
    (config / "config.json").write_text(json.dumps({"auths": {registry: {"auth": secret}}}))
    reference = f"{registry}/{REPO}:pushed"
    try:
        res = subprocess.run(
            cluster.cli_argv("commit", "--push", "--with-registry-auth", docker_task, reference),
            capture_output=True,
            text=True,
            env=dict(cluster.env, DOCKER_CONFIG=str(config)),
            timeout=300,
        )
    finally:
        server.shutdown()
    assert res.returncode == 1
    assert res.stdout.startswith("sha256:"), "the commit itself worked"
    error = assert_refused(CLIResult(res.returncode, res.stdout, res.stderr), f"push of {reference} failed")
    assert "takes no pushes" in error, error
    assert f"Basic {secret}" in _Registry.seen, "the push carried the user's credentials"
    assert mixed.engine.images.get(reference).id == res.stdout.strip()


def test_commit_refusals_say_what_is_wrong(cluster: Cluster) -> None:
    cluster.create_service("pcommit", 1, *on("process"), IMAGE, "sh", "-c", WAIT)
    try:
        wait_for(lambda: cluster.running("pcommit"), what="pcommit to run")
        assert_refused(cluster.cli("commit", "pcommit.1", f"{REPO}:x"), "process runtime", "docker runtime")
        assert_refused(cluster.cli("commit", "pcommit.1", "Not/Valid"), "invalid reference format")
        assert_refused(cluster.cli("commit", "-c", "RUN true", "pcommit.1", REPO), "instruction")
        assert_refused(cluster.cli("commit", "pcommit.9", REPO), "no such task")
        node_tls = cluster.root / "agent-1" / "node"
        assert_refused(cluster.cli_as(node_tls, "commit", "pcommit.1", REPO), "role")
    finally:
        cluster.cli("service", "rm", "pcommit")
