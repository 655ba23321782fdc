"""``shoal up`` and ``shoal down``: a whole cluster on this machine.

``shoal up`` starts it as child processes: an etcd (unless ``--etcd`` names
one), one manager and N agents, each agent with its own loopback address
(127.0.0.11, .12, ...). It records them in STATE_DIR/up.json (uprecord.py)
and saves the CLI context of the cluster (contexts.py): ``local`` for the
default state dir, ``local-<dir name>`` for another, or ``--context NAME``;
a context that belongs to another state dir is never taken over. A state dir
that held a cluster before is resumed (and says so) unless ``--fresh``.
Ctrl-C (or ``shoal down`` after ``--detach``) stops what it started, by PID,
and the tasks its agents ran; ``shoal down --purge`` also deletes the state.
``shoal up --restart-agent N`` starts agent N of a running cluster again, as
the same node. Stopping, deleting and restarting, and the state dir they
act on, live in ``local_state``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import click

from shoal import defaults, launcher
from shoal.cli import hints, local_state
from shoal.cli.client import Client, CLIError, Target
from shoal.cli.contexts import (
    LOCAL,
    Connector,
    Context,
    ContextStore,
    check_name,
    context_file_from_env,
    default_state_dir,
    wanted_context,
    write_context_file,
)
from shoal.cli.runtimes import pick_runtime
from shoal.cli.uprecord import UpRecord, record_proc
from shoal.durations import format_duration
from shoal.etcd_certs import make_etcd_certs
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb


def _wait_port(
    host: str, port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CLIError(f"{what} exited at start; see {log}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise CLIError(f"{what} did not start within {timeout:.0f}s; see {log}")


def _context_name(state: Path) -> str:
    """local for the default state dir, local-<dir name> for another."""
    if state == default_state_dir().absolute():
        return LOCAL
    stem = re.sub(r"[^a-zA-Z0-9_.-]+", "-", state.name).strip("-.") or "cluster"
    return f"{LOCAL}-{stem}"[:63]


class Naming:
    """The context a local cluster is saved as, and whether it becomes the
    current one."""

    def __init__(self, store: ContextStore, state: Path, asked: str | None) -> None:
        self.store = store
        self.current = False
        owner = store.owner_of(state)
        if asked:
            self.name = check_name(asked)
        elif owner is not None:
            self.name = owner.name
        else:
            self.name = _context_name(state)
        existing = store.get(self.name)
        if existing is not None and existing.state_dir != str(state):
            where = f"the cluster in {existing.state_dir}" if existing.local else "a remote cluster"
            raise CLIError(
                f'context "{self.name}" belongs to {where}; name this one with --context NAME '
                f"(or remove that context with shoal context rm {self.name})"
            )

    def save(self, hosts: list[str], tls: Path, state: Path) -> str:
        """Save the context; the line saying what became of it."""
        self.store.save(Context(self.name, hosts, str(tls), "shoal up", str(state)))
        current = self.store.current()
        current_ctx = self.store.get(current) if current else None
        self.current = current_ctx is None or current == self.name or current_ctx.state() == "stopped"
        if self.current:
            self.store.use(self.name)
            return f'context "{self.name}" is the current one'
        return (
            f'context "{self.name}" saved; the current context is still "{current}": '
            f"use shoal --context {self.name} ..., or shoal context use {self.name}"
        )


@click.command()
@click.option("--agents", default=3, type=click.IntRange(0, 200), metavar="N", help="Number of agents")
@click.option(
    "--runtime",
    default="auto",
    type=click.Choice(["auto", "process", "docker"]),
    help="How agents run tasks: docker when an engine answers (auto), or host processes",
)
@local_state.state_dir_option("Where the cluster keeps its state and logs")
@click.option(
    "--context",
    "context_opt",
    default=None,
    metavar="NAME",
    help="Save the cluster's context as NAME (default: local, or local-<dir> for another --state-dir)",
)
@click.option("--etcd", "etcd_url", default="", metavar="URL", help="Use this etcd instead of starting one")
@click.option("--detach", "-d", is_flag=True, help="Start in the background; stop with `shoal down`")
@click.option("--fresh", is_flag=True, help="Delete the state of an earlier cluster in the state dir first")
@click.option(
    "--restart-agent",
    type=click.IntRange(1, 200),
    default=None,
    metavar="N",
    help="Start agent N of the running cluster again, as the same node (stopping it first if it runs)",
)
@click.option(
    "--heartbeat-period",
    default=format_duration(defaults.CLUSTER.heartbeat_period),
    metavar="DURATION",
    help="Agent heartbeat period of a new cluster",
)
@click.pass_obj
def up(
    connector: Connector,
    agents: int,
    runtime: str,
    state_dir: Path | None,
    context_opt: str | None,
    etcd_url: str,
    detach: bool,
    fresh: bool,
    restart_agent: int | None,
    heartbeat_period: str,
) -> None:
    """Run a whole cluster on this machine: etcd, a manager and N agents."""
    store = ContextStore()
    asked = context_opt or wanted_context(connector.context)
    state = local_state.state_dir(state_dir, store.get(asked) if asked and state_dir is None else None)
    if restart_agent is not None:
        local_state.restart_agent(state, restart_agent)
        return
    legacy_file = context_file_from_env() if not asked else None
    naming = None if legacy_file is not None else Naming(store, state, asked)
    running = local_state.running_record(state)
    if running is not None:
        stop_it = "shoal down" + local_state.state_flag(state)
        raise CLIError(f"a cluster from {state} is already running; stop it with `{stop_it}`")
    if fresh:
        if etcd_url:
            raise CLIError("--fresh: cannot empty an etcd that shoal up did not start (--etcd)")
        local_state.delete_state(state)
    resuming = (state / "manager").is_dir()
    state.mkdir(parents=True, exist_ok=True)
    runtime = pick_runtime(runtime)
    record = UpRecord(runtime=runtime)
    procs: list[subprocess.Popen[bytes]] = []
    logs = state / "logs"

    def spawn(
        role: str, args: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        p = launcher.spawn(args, log, env=env, detach=detach)
        procs.append(p)
        record.procs.append(record_proc(role, p.pid, args, log))
        return p

    try:
        etcd_flags: list[str] = []
        if not etcd_url:
            binary = shutil.which("etcd")
            if binary is None:
                raise CLIError("etcd is not installed: apt-get install -y etcd-server (or give --etcd URL)")
            etcd = launcher.EtcdCommand(
                binary,
                "shoal-up",
                state / "etcd",
                launcher.free_port(preferred=2379),
                launcher.free_port(preferred=2380),
                # Only the manager may reach the cluster's state: mutual TLS.
                tls=make_etcd_certs(state / "etcd-tls", ["127.0.0.1"]),
            )
            etcd_url, etcd_flags = etcd.url, etcd.manager_flags()
            p = spawn("etcd", etcd.args(), logs / "etcd.log")
            _wait_port("127.0.0.1", etcd.client_port, p, "etcd", logs / "etcd.log")
        mport = launcher.free_port(preferred=2377)
        maddr = f"127.0.0.1:{mport}"
        # The Docker API on the engine's TLS port when it is free.
        docker_addr = f"127.0.0.1:{launcher.free_port(preferred=2376)}"
        manager_cmd = launcher.ManagerCommand(
            etcd_url, maddr, state / "manager", heartbeat_period, etcd_flags, ("--docker-api", docker_addr)
        )
        p = spawn("manager", manager_cmd.args(), logs / "manager.log")
        _wait_port("127.0.0.1", mport, p, "the manager", logs / "manager.log")
        tls = state / "manager" / "admin"
        deadline = time.monotonic() + 30
        while not (tls / "key.pem").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        client = Client(Target([maddr], tls)).connect()
        token = client.call("GetJoinToken", cpb.GetJoinTokenRequest(role="worker")).token
        # node-1 is the manager's host, as in a one-machine swarm: a node
        # whose role is manager (stack files place databases on it).
        manager_token = client.call("GetJoinToken", cpb.GetJoinTokenRequest(role="manager")).token
        agent_dirs = []
        for i in range(agents):
            d = state / f"agent-{i + 1}"
            agent_dirs.append(d)
            agent_cmd = launcher.AgentCommand(
                [maddr], d, f"node-{i + 1}", launcher.agent_address(i + 1), runtime
            )
            env = {**os.environ, launcher.TOKEN_ENV: manager_token if i == 0 else token}
            spawn(f"agent-{i + 1}", agent_cmd.args(), logs / f"agent-{i + 1}.log", env)
        record.agent_dirs = [str(d) for d in agent_dirs]
        record.manager, record.etcd = maddr, etcd_url
        record.context = naming.name if naming is not None else ""
        record.save(state)
        if naming is not None:
            said = naming.save([maddr], tls, state)
        else:
            assert legacy_file is not None
            write_context_file(legacy_file, [maddr], tls)
            said = f"context written to {legacy_file}"
        _wait_nodes(client, agents)
        plural = "" if agents == 1 else "s"
        click.echo(
            f"shoal is up: etcd {etcd_url}, manager {maddr}, {agents} agent{plural} ({runtime} runtime)"
        )
        click.echo(f"{said}; logs in {logs}")
        click.echo("The docker CLI drives it too (docker service, docker node):")
        click.echo(f"  export DOCKER_HOST=tcp://{docker_addr} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={tls}")
        if resuming:
            services = len(client.call("ListServices", cpb.ListServicesRequest(), retry=True).services)
            click.echo(
                f"resuming the cluster in {state} ({services} service{'s' if services != 1 else ''}); "
                "shoal up --fresh starts an empty one"
            )
        click.echo("Try:")
        prefix = "" if naming is None or naming.current else f"--context {naming.name} "
        for line in hints.try_hints(runtime, prefix=prefix):
            click.echo(line)
        if detach:
            click.echo("Stop it with: shoal down" + local_state.state_flag(state))
            return
        click.echo("Press Ctrl-C to stop everything.")
        _stay_up(procs)
        click.echo("stopping...")
        local_state.shutdown(state, record)
    except BaseException:
        # Once a detached cluster is recorded it outlives this command (even
        # if printing the hints fails, e.g. `shoal up -d | head -1`).
        if not (detach and (state / "up.json").exists()):
            local_state.shutdown(state, record)
        raise


def _stay_up(procs: list[subprocess.Popen[bytes]]) -> None:
    """Until Ctrl-C or SIGTERM, or one of the children exits."""
    stop_now = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop_now["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop_now["now"]:
        time.sleep(0.2)
        if any(p.poll() is not None for p in procs):
            click.echo("a child process exited; stopping everything (see the logs)", err=True)
            return


def _wait_nodes(client: Client, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = client.call("ListNodes", cpb.ListNodesRequest()).nodes
        if sum(1 for n in nodes if n.status.state == pb.NODE_STATE_READY) >= count:
            return
        time.sleep(0.2)
    click.echo(f"warning: not all {count} agents registered within {timeout:.0f}s", err=True)


@click.command()
@local_state.state_dir_option("The state dir of the cluster to stop")
@click.option(
    "--context", "context_opt", default=None, metavar="NAME", help="Stop the local cluster of this context"
)
@click.option("--purge", is_flag=True, help="Also delete the cluster's state (and its context)")
@click.pass_obj
def down(connector: Connector, state_dir: Path | None, context_opt: str | None, purge: bool) -> None:
    """Stop a cluster started with `shoal up -d`."""
    local_state.take_down(ContextStore(), context_opt or wanted_context(connector.context), state_dir, purge)
