"""A task's secrets and configs on its node (shoal.agent.taskfiles): where
they go, written on a tmpfs of the task's own before prepare, gone as soon
as the task ended, and cleaned up for tasks this node no longer has. Driven
around the scripted fake runtime."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from shoal.agent.runtime.base import TaskContext, TaskRejected
from shoal.agent.runtime.fake import FakeRuntime, TaskScript
from shoal.agent.taskfiles import CONFIGS_ENV, SECRETS_ENV, FileStore, WithFiles, plan_files, watch_reports
from shoal.agent.taskfiles.tmpfs import is_tmpfs
from shoal.protos import objects_pb2 as pb


def task_with_files(task_id: str = "task1") -> pb.Task:
    task = pb.Task(service_name="web", slot=1)
    task.meta.id = task_id
    c = task.spec.container
    c.image = "app:1"
    c.secrets.add(id="sid", name="db_pass")
    c.secrets.add(id="sid", name="db_pass", target="/etc/pass", mode=0o440)
    c.configs.add(id="cid", name="conf")
    task.files["sid"] = b"s3cret\n"
    task.files["cid"] = b"a=1\n"
    return task


def test_the_plan_puts_files_where_each_runtime_expects_them(tmp_path: Path) -> None:
    root = tmp_path / "task1"
    process = plan_files(task_with_files(), root, in_container=False)
    assert process is not None
    assert [(f.path.relative_to(root).as_posix(), f.mode, f.uid) for f in process.files] == [
        ("secrets/db_pass", 0o400, -1),
        ("secrets/etc/pass", 0o440, -1),
        ("configs/conf", 0o444, -1),
    ]
    assert process.env == {SECRETS_ENV: str(root / "secrets"), CONFIGS_ENV: str(root / "configs")}
    docker = plan_files(task_with_files(), root, in_container=True)
    assert docker is not None
    assert [(m.target, f.mode, f.uid) for m, f in zip(docker.mounts, docker.files, strict=True)] == [
        ("/run/secrets/db_pass", 0o444, 0),
        ("/etc/pass", 0o440, 0),
        ("/conf", 0o444, 0),
    ]
    assert plan_files(pb.Task(), root, in_container=False) is None
    other = task_with_files()
    other.spec.container.secrets[0].uid = str(os.geteuid() + 1)
    with pytest.raises(TaskRejected, match="runs tasks as the agent's user"):
        plan_files(other, root, in_container=False)
    escaping = task_with_files()
    escaping.spec.container.configs[0].target = "../../etc/passwd"
    with pytest.raises(TaskRejected, match="leaves the task's folder"):
        plan_files(escaping, root, in_container=False)


def test_files_are_written_before_prepare_and_removed_when_the_task_ends(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = FileStore.for_agent(tmp_path)
        fake = FakeRuntime(default=TaskScript(run_for=0.2, exit_code=0))
        runtime = WithFiles(fake, store)
        task = task_with_files()
        ctl = runtime.controller(TaskContext(task=task, node_id="n1", env={}))
        root = store.root(task.meta.id)
        # The task's context points at its folders; the fake has health too.
        assert fake.tasks == {} and not root.exists()
        assert hasattr(ctl, "health")
        await ctl.prepare()
        secret = root / "secrets" / "db_pass"
        assert secret.read_bytes() == b"s3cret\n" and stat.S_IMODE(secret.stat().st_mode) == 0o400
        assert (root / "configs" / "conf").read_text() == "a=1\n"
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        if store.mount:
            assert is_tmpfs(root)
        assert await runtime.known_task_ids() == {task.meta.id}
        await ctl.start()
        status = await ctl.wait()
        assert status.exit_code == 0 and not root.exists()

    asyncio.run(scenario())


def test_a_terminal_report_or_a_discard_removes_the_files(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = FileStore.for_agent(tmp_path)
        runtime = WithFiles(FakeRuntime(), store)
        reports: list[tuple[str, int]] = []
        report = watch_reports(lambda task_id, status: reports.append((task_id, status.state)), store)
        first, second = task_with_files("first"), task_with_files("second")
        for task in (first, second):
            await runtime.controller(TaskContext(task=task, node_id="n1")).prepare()
        # Shut down before it started: the worker only reports.
        report("first", pb.TaskStatus(state=pb.TASK_STATE_READY))
        assert store.root("first").exists()
        report("first", pb.TaskStatus(state=pb.TASK_STATE_SHUTDOWN))
        assert not store.root("first").exists() and reports[-1] == ("first", pb.TASK_STATE_SHUTDOWN)
        # A task no longer assigned after a restart: discarded with its files.
        assert "second" in await runtime.known_task_ids()
        await runtime.discard("second")
        assert not store.root("second").exists() and store.known() == set()

    asyncio.run(scenario())


def test_a_task_whose_values_did_not_come_is_rejected_and_leaves_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = FileStore.for_agent(tmp_path)
        runtime = WithFiles(FakeRuntime(), store)
        task = task_with_files()
        del task.files["cid"]
        ctl = runtime.controller(TaskContext(task=task, node_id="n1"))
        with pytest.raises(TaskRejected, match="config conf: not sent with the task"):
            await ctl.prepare()
        assert not store.root(task.meta.id).exists()
        plain = pb.Task()
        plain.meta.id = "plain"
        # Tasks without files get the backend's own controller, untouched.
        assert (
            type(runtime.controller(TaskContext(task=plain, node_id="n1"))).__name__ == "FakeTaskController"
        )

    asyncio.run(scenario())
