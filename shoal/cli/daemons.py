"""The long-running commands: ``shoal manager``, ``shoal agent``, ``shoal up``/``down``.

``shoal up`` starts a whole cluster on this machine as child processes: an
etcd (unless ``--etcd`` names one), one manager and N agents, each agent with
its own loopback address (127.0.0.11, .12, ...). It records their PIDs in
STATE_DIR/up.json and writes the CLI context so that plain ``shoal service ls``
works from any shell. Ctrl-C (or ``shoal down`` after ``--detach``) stops what
it started, by PID, and the tasks its agents ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

from shoal import defaults, launcher
from shoal.cli.client import Client, CLIError, Target, write_context
from shoal.durations import format_duration, parse_duration, parse_size
from shoal.etcd_certs import make_etcd_certs
from shoal.protos import control_pb2 as cpb


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.command()
@click.option("--etcd", "etcd_urls", required=True, help="etcd URL[,URL...]")
@click.option("--listen", required=True, help="HOST:PORT to serve admins and agents on")
@click.option("--state-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--advertise", default="", help="HOST:PORT agents and admins reach this manager at")
@click.option(
    "--heartbeat-period",
    default=format_duration(defaults.CLUSTER.heartbeat_period),
    help="Agent heartbeat period (when initialising a cluster)",
)
@click.option("--etcd-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--etcd-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--etcd-key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--unlock-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding the unlock key of an autolocked cluster",
)
@click.option("--etcd-prefix", default="/shoal/v1/", hidden=True, help="Key prefix (tests share one etcd)")
@click.option("--handshake-timeout", default="10s", hidden=True, help="TLS and HTTP/2 set-up limit per peer")
@click.option("--idle-timeout", default="60s", hidden=True, help="Close connections with no call open")
@click.option("--compaction-interval", default="5m", hidden=True, help="How often the leader compacts etcd")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def manager(
    etcd_urls: str,
    listen: str,
    state_dir: Path,
    advertise: str,
    heartbeat_period: str,
    etcd_ca: Path | None,
    etcd_cert: Path | None,
    etcd_key: Path | None,
    unlock_key_file: Path | None,
    etcd_prefix: str,
    handshake_timeout: str,
    idle_timeout: str,
    compaction_interval: str,
    log_level: str,
) -> None:
    """Run a manager: ControlAPI and Dispatcher over mutual TLS, state in etcd."""
    from shoal import pki
    from shoal.manager.daemon import ManagerError, ManagerSettings, run_manager, split_hostport
    from shoal.manager.store import EtcdTLS

    try:
        period = parse_duration(heartbeat_period)
        split_hostport(listen)
        server_limits = pki.ServerLimits(
            handshake_timeout=parse_duration(handshake_timeout) / 1e9,
            idle_timeout=parse_duration(idle_timeout) / 1e9,
        )
        compaction = parse_duration(compaction_interval) / 1e9
    except ValueError as err:
        raise CLIError(str(err)) from None
    if period < defaults.CLUSTER.min_heartbeat_period:
        minimum = format_duration(defaults.CLUSTER.min_heartbeat_period)
        raise CLIError(f"--heartbeat-period: must be at least {minimum}")
    if (etcd_cert is None) != (etcd_key is None):
        raise CLIError("--etcd-cert and --etcd-key go together")
    tls = EtcdTLS(etcd_ca, etcd_cert, etcd_key) if etcd_ca else None
    if not etcd_prefix.endswith("/"):
        etcd_prefix += "/"
    _setup_logging(log_level)
    settings = ManagerSettings(
        etcd_urls=[u for u in etcd_urls.split(",") if u],
        listen=listen,
        state_dir=state_dir,
        advertise=advertise,
        heartbeat_period_ns=period,
        etcd_tls=tls,
        etcd_prefix=etcd_prefix.encode(),
        unlock_key_file=unlock_key_file,
        limits=server_limits,
        compaction_interval=compaction,
    )
    try:
        run_manager(settings)
    except ManagerError as err:
        raise CLIError(str(err)) from None


@click.command()
@click.option("--join", "join_addrs", required=True, help="Manager HOST:PORT[,HOST:PORT...]")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the join token (needed only to join; or set SHOAL_JOIN_TOKEN)",
)
@click.option("--token", default=None, help="Join token (visible in the process list: prefer --token-file)")
@click.option("--state-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--runtime", default="process", type=click.Choice(["process", "docker", "auto"]))
@click.option("--hostname", default="", help="Name shown in node ls (default: this host's)")
@click.option("--advertise-addr", default="", help="IP where this node's published ports are reached")
@click.option("--label", multiple=True, help="Node label KEY=VALUE")
@click.option("--cpus", default=0.0, type=float, help="CPUs to offer (default: detected)")
@click.option("--memory", default="", help="Memory to offer, e.g. 4g (default: detected)")
@click.option(
    "--keep-tasks-on-removal",
    is_flag=True,
    help="When this node is removed from the cluster, leave its tasks running (default: stop them)",
)
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def agent(
    join_addrs: str,
    token_file: Path | None,
    token: str | None,
    state_dir: Path,
    runtime: str,
    hostname: str,
    advertise_addr: str,
    label: tuple[str, ...],
    cpus: float,
    memory: str,
    keep_tasks_on_removal: bool,
    log_level: str,
) -> None:
    """Run an agent: join the cluster and run the tasks assigned to this node."""
    from shoal.agent.daemon import AgentSettings, main
    from shoal.agent.identity import JoinError

    labels = {}
    for item in label:
        key, sep, value = item.partition("=")
        if not key or not sep:
            raise CLIError(f'--label "{item}": expected KEY=VALUE')
        labels[key] = value
    join_token = _join_token(token_file, token)
    try:
        memory_bytes = parse_size(memory) if memory else 0
    except ValueError as err:
        raise CLIError(f"--memory: {err}") from None
    if runtime in ("auto", "docker"):
        runtime = _pick_runtime(runtime)
    _setup_logging(log_level)
    settings = AgentSettings(
        managers=[a for a in join_addrs.split(",") if a],
        token=join_token,
        state_dir=state_dir,
        runtime=runtime,
        hostname=hostname,
        advertise_addr=advertise_addr,
        labels=labels,
        cpus=cpus,
        memory=memory_bytes,
        keep_tasks_on_removal=keep_tasks_on_removal,
    )
    from shoal.agent.session import NodeRemoved, SessionRefused

    try:
        main(settings)
    except NodeRemoved as err:
        # An exit status the systemd unit does not restart (RestartPreventExitStatus).
        click.echo(f"Error: {err}", err=True)
        sys.exit(EXIT_REMOVED)
    except (JoinError, SessionRefused) as err:
        raise CLIError(str(err)) from None


TOKEN_ENV = launcher.TOKEN_ENV
# sysexits' EX_CONFIG: the node was removed; restarting cannot help.
EXIT_REMOVED = 78


def _join_token(token_file: Path | None, token: str | None) -> str:
    """The join token from --token-file, SHOAL_JOIN_TOKEN or --token (in
    that order); empty when none is given (a node that has joined needs none)."""
    if token_file is not None:
        try:
            return token_file.read_text().strip()
        except OSError as err:
            raise CLIError(f"--token-file {token_file}: {err.strerror or err}") from None
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    if token:
        click.echo(
            "warning: --token is visible to every user in the process list; "
            f"use --token-file FILE or {TOKEN_ENV} instead",
            err=True,
        )
        return token.strip()
    return ""


def _pick_runtime(name: str) -> str:
    """auto -> docker when an engine answers, else process (and say so);
    docker -> refused at once when no engine answers."""
    if name == "process":
        return name
    from shoal.agent.runtime.docker import probe_engine

    problem = probe_engine()
    if name == "docker":
        if problem is not None:
            raise CLIError(f"--runtime docker: no Docker engine answers ({problem})")
        return name
    picked = "docker" if problem is None else "process"
    reason = "a Docker engine answers" if problem is None else f"no Docker engine ({problem})"
    click.echo(f"runtime auto: {reason}; using {picked}", err=True)
    return picked


# ------------------------------------------------------------------ shoal up


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


def _stop_agent_tasks(agent_dirs: list[Path]) -> None:
    """The tasks our agents ran are ours too: stop them on the way out
    (processes, and containers labelled with our nodes' IDs)."""
    stop_agent_tasks(agent_dirs)


def stop_agent_tasks(agent_dirs: list[Path]) -> None:
    from shoal.agent.identity import JoinError, load_identity
    from shoal.agent.runtime.base import Runtime
    from shoal.agent.runtime.docker import probe_engine
    from shoal.agent.runtime.process import ProcessRuntime

    docker_up = probe_engine(1.0) is None

    async def discard_all() -> None:
        for d in agent_dirs:
            runtimes: list[Runtime] = [ProcessRuntime(d / "runtime")]
            try:
                identity = load_identity(d)
            except JoinError:
                identity = None  # unusable; its containers cannot be told apart
            if docker_up and identity is not None:
                from shoal.agent.runtime.docker import DockerRuntime

                runtimes.append(DockerRuntime(d / "runtime", identity.node_id))
            for runtime in runtimes:
                for task_id in await runtime.known_task_ids():
                    await runtime.discard(task_id)
                await runtime.close()

    asyncio.run(discard_all())


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
    runtime = _pick_runtime(runtime)
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
        agent_dirs = []
        for i in range(agents):
            d = state / f"agent-{i + 1}"
            agent_dirs.append(d)
            agent_cmd = launcher.AgentCommand(
                [maddr], d, f"node-{i + 1}", launcher.agent_address(i + 1), runtime
            )
            env = {**os.environ, launcher.TOKEN_ENV: token}
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
    _stop_agent_tasks([d for d in agent_dirs if d.exists()])
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
