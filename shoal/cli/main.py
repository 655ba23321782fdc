"""The ``shoal`` console script: daemons and the admin client in one.

Errors reach the user as one ``Error: ...`` line on stderr: exit status 1 for
a refused request (``CLIError``), 2 for wrong usage; never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from shoal.cli import (
    about,
    cluster,
    context_commands,
    daemons,
    files,
    local,
    networks,
    nodes,
    run,
    services,
    stacks,
    taskcmds,
)
from shoal.cli.client import Client, CLIError
from shoal.cli.contexts import Connector
from shoal.cli.render import rfc3339
from shoal.durations import format_duration
from shoal.protos import control_pb2 as cpb


class ShoalGroup(click.Group):
    """Turns our errors and click's usage errors into one ``Error:`` line."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except CLIError as err:
            click.echo(f"Error: {err}", err=True)
            sys.exit(1)
        except click.UsageError as err:
            click.echo(f"Error: {err.format_message()}", err=True)
            if err.ctx is not None:
                click.echo(f"See '{err.ctx.command_path} --help'.", err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            sys.exit(130)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.ClickException as err:
            click.echo(f"Error: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        except Exception as err:
            if os.environ.get("SHOAL_DEBUG"):
                raise
            click.echo(
                f"Error: unexpected failure: {type(err).__name__}: {err} (SHOAL_DEBUG=1 shows where)",
                err=True,
            )
            sys.exit(1)


@click.group(cls=ShoalGroup)
@click.option(
    "--host",
    envvar="SHOAL_HOST",
    default=None,
    metavar="HOST:PORT[,HOST:PORT...]",
    help="Managers to talk to, the first that answers (or SHOAL_HOST); default: the context's",
)
@click.option(
    "--tls-dir",
    envvar="SHOAL_TLS_DIR",
    default=None,
    metavar="DIR",
    help="Admin TLS bundle: a folder with ca.pem, cert.pem, key.pem (or SHOAL_TLS_DIR)",
)
@click.option(
    "--context",
    "context_name",
    default=None,
    metavar="NAME",
    help="The context to use (shoal context ls); else SHOAL_CONTEXT, else the current one",
)
@click.version_option(package_name="shoal")
@click.pass_context
def cli(ctx: click.Context, host: str | None, tls_dir: str | None, context_name: str | None) -> None:
    """shoal: a multi-host container orchestrator in the spirit of Docker swarm mode."""
    ctx.obj = Connector(host, tls_dir, context_name)


Factory = Callable[[], Client]


@cli.command()
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="text, or a JSON object"
)
@click.pass_obj
def info(client_factory: Factory, fmt: str) -> None:
    """Cluster ID, managers (leader marked) and counts."""
    resp = client_factory().call("GetClusterInfo", cpb.GetClusterInfoRequest())
    data = {
        "cluster_id": resp.cluster_id,
        "created_at": rfc3339(resp.created_at),
        "managers": [{"id": m.id, "addr": m.addr, "leader": m.leader} for m in resp.managers],
        "nodes": resp.nodes,
        "nodes_ready": resp.nodes_ready,
        "services": resp.services,
        "tasks": resp.tasks,
        "tasks_running": resp.tasks_running,
        "heartbeat_period": format_duration(resp.spec.heartbeat_period),
        "task_history_limit": resp.spec.task_history_limit,
        "cert_expiry": format_duration(resp.spec.cert_expiry),
        "etcd": [
            {
                "endpoint": e.target,
                "healthy": e.healthy,
                "db_size": e.db_size,
                "leader": e.leader,
                "alarms": list(e.alarms),
                "error": e.error,
            }
            for e in resp.etcd
        ],
        "stale_seconds": round(resp.stale_seconds, 1),
        "autolock": resp.autolock,
        "locked": resp.locked,
    }
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"Cluster ID:          {data['cluster_id']}")
    click.echo("Managers:")
    for m in resp.managers:
        click.echo(f"  {m.id}  {m.addr}{'  (leader)' if m.leader else ''}")
    click.echo("etcd:")
    for e in resp.etcd:
        if not e.healthy:
            click.echo(f"  {e.target}  unhealthy: {e.error}")
            continue
        alarms = f"  ALARM {', '.join(e.alarms)}" if e.alarms else ""
        leader = "  (leader)" if e.leader else ""
        click.echo(f"  {e.target}  healthy, db {e.db_size / 2**20:.1f} MiB{leader}{alarms}")
    if resp.stale_seconds:
        click.echo(
            f"  this manager lost its watch on etcd {resp.stale_seconds:.0f}s ago: what it shows may be stale"
        )
    click.echo(f"Nodes:               {resp.nodes} ({resp.nodes_ready} ready)")
    click.echo(f"Services:            {resp.services}")
    click.echo(f"Tasks:               {resp.tasks} ({resp.tasks_running} running)")
    click.echo(f"Heartbeat period:    {data['heartbeat_period']}")
    click.echo(f"Task history limit:  {resp.spec.task_history_limit}")
    click.echo(f"Autolock:            {'on' if resp.autolock else 'off'}")
    if resp.locked:
        click.echo("This manager is LOCKED: unlock it with `shoal cluster unlock`")


@cli.command(name="join-token")
@click.option("--rotate", is_flag=True, help="Replace the token (nodes already joined are not affected)")
@click.option("--quiet", "-q", is_flag=True, help="Print only the token")
@click.argument("role", type=click.Choice(["worker", "manager"]))
@click.pass_obj
def join_token(client_factory: Factory, rotate: bool, quiet: bool, role: str) -> None:
    """Print the command that joins an agent to this cluster.

    A manager token makes a node whose role is manager, for placement only
    (node.role==manager): it runs tasks, but gets no ControlAPI access."""
    resp = client_factory().call("GetJoinToken", cpb.GetJoinTokenRequest(role=role, rotate=rotate))
    if quiet:
        click.echo(resp.token)
        return
    if rotate:
        click.echo(f"Successfully rotated {role} join token.\n")
    what = "a worker" if role == "worker" else "a node whose role is manager (placement only)"
    click.echo(f"To add {what} to this cluster, run the following command:\n")
    managers = ",".join(resp.manager_addrs)
    # The token goes in the environment: an agent's command line is visible to every user.
    click.echo(
        f"    SHOAL_JOIN_TOKEN={resp.token} shoal agent --join {managers} --state-dir /var/lib/shoal/agent\n"
    )


cli.add_command(cluster.cluster)
cli.add_command(daemons.manager)
cli.add_command(daemons.agent)
cli.add_command(local.up)
cli.add_command(local.down)
cli.add_command(services.service)
cli.add_command(nodes.node)
cli.add_command(context_commands.context)
cli.add_command(about.version)
cli.add_command(about.completion)
cli.add_command(files.secret)
cli.add_command(files.config)
cli.add_command(stacks.stack)
for command in (taskcmds.exec_, taskcmds.logs, taskcmds.commit, run.run):
    cli.add_command(command)
cli.add_command(networks.network)


def main() -> None:
    cli(prog_name="shoal")


if __name__ == "__main__":
    main()
