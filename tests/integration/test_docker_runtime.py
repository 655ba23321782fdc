"""The docker backend against the real engine: exit codes and logs, what the
container is made of (labels, env, workdir, limits, mounts, ports), health
checks, stopping, adoption by a restarted agent, and the errors a user sees.

Without an engine these tests skip, except under CI (``CI`` set), where they
fail. Each test labels its containers with a node ID of its own, and the
``node_id`` fixture removes every container with that label afterwards, even
when the test failed, using the SDK directly rather than the code under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import pytest

from shoal.agent.daemon import make_runtime
from shoal.agent.runtime.base import (
    ExitStatus,
    Health,
    HealthReport,
    HealthReporting,
    LogReading,
    TaskContext,
    TaskRejected,
)
from shoal.agent.runtime.docker import (
    LABEL_NODE_ID,
    DockerRuntime,
    DockerTaskController,
)
from shoal.agent.worker import task_name
from shoal.protos import objects_pb2 as pb
from tests.support.docker_tasks import make_ctx

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
SECOND = 1_000_000_000
MIB = 1024 * 1024


@pytest.fixture
def node_id(engine: Any) -> Iterator[str]:
    """This test's own node ID; its containers are removed at the end."""
    node = f"test-node-{uuid.uuid4().hex[:12]}"
    try:
        yield node
    finally:
        for c in engine.api.containers(all=True, filters={"label": f"{LABEL_NODE_ID}={node}"}):
            with contextlib.suppress(docker.errors.NotFound):
                engine.api.remove_container(c["Id"], force=True, v=True)


def run(coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
    """Run one test's async body with a deadline, so a hang fails the test."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@contextlib.asynccontextmanager
async def docker_runtime(node_id: str, advertise_addr: str = "") -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime(Path("/nonexistent/state"), node_id, advertise_addr)
    try:
        yield rt
    finally:
        await rt.close()


async def started(rt: DockerRuntime, ctx: TaskContext) -> DockerTaskController:
    ctl = rt.controller(ctx)
    await ctl.prepare()
    await ctl.start()
    return ctl


async def read_logs(ctl: DockerTaskController, tail: int | None = None) -> list[tuple[str, bytes]]:
    return [(stream, line) async for stream, line, _ in ctl.logs(follow=False, tail=tail)]


async def wait_until(cond: Callable[[], Coroutine[Any, Any, bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the deadline")
        await asyncio.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_exit_code_and_output_are_reported(node_id: str) -> None:
    async def main() -> None:
        async with docker_runtime(node_id) as rt:
            ctl = await started(rt, make_ctx(node_id, ["sh", "-c", "echo hi; echo oops >&2; exit 3"]))
            assert isinstance(ctl, LogReading) and isinstance(ctl, HealthReporting)
            assert await ctl.wait() == ExitStatus(3)
            state = await ctl.inspect()
            assert (state.exists, state.running, state.exit) == (True, False, ExitStatus(3))
            # Both streams; their order depends on the engine's copiers (see
            # test_logs_tail_and_follow).
            assert sorted(await read_logs(ctl)) == [("stderr", b"oops\n"), ("stdout", b"hi\n")]
            # wait() again after the fact gives the same answer
            assert await ctl.wait() == ExitStatus(3)

    run(main())


def test_container_carries_labels_name_env_workdir_and_limits(node_id: str, engine: Any) -> None:
    async def main() -> None:
        async with docker_runtime(node_id) as rt:
            ctx = make_ctx(
                node_id,
                ["sh", "-c", "env; pwd"],
                env=["GREETING=hello world"],
                workdir="/tmp",
                labels={"team": "blue", "shoal.node.id": "not-mine"},
                memory_bytes=64 * MIB,
                nano_cpus=500_000_000,
            )
            ctl = await started(rt, ctx)
            assert await ctl.wait() == ExitStatus(0)
            attrs = engine.api.inspect_container(ctl.container_id)
            task = ctx.task
            assert attrs["Name"] == "/" + task_name(task)
            assert attrs["Config"]["Labels"] == {
                "team": "blue",
                "shoal.task.id": task.meta.id,
                "shoal.service.id": "svc-id-1",
                "shoal.service.name": "web",
                "shoal.node.id": node_id,  # a service label cannot disown it
                "shoal.task.slot": "1",
            }
            assert attrs["HostConfig"]["Memory"] == 64 * MIB
            assert attrs["HostConfig"]["NanoCpus"] == 500_000_000
            out = b"".join(line for stream, line in await read_logs(ctl) if stream == "stdout").decode()
            lines = out.splitlines()
            assert f"SHOAL_TASK_ID={task.meta.id}" in lines
            assert f"SHOAL_NODE_ID={node_id}" in lines
            assert f"SHOAL_TASK_NAME={task_name(task)}" in lines
            assert "SHOAL_SERVICE_NAME=web" in lines
            assert "GREETING=hello world" in lines
            assert "PATH=/bin" in lines  # the image's env stays beneath ours
            assert lines[-1] == "/tmp"

    run(main())


def test_command_overrides_the_entrypoint_and_args_are_the_cmd(node_id: str, engine: Any) -> None:
    async def main() -> None:
        async with docker_runtime(node_id) as rt:
            both = await started(rt, make_ctx(node_id, ["sh", "-c"], ["echo from args; exit 4"]))
            args_only = await started(rt, make_ctx(node_id, None, ["sh", "-c", "exit 5"]))
            image_default = await started(rt, make_ctx(node_id))  # the image's CMD: /bin/sh
            assert await both.wait() == ExitStatus(4)
            assert await read_logs(both) == [("stdout", b"from args\n")]
            assert await args_only.wait() == ExitStatus(5)
            assert await image_default.wait() == ExitStatus(0)
            config = engine.api.inspect_container(both.container_id)["Config"]
            assert (config["Entrypoint"], config["Cmd"]) == (["sh", "-c"], ["echo from args; exit 4"])
            config = engine.api.inspect_container(args_only.container_id)["Config"]
            assert (config["Entrypoint"], config["Cmd"]) == (None, ["sh", "-c", "exit 5"])

    run(main())


def test_prepare_twice_reuses_the_container(node_id: str, engine: Any) -> None:
    async def main() -> None:
        async with docker_runtime(node_id) as rt:
            ctx = make_ctx(node_id, ["sleep", "1000"])
            ctl = rt.controller(ctx)
            assert not (await ctl.inspect()).exists
            await ctl.prepare()
            first = ctl.container_id
            state = await ctl.inspect()
            assert (state.exists, state.running, state.exit) == (True, False, None)
            await rt.controller(ctx).prepare()
            await ctl.prepare()
            assert ctl.container_id == first
            found = engine.api.containers(all=True, filters={"label": f"{LABEL_NODE_ID}={node_id}"})
            assert [c["Id"] for c in found] == [first]

    run(main())


def test_failing_health_check_makes_the_task_unhealthy_with_a_message(node_id: str) -> None:
    async def main() -> None:
        async with docker_runtime(node_id) as rt:
            check = pb.HealthCheck(
                test=["CMD-SHELL", "echo not ready yet; exit 1"], interval=SECOND, timeout=SECOND, retries=2
            )
            ctl = await started(rt, make_ctx(node_id, ["sleep", "1000"], healthcheck=check))
            assert await ctl.health() == HealthReport(Health.STARTING, "")

            async def unhealthy() -> bool:
                return (await ctl.health()).state == Health.UNHEALTHY

            await wait_until(unhealthy)
            assert (await ctl.health()).message == "health check exit code 1: not ready yet"

    run(main())


def test_passing_health_check_makes_the_task_healthy(node_id: str) -> None:
    async def main() -> None:
        async with docker_runtime(node_id) as rt:
            check = pb.HealthCheck(test=["CMD", "test", "-f", "/www/index.html"], interval=SECOND)
            ctl = await started(rt, make_ctx(node_id, ["sleep", "1000"], healthcheck=check))
            plain = await started(rt, make_ctx(node_id, ["sleep", "1000"]))

            async def healthy() -> bool:
                return (await ctl.health()).state == Health.HEALTHY

            await wait_until(healthy)
            assert (await ctl.health()).message == ""
            assert (await plain.health()).state == Health.NONE

    run(main())


def test_published_host_port_serves_and_a_second_task_on_it_is_rejected(node_id: str) -> None:
    async def main() -> None:
        port = free_port()
        async with docker_runtime(node_id, advertise_addr="127.0.0.1") as rt:
            httpd = ["httpd", "-f", "-p", "80", "-h", "/www"]
            host = pb.PortConfig(protocol="tcp", target_port=80, published_port=port, publish_mode="host")
            await started(rt, make_ctx(node_id, httpd, ports=[host]))

            def get() -> str:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    body: bytes = response.read()
                    return body.decode()

            deadline = time.monotonic() + 10
            while True:
                try:
                    body = await asyncio.to_thread(get)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            assert "shoal test image" in body

            # An ingress port's target goes to the endpoint the agent chose:
            # here, the port the first task holds.
            ingress = pb.PortConfig(target_port=80, published_port=port + 1, publish_mode="ingress")
            endpoint = pb.TaskEndpoint(protocol="tcp", target_port=80, host_port=port)
            second = rt.controller(make_ctx(node_id, httpd, ports=[ingress], endpoints=[endpoint]))
            await second.prepare()
            with pytest.raises(TaskRejected, match=rf"starting container failed: .*127\.0\.0\.1:{port}.*"):
                await second.start()

    run(main())


def test_missing_image_is_rejected_with_the_engines_message(node_id: str, engine: Any) -> None:
    async def main() -> None:
        async with docker_runtime(node_id) as rt:
            ctl = rt.controller(make_ctx(node_id, ["true"], image="shoal-test:nope"))
            with pytest.raises(TaskRejected) as info:
                await ctl.prepare()
            message = str(info.value)
            assert message.startswith("pulling image shoal-test:nope failed: ")
            # Whatever the engine said: no registry, access denied, unknown manifest.
            assert len(message) > len("pulling image shoal-test:nope failed: ") + 10
            assert not (await ctl.inspect()).exists

    run(main())


def test_invalid_spec_is_rejected_with_the_engines_message(node_id: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with docker_runtime(node_id) as rt:
            missing = pb.Mount(type="bind", source=str(tmp_path / "nope"), target="/data")
            ctl = rt.controller(make_ctx(node_id, ["true"], mounts=[missing]))
            with pytest.raises(TaskRejected, match=r"creating container failed: .*bind source path does not"):
                await ctl.prepare()
            ctl = rt.controller(make_ctx(node_id, ["no-such-command"]))
            await ctl.prepare()
            with pytest.raises(TaskRejected, match='"no-such-command": executable file not found'):
                await ctl.start()
            ctl = rt.controller(make_ctx(node_id, ["true"], memory_bytes=1024))
            with pytest.raises(TaskRejected, match=r"creating container failed: .*[Mm]inimum memory limit"):
                await ctl.prepare()

    run(main())


def test_restarted_agent_adopts_the_running_container(node_id: str, engine: Any) -> None:
    async def main() -> None:
        ctx = make_ctx(node_id, ["sleep", "1000"])
        task_id = ctx.task.meta.id
        async with docker_runtime(node_id) as first:
            ctl = first.controller(ctx)
            await ctl.prepare()
            pid = await ctl.start()
            container_id = ctl.container_id
            assert pid > 0
            assert (await ctl.inspect()).pid == pid
        # The agent restarts: a new runtime, nothing in memory.
        async with docker_runtime(node_id) as second:
            adopted = second.controller(ctx)
            state = await adopted.inspect()
            assert (state.exists, state.running, state.pid) == (True, True, pid)
            assert adopted.container_id == container_id
            assert await adopted.start() == pid  # started before: not started again
            assert (await adopted.inspect()).pid == pid
            assert await second.known_task_ids() == {task_id}
            # Another node on the same engine neither sees nor discards it.
            async with docker_runtime(f"{node_id}-other") as other:
                assert await other.known_task_ids() == set()
                await other.discard(task_id)
            assert engine.api.inspect_container(container_id)["State"]["Running"]

            started_at = time.monotonic()
            await second.discard(task_id)
            assert time.monotonic() - started_at < 8  # sleep as PID 1 ignores SIGTERM: 2 s grace
            with pytest.raises(docker.errors.NotFound):
                engine.api.inspect_container(container_id)
            assert await second.known_task_ids() == set()
            assert not (await adopted.inspect()).exists

    run(main())


def test_shutdown_kills_a_task_that_ignores_the_signal_after_the_grace_period(node_id: str) -> None:
    async def main() -> None:
        async with docker_runtime(node_id) as rt:
            # PID 1 in a container ignores SIGTERM unless it handles it.
            ctl = await started(rt, make_ctx(node_id, ["sleep", "1000"]))
            started_at = time.monotonic()
            await ctl.shutdown(1.0, "")
            elapsed = time.monotonic() - started_at
            assert 0.9 < elapsed < 4
            assert await ctl.wait() == ExitStatus(137)
            await ctl.shutdown(1.0, "")  # stopped already: nothing to do

            # A signal the engine does not know still stops the task (SIGKILL).
            ctl = await started(rt, make_ctx(node_id, ["sleep", "1000"]))
            await ctl.shutdown(0.5, "SIGNOPE")
            assert await ctl.wait() == ExitStatus(137)

    run(main())


def test_shutdown_sends_the_stop_signal(node_id: str) -> None:
    async def main() -> None:
        async with docker_runtime(node_id) as rt:
            script = "trap 'echo got usr1; exit 7' USR1; echo ready; while :; do sleep 0.1; done"
            ctl = await started(rt, make_ctx(node_id, ["sh", "-c", script], stop_signal="SIGUSR1"))

            async def ready() -> bool:
                return ("stdout", b"ready\n") in await read_logs(ctl)

            await wait_until(ready)
            started_at = time.monotonic()
            await ctl.shutdown(30.0, "SIGUSR1")
            assert time.monotonic() - started_at < 5
            assert await ctl.wait() == ExitStatus(7)
            assert ("stdout", b"got usr1\n") in await read_logs(ctl)

    run(main())


def test_remove_is_idempotent(node_id: str, engine: Any) -> None:
    async def main() -> None:
        async with docker_runtime(node_id) as rt:
            ctl = await started(rt, make_ctx(node_id, ["sleep", "1000"]))
            container_id = ctl.container_id
            await ctl.remove()
            with pytest.raises(docker.errors.NotFound):
                engine.api.inspect_container(container_id)
            await ctl.remove()
            await ctl.shutdown(1.0, "")
            assert not (await ctl.inspect()).exists
            assert (await ctl.health()).state == Health.NONE

    run(main())


def test_bind_and_tmpfs_mounts(node_id: str, tmp_path: Path) -> None:
    async def main() -> None:
        (tmp_path / "in.txt").write_text("from the host\n")
        mounts = [
            pb.Mount(type="bind", source=str(tmp_path), target="/data", readonly=True),
            pb.Mount(type="tmpfs", target="/scratch", tmpfs_size=2 * MIB),
            pb.Mount(type="volume", target="/anon"),
        ]
        script = (
            "cat /data/in.txt; touch /data/new 2>/dev/null || echo read-only; "
            "grep ' /scratch ' /proc/mounts; echo scratch > /scratch/f && cat /scratch/f; "
            "echo anon > /anon/f && cat /anon/f"
        )
        async with docker_runtime(node_id) as rt:
            ctl = await started(rt, make_ctx(node_id, ["sh", "-c", script], mounts=mounts))
            assert await ctl.wait() == ExitStatus(0)
            out = [line.decode() for stream, line in await read_logs(ctl) if stream == "stdout"]
            assert out[:2] == ["from the host\n", "read-only\n"]
            assert out[2].startswith("tmpfs /scratch tmpfs ") and "size=2048k" in out[2]
            assert out[3:] == ["scratch\n", "anon\n"]
            assert not (tmp_path / "new").exists()

    run(main())


def test_image_version_two_runs_its_own_files(node_id: str) -> None:
    async def main() -> None:
        async with docker_runtime(node_id) as rt:
            ctl = await started(rt, make_ctx(node_id, ["cat", "/etc/shoal-version"], image="shoal-test:2"))
            assert await ctl.wait() == ExitStatus(0)
            assert await read_logs(ctl) == [("stdout", b"2\n")]

    run(main())


def test_logs_tail_and_follow(node_id: str) -> None:
    async def main() -> None:
        async with docker_runtime(node_id) as rt:
            # Pauses between the streams: the engine copies each stream on its
            # own, so lines written at the same instant may be logged in any order.
            script = "echo one; sleep 0.3; echo err >&2; sleep 0.3; echo two; sleep 0.5; echo three; "
            script += "exec sleep 1000"
            ctl = await started(rt, make_ctx(node_id, ["sh", "-c", script]))
            seen: list[tuple[str, bytes]] = []
            async for stream, line, _ in ctl.logs(follow=True, tail=None):
                item = (stream, line)
                seen.append(item)
                if item == ("stdout", b"three\n"):
                    break  # the consumer goes away while the container runs on
            assert [line for stream, line in seen if stream == "stdout"] == [b"one\n", b"two\n", b"three\n"]
            assert ("stderr", b"err\n") in seen
            # tail counts the lines of both streams together, as `docker logs --tail`.
            assert await read_logs(ctl, tail=1) == [("stdout", b"three\n")]
            assert await read_logs(ctl, tail=3) == [
                ("stderr", b"err\n"),
                ("stdout", b"two\n"),
                ("stdout", b"three\n"),
            ]
            assert [line for _, line in await read_logs(ctl)] == [b"one\n", b"err\n", b"two\n", b"three\n"]
            assert await read_logs(ctl, tail=0) == []

            # A follower cancelled while the container is quiet stops at once.
            async def follow_all() -> None:
                async for _ in ctl.logs(follow=True, tail=0):
                    pass

            follower = asyncio.ensure_future(follow_all())
            await asyncio.sleep(0.5)
            follower.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(follower, 5)

            async def log_threads_ended() -> bool:
                return not [t for t in threading.enumerate() if t.name.startswith("shoal-docker-logs")]

            await wait_until(log_threads_ended, timeout=3)

    run(main())


def test_oom_killed_task_says_so(node_id: str) -> None:
    async def main() -> None:
        async with docker_runtime(node_id) as rt:
            hog = ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"]
            ctl = await started(rt, make_ctx(node_id, hog, memory_bytes=16 * MIB))
            status = await ctl.wait()
            assert status.exit_code != 0
            assert "OOMKilled" in status.message

    run(main())


def test_make_runtime_picks_docker_when_an_engine_answers(node_id: str, tmp_path: Path) -> None:
    async def main() -> None:
        for name in ("auto", "docker"):
            rt = make_runtime(name, tmp_path, advertise_addr="127.0.0.1", node_id=node_id)
            try:
                assert isinstance(rt, DockerRuntime)
                assert (rt.name, rt.node_id, rt.advertise_addr) == ("docker", node_id, "127.0.0.1")
                assert await rt.known_task_ids() == set()
            finally:
                await rt.close()
        assert make_runtime("process", tmp_path).name == "process"

    run(main())


# ------------------------------------------------------------ without an engine


def test_make_runtime_auto_falls_back_to_process_without_an_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    caplog.set_level(logging.INFO, logger="shoal.agent.daemon")
    started_at = time.monotonic()
    rt = make_runtime("auto", tmp_path, node_id="n1")
    assert time.monotonic() - started_at < 5
    assert rt.name == "process"
    assert "runtime auto: no Docker engine answered" in caplog.text
