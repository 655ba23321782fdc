"""``shoal up`` and ``shoal down``: a whole cluster on this machine.

``shoal up`` starts it as child processes: an etcd (unless ``--etcd`` names
one), one manager and N agents, each agent with its own loopback address
(127.0.0.11, .12, ...). It records their PIDs in STATE_DIR/up.json and writes
the CLI context so that plain ``shoal service ls`` works from any shell.
Ctrl-C (or ``shoal down`` after ``--detach``) stops what it started, by PID,
and the tasks its agents ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import click

from shoal import defaults, launcher
from shoal.cli.client import Client, CLIError, Target, write_context
from shoal.cli.runtimes import pick_runtime, stop_agent_tasks
from shoal.durations import format_duration
from shoal.etcd_certs import make_etcd_certs
from shoal.protos import control_pb2 as cpb


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


def _stop_pids(pids: list[int], timeout: float = 15) -> None:
    """SIGTERM each process we started, then SIGKILL what is left."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                done, _ = os.waitpid(pid, os.WNOHANG) if _is_child(pid) else (0, 0)
                if done:
                    break
            except (ProcessLookupError, ChildProcessError):
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _is_child(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid()
    except (OSError, ValueError, IndexError):
        return False


@click.command()
@click.option("--agents", default=3, type=click.IntRange(0, 200), help="Number of agents")
@click.option("--runtime", default="auto", type=click.Choice(["auto", "process", "docker"]))
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--etcd", "etcd_url", default="", help="Use this etcd instead of starting one")
@click.option("--detach", "-d", is_flag=True, help="Start in the background; stop with `shoal down`")
@click.option("--heartbeat-period", default=format_duration(defaults.CLUSTER.heartbeat_period))
def up(
    agents: int, runtime: str, state_dir: Path | None, etcd_url: str, detach: bool, heartbeat_period: str
) -> None:
    """Run a whole cluster on this machine: etcd, a manager and N agents."""
    state = (state_dir or Path.home() / ".shoal" / "up").absolute()
    record = state / "up.json"
    if record.exists() and _alive(json.loads(record.read_text()).get("pids", [])):
        raise CLIError(f"a cluster from {state} is already running; stop it with `shoal down`")
    state.mkdir(parents=True, exist_ok=True)
    runtime = pick_runtime(runtime)
    pids: list[int] = []
    procs: list[subprocess.Popen[bytes]] = []
    logs = state / "logs"
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
            p = launcher.spawn(etcd.args(), logs / "etcd.log", detach=detach)
            procs.append(p)
            pids.append(p.pid)
            _wait_port("127.0.0.1", etcd.client_port, p, "etcd", logs / "etcd.log")
        mport = launcher.free_port(preferred=2377)
        maddr = f"127.0.0.1:{mport}"
        manager_cmd = launcher.ManagerCommand(
            etcd_url, maddr, state / "manager", heartbeat_period, etcd_flags
        )
        p = launcher.spawn(manager_cmd.args(), logs / "manager.log", detach=detach)
        procs.append(p)
        pids.append(p.pid)
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
            p = launcher.spawn(agent_cmd.args(), logs / f"agent-{i + 1}.log", env=env, detach=detach)
            procs.append(p)
            pids.append(p.pid)
        record.write_text(
            json.dumps(
                {"pids": pids, "agent_dirs": [str(d) for d in agent_dirs], "manager": maddr, "etcd": etcd_url}
            )
            + "\n"
        )
        ctx = write_context([maddr], tls)
        _wait_nodes(client, agents)
        click.echo(f"shoal is up: etcd {etcd_url}, manager {maddr}, {agents} agents ({runtime} runtime)")
        click.echo(f"context written to {ctx}; logs in {logs}")
        click.echo("Try:")
        click.echo("  shoal node ls")
        click.echo("  shoal service create --name web --replicas 3 app:1 sleep 3600")
        click.echo("  shoal service ps web")
        click.echo("  shoal service scale web=6")
        click.echo("  shoal service rm web")
        if detach:
            click.echo("Stop it with: shoal down")
            return
        click.echo("Press Ctrl-C to stop everything.")
        stop = {"now": False}

        def on_signal(signum: int, frame: object) -> None:
            stop["now"] = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop["now"]:
            time.sleep(0.2)
            if any(p.poll() is not None for p in procs):
                click.echo("a child process exited; stopping everything (see the logs)", err=True)
                break
        click.echo("stopping...")
        _shutdown(state, pids, agent_dirs)
    except BaseException:
        # Once a detached cluster is recorded it outlives this command (even
        # if printing the hints fails, e.g. `shoal up -d | head -1`).
        if not (detach and record.exists()):
            _shutdown(state, pids, [state / f"agent-{i + 1}" for i in range(agents)])
        raise


def _wait_nodes(client: Client, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = client.call("ListNodes", cpb.ListNodesRequest()).nodes
        if sum(1 for n in nodes if n.status.state == 2) >= count:
            return
        time.sleep(0.2)
    click.echo(f"warning: not all {count} agents registered within {timeout:.0f}s", err=True)


def _alive(pids: list[int]) -> bool:
    for pid in pids:
        try:
            os.kill(pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            continue
    return False


def _shutdown(state: Path, pids: list[int], agent_dirs: list[Path]) -> None:
    # Agents first (they leave tasks running), then their tasks, then the
    # manager and etcd (started first, so listed first).
    ordered = list(reversed(pids))
    _stop_pids(ordered)
    stop_agent_tasks([d for d in agent_dirs if d.exists()])
    (state / "up.json").unlink(missing_ok=True)


@click.command()
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
def down(state_dir: Path | None) -> None:
    """Stop a cluster started with `shoal up -d`."""
    state = (state_dir or Path.home() / ".shoal" / "up").absolute()
    record = state / "up.json"
    if not record.exists():
        raise CLIError(f"no cluster started by `shoal up` in {state}")
    info = json.loads(record.read_text())
    _shutdown(state, info.get("pids", []), [Path(d) for d in info.get("agent_dirs", [])])
    click.echo("shoal is down")
