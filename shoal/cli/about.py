"""``shoal version`` and ``shoal completion``: about the CLI itself.

``version`` prints this client's version and asks each manager the cluster
lists for its own, directly (a manager that does not answer is said so).
``completion SHELL`` prints the script that makes the shell complete
shoal's commands and options (click's completion, for bash, zsh and fish).
"""

from __future__ import annotations

import platform
import sys

import click
from click.shell_completion import get_completion_class

from shoal.cli.client import Client, CLIError, Target
from shoal.cli.contexts import Connector
from shoal.protos import control_pb2 as cpb
from shoal.version import shoal_version

SHELLS = ("bash", "zsh", "fish")
# The environment variable shoal's completion scripts set (click's convention).
COMPLETE_VAR = "_SHOAL_COMPLETE"
# Architectures by the names docker (Go) gives them.
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the script that completes shoal's commands in SHELL.

    \b
    bash:  echo 'eval "$(shoal completion bash)"' >> ~/.bashrc
    zsh:   echo 'eval "$(shoal completion zsh)"' >> ~/.zshrc
    fish:  shoal completion fish > ~/.config/fish/completions/shoal.fish
    """
    root = ctx.find_root().command
    cls = get_completion_class(shell)
    assert cls is not None, shell
    click.echo(cls(root, {}, "shoal", COMPLETE_VAR).source())


def _manager_version(address: str, client: Client) -> str:
    try:
        direct = Client(Target([address], client.target.tls_dir), timeout=5).connect()
    except CLIError:
        return "does not answer"
    try:
        info = direct.call("GetClusterInfo", cpb.GetClusterInfoRequest())
        return str(info.version) or "unknown (older than shoal version)"
    except CLIError as err:
        return f"error: {err}"
    finally:
        direct.close()


@click.command()
@click.pass_obj
def version(connector: Connector) -> None:
    """Show the version of this client and of each manager."""
    click.echo("Client:")
    click.echo(f" Version:     {shoal_version()}")
    click.echo(f" Python:      {platform.python_version()}")
    click.echo(f" OS/Arch:     {sys.platform}/{GO_ARCH.get(platform.machine(), platform.machine())}")
    client = connector()
    info = client.call("GetClusterInfo", cpb.GetClusterInfoRequest(), retry=True)
    click.echo("Managers:")
    if not info.managers:  # the cluster's list is in etcd, which did not answer
        click.echo(f" {client.host}:  {info.version}")
    for m in info.managers:
        leader = " (leader)" if m.leader else ""
        click.echo(f" {m.addr}{leader}:  {_manager_version(m.addr, client)}")
