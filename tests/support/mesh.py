"""Helpers for routing-mesh tests: a client, the test task, free ports.

``ask`` sends one request over TCP (``ask_udp`` over UDP) from a chosen
loopback source address and returns the answer line of
``tests/support/mesh_server.py`` parsed into ``Answer``; the tests then say
which task answered (slot) and what address it saw.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from shoal.launcher import agent_address

SERVER = Path(__file__).with_name("mesh_server.py")
# The command of a process task that answers mesh requests.
SERVER_COMMAND = [sys.executable, str(SERVER)]
# Where test clients connect from: not an agent's address, so that a task
# that sees it saw the client itself.
CLIENT_ADDR = "127.0.0.77"


@dataclass(frozen=True)
class Answer:
    slot: str
    peer: str  # ip:port the task saw
    proxy: str  # the client a PROXY header named, "-" without one

    @property
    def peer_ip(self) -> str:
        return self.peer.rsplit(":", 1)[0]


def parse(line: str) -> Answer:
    fields = dict(part.split("=", 1) for part in line.split())
    return Answer(fields["slot"], fields["peer"], fields["proxy"])


def ask(addr: str, port: int, source: str = CLIENT_ADDR, timeout: float = 5.0) -> Answer:
    """One request to addr:port over TCP from `source`; OSError when nothing
    answers."""
    with socket.create_connection((addr, port), timeout=timeout, source_address=(source, 0)) as s:
        s.sendall(b"hello\n")
        data = b""
        while not data.endswith(b"\n"):
            more = s.recv(4096)
            if not more:
                break
            data += more
    if not data:
        raise ConnectionResetError(f"{addr}:{port} closed without answering")
    return parse(data.decode())


def try_ask(addr: str, port: int, source: str = CLIENT_ADDR) -> Answer | None:
    """ask, or None when the request failed (a generous timeout: a busy
    machine may take seconds to answer, and that is not a failure)."""
    try:
        return ask(addr, port, source, timeout=5.0)
    except OSError:
        return None


def ask_udp(addr: str, port: int, source: str = CLIENT_ADDR, timeout: float = 2.0) -> Answer | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.sendto(b"hello\n", (addr, port))
        try:
            data, _ = s.recvfrom(2048)
        except OSError:
            return None
    return parse(data.decode())


def free_published_port(agents: int = 3) -> int:
    """A port free for TCP and UDP on every agent address (127.0.0.11, ...):
    tests in parallel workers use the same addresses, so each picks its own."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        ok = True
        for i in range(1, agents + 1):
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as probe:
                    try:
                        probe.bind((agent_address(i), port))
                    except OSError:
                        ok = False
        if ok:
            return port
