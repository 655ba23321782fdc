"""``shoal service ls``, ``ps``, ``inspect`` and ``logs``: the commands that
look at services and change nothing (``services`` adds them to its group).
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable

import click
import grpc

from shoal.cli import listing, ps
from shoal.cli.client import Client, CLIError
from shoal.cli.filters import SERVICE_KEYS, service_matches
from shoal.cli.pretty import service_pretty
from shoal.cli.render import service_json
from shoal.cli.rows import SERVICES, show_services
from shoal.durations import parse_duration
from shoal.protos import control_pb2 as cpb


@click.command(name="ls")
@listing.options(
    SERVICES,
    "service IDs",
    "Only services that match: id, name (a prefix), label=KEY[=VALUE], "
    "mode=replicated|global|replicated-job|global-job",
)
@click.pass_obj
def ls(
    client_factory: Callable[[], Client], fmt: str, quiet: bool, no_trunc: bool, filters: tuple[str, ...]
) -> None:
    """List services."""
    asked = listing.ask(SERVICES, SERVICE_KEYS, fmt, filters, quiet, no_trunc)
    resp = client_factory().call("ListServices", cpb.ListServicesRequest(), retry=True)
    show_services(asked, [s for s in resp.services if service_matches(asked.filters, s.service)])


ps_ = ps.ps_command(
    "SERVICE...",
    "List the tasks of services (current and history).",
    lambda ref: cpb.ListTasksRequest(service=ref),
)


@click.command()
@click.option("--pretty", is_flag=True, help="Readable text (durations and sizes in human units), not JSON")
@click.argument("refs", nargs=-1, required=True, metavar="SERVICE...")
@click.pass_obj
def inspect(client_factory: Callable[[], Client], refs: tuple[str, ...], pretty: bool) -> None:
    """Show services as JSON (or, with --pretty, as text)."""
    client = client_factory()
    found = [client.call("GetService", cpb.ObjectRef(ref=r), retry=True) for r in refs]
    if pretty:
        click.echo("\n\n".join(service_pretty(svc) for svc in found))
        return
    # The endpoints of the running tasks: the backends the mesh reaches.
    running = [
        client.call(
            "ListTasks", cpb.ListTasksRequest(service=svc.meta.id, desired_state="running"), retry=True
        )
        for svc in found
    ]
    click.echo(
        json.dumps([service_json(svc, tasks) for svc, tasks in zip(found, running, strict=True)], indent=2)
    )


@click.command()
@click.option("--follow", "-f", is_flag=True, help="Keep streaming new output (and new tasks)")
@click.option(
    "--tail", "-n", default="all", metavar="N|all", help="Lines to show from the end of each task's output"
)
@click.option("--timestamps", "-t", is_flag=True, help="Show when each line was written")
@click.option(
    "--since",
    default=None,
    metavar="DURATION|TIME",
    help="Only lines newer than this duration (e.g. 10m) or RFC 3339 time",
)
@click.option("--no-task-ids", is_flag=True, help="Leave the task ID out of the prefix")
@click.option("--raw", is_flag=True, help="No prefix at all")
@click.argument("ref", metavar="SERVICE|TASK")
@click.pass_obj
def logs(
    client_factory: Callable[[], Client],
    ref: str,
    follow: bool,
    tail: str,
    timestamps: bool,
    since: str | None,
    no_task_ids: bool,
    raw: bool,
) -> None:
    """Show the output of a service's tasks (or of one task)."""
    if tail == "all":
        tail_n = -1
    else:
        try:
            tail_n = int(tail)
        except ValueError:
            raise CLIError(f'--tail "{tail}": expected a number of lines or "all"') from None
        if tail_n < 0:
            raise CLIError(f"--tail: must be >= 0, got {tail_n}")
    since_ns = 0
    if since:
        try:
            since_ns = time.time_ns() - parse_duration(since)
        except ValueError:
            try:
                when = datetime.datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                raise CLIError(f'--since "{since}": expected a duration (10m) or an RFC 3339 time') from None
            since_ns = int(when.timestamp() * 1e9)
    client = client_factory()
    if client.stub is None:
        client.connect()
    request = cpb.TaskLogsRequest(ref=ref, follow=follow, tail=tail_n, since=since_ns)
    try:
        for msg in client.stub.TaskLogs(request):
            if msg.warning:
                click.echo(f"warning: {msg.warning}", err=True)
                continue
            line = msg.data.decode(errors="replace")
            if not raw:
                name = msg.task_name if not no_task_ids else msg.task_name.rsplit(".", 1)[0]
                prefix = f"{name}@{msg.node}    | "
                if timestamps:
                    stamp = datetime.datetime.fromtimestamp(msg.timestamp / 1e9, tz=datetime.UTC)
                    prefix = stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ ") + prefix
                line = prefix + line
            click.echo(line, err=msg.stream == "stderr")
    except grpc.RpcError as err:
        raise CLIError(err.details() or err.code().name) from None
    except KeyboardInterrupt:
        # Following ends with Ctrl-C: that is how it is done, not a failure.
        return
