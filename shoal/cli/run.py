"""``shoal run``: one task, placed by the scheduler, as ``docker run`` is one container.

Under the hood a run is a service: a replicated job of one completion with
restart condition ``none`` (unless one is given), made with ``service
create``'s options and listed by ``service ls``/``ps`` like any job.

- Attached (the default): the task's stdout and stderr stream back as it
  writes them (``shoal logs -f``'s path) and ``shoal run`` exits with the
  task's exit code; 125 when it never ran (rejected, or no node fits), with
  the reason.
- ``-d``: prints the task's ID once it exists (then ``shoal logs -f ID``,
  ``shoal exec ID ...``).
- ``-i``/``-t``: the task's own process is a small holder (``HOLDER``) and
  COMMAND (default ``sh``) runs in it through exec, with stdin and a
  terminal as ``shoal exec -it`` has them; the holder then ends with the
  command's exit code, so the task records it too. Images need ``sh``.
- ``--rm``: the service goes once the task has ended and its output was
  shown, or on Ctrl-C. It is also labelled ``specs.AUTOREMOVE_LABEL`` so
  that the leader removes it when this client is not there to: at once with
  ``-d``, a minute after the job finished otherwise (a killed client).
"""

from __future__ import annotations

import shlex
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import click

from shoal import specs
from shoal.cli.client import Client, CLIError
from shoal.cli.execclient import ExecRequest, check_tty, run_exec
from shoal.cli.progress import STUCK_AFTER
from shoal.cli.service_flags import apply_flags, base_spec, registry_auth_for, spec_options
from shoal.cli.taskcmds import print_task_logs
from shoal.ids import new_id
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb

# Docker's code when the container never ran (docker run's own failure).
NEVER_RAN = 125
INTERRUPTED = 130
POLL = 0.2
# How long a run waits for the orchestrator to make its task.
TASK_WAIT = 30.0
RUNNING = pb.TASK_STATE_RUNNING
# Attached, --rm is this client's to do; should it be killed, the leader
# removes the finished job after this long (specs.AUTOREMOVE_LABEL).
CLIENT_REMOVES_WITHIN = "1m"

# The task of `run -i/-t` waits until the exec'd COMMAND (WRAPPER) says how
# it ended, then exits the same way. Polling a file (not a FIFO): a stop
# signal always finds it in `wait`, where a trap runs at once.
_DONE = '"${TMPDIR:-/tmp}/.shoal-run-$SHOAL_TASK_ID"'
HOLDER = (
    f"f={_DONE}; trap 'rm -f \"$f\"; exit 143' TERM INT HUP; "
    'while [ ! -s "$f" ]; do sleep 0.5 & wait $!; done; '
    'read -r code < "$f"; rm -f "$f"; exit "$code"'
)
WRAPPER = (
    f"f={_DONE}; "
    'end() { printf \'%s\\n\' "$1" > "$f.tmp" && mv -f "$f.tmp" "$f"; }; '
    "trap 'end 129; exit 129' HUP; trap 'end 143; exit 143' TERM; "
    '"$@"; code=$?; end "$code"; exit "$code"'
)


@click.command(name="run", context_settings={"allow_interspersed_args": False})
@spec_options
@click.option("--env", "-e", multiple=True, metavar="KEY=VALUE", help="Environment variable (repeat)")
@click.option("--label", "-l", multiple=True, metavar="KEY=VALUE", help="Service label (repeat)")
@click.option(
    "--constraint", multiple=True, metavar="EXPR", help="Placement constraint (repeat: all must hold)"
)
@click.option(
    "--placement-pref", multiple=True, metavar="spread=node.labels.KEY", help="Placement preference"
)
@click.option("--publish", "-p", multiple=True, metavar="PORT", help="Publish a port: 8080:80 (repeat)")
@click.option(
    "--mount", "mounts", multiple=True, metavar="SPEC", help="A mount: type=...,source=...,target=..."
)
@click.option("--entrypoint", default=None, metavar="COMMAND", help="Replace the image's entrypoint")
@click.option(
    "--rm", "remove", is_flag=True, help="Remove the service once the task has ended (or on Ctrl-C)"
)
@click.option("--interactive", "-i", is_flag=True, help="Forward stdin to COMMAND (runs it through exec)")
@click.option("--tty", "-t", is_flag=True, help="Give COMMAND a terminal (runs it through exec)")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[COMMAND [ARG...]]")
@click.pass_obj
def run(client_factory: Callable[[], Client], /, image: str, command: tuple[str, ...], **o: Any) -> None:
    """Run one task of IMAGE, placed by the scheduler, and show its output.

    Exits with the task's exit code (125 when it never ran). -d prints the
    task's ID instead (then shoal logs -f, shoal exec). -it gives COMMAND
    (default sh) a terminal in the new task.
    """
    interactive = o["interactive"] or o["tty"]
    if o["detach"] and interactive:
        raise CLIError(
            "-d cannot be combined with -i or -t: start it with -d, then `shoal exec -it TASK sh` into it"
        )
    for flag in ("mode", "replicas", "max_concurrent"):
        if o.get(flag) is not None:
            raise CLIError(f"--{flag.replace('_', '-')}: shoal run makes one task; use shoal service create")
    exec_command: list[str] = []
    if interactive:
        check_tty(ExecRequest("", [], tty=o["tty"], stdin=o["interactive"]))
        entry = shlex.split(o["entrypoint"]) if o["entrypoint"] else []
        exec_command = [*entry, *command] or ["sh"]
        command, o["entrypoint"] = (), None
    spec = base_spec(image, command, o)
    spec.mode = pb.SERVICE_MODE_REPLICATED_JOB
    spec.replicas = 1
    if interactive:
        del spec.task.container.command[:]
        spec.task.container.command.extend(["sh", "-c", HOLDER])
    apply_flags(spec, o, creating=True)
    if not spec.task.HasField("restart"):
        spec.task.restart.CopyFrom(specs.default_restart_policy())
        spec.task.restart.condition = pb.RESTART_CONDITION_NONE
    if o["remove"]:
        spec.labels[specs.AUTOREMOVE_LABEL] = "true" if o["detach"] else CLIENT_REMOVES_WITHIN
    auth = registry_auth_for(image) if o["with_registry_auth"] else ""
    client = client_factory()
    service: pb.Service = client.call(
        "CreateService", cpb.CreateServiceRequest(spec=spec, registry_auth=auth, id=new_id()), retry=True
    )
    runner = _Run(client, service, o["remove"])
    try:
        task = runner.wait_task()
        if o["detach"]:
            click.echo(task.meta.id)
            return
        started = runner.wait_start(task.meta.id)
        if interactive:
            wrapped = ["sh", "-c", WRAPPER, "shoal-run", *exec_command]
            req = ExecRequest(started.meta.id, wrapped, tty=o["tty"], stdin=o["interactive"])
            code = run_exec(client, req)
        else:
            code = runner.attach(started)
    except KeyboardInterrupt:
        runner.interrupted()
        sys.exit(INTERRUPTED)
    runner.done()
    sys.exit(code)


class _Run:
    """One run's service and task, as the client follows them."""

    def __init__(self, client: Client, service: pb.Service, remove: bool) -> None:
        self.client = client
        self.service = service
        self.remove = remove

    def _tasks(self) -> list[pb.Task]:
        resp = self.client.call("ListTasks", cpb.ListTasksRequest(service=self.service.meta.id), retry=True)
        return list(resp.tasks)

    def _task(self, task_id: str) -> pb.Task:
        found = [t for t in self._tasks() if t.meta.id == task_id]
        if not found:
            raise CLIError(f"the task of {self.service.spec.name} was removed")
        return found[0]

    def wait_task(self) -> pb.Task:
        deadline = time.monotonic() + TASK_WAIT
        while time.monotonic() < deadline:
            tasks = self._tasks()
            if tasks:
                return min(tasks, key=lambda t: t.meta.created_at)
            time.sleep(POLL)
        raise CLIError(f"no task was made for service {self.service.spec.name} within {TASK_WAIT:.0f}s")

    def wait_start(self, task_id: str) -> pb.Task:
        """The task once it has started; exits 125 with the reason when it
        never will (rejected, or no node fits for STUCK_AFTER seconds)."""
        stuck_since, stuck_reason = 0.0, ""
        while True:
            task = self._task(task_id)
            state = task.status.state
            if task.status.pid or state in (RUNNING, pb.TASK_STATE_COMPLETE, pb.TASK_STATE_FAILED):
                return task
            if state > RUNNING:
                word = pb.TaskState.Name(state).removeprefix("TASK_STATE_").lower()
                self.never_ran(f"task {_name(task)} {word}: {task.status.err or task.status.message}")
            reason = task.status.err if state <= pb.TASK_STATE_PENDING else ""
            now = time.monotonic()
            if reason and reason == stuck_reason:
                if now - stuck_since >= STUCK_AFTER:
                    self.never_ran(f"task {_name(task)} cannot be placed: {reason}")
            else:
                stuck_since, stuck_reason = now, reason
            time.sleep(POLL)

    def never_ran(self, why: str) -> None:
        """Nothing ran and nothing will: no service is left behind."""
        self._remove()
        click.echo(f"Error: {why}", err=True)
        sys.exit(NEVER_RAN)

    def attach(self, task: pb.Task) -> int:
        """Stream the task's output until it ends; its exit code."""
        if self.client.stub is None:
            self.client.connect()
        request = cpb.TaskLogsRequest(ref=task.meta.id, follow=True, tail=-1, task_only=True)
        failure: list[BaseException] = []

        def stream() -> None:
            try:
                print_task_logs(self.client.stub.TaskLogs(request), timestamps=False)
            except Exception as err:  # shown once the main thread has the task's end
                failure.append(err)

        reader = threading.Thread(target=stream, name="run-logs", daemon=True)
        reader.start()
        while reader.is_alive():
            reader.join(POLL)
        ended = self._task(task.meta.id)
        while ended.status.state <= RUNNING and ended.desired_state <= RUNNING:
            # The output ended first (the node's log reader stopped): the
            # task's end is a moment behind. (A task being stopped whose
            # node is down may never report its end: then it was stopped.)
            time.sleep(POLL)
            ended = self._task(task.meta.id)
        if failure:
            click.echo(f"warning: the task's output was cut short: {failure[0]}", err=True)
        return exit_code(ended)

    def interrupted(self) -> None:
        if self.remove:
            self._remove()
            return
        click.echo(
            f"\nthe task keeps running: `shoal logs -f {self.service.spec.name}.1` follows it, "
            f"`shoal service rm {self.service.spec.name}` stops it",
            err=True,
        )

    def done(self) -> None:
        if self.remove:
            self._remove()

    def _remove(self) -> None:
        try:
            self.client.call("RemoveService", cpb.ObjectRef(ref=self.service.meta.id))
        except CLIError as err:
            if "not found" not in str(err):  # the leader removed it first (--rm)
                click.echo(f"warning: removing service {self.service.spec.name}: {err}", err=True)


def _name(task: pb.Task) -> str:
    return f"{task.service_name}.{task.slot}"


def exit_code(task: pb.Task) -> int:
    """What `shoal run` exits with for a task that has ended."""
    state = task.status.state
    if state == pb.TASK_STATE_COMPLETE:
        return 0
    if state == pb.TASK_STATE_FAILED:
        if task.status.exit_code:
            return int(task.status.exit_code)
        click.echo(f"Error: task {_name(task)} failed: {task.status.err}", err=True)
        return 1
    if state == pb.TASK_STATE_REJECTED:
        click.echo(f"Error: task {_name(task)} rejected: {task.status.err}", err=True)
        return NEVER_RAN
    word = pb.TaskState.Name(state).removeprefix("TASK_STATE_").lower()
    click.echo(f"Error: task {_name(task)} was stopped ({word}): {task.status.message}", err=True)
    return 137
