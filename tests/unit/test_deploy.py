"""deploy/: the systemd units keep the join token off the command line and
pass only flags the daemons have."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from shoal.cli import daemons

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def exec_start(unit: str) -> str:
    text = (DEPLOY / unit).read_text()
    match = re.search(r"^ExecStart=(.*?)(?<!\\)$", text, re.M | re.S)
    assert match is not None
    return match.group(1).replace("\\\n", " ")


def test_the_agent_unit_passes_the_join_token_in_the_environment_only() -> None:
    start = exec_start("shoal-agent.service")
    assert "--token" not in start
    assert "TOKEN" not in start
    unit = (DEPLOY / "shoal-agent.service").read_text()
    assert "Environment=SHOAL_JOIN_TOKEN=" in unit
    assert "SHOAL_JOIN_TOKEN=SHOAL-1-" in (DEPLOY / "agent.env.example").read_text()
    assert daemons.TOKEN_ENV == "SHOAL_JOIN_TOKEN"


@pytest.mark.parametrize(
    ("unit", "command"), [("shoal-agent.service", daemons.agent), ("shoal-manager.service", daemons.manager)]
)
def test_units_pass_only_flags_the_daemons_have(unit: str, command: click.Command) -> None:
    known = {opt for param in command.params for opt in getattr(param, "opts", [])}
    used = set(re.findall(r"(--[a-z-]+)", exec_start(unit)))
    assert used <= known, used - known


def test_the_example_manager_settings_reach_etcd_over_tls() -> None:
    env = (DEPLOY / "manager.env.example").read_text()
    assert re.search(r"^SHOAL_ETCD=https://", env, re.M)
    opts = re.search(r"^SHOAL_MANAGER_OPTS=(.*)$", env, re.M)
    assert opts is not None
    known = {opt for param in daemons.manager.params for opt in getattr(param, "opts", [])}
    flags = set(re.findall(r"(--[a-z-]+)", opts.group(1)))
    assert {"--etcd-ca", "--etcd-cert", "--etcd-key"} <= flags <= known
