"""The docker runtime's exec against the real engine, without a cluster: the
engine's frames, a terminal's size, and the hang-up, which must work for an
agent that cannot see the engine's processes (CI runs the agent in a
container of its own, in another PID namespace than the engine's).

Without an engine these tests skip, except under CI, where they fail. The
containers are made with the SDK and removed with it, whatever happens.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from shoal.agent.runtime.base import STDOUT, ExecSpec
from shoal.agent.runtime.docker.engine import Engine
from shoal.agent.runtime.docker.execs import DockerExec, start_exec

pytestmark = pytest.mark.docker


@pytest.fixture
def container(engine: Any) -> Iterator[Any]:
    made = engine.containers.run(
        "shoal-test:1",
        ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"],
        detach=True,
        labels={"shoal.test": "exec"},
    )
    try:
        yield made
    finally:
        made.remove(force=True)


async def _drain(ex: DockerExec) -> tuple[bytes, bytes]:
    out, err = b"", b""
    while (piece := await ex.read()) is not None:
        if piece[0] == STDOUT:
            out += piece[1]
        else:
            err += piece[1]
    return out, err


def _engine() -> Engine:
    return Engine(docker.from_env(timeout=30), "exec-test")


def test_an_exec_keeps_stdout_and_stderr_apart_and_sizes_its_terminal(container: Any) -> None:
    async def scenario() -> tuple[int, bytes, bytes, int, bytes]:
        engine = _engine()
        try:
            ex = await start_exec(
                engine, container.id, ExecSpec(("sh", "-c", "echo out; echo err >&2; exit 4"))
            )
            out, err = await _drain(ex)
            code = await ex.wait()
            await ex.close()
            spec = ExecSpec(("sh", "-c", "sleep 0.2; stty size"), tty=True, stdin=True, rows=30, cols=100)
            tty = await start_exec(engine, container.id, spec)
            tty_out, _ = await _drain(tty)
            tty_code = await tty.wait()
            await tty.close()
            return code, out, err, tty_code, tty_out
        finally:
            await engine.close()

    code, out, err, tty_code, tty_out = asyncio.run(scenario())
    assert (code, out, err) == (4, b"out\n", b"err\n")
    assert (tty_code, tty_out.replace(b"\r\n", b"\n")) == (0, b"30 100\n")


def test_a_hang_up_from_inside_the_container_needs_no_view_of_the_engines_processes(container: Any) -> None:
    """The hang-up is a second exec that signals what carries this exec's
    marker: the command and what it started, nothing else of the container."""

    async def scenario() -> tuple[int, int]:
        engine = _engine()
        marker = uuid.uuid4().hex
        try:
            spec = ExecSpec(("sh", "-c", "sleep 301 & sleep 302; wait"), marker=marker)
            ex = await start_exec(engine, container.id, spec)
            for _ in range(100):
                if sum(p[-1].startswith("sleep 30") for p in container.top()["Processes"]) == 2:
                    break
                await asyncio.sleep(0.05)
            signalled = await ex._signal_inside("HUP")
            await _drain(ex)
            code = await ex.wait()
            await ex.close()
            return signalled, code
        finally:
            await engine.close()

    signalled, code = asyncio.run(scenario())
    assert signalled == 3, "sh and both sleeps carry the marker"
    assert code == 129
    left = [p[-1] for p in container.top()["Processes"]]
    assert not [c for c in left if "sleep 30" in c], f"still running: {left}"
    assert any("sleep 600" in c for c in left), "the task's own processes are not touched"
