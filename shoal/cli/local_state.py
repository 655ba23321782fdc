"""What ``shoal up`` leaves on this machine, and the commands that act on a
cluster it already started: ``shoal down`` (``--purge``) and ``shoal up
--restart-agent N``.

A local cluster lives in its state dir (``~/.shoal/up`` by default, or
``--state-dir``, or the dir of a context ``shoal up`` saved): etcd's data and
certificates, the manager's state, the logs, one ``agent-N`` dir per agent
(its identity), and ``up.json``, the record of the processes it started
(``uprecord``). Stopping goes agents first (they leave their tasks running),
then their tasks, then the manager and etcd, each by the PID it recorded;
deleting removes only those parts, whatever else the dir holds.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from shoal import launcher
from shoal.cli.client import Client, CLIError, Target
from shoal.cli.contexts import Context, ContextStore, default_state_dir
from shoal.cli.runtimes import stop_agent_tasks
from shoal.cli.uprecord import RECORD, UpRecord, record_proc, stop
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb

# What a state dir holds (all that --fresh and down --purge delete; nothing
# else in it is touched, whatever directory it is).
STATE_PARTS = ("etcd", "etcd-tls", "manager", "logs", RECORD)


def state_dir_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        metavar="DIR",
        help=f"{help} (default: ~/.shoal/up, or $SHOAL_CONFIG_DIR/up)",
    )


def state_dir(option: Path | None, context: Context | None) -> Path:
    """The state dir --state-dir names, else the context's, else the default."""
    if option is not None:
        return option.absolute()
    if context is not None and context.local:
        return Path(context.state_dir)
    return default_state_dir().absolute()


def state_flag(state: Path) -> str:
    """The --state-dir a command needs to name this state dir ("" for the default)."""
    return "" if state == default_state_dir().absolute() else f" --state-dir {state}"


def agent_dirs(state: Path) -> list[Path]:
    return sorted(
        (d for d in state.glob("agent-*") if d.is_dir() and d.name[6:].isdigit()),
        key=lambda d: int(d.name[6:]),
    )


def delete_state(state: Path) -> None:
    for part in STATE_PARTS:
        path = state / part
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for d in agent_dirs(state):
        shutil.rmtree(d)
    if state.is_dir() and not any(state.iterdir()):
        state.rmdir()


def running_record(state: Path) -> UpRecord | None:
    record = UpRecord.load(state)
    return record if record is not None and record.running() else None


def shutdown(state: Path, record: UpRecord) -> None:
    # Agents first (they leave tasks running), then their tasks, then the
    # manager and etcd (started first, so listed first).
    stop(list(reversed(record.procs)))
    dirs = [Path(d) for d in record.agent_dirs] or agent_dirs(state)
    stop_agent_tasks([d for d in dirs if d.exists()])
    (state / RECORD).unlink(missing_ok=True)


def take_down(store: ContextStore, asked: str | None, option: Path | None, purge: bool) -> None:
    """``shoal down``: stop the cluster of the asked context or state dir
    (purge: and delete its state and context)."""
    ctx = None
    if asked and option is None:
        ctx = store.get(asked)
        if ctx is None or not ctx.local:
            raise CLIError(f'context "{asked}" is not a cluster started by shoal up (shoal context ls)')
    state = state_dir(option, ctx)
    record = UpRecord.load(state)
    if record is None and not purge:
        raise CLIError(f"no cluster started by `shoal up` in {state}")
    if record is not None:
        shutdown(state, record)
    if not purge:
        click.echo("shoal is down")
        return
    if not state.exists():
        raise CLIError(f"nothing to purge: {state} does not exist")
    delete_state(state)
    owner = store.owner_of(state)
    if owner is not None:
        store.remove(owner.name)
    click.echo(
        f"shoal is down; deleted its state in {state}" + (f' and context "{owner.name}"' if owner else "")
    )


def restart_agent(state: Path, index: int) -> None:
    """``shoal up --restart-agent N``: start agent N again, as the same node."""
    record = running_record(state)
    if record is None:
        raise CLIError(
            f"no cluster started by `shoal up` runs in {state}; start it with shoal up{state_flag(state)}"
        )
    agent = record.agent(index)
    if agent is None or not agent.args:
        count = sum(1 for p in record.procs if p.role.startswith("agent-"))
        raise CLIError(f"--restart-agent {index}: the cluster in {state} has agents 1 to {count}")
    if agent.alive():
        stop([agent])  # its tasks keep running; the agent adopts them again
    # Its state dir holds its identity: no token, same node ID.
    p = launcher.spawn(agent.args, Path(agent.log), detach=True)
    record.procs[record.procs.index(agent)] = record_proc(agent.role, p.pid, agent.args, Path(agent.log))
    record.save(state)
    hostname = f"node-{index}"
    client = Client(Target([record.manager], state / "manager" / "admin")).connect()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise CLIError(f"agent {index} exited at start; see {agent.log}")
        nodes = client.call("ListNodes", cpb.ListNodesRequest()).nodes
        if any(n.description.hostname == hostname and n.status.state == pb.NODE_STATE_READY for n in nodes):
            click.echo(f"agent {index} ({hostname}) is running again (pid {p.pid}), as the same node")
            return
        time.sleep(0.2)
    click.echo(
        f"warning: agent {index} started (pid {p.pid}) but {hostname} is not ready after 30s", err=True
    )
