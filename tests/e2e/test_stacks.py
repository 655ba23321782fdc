"""Stacks from Compose files (issue 14), as a Swarm user runs them.

One cluster serves the module: a manager and three process-runtime agents,
node-1 joined with the manager token (a node whose role is manager), the
nodes labelled zone=a, a, b. Each test deploys stacks of its own names, so
they do not see each other's services. Tasks carry markers of their own
(``sleep_seconds``) so that ``pids_of`` finds exactly a stack's processes.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import (
    CLIResult,
    Cluster,
    assert_refused,
    pids_of,
    sleep_seconds,
    wait_for,
    wait_pids,
)
from tests.support.docker_engine import containers_of
from tests.support.etcd_server import EtcdServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "compose"
ZONES = [{"zone": "a"}, {"zone": "a"}, {"zone": "b"}]


@pytest.fixture(scope="module")
def cluster(etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    made = Cluster(etcd_server, tmp_path_factory.mktemp("stacks"))
    try:
        made.start_manager()
        manager_token = made.cli("join-token", "-q", "manager").out.strip()
        made.start_agent(labels=ZONES[0], token=manager_token)
        made.start_agent(labels=ZONES[1])
        made.start_agent(labels=ZONES[2])
        made.wait_nodes_ready(3)
        yield made
    except BaseException:
        print(made.dump_logs())
        raise
    finally:
        made.close()


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def deploy(cluster: Cluster, stack: str, *files: Path, flags: tuple[str, ...] = (), **env: str) -> CLIResult:
    args = [a for f in files for a in ("-c", str(f))]
    return cluster.cli("stack", "deploy", *flags, *args, stack, timeout=180, env=env)


def ok(res: CLIResult) -> CLIResult:
    assert res.code == 0, f"exit {res.code}:\n{res.out}\n{res.err}"
    assert "Traceback" not in res.out + res.err
    return res


def inspect(cluster: Cluster, name: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(ok(cluster.cli("service", "inspect", name)).out)[0]
    return shown


def stack_services(cluster: Cluster, stack: str) -> dict[str, dict[str, Any]]:
    res = cluster.cli("stack", "services", stack, "--format", "json")
    return {s["name"]: s for s in json.loads(res.out)} if res.code == 0 else {}


def current_ids(cluster: Cluster, service: str) -> set[str]:
    return {t["id"] for t in cluster.tasks(service) if t["desired_state"] in ("running", "complete")}


def test_a_stack_converges_updates_only_what_changed_prunes_and_leaves_nothing_when_removed(
    cluster: Cluster, tmp_path: Path
) -> None:
    marker = sleep_seconds(3901)
    (tmp_path / "db_password").write_bytes(b"pw-for-the-stack\n")
    stack_file = """\
        version: "3.8"
        x-fast: &fast
          update_config: {monitor: 1s}
        services:
          web:
            image: ${WEB_IMAGE:-app:1}
            command: sleep MARKER
            ports: ["18080:80"]
            deploy:
              <<: *fast
              replicas: 3
          worker:
            image: app:1
            # Quoted: bare, YAML reads 3901.282670 as a float (3901.28267).
            command: [sleep, "MARKER"]
            deploy:
              <<: *fast
              replicas: 2
              placement:
                constraints: [node.role != manager]
                preferences: [{spread: node.labels.zone}]
          once:
            image: app:1
            command: sh -c 'echo done'
            deploy: {mode: global-job}
          db:
            image: app:1
            command: >-
              sh -c 'cat "$$SHOAL_SECRETS_DIR/db_password" "$$SHOAL_CONFIGS_DIR/settings";
              exec sleep MARKER'
            secrets: [db_password]
            configs: [settings]
            deploy:
              <<: *fast
              placement: {constraints: [node.role == manager]}
        secrets:
          db_password: {file: ./db_password}
        configs:
          settings: {content: "max_connections=5"}
        """.replace("MARKER", marker)
    path = write(tmp_path, "stack.yml", stack_file)
    res = ok(deploy(cluster, "app", path))
    for line in (
        "Creating secret app_db_password",
        "Creating config app_settings",
        "Creating service app_web",
    ):
        assert line in res.out
    assert "verify: Service app_web converged" in res.out
    # 3 web + 2 worker + 1 db keep running.
    wait_pids(f"sleep {marker}", 6)

    assert {"name": "app", "services": 4} in json.loads(
        ok(cluster.cli("stack", "ls", "--format", "json")).out
    )
    services = stack_services(cluster, "app")
    assert {n: (s["replicas_running"], s["replicas_desired"]) for n, s in services.items()} == {
        "app_web": (3, 3),
        "app_worker": (2, 2),
        "app_once": (0, 3),
        "app_db": (1, 1),
    }
    assert services["app_once"]["completed"] == 3
    tasks = json.loads(ok(cluster.cli("stack", "ps", "app", "--format", "json")).out)
    running = [t for t in tasks if t["current_state"] == "running"]
    where = Counter((t["service"], t["node"]) for t in running)
    assert where[("app_db", "node-1")] == 1  # the manager-role node
    assert where[("app_worker", "node-2")] == 1 and where[("app_worker", "node-3")] == 1  # zones a and b
    assert {t["node"] for t in running if t["service"] == "app_web"} == {"node-1", "node-2", "node-3"}
    db_task = next(t for t in running if t["service"] == "app_db")
    db_out = cluster.task_dir(db_task["id"]) / "stdout.log"
    wait_for(
        lambda: db_out.read_text() == "pw-for-the-stack\nmax_connections=5", what="db's secret and config"
    )

    # A new image for web: only web is updated; the others keep their tasks.
    before = {name: current_ids(cluster, name) for name in ("app_worker", "app_db", "app_once")}
    web_before = current_ids(cluster, "app_web")
    res = ok(deploy(cluster, "app", path, WEB_IMAGE="app:2"))
    assert "Updating service app_web" in res.out
    assert "Service app_worker is up to date" in res.out and "Updating service app_worker" not in res.out
    assert {name: current_ids(cluster, name) for name in before} == before
    web_now = cluster.running("app_web")
    assert len(web_now) == 3 and {t["image"] for t in web_now} == {"app:2"}
    assert not web_before & {t["id"] for t in web_now}

    # The same file again: nothing to do.
    res = ok(deploy(cluster, "app", path, WEB_IMAGE="app:2"))
    assert "Stack app is up to date" in res.out and "Updating" not in res.out

    # db dropped from the file: --prune removes it (and what only it used).
    pruned = write(tmp_path, "pruned.yml", stack_file.split("  db:")[0].replace("MARKER", marker))
    res = ok(deploy(cluster, "app", pruned, flags=("--prune",), WEB_IMAGE="app:2"))
    assert "Removing service app_db" in res.out
    assert set(stack_services(cluster, "app")) == {"app_web", "app_worker", "app_once"}

    ok(cluster.cli("stack", "rm", "app"))
    wait_for(lambda: not pids_of(f"sleep {marker}"), what="the stack's processes to stop")
    assert stack_services(cluster, "app") == {}
    listed = ok(cluster.cli("service", "ls")).out + ok(cluster.cli("secret", "ls")).out
    listed += ok(cluster.cli("config", "ls")).out
    assert "app_" not in listed
    wait_for(
        lambda: "app_" not in ok(cluster.cli("node", "ps", "node-1")).out,
        what="the stack's tasks to be reaped",
    )


def test_a_deploy_that_does_not_converge_exits_1_naming_the_service(cluster: Cluster, tmp_path: Path) -> None:
    marker = sleep_seconds(3902)
    base = """\
        services:
          api:
            image: app:1
            command: COMMAND
            deploy:
              update_config: {monitor: 2s, failure_action: pause}
          steady:
            image: app:1
            command: sleep MARKER
            deploy:
              update_config: {monitor: 1s}
        """.replace("MARKER", marker)
    ok(deploy(cluster, "flaky", write(tmp_path, "a.yml", base.replace("COMMAND", f"sleep {marker}"))))
    res = deploy(cluster, "flaky", write(tmp_path, "b.yml", base.replace("COMMAND", "sh -c 'exit 3'")))
    assert res.code == 1, res.out + res.err
    assert "flaky_api" in res.err and "paused" in res.err and "flaky_steady" not in res.err
    assert res.err.strip().splitlines()[-1] == "Error: 1 service of stack flaky did not converge: flaky_api"

    nowhere = """\
        services:
          lost:
            image: app:1
            command: sleep 1d
            deploy:
              placement: {constraints: [node.labels.zone == nowhere]}
        """
    res = deploy(cluster, "stuck", write(tmp_path, "c.yml", nowhere))
    assert res.code == 1
    assert "stuck_lost: no suitable node" in res.err
    ok(cluster.cli("stack", "rm", "flaky", "stuck"))


def test_variables_dotenv_dollars_and_two_files_merge_as_compose_does(
    cluster: Cluster, tmp_path: Path
) -> None:
    write(tmp_path, ".env", "GREETING=from-dotenv\nWHO=dotenv\nREPLICAS=2\n")
    base = write(
        tmp_path,
        "base.yml",
        """\
        services:
          hello:
            image: app:1
            command: echo ${GREETING} $$HOME ${WHO} ${MISSING:-fallback}
            environment:
              - LEVEL=info
              - PRICE=$$5
            ports: ["18100:80"]
            deploy:
              replicas: ${REPLICAS}
              placement: {constraints: [node.labels.zone == a]}
        """,
    )
    override = write(
        tmp_path,
        "override.yml",
        """\
        services:
          hello:
            environment: {LEVEL: debug, EXTRA: "yes"}
            ports: ["18101:81"]
            deploy:
              replicas: 3
              placement: {constraints: [node.role == worker]}
        """,
    )
    ok(deploy(cluster, "vars", base, override, flags=("-d",), WHO="environment"))
    spec = inspect(cluster, "vars_hello")["spec"]
    container = spec["task"]["container"]
    assert container["args"] == ["echo", "from-dotenv", "$HOME", "environment", "fallback"]
    assert container["env"] == ["LEVEL=debug", "PRICE=$5", "EXTRA=yes"]
    assert spec["replicas"] == 3
    assert spec["task"]["placement"]["constraints"] == ["node.labels.zone == a", "node.role == worker"]
    assert sorted((p["published_port"], p["target_port"]) for p in spec["ports"]) == [
        (18100, 80),
        (18101, 81),
    ]
    ok(cluster.cli("stack", "rm", "vars"))


def test_a_file_that_cannot_deploy_deploys_nothing(cluster: Cluster, tmp_path: Path) -> None:
    good = "  fine:\n    image: app:1\n    command: sleep 1d\n"

    def refused(name: str, text: str, *mentions: str, **env: str) -> str:
        res = deploy(cluster, "broken", write(tmp_path, name, text), **env)
        line = assert_refused(res, *mentions)
        assert stack_services(cluster, "broken") == {}, f"{name} deployed something"
        return line

    refused("required.yml", "services:\n  web:\n    image: ${IMAGE:?set IMAGE to the tag to deploy}\n" + good,
            "set IMAGE to the tag to deploy")  # fmt: skip
    refused("yaml.yml", "services:\n" + good + "  web:\n    image: [app:1\n", "yaml.yml:7", "from line 6")
    refused("indent.yml", "services:\n" + good + "  web:\n    image: app:1\n   command: x\n", "indent.yml:7")
    bomb = 'x-a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for level in "bcdefghi":
        bomb += f"x-{level}: &{level} [{','.join([f'*{chr(ord(level) - 1)}'] * 9)}]\n"
    refused("bomb.yml", bomb + "services:\n" + good, "bomb.yml", "YAML bomb")
    refused("invalid.yml", "services:\n" + good + "  web:\n    image: app:1\n    deploy: {replicas: -1}\n",
            "invalid.yml:5", "service web", "replicas: must be >= 0")  # fmt: skip
    port = "    image: app:1\n    ports: [{target: 80, published: 18200}]\n"
    refused("ports.yml", f"services:\n  a:\n{port}  b:\n{port}", "18200", "broken_a")
    refused(
        "secret.yml", "services:\n  web:\n    image: app:1\n    secrets: [nope]\n", "nope", "not declared"
    )
    warned = """\
        services:
          web:
            image: app:1
            command: sleep 1d
            build: .
            depends_on: [db]
            deploy: {replicas: 0}
        """
    res = ok(deploy(cluster, "warned", write(tmp_path, "warned.yml", warned), flags=("-d",)))
    warnings = [line for line in res.err.splitlines() if line.startswith("warning:")]
    assert any("warned.yml:5" in w and "service web: build" in w for w in warnings), res.err
    assert any("warned.yml:6" in w and "service web: depends_on" in w for w in warnings), res.err
    ok(cluster.cli("stack", "rm", "warned"))


def test_the_voting_app_and_the_docker_cli_full_example_deploy_detached(
    cluster: Cluster, tmp_path: Path
) -> None:
    res = ok(deploy(cluster, "vote", FIXTURES / "voting-app" / "docker-stack.yml", flags=("-d",)))
    assert "service vote: depends_on is ignored" in res.err
    assert "Creating network vote_frontend" in res.out and "Creating network vote_backend" in res.out
    services = {n: inspect(cluster, n)["spec"] for n in stack_services(cluster, "vote")}
    assert set(services) == {f"vote_{n}" for n in ("redis", "db", "vote", "result", "worker", "visualizer")}
    assert services["vote_vote"]["replicas"] == 2 and services["vote_vote"]["update"]["parallelism"] == 2
    for name in ("vote_db", "vote_worker", "vote_visualizer"):
        assert services[name]["task"]["placement"]["constraints"] == ["node.role == manager"]
    restart = services["vote_worker"]["task"]["restart"]
    assert (restart["condition"], restart["delay"], restart["max_attempts"], restart["window"]) == (
        "on-failure", 10_000_000_000, 3, 120_000_000_000,
    )  # fmt: skip
    assert services["vote_visualizer"]["task"]["container"]["stop_grace_period"] == 90_000_000_000
    ok(cluster.cli("stack", "rm", "vote"))

    # docker/cli's full example, with its external secret and config made first.
    folder = tmp_path / "full"
    shutil.copytree(FIXTURES / "full-example", folder)
    original = folder / "full-example.yml"
    (tmp_path / "x").write_text("external\n")
    ok(cluster.cli("secret", "create", "my_secret", str(tmp_path / "x")))
    ok(cluster.cli("config", "create", "my_config", str(tmp_path / "x")))
    # As shipped it deploys on Docker no more than here: "datavolume" is not
    # declared and "node=foo" is no constraint. Both are refused, naming them.
    assert_refused(deploy(cluster, "full", original), "datavolume", "full-example.yml:")
    declared = write(folder, "volumes.yml", "volumes:\n  datavolume:\n")
    # ...and, as docker does, a network the service names but nobody declares.
    assert_refused(deploy(cluster, "full", original, declared), "other-other-network")
    declared = write(folder, "volumes.yml", "volumes:\n  datavolume:\nnetworks:\n  other-other-network:\n")
    assert_refused(deploy(cluster, "full", original, declared), 'constraint "node=foo"')
    assert stack_services(cluster, "full") == {}
    fixed = folder / "fixed.yml"
    fixed.write_text(
        original.read_text().replace("constraints: [node=foo]", "constraints: [node.labels.az==a]")
    )
    res = ok(deploy(cluster, "full", fixed, declared, flags=("-d",), QUX="qux"))
    for key in ("build", "cap_add", "privileged", "devices", "ulimits", "logging", "generic_resources"):
        assert f"{key}" in res.err, key
    spec = inspect(cluster, "full_foo")["spec"]
    task = spec["task"]
    assert spec["replicas"] == 6 and spec["labels"]["FOO"] == "BAR"
    assert task["placement"]["constraints"] == ["node.labels.az==a"]
    assert task["placement"]["max_replicas_per_node"] == 5
    assert task["resources"]["limits"] == {"nano_cpus": 1_000_000, "memory_bytes": 50 * 1024 * 1024}
    assert task["resources"]["reservations"] == {"nano_cpus": 100_000, "memory_bytes": 20 * 1024 * 1024}
    assert (task["restart"]["condition"], task["restart"]["max_attempts"]) == ("on-failure", 3)
    for which in ("update", "rollback"):
        cfg = spec[which]
        assert (cfg["parallelism"], cfg["failure_action"], cfg["order"]) == (3, "continue", "start-first")
    container = task["container"]
    assert "QUX=qux" in container["env"] and "BAZ=baz_from_service_def" in container["env"]
    assert [s["name"] for s in container["secrets"]] == ["full_secret1", "my_secret"]
    assert [c["name"] for c in container["configs"]] == ["full_config1", "my_config"]
    assert container["secrets"][1]["mode"] == 0o440 and container["user"] == "someone"
    ok(cluster.cli("stack", "rm", "full"))
    assert "full_secret1" not in ok(cluster.cli("secret", "ls")).out
    ok(cluster.cli("secret", "rm", "my_secret"))
    ok(cluster.cli("config", "rm", "my_config"))


@pytest.mark.docker
def test_a_docker_stack_gets_its_secret_in_run_secrets_and_stack_rm_leaves_no_container(
    engine: Any, make_cluster: Any, tmp_path: Path
) -> None:
    cluster = make_cluster(agents=1, runtime="docker")
    (tmp_path / "token").write_text("t0ken")
    stack_file = write(
        tmp_path,
        "stack.yml",
        """\
        services:
          api:
            image: shoal-test:1
            command: sleep 3600
            secrets: [{source: token, mode: 0400}]
            configs: [{source: conf, target: /etc/api.conf}]
            deploy:
              replicas: 2
              update_config: {monitor: 1s}
        secrets:
          token: {file: ./token}
        configs:
          conf: {content: "debug=false"}
        """,
    )
    ok(deploy(cluster, "dock", stack_file))
    node_ids = {n["id"] for n in cluster.nodes()}
    containers = containers_of(engine, "dock_api", node_ids)
    assert len(containers) == 2
    for container in containers:
        script = "cat /run/secrets/token; echo; cat /etc/api.conf; echo; stat -c %a /run/secrets/token"
        code, out = container.exec_run(["sh", "-c", script])
        assert code == 0 and out.decode().split() == ["t0ken", "debug=false", "400"], out
    ok(cluster.cli("stack", "rm", "dock"))
    wait_for(
        lambda: not containers_of(engine, "dock_api", node_ids, running_only=False), what="no container left"
    )
    assert "dock_" not in ok(cluster.cli("secret", "ls")).out + ok(cluster.cli("config", "ls")).out
    files = cluster.root / "agent-1" / "runtime" / "files"
    wait_for(lambda: not any(files.iterdir()), what="the tasks' secrets folders to go")


def test_stack_secret_and_config_listings_take_dockers_formats_filters_and_no_trunc(
    cluster: Cluster, tmp_path: Path
) -> None:
    marker = sleep_seconds(3903)
    stack_file = f"""\
        services:
          web:
            image: app:1
            command: sleep {marker}
            secrets: [token]
            deploy: {{replicas: 2}}
          worker:
            image: app:1
            command: sleep {marker}
            configs: [conf]
            deploy: {{mode: global, labels: {{tier: back}}}}
        secrets:
          token: {{file: ./token}}
        configs:
          conf: {{content: "debug=false"}}
        """
    (tmp_path / "token").write_text("t0ken")
    ok(deploy(cluster, "lst", write(tmp_path, "lst.yml", stack_file), flags=("-d",)))
    wait_pids(f"sleep {marker}", 5)

    def out(*args: str) -> list[str]:
        return ok(cluster.cli(*args)).out.splitlines()

    assert "lst: 2" in out("stack", "ls", "--format", "{{.Name}}: {{.Services}}")
    header, *rows = out("stack", "ls")
    assert header.split() == ["NAME", "SERVICES"] and ["lst", "2"] in [r.split() for r in rows]

    assert out("stack", "services", "lst", "-f", "name=lst_w", "--format", "{{.Name}} {{.Mode}}") == [
        "lst_web replicated",
        "lst_worker global",
    ]
    assert out("stack", "services", "lst", "-f", "label=tier=back", "--format", "{{.Name}}") == ["lst_worker"]
    ids = out("stack", "services", "lst", "-q")
    assert {len(i) for i in ids} == {25} and len(ids) == 2
    assert set(out("stack", "services", "lst", "--no-trunc", "--format", "{{.ID}}")) == set(ids)
    assert {len(i) for i in out("stack", "services", "lst", "--format", "{{.ID}}")} == {12}

    names = out("stack", "ps", "lst", "-f", "desired-state=running", "--format", "{{.Name}}")
    assert sorted(n for n in names if n.startswith("lst_web.")) == ["lst_web.1", "lst_web.2"]
    assert len([n for n in names if n.startswith("lst_worker.")]) == 3
    on_node_1 = out("stack", "ps", "lst", "-f", "node=node-1", "--format", "{{.Node}}")
    assert on_node_1 and set(on_node_1) == {"node-1"}
    assert_refused(cluster.cli("stack", "ps", "lst", "--format", "{{.Nope}}"), 'no field "Nope"')
    assert_refused(cluster.cli("stack", "ps", "lst", "-f", "colour=red"), 'unknown key "colour"')

    for kind, header_words in (
        ("secret", ["ID", "NAME", "DRIVER", "CREATED", "UPDATED"]),
        ("config", ["ID", "NAME", "CREATED", "UPDATED"]),
    ):
        header, *rows = out(kind, "ls", "-f", "label=com.docker.stack.namespace=lst")
        assert header.split() == header_words
        assert len(rows) == 1 and rows[0].split()[1] == f"lst_{'token' if kind == 'secret' else 'conf'}"
        (whole,) = out(kind, "ls", "-f", "name=lst_", "-q")
        (shown,) = json.loads(ok(cluster.cli(kind, "ls", "-f", f"id={whole[:5]}", "--format", "json")).out)
        assert shown["id"] == whole and shown["spec"]["labels"] == {"com.docker.stack.namespace": "lst"}
        assert out(kind, "ls", "--no-trunc", "-f", "name=lst_", "--format", "{{.ID}} {{.Labels}}") == [
            f"{whole} com.docker.stack.namespace=lst"
        ]
        assert out(kind, "ls", "-f", "name=nothing-like-it", "-q") == []
        assert_refused(cluster.cli(kind, "ls", "-f", "mode=global"), 'unknown key "mode"', "id, name, label")

    ok(cluster.cli("stack", "rm", "lst"))
    wait_for(lambda: not pids_of(f"sleep {marker}"), what="the stack's processes to stop")
    # As docker: an empty stack's services is no failure; its ps is.
    empty = ok(cluster.cli("stack", "services", "lst"))
    assert empty.out == "" and "Nothing found in stack: lst" in empty.err
    assert json.loads(ok(cluster.cli("stack", "services", "lst", "--format", "json")).out) == []
    assert_refused(cluster.cli("stack", "ps", "lst"), "nothing found in stack: lst")
