"""Help that teaches: every option of every command says what it is for and
what value it takes; ``service create --help`` ends with examples that work;
``shoal completion bash`` completes in a real bash."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from shoal.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
# What click shows when nobody chose a metavar: says nothing about the value.
VAGUE = {"TEXT", "INTEGER", "FLOAT", "BOOLEAN", "PATH", "INTEGER RANGE", "FLOAT RANGE"}


def commands(cmd: click.Command, path: tuple[str, ...] = ("shoal",)) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(path), cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from commands(sub, (*path, name))


ALL = list(commands(cli))


def test_the_walk_sees_every_group_and_command() -> None:
    names = {name for name, _ in ALL}
    assert {
        "shoal service create",
        "shoal node ls",
        "shoal context use",
        "shoal up",
        "shoal version",
    } <= names
    assert len(ALL) > 30


@pytest.mark.parametrize(("name", "command"), ALL, ids=[name for name, _ in ALL])
def test_every_option_has_a_help_text_and_a_meaningful_metavar(name: str, command: click.Command) -> None:
    ctx = click.Context(command, info_name=name)
    assert command.help, f"{name} has no description"
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        assert param.help, f"{name} {param.opts[0]} has no help text"
        if param.is_flag or isinstance(param.type, click.Choice):
            continue  # a flag takes no value; a choice lists its values
        metavar = param.make_metavar(ctx)
        assert metavar not in VAGUE, f"{name} {param.opts[0]} shows its value as {metavar}"


def help_of(*args: str) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "shoal", *args, "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"},
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_service_create_help_ends_with_examples_that_parse_and_says_what_follows_image() -> None:
    text = help_of("service", "create")
    assert "everything after IMAGE is the task's command" in " ".join(text.split())
    tail = text.rstrip().splitlines()
    start = max(i for i, line in enumerate(tail) if line.strip() == "Examples:")
    examples = [line.strip() for line in tail[start + 1 :] if line.strip()]
    assert 2 <= len(examples) <= 3, examples
    create = cli.commands["service"].commands["create"]  # type: ignore[attr-defined]
    for example in examples:
        words = shlex.split(example)
        assert words[:3] == ["shoal", "service", "create"], example
        ctx = create.make_context("create", words[3:])
        assert ctx.params["image"] and ctx.params["command"], f"{example}: an image and a command"


def test_ls_and_ps_document_quiet_filters_and_formats() -> None:
    for args in (("service", "ls"), ("service", "ps"), ("node", "ls"), ("node", "ps")):
        text = help_of(*args)
        for option in ("-q, --quiet", "-f, --filter KEY=VALUE", "--format FORMAT", "--no-trunc"):
            assert option in text, f"{' '.join(args)} --help lacks {option}"


def test_completion_script_for_bash_completes_service_cr_to_create(tmp_path: Path) -> None:
    # `shoal` as a user has it on PATH, running this checkout.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "shoal").write_text(
        f'#!/bin/sh\nPYTHONPATH={shlex.quote(str(ROOT))} exec {shlex.quote(sys.executable)} -m shoal "$@"\n'
    )
    (bin_dir / "shoal").chmod(0o755)
    script = """
        source <(shoal completion bash)
        COMP_WORDS=(shoal service cr); COMP_CWORD=2
        _shoal_completion shoal
        echo "service: ${COMPREPLY[*]}"
        COMPREPLY=(); COMP_WORDS=(shoal node ls --fo); COMP_CWORD=3
        _shoal_completion shoal
        echo "option: ${COMPREPLY[*]}"
    """
    res = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["service: create", "option: --format"], res.stdout + res.stderr


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_completion_scripts_for_zsh_and_fish_name_the_command(shell: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "shoal", "completion", shell],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "_SHOAL_COMPLETE" in res.stdout and "shoal" in res.stdout
