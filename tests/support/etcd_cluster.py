"""A real three-member etcd cluster, for tests that break etcd: stop one
member (SIGSTOP), kill them all, start them again on the same data."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from shoal.launcher import EtcdCommand, free_port


class EtcdCluster:
    def __init__(self, root: Path, members: int = 3) -> None:
        binary = shutil.which("etcd")
        if binary is None:
            raise RuntimeError("etcd is not installed: apt-get install -y etcd-server")
        self.binary = binary
        self.root = root
        self.names = [f"m{i + 1}" for i in range(members)]
        self.client_ports = [free_port() for _ in self.names]
        self.peer_ports = [free_port() for _ in self.names]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * members
        self.initial = ",".join(
            f"{n}=http://127.0.0.1:{p}" for n, p in zip(self.names, self.peer_ports, strict=True)
        )
        for i in range(members):
            self.start(i)
        self.wait_healthy()

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.client_ports]

    @property
    def url(self) -> str:
        """All members, as a manager's --etcd takes them."""
        return ",".join(self.urls)

    def manager_args(self) -> list[str]:
        return []

    def start(self, i: int) -> None:
        data = self.root / self.names[i]
        data.mkdir(parents=True, exist_ok=True)
        log = open(data / "etcd.log", "ab")  # noqa: SIM115 (kept open by the child)
        command = EtcdCommand(
            binary=self.binary,
            name=self.names[i],
            data_dir=data / "data",
            client_port=self.client_ports[i],
            peer_port=self.peer_ports[i],
            initial_cluster=self.initial,
            extra=("--initial-cluster-state", "new", "--initial-cluster-token", f"shoal-test-{os.getpid()}"),
        )
        self.procs[i] = subprocess.Popen(
            command.args(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def healthy(self, i: int) -> bool:
        try:
            with urllib.request.urlopen(f"{self.urls[i]}/health", timeout=1) as resp:
                return b"true" in resp.read()
        except OSError:
            return False

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.healthy(i) for i in range(len(self.names)) if self.procs[i] is not None):
                return
            time.sleep(0.2)
        raise RuntimeError(f"etcd cluster in {self.root} did not become healthy")

    def signal(self, i: int, sig: int) -> None:
        proc = self.procs[i]
        assert proc is not None
        os.kill(proc.pid, sig)

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self.procs[i] = None

    def stop(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)  # a stopped member cannot die gracefully
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.procs[i] = None
