"""A cluster on one machine: the command lines of its processes, in one place.

``shoal up``, the test harness (tests/support/cluster.py, etcd_server.py) and
the benchmarks all start etcd, managers and agents as child processes; they
build the command lines here, so a flag is added or renamed once. Each
simulated host has its own state dir and its own loopback address.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from shoal.etcd_certs import EtcdCerts, etcd_tls_args

# -P: never import shoal from the current directory (a checkout), only the
# installed one (or the one on PYTHONPATH).
SHOAL = [sys.executable, "-P", "-m", "shoal"]
# The join token goes to agents in this environment variable: a command line
# is visible to every user (ps).
TOKEN_ENV = "SHOAL_JOIN_TOKEN"


def free_port(host: str = "127.0.0.1", preferred: int = 0) -> int:
    """preferred when free, else any free port."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port on this machine")


def agent_address(index: int) -> str:
    """The loopback address of agent number index (1, 2, ...): 127.0.0.11, .12, ..."""
    return f"127.0.0.{10 + index}"


@dataclass(frozen=True)
class EtcdCommand:
    binary: str
    name: str
    data_dir: Path
    client_port: int
    peer_port: int
    tls: EtcdCerts | None = None
    # The members of a multi-member cluster (NAME=PEER_URL,...); empty: this
    # member alone.
    initial_cluster: str = ""
    extra: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client_port}"

    def args(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            self.binary,
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
            "--listen-client-urls",
            self.url,
            "--advertise-client-urls",
            self.url,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            self.initial_cluster or f"{self.name}={peer}",
            *(etcd_tls_args(self.tls) if self.tls else []),
            *self.extra,
        ]

    def manager_flags(self) -> list[str]:
        """What a manager needs to reach this etcd."""
        if self.tls is None:
            return []
        return [
            "--etcd-ca",
            str(self.tls.ca),
            "--etcd-cert",
            str(self.tls.client_cert),
            "--etcd-key",
            str(self.tls.client_key),
        ]


@dataclass(frozen=True)
class ManagerCommand:
    etcd: str
    listen: str
    state_dir: Path
    heartbeat_period: str
    etcd_flags: list[str] = field(default_factory=list)
    extra: tuple[str, ...] = ()

    def args(self) -> list[str]:
        return [
            *SHOAL,
            "manager",
            "--etcd",
            self.etcd,
            "--listen",
            self.listen,
            "--state-dir",
            str(self.state_dir),
            "--heartbeat-period",
            self.heartbeat_period,
            *self.etcd_flags,
            *self.extra,
        ]


@dataclass(frozen=True)
class AgentCommand:
    join: list[str]
    state_dir: Path
    hostname: str
    advertise_addr: str
    runtime: str | None = None
    token_file: Path | None = None
    labels: dict[str, str] = field(default_factory=dict)
    extra: tuple[str, ...] = ()

    def args(self) -> list[str]:
        args = [
            *SHOAL,
            "agent",
            "--join",
            ",".join(self.join),
            "--state-dir",
            str(self.state_dir),
            "--hostname",
            self.hostname,
            "--advertise-addr",
            self.advertise_addr,
        ]
        if self.token_file is not None:
            args += ["--token-file", str(self.token_file)]
        if self.runtime is not None:
            args += ["--runtime", self.runtime]
        for key, value in self.labels.items():
            args += ["--label", f"{key}={value}"]
        return [*args, *self.extra]


def spawn(
    args: list[str], log_path: Path, env: dict[str, str] | None = None, detach: bool = False
) -> subprocess.Popen[bytes]:
    """Start a child with its output appended to log_path; detached, it has a
    session of its own (it outlives a terminal closing)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            args,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=detach,
            env=env,
        )
