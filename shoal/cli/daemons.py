"""The long-running commands: ``shoal manager`` and ``shoal agent``.

A whole cluster on one machine (``shoal up``/``down``) is in ``local``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from shoal import defaults, launcher
from shoal.cli.client import CLIError
from shoal.cli.runtimes import pick_runtime
from shoal.durations import format_duration, parse_duration, parse_size


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.command()
@click.option(
    "--etcd",
    "etcd_urls",
    required=True,
    metavar="URL[,URL...]",
    help="The etcd endpoints holding the cluster",
)
@click.option("--listen", required=True, metavar="HOST:PORT", help="Where to serve admins and agents")
@click.option(
    "--state-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Where the manager keeps its identity, certificates and admin bundle",
)
@click.option(
    "--advertise", default="", metavar="HOST:PORT", help="Where agents and admins reach this manager"
)
@click.option(
    "--heartbeat-period",
    default=format_duration(defaults.CLUSTER.heartbeat_period),
    metavar="DURATION",
    help="Agent heartbeat period (when initialising a cluster)",
)
@click.option(
    "--etcd-ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="CA certificate of etcd's server certificate (turns on TLS to etcd)",
)
@click.option(
    "--etcd-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Client certificate for etcd (with --etcd-key)",
)
@click.option(
    "--etcd-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Key of the client certificate for etcd",
)
@click.option(
    "--unlock-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="File holding the unlock key of an autolocked cluster",
)
@click.option(
    "--docker-api",
    default="",
    metavar="HOST:PORT",
    help="Also serve the swarm part of the Docker Engine API here (mutual TLS, admin certificates)",
)
@click.option(
    "--etcd-prefix",
    default="/shoal/v1/",
    hidden=True,
    metavar="PREFIX",
    help="Key prefix (tests share one etcd)",
)
@click.option(
    "--handshake-timeout",
    default="10s",
    hidden=True,
    metavar="DURATION",
    help="TLS and HTTP/2 set-up limit per peer",
)
@click.option(
    "--idle-timeout",
    default="60s",
    hidden=True,
    metavar="DURATION",
    help="Close connections with no call open",
)
@click.option(
    "--compaction-interval",
    default="5m",
    hidden=True,
    metavar="DURATION",
    help="How often the leader compacts etcd",
)
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Least important log lines written to stderr",
)
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
    docker_api: str,
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
        if docker_api:
            try:
                split_hostport(docker_api)
            except ValueError as err:
                raise ValueError(f"--docker-api: {err}") from None
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
        docker_api=docker_api,
    )
    try:
        run_manager(settings)
    except ManagerError as err:
        raise CLIError(str(err)) from None


@click.command()
@click.option(
    "--join", "join_addrs", required=True, metavar="HOST:PORT[,HOST:PORT...]", help="Managers to join"
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="File holding the join token (needed only to join; or set SHOAL_JOIN_TOKEN)",
)
@click.option(
    "--token",
    default=None,
    metavar="TOKEN",
    help="Join token (visible in the process list: prefer --token-file)",
)
@click.option(
    "--state-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Where the agent keeps its identity and its tasks' state (the same dir: the same node)",
)
@click.option(
    "--runtime",
    default="process",
    type=click.Choice(["process", "docker", "auto"]),
    help="How tasks run: host processes, Docker containers, or docker when an engine answers",
)
@click.option("--hostname", default="", metavar="NAME", help="Name shown in node ls (default: this host's)")
@click.option(
    "--advertise-addr", default="", metavar="IP", help="IP where this node's published ports are reached"
)
@click.option(
    "--label", multiple=True, metavar="KEY=VALUE", help="Node label, set when it first joins (repeat)"
)
@click.option("--cpus", default=0.0, type=float, metavar="CPUS", help="CPUs to offer (default: detected)")
@click.option("--memory", default="", metavar="SIZE", help="Memory to offer, e.g. 4g (default: detected)")
@click.option(
    "--keep-tasks-on-removal",
    is_flag=True,
    help="When this node is removed from the cluster, leave its tasks running (default: stop them)",
)
@click.option(
    "--mesh",
    default="auto",
    type=click.Choice(["auto", "kernel", "userspace"]),
    help="Routing mesh data path: kernel (nftables) where it works, else the userspace relay",
)
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Least important log lines written to stderr",
)
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
    mesh: str,
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
        runtime = pick_runtime(runtime)
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
        mesh=mesh,
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
