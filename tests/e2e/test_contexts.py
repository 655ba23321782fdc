"""Contexts and ``shoal up``/``down`` as a user meets them: two local
clusters side by side, switching between them, what a command says once a
cluster is down, resuming, starting fresh, purging, and bringing a dead agent
back as the same node.

Each test has its own config dir and home (SHOAL_CONFIG_DIR, HOME), so the
user's ~/.shoal is never read or written; every cluster started is stopped
(and its state deleted) even when a test fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.cli.uprecord import UpRecord, stop
from tests.support.cluster import CLIResult, assert_refused, wait_for

ROOT = Path(__file__).resolve().parents[2]


class User:
    """Runs the real `shoal` in an environment of its own."""

    def __init__(self, tmp_path: Path) -> None:
        self.config = tmp_path / "config"
        home = tmp_path / "home"
        home.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
        self.env.update(
            HOME=str(home), SHOAL_CONFIG_DIR=str(self.config), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1"
        )
        self.state_dirs: list[Path] = []

    def __call__(self, *args: str, timeout: float = 120, **env: str) -> CLIResult:
        res = subprocess.run(
            [sys.executable, "-P", "-m", "shoal", *args],
            capture_output=True,
            text=True,
            env={**self.env, **env},
            timeout=timeout,
        )
        return CLIResult(res.returncode, res.stdout, res.stderr)

    def ok(self, *args: str, **env: str) -> str:
        res = self(*args, **env)
        assert res.code == 0, f"shoal {' '.join(args)} failed ({res.code}):\n{res.out}\n{res.err}"
        return res.out

    def up(self, state_dir: Path, *flags: str) -> str:
        self.state_dirs.append(state_dir)
        args = ["up", "-d", "--agents", "1", "--runtime", "process", *flags]
        if state_dir != self.config / "up":
            args += ["--state-dir", str(state_dir)]
        return self.ok(*args)

    def manager_of(self, *global_flags: str, **env: str) -> str:
        info = json.loads(self.ok(*global_flags, "info", "--format", "json", **env))
        return str(info["managers"][0]["addr"])

    def cleanup(self) -> None:
        for state in self.state_dirs:
            record = UpRecord.load(state)
            if record is not None:
                self("down", "--state-dir", str(state), "--purge", timeout=60)
                stop(record.procs)  # a safety net: nothing of ours is left running


@pytest.fixture
def user(tmp_path: Path) -> Iterator[User]:
    u = User(tmp_path)
    try:
        yield u
    finally:
        u.cleanup()


def recorded_manager(state: Path) -> str:
    record = UpRecord.load(state)
    assert record is not None
    return record.manager


def test_two_local_clusters_each_with_its_context_and_switching_between_them(
    user: User, tmp_path: Path
) -> None:
    first, second = user.config / "up", tmp_path / "second"
    said = user.up(first)
    assert 'context "local" is the current one' in said
    said = user.up(second)
    assert 'context "local-second" saved; the current context is still "local"' in said
    assert "shoal --context local-second node ls" in said, "the hints name the context"
    assert user.manager_of() == recorded_manager(first)
    assert user.manager_of("--context", "local-second") == recorded_manager(second)
    assert user.manager_of(SHOAL_CONTEXT="local-second") == recorded_manager(second)
    listed = [line.split() for line in user.ok("context", "ls").splitlines()]
    assert listed[1][:2] == ["local", "*"] and listed[1][-1] == "running"
    assert listed[2][0] == "local-second" and listed[2][-1] == "running"

    assert user.ok("context", "use", "local-second").strip() == "local-second"
    assert user.manager_of() == recorded_manager(second)
    user.ok("down", "--state-dir", str(second))
    stopped = user("service", "ls")
    line = assert_refused(stopped, "no cluster is running")
    assert line == (
        'Error: no cluster is running for context "local-second" (it was stopped); '
        f"start it with shoal up --state-dir {second}"
    )
    # The first cluster runs on, untouched.
    assert user.manager_of("--context", "local") == recorded_manager(first)

    user.ok("context", "use", "local")
    user.ok("down")
    line = assert_refused(user("service", "ls"))
    assert line == 'Error: no cluster is running for context "local" (it was stopped); start it with shoal up'


def test_up_resumes_says_so_starts_fresh_on_request_and_down_purge_forgets_it(user: User) -> None:
    state = user.config / "up"
    user.up(state)
    user.ok("service", "create", "-d", "--name", "kept", "app:1", "sleep", "3600")
    user.ok("down")
    said = user.up(state)
    assert f"resuming the cluster in {state} (1 service); shoal up --fresh starts an empty one" in said
    assert user.ok("service", "ls", "--format", "{{.Name}}").split() == ["kept"]
    user.ok("down")
    said = user.up(state, "--fresh")
    assert "resuming" not in said
    assert user.ok("service", "ls", "-q") == ""
    said = user.ok("down", "--purge")
    assert said.strip() == f'shoal is down; deleted its state in {state} and context "local"'
    assert not state.exists()
    assert user.ok("context", "ls", "-q") == ""
    line = assert_refused(user("service", "ls"))
    assert line == "Error: no cluster to talk to: start one with shoal up, or give --host and --tls-dir"


def test_restart_agent_brings_a_dead_agent_back_as_the_same_node(user: User) -> None:
    state = user.config / "up"
    user.up(state)
    (before,) = json.loads(user.ok("node", "ls", "--format", "json"))
    record = UpRecord.load(state)
    assert record is not None
    agent = record.agent(1)
    assert agent is not None
    os.kill(agent.pid, 9)
    wait_for(
        lambda: json.loads(user.ok("node", "ls", "--format", "json"))[0]["status"] == "down",
        60,
        what="node-1 to be down",
    )
    said = user.ok("up", "--restart-agent", "1")
    assert said.startswith("agent 1 (node-1) is running again"), said
    (after,) = json.loads(user.ok("node", "ls", "--format", "json"))
    assert (after["id"], after["status"]) == (before["id"], "ready")
    assert_refused(user("up", "--restart-agent", "5"), "agents 1 to 1")


def test_shoal_up_refuses_a_context_that_belongs_to_another_cluster(user: User, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (bundle / name).write_text("x")
    user.ok("context", "create", "local-up2", "--host", "192.0.2.1:2377", "--tls-dir", str(bundle))
    state = tmp_path / "elsewhere" / "up2"
    line = assert_refused(user("up", "-d", "--agents", "0", "--state-dir", str(state)))
    assert 'context "local-up2" belongs to a remote cluster; name this one with --context NAME' in line
    assert not state.exists(), "a refused up starts nothing"
