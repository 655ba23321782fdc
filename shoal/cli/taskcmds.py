"""``shoal exec``, ``shoal logs`` and ``shoal commit``: verbs for one task.

TASK is what the manager resolves (``controlapi/taskrefs``): a task ID or a
unique prefix of one, ``SERVICE.SLOT`` (``web.2``), ``SERVICE.NODE`` for a
global service, or the ``SERVICE.SLOT.ID`` prefix ``service logs`` prints.
"""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Callable

import click
import grpc

from shoal import imagerefs
from shoal.cli.client import Client, CLIError
from shoal.cli.execclient import ExecRequest, run_exec
from shoal.cli.service_flags import registry_auth_for
from shoal.durations import parse_duration
from shoal.protos import control_pb2 as cpb
from shoal.protos import taskio_pb2 as tpb

Factory = Callable[[], Client]


@click.command(
    name="exec",
    context_settings={"allow_interspersed_args": False},
    epilog="Example: shoal exec -it web.1 sh",
)
@click.option(
    "--interactive", "-i", is_flag=True, help="Forward stdin to the command (end of input closes it)"
)
@click.option("--tty", "-t", is_flag=True, help="Give the command a terminal (raw keys, window size)")
@click.option("--env", "-e", multiple=True, metavar="KEY=VALUE", help="Set an environment variable (repeat)")
@click.option(
    "--workdir", "-w", default="", metavar="DIR", help="Working directory (absolute); default: the task's"
)
@click.argument("task")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED, metavar="COMMAND [ARG...]")
@click.pass_obj
def exec_(
    client_factory: Factory,
    interactive: bool,
    tty: bool,
    env: tuple[str, ...],
    workdir: str,
    task: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND inside TASK, on whichever node runs it.

    Exits with the command's exit code. TASK: a task ID (or unique prefix),
    SERVICE.SLOT (web.1), or SERVICE.NODE for global services.
    """
    for item in env:
        if not item.partition("=")[0] or "=" not in item:
            raise CLIError(f'--env "{item}": expected KEY=VALUE')
    if workdir and not workdir.startswith("/"):
        raise CLIError(f'--workdir "{workdir}": must be an absolute path')
    req = ExecRequest(task, list(command), list(env), workdir, tty=tty, stdin=interactive)
    sys.exit(run_exec(client_factory(), req))


def parse_tail(tail: str) -> int:
    if tail == "all":
        return -1
    try:
        lines = int(tail)
    except ValueError:
        raise CLIError(f'--tail "{tail}": expected a number of lines or "all"') from None
    if lines < 0:
        raise CLIError(f"--tail: must be >= 0, got {lines}")
    return lines


def parse_since(since: str | None) -> int:
    """Unix ns from a duration ago (10m) or an RFC 3339 time; 0: all."""
    if not since:
        return 0
    try:
        return time.time_ns() - parse_duration(since)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        raise CLIError(f'--since "{since}": expected a duration (10m) or an RFC 3339 time') from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return int(when.timestamp() * 1e9)


@click.command(name="logs")
@click.option(
    "--follow", "-f", is_flag=True, help="Keep streaming until the task ends (waits for it to start)"
)
@click.option("--tail", "-n", default="all", metavar="N", help='Lines to show from the end, or "all"')
@click.option("--timestamps", "-t", is_flag=True, help="Put the time each line was written in front of it")
@click.option(
    "--since", default=None, metavar="WHEN", help="Only lines newer than a duration (10m) or an RFC 3339 time"
)
@click.argument("task")
@click.pass_obj
def logs(
    client_factory: Factory, follow: bool, tail: str, timestamps: bool, since: str | None, task: str
) -> None:
    """Show the output of one task (stderr lines on stderr).

    TASK: a task ID (or unique prefix), SERVICE.SLOT (web.1), or SERVICE.NODE
    for global services. With -f it waits for a task that has not started yet
    and ends shortly after the task ends.
    """
    request = cpb.TaskLogsRequest(
        ref=task, follow=follow, tail=parse_tail(tail), since=parse_since(since), task_only=True
    )
    client = client_factory()
    if client.stub is None:
        client.connect()
    try:
        print_task_logs(client.stub.TaskLogs(request), timestamps)
    except grpc.RpcError as err:
        raise CLIError(err.details() or err.code().name) from None
    except KeyboardInterrupt:
        sys.exit(0)  # as `docker logs -f` does


def print_task_logs(messages: object, timestamps: bool) -> None:
    """Each line as the task wrote it, to stdout or stderr like it."""
    for msg in messages:  # type: ignore[attr-defined]
        if msg.warning:
            click.echo(f"warning: {msg.warning}", err=True)
            continue
        data = msg.data + b"\n"
        if timestamps:
            stamp = datetime.datetime.fromtimestamp(msg.timestamp / 1e9, tz=datetime.UTC)
            data = stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ ").encode() + data
        out = sys.stderr if msg.stream == "stderr" else sys.stdout
        out.buffer.write(data)
        out.flush()


@click.command(name="commit")
@click.option("--message", "-m", default="", metavar="MESSAGE", help="Commit message (the image's comment)")
@click.option(
    "--change",
    "-c",
    "changes",
    multiple=True,
    metavar="INSTRUCTION",
    help='Dockerfile instruction, e.g. "ENV A=1" (repeat)',
)
@click.option("--author", "-a", default="", metavar="NAME", help='Author, e.g. "Jane <jane@example.com>"')
@click.option(
    "--pause/--no-pause", default=True, help="Pause the container while it is committed (default: pause)"
)
@click.option("--push", is_flag=True, help="Push REPO:TAG from the node once committed")
@click.option(
    "--with-registry-auth", is_flag=True, help="Send your registry credentials (docker login) for the push"
)
@click.argument("task")
@click.argument("reference", metavar="REPO[:TAG]")
@click.pass_obj
def commit(
    client_factory: Factory,
    message: str,
    changes: tuple[str, ...],
    author: str,
    pause: bool,
    push: bool,
    with_registry_auth: bool,
    task: str,
    reference: str,
) -> None:
    """Save a docker task's container as an image, on its node.

    Prints the image ID (stdout) and the node that holds it (stderr). The tag
    defaults to latest. TASK: a task ID (or unique prefix), SERVICE.SLOT
    (web.1), or SERVICE.NODE for global services.
    """
    try:
        ref = imagerefs.parse_commit_ref(reference)
        for change in changes:
            imagerefs.check_change(change)
    except ValueError as err:
        raise CLIError(str(err)) from None
    auth = ""
    if with_registry_auth:
        auth = registry_auth_for(ref.repository)
        if not auth:
            click.echo(f"warning: no stored credentials for the registry of {ref.repository}", err=True)
    request = tpb.CommitTaskRequest(
        task=task,
        repository=ref.repository,
        tag=ref.tag,
        message=message,
        changes=changes,
        author=author,
        no_pause=not pause,
        push=push,
        registry_auth=auth,
    )
    reply: tpb.CommitTaskResponse = client_factory().call("CommitTask", request, timeout=600)
    click.echo(reply.image_id)
    click.echo(f"on node {reply.node}", err=True)
    if reply.push_error:
        raise CLIError(
            f"push of {reply.reference} failed (the image stays on node {reply.node}): {reply.push_error}"
        )
    if reply.pushed:
        click.echo(f"pushed {reply.reference}", err=True)
