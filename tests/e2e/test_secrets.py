"""Secrets and configs (issue 14): files for tasks that only the tasks
using them get, on a tmpfs, gone when the task ends, never in plain text in
etcd, and not removable while a service uses them.

The process-runtime tests share one cluster (three agents); each uses
names of its own. The docker test has a one-agent cluster of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.manager.store import Etcd
from tests.support.cluster import Cluster, assert_refused, sleep_seconds, start_cluster, wait_for
from tests.support.docker_engine import containers_of
from tests.support.etcd_server import EtcdServer

# Bytes a text-mangling path would spoil: a NUL, a non-UTF-8 byte, no final newline.
SECRET = b"s3cr3t-for-shoal\x00\xff\nsecond line"


@pytest.fixture(scope="module")
def cluster(etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    made = start_cluster(etcd_server, tmp_path_factory.mktemp("secrets"), agents=3)
    try:
        yield made
    finally:
        made.close()


def ok(res: Any) -> str:
    assert res.code == 0, f"exit {res.code}:\n{res.out}\n{res.err}"
    out: str = res.out
    return out


def files_root(cluster: Cluster, agent: int) -> Path:
    return cluster.root / f"agent-{agent + 1}" / "runtime" / "files"


def task_folders(cluster: Cluster) -> dict[str, set[str]]:
    """Per agent (node hostname), the tasks that have a secrets folder there."""
    out = {}
    for i in range(len(cluster.agents)):
        root = files_root(cluster, i)
        out[f"node-{i + 1}"] = {p.name for p in root.iterdir() if p.is_dir()} if root.exists() else set()
    return out


def mount_of(path: Path) -> list[str] | None:
    """The /proc/mounts line of the mount at path, split (None: not a mount point)."""
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1] == str(path):
            return fields
    return None


def etcd_bytes(cluster: Cluster) -> bytes:
    """Every key and value under the cluster's prefix, straight from etcd."""

    async def read() -> bytes:
        etcd = Etcd([cluster.etcd.url])
        try:
            kvs, _ = await etcd.list_prefix(cluster.prefix.encode())
            return b"".join(kv.key + kv.value for kv in kvs)
        finally:
            await etcd.aclose()

    return asyncio.run(read())


def test_a_secret_reaches_only_the_task_that_uses_it_on_tmpfs_and_goes_with_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    source = tmp_path / "pass"
    source.write_bytes(SECRET)
    secret_id = ok(cluster.cli("secret", "create", "db_pass", str(source))).strip()
    marker = sleep_seconds(3801)
    ok(
        cluster.cli(
            "service", "create", "-d", "--name", "user", "--update-monitor", "0s",
            "--secret", "db_pass", "--secret", "source=db_pass,target=conf/copy,mode=0440",
            "app:1", "sh", "-c",
            f'echo "dir=$SHOAL_SECRETS_DIR"; cat "$SHOAL_SECRETS_DIR/db_pass"; sleep {marker}',
        )
    )  # fmt: skip
    ok(
        cluster.cli(
            "service", "create", "-d", "--name", "bystander", "--mode", "global", "app:1", "sleep", marker
        )
    )
    task = wait_for(lambda: cluster.running("user"), what="the user's task")[0]
    wait_for(lambda: len(cluster.running("bystander")) == 3, what="a bystander on every node")

    # Only the using task's node has a folder, and only for that task.
    folders = task_folders(cluster)
    assert folders[task["node"]] == {task["id"]}, folders
    assert all(not tasks for node, tasks in folders.items() if node != task["node"]), folders
    root = files_root(cluster, int(task["node"].split("-")[1]) - 1) / task["id"]
    mounted = mount_of(root)
    assert mounted is not None and mounted[2] == "tmpfs", mounted
    options = mounted[3].split(",")
    assert {"nosuid", "nodev", "noexec", "mode=700"} <= set(options), options
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    main, copy = root / "secrets" / "db_pass", root / "secrets" / "conf" / "copy"
    assert main.read_bytes() == SECRET and copy.read_bytes() == SECRET
    assert stat.S_IMODE(main.stat().st_mode) == 0o400
    assert stat.S_IMODE(copy.stat().st_mode) == 0o440
    # The task read it through the variable.
    stdout = cluster.task_dir(task["id"]) / "stdout.log"
    wait_for(lambda: SECRET in stdout.read_bytes(), what="the task's copy of the secret")
    assert f"dir={root / 'secrets'}".encode() in stdout.read_bytes()

    # Never shown, never stored in plain text.
    shown = ok(cluster.cli("secret", "inspect", "db_pass")) + ok(
        cluster.cli("secret", "ls", "--format", "json")
    )
    assert "s3cr3t" not in shown and secret_id in shown
    raw = etcd_bytes(cluster)
    assert b"s3cr3t-for-shoal" not in raw and secret_id.encode() in raw

    # The task ends: the tmpfs and the folder go with it.
    ok(cluster.cli("service", "rm", "user", "bystander"))
    wait_for(lambda: mount_of(root) is None and not root.exists(), what="the task's secrets folder to go")
    ok(cluster.cli("secret", "rm", "db_pass"))


def test_a_secret_in_use_cannot_be_removed_and_a_large_one_is_refused(
    cluster: Cluster, tmp_path: Path
) -> None:
    source = tmp_path / "token"
    source.write_bytes(b"token-value")
    ok(cluster.cli("secret", "create", "api_token", "-", stdin="token-value"))
    ok(
        cluster.cli(
            "service", "create", "-d", "--name", "api", "--secret", "api_token", "app:1", "sleep", "1d"
        )
    )
    assert_refused(cluster.cli("secret", "rm", "api_token"), "api_token", "in use", "api")
    # Dropped from the spec, it is still the previous spec's: a rollback needs it.
    ok(cluster.cli("service", "update", "-d", "--secret-rm", "api_token", "api"))
    assert_refused(cluster.cli("secret", "rm", "api_token"), "in use", "api")
    ok(cluster.cli("service", "rm", "api"))
    ok(cluster.cli("secret", "rm", "api_token"))

    big = tmp_path / "big"
    big.write_bytes(b"x" * (500 * 1024 + 1))
    assert_refused(cluster.cli("secret", "create", "big", str(big)), "500 KiB")
    assert_refused(cluster.cli("secret", "create", "big", "-", stdin="x" * (500 * 1024 + 1)), "500 KiB")
    assert_refused(cluster.cli("secret", "create", "bad/name", str(source)), "name")
    assert_refused(
        cluster.cli("service", "create", "-d", "--name", "nope", "--secret", "missing", "app:1", "true"),
        "secret missing not found",
    )
    assert "big" not in ok(cluster.cli("secret", "ls"))
    assert "nope" not in ok(cluster.cli("service", "ls"))


def test_a_config_is_readable_in_inspect_and_reaches_its_task(cluster: Cluster, tmp_path: Path) -> None:
    source = tmp_path / "app.conf"
    source.write_text("listen 8080\n")
    ok(cluster.cli("config", "create", "--label", "app=web", "app_conf", str(source)))
    [shown] = json.loads(ok(cluster.cli("config", "inspect", "app_conf")))
    assert shown["spec"]["data"] == "listen 8080\n" and shown["spec"]["labels"] == {"app": "web"}
    marker = sleep_seconds(3802)
    ok(
        cluster.cli(
            "service", "create", "-d", "--name", "conf_user", "--config", "app_conf",
            "app:1", "sh", "-c", f'cat "$SHOAL_CONFIGS_DIR/app_conf"; sleep {marker}',
        )
    )  # fmt: skip
    task = wait_for(lambda: cluster.running("conf_user"), what="the config's task")[0]
    root = files_root(cluster, int(task["node"].split("-")[1]) - 1) / task["id"]
    conf = root / "configs" / "app_conf"
    assert conf.read_text() == "listen 8080\n"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o444
    assert_refused(cluster.cli("config", "rm", "app_conf"), "in use", "conf_user")
    ok(cluster.cli("service", "rm", "conf_user"))
    wait_for(lambda: not root.exists(), what="the config's folder to go")
    ok(cluster.cli("config", "rm", "app_conf"))


@pytest.mark.docker
def test_docker_tasks_find_secrets_in_run_secrets_with_mode_and_owner(
    engine: Any, make_cluster: Any, tmp_path: Path
) -> None:
    cluster = make_cluster(agents=1, runtime="docker")
    (tmp_path / "s").write_bytes(SECRET)
    (tmp_path / "c").write_text("conf\n")
    ok(cluster.cli("secret", "create", "db_pass", str(tmp_path / "s")))
    ok(cluster.cli("config", "create", "app_conf", str(tmp_path / "c")))
    ok(
        cluster.cli(
            "service", "create", "-d", "--name", "db", "--user", "1000:1000",
            "--secret", "source=db_pass,mode=0440,uid=1000,gid=1000",
            "--config", "source=app_conf,target=/etc/app.conf",
            "shoal-test:1", "sleep", "3600",
        )
    )  # fmt: skip
    node_ids = {n["id"] for n in cluster.nodes()}
    [container] = wait_for(lambda: containers_of(engine, "db", node_ids), what="db's container")

    def run(*command: str) -> str:
        code, out = container.exec_run(list(command))
        assert code == 0, out
        return str(out.decode())

    assert run("stat", "-c", "%a %u %g", "/run/secrets/db_pass").split() == ["440", "1000", "1000"]
    code, out = container.exec_run(["cat", "/run/secrets/db_pass"])
    assert code == 0 and out == SECRET
    assert run("cat", "/etc/app.conf") == "conf\n"
    assert run("stat", "-c", "%a", "/etc/app.conf").strip() == "444"
    assert run("id", "-u").strip() == "1000"  # --user
    # Read-only, even for root.
    code, _ = container.exec_run(["sh", "-c", "echo x > /run/secrets/db_pass"], user="0")
    assert code != 0
    ok(cluster.cli("service", "rm", "db"))
    agent_files = cluster.root / "agent-1" / "runtime" / "files"
    wait_for(lambda: not any(agent_files.iterdir()), what="the task's secrets folder to go")
    assert os.path.exists(agent_files)
