"""The process backend's pure parts, no task started: the handle's JSON,
/proc/<pid>/stat as we read it, the launch plan and the launch.sh built from
it, and the log file arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shoal.agent.runtime.base import TaskContext, TaskRejected
from shoal.agent.runtime.process import HANDLE_VERSION, ProcessHandle
from shoal.agent.runtime.process.handle import ProcStat, parse_proc_stat
from shoal.agent.runtime.process.launch import LaunchPlan, launch_script, plan_launch, process_env
from shoal.agent.runtime.process.logs import read_lines, tail_offset
from shoal.protos import objects_pb2 as pb


def make_ctx(command: list[str], *, env: dict[str, str] | None = None, workdir: str = "") -> TaskContext:
    spec = pb.TaskSpec(container=pb.ContainerSpec(command=command, workdir=workdir))
    return TaskContext(task=pb.Task(meta=pb.Meta(id="t1"), spec=spec), node_id="n1", env=env or {})


def test_handle_survives_a_json_round_trip_and_refuses_other_versions() -> None:
    handle = ProcessHandle(pid=4242, start_time=123456, argv=("sh", "-c", "echo 'hi'"))
    text = handle.to_json()
    assert json.loads(text) == {
        "version": HANDLE_VERSION,
        "pid": 4242,
        "start_time": 123456,
        "argv": ["sh", "-c", "echo 'hi'"],
    }
    assert ProcessHandle.from_json(text) == handle
    with pytest.raises(ValueError, match="unsupported handle version 2"):
        ProcessHandle.from_json(json.dumps({**json.loads(text), "version": 2}))
    with pytest.raises(KeyError):
        ProcessHandle.from_json(json.dumps({"version": HANDLE_VERSION, "pid": 1}))


def test_proc_stat_is_read_past_a_command_name_with_parentheses() -> None:
    rest = " ".join(str(n) for n in range(4, 23))  # fields 4..22: ppid .. starttime
    line = f"77 (odd) name) S {rest} 23 24\n".encode()
    assert parse_proc_stat(line) == ProcStat(state="S", pgrp=5, start_time=22)


def test_launch_script_quotes_the_argv_and_gives_back_the_env() -> None:
    plan = LaunchPlan(
        argv=("printf", "%s\\n", "it's $HOME"),
        workdir=Path("/srv/my app"),
        env={"PWD": "/elsewhere", "IFS": " ", "FOO": "bar"},
        memory_kib=2048,
    )
    assert launch_script(plan).splitlines() == [
        "# written by shoal's process runtime; sourced by the task wrapper",
        "cd -- '/srv/my app' || exit 126",
        "ulimit -v 2048 || exit 126",
        "unset _shoal_pid _shoal_rest",
        "export PWD=/elsewhere",
        "export IFS=' '",
        "unset OLDPWD",
        "set -- printf '%s\\n' 'it'\"'\"'s $HOME'",
    ]
    bare = launch_script(LaunchPlan(argv=("true",), workdir=Path("/w"), env={}, memory_kib=0))
    assert "ulimit" not in bare
    assert "unset PWD OLDPWD" in bare.splitlines()


def test_the_task_env_gets_the_agents_path_and_home_unless_it_sets_them() -> None:
    agent = {"PATH": "/agent/bin", "HOME": "/root", "SECRET": "no"}
    assert process_env({"A": "1"}, agent) == {"A": "1", "PATH": "/agent/bin", "HOME": "/root"}
    assert process_env({"PATH": "/mine"}, agent) == {"PATH": "/mine", "HOME": "/root"}


def test_plan_rounds_the_memory_limit_up_and_rejects_what_sh_cannot_pass(tmp_path: Path) -> None:
    ctx = make_ctx(["true"])
    ctx.task.spec.resources.limits.memory_bytes = 1025
    plan = plan_launch(ctx, tmp_path / "t1")
    assert (plan.argv, plan.memory_kib, plan.workdir) == (("true",), 2, tmp_path / "t1" / "work")
    for bad, message in [
        (make_ctx(["true"], env={"A-B": "1"}), "env: 'A-B' is not a valid variable name"),
        (make_ctx(["true"], env={"A": "x\0y"}), "env: the value of A contains a NUL byte"),
        (make_ctx(["echo", "x\0y"]), "command: an argument contains a NUL byte"),
        (make_ctx(["true"], workdir="rel/dir"), "container.workdir: must be an absolute path, got 'rel/dir'"),
    ]:
        with pytest.raises(TaskRejected) as info:
            plan_launch(bad, tmp_path / "t2")
        assert str(info.value).startswith(message)


def test_log_reading_keeps_a_partial_last_line_back_and_tails_from_the_end(tmp_path: Path) -> None:
    path = tmp_path / "stdout.log"
    path.write_bytes(b"one\ntwo\nthr")
    assert read_lines(path, 0, partial=False) == ([b"one\n", b"two\n"], 8)
    assert read_lines(path, 0, partial=True) == ([b"one\n", b"two\n", b"thr"], 11)
    assert read_lines(path, 100, partial=False) == ([b"one\n", b"two\n"], 8)  # truncated: from 0
    assert read_lines(tmp_path / "missing.log", 5, partial=False) == ([], 5)
    assert tail_offset(path, 1) == 8
    assert tail_offset(path, 2) == 4
    assert tail_offset(path, 10) == 0
    assert tail_offset(path, 0) == 11
