"""One real etcd server for a whole test session (or a benchmark run)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

from shoal import launcher
from shoal.etcd_certs import EtcdCerts, make_etcd_certs


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EtcdServer:
    """With tls, clients must present a certificate of its CA (``self.certs``)."""

    def __init__(self, data_dir: Path, extra_args: tuple[str, ...] = (), tls: bool = False) -> None:
        binary = shutil.which("etcd")
        if binary is None:
            raise RuntimeError("etcd is not installed: apt-get install -y etcd-server")
        self.client_port = free_port()
        self.peer_port = free_port()
        self.certs: EtcdCerts | None = None
        data_dir.mkdir(parents=True, exist_ok=True)
        if tls:
            self.certs = make_etcd_certs(data_dir / "tls", ["127.0.0.1"])
        self.command = launcher.EtcdCommand(
            binary,
            "test",
            data_dir / "data",
            self.client_port,
            self.peer_port,
            tls=self.certs,
            # Tests and benchmarks write a lot; keep etcd's own defaults
            # otherwise, to measure honestly.
            extra=("--quota-backend-bytes", str(8 * 1024 * 1024 * 1024), *extra_args),
        )
        self.url = self.command.url
        self.log_path = data_dir / "etcd.log"
        args = self.command.args()
        env = dict(os.environ, ETCD_UNSUPPORTED_ARCH=os.environ.get("ETCD_UNSUPPORTED_ARCH", ""))
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.args = args
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"etcd exited: see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.client_port), timeout=0.2):
                    pass
                import urllib.request

                with urllib.request.urlopen(f"{self.url}/health", timeout=1, context=self._ssl()) as resp:
                    if b"true" in resp.read():
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"etcd did not become ready: see {self.log_path}")

    def _ssl(self) -> ssl.SSLContext | None:
        if self.certs is None:
            return None
        ctx = ssl.create_default_context(cafile=str(self.certs.ca))
        ctx.load_cert_chain(self.certs.client_cert, self.certs.client_key)
        return ctx

    def manager_args(self) -> list[str]:
        """The flags a manager needs to reach this etcd."""
        return self.command.manager_flags()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
