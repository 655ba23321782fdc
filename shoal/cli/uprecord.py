"""The record ``shoal up`` keeps of the cluster it started: STATE_DIR/up.json.

Each process is recorded with its PID and its start time (field 22 of
/proc/PID/stat, in clock ticks since boot), so a PID the kernel gave to
someone else after ours exited is never taken for ours: nothing is signalled
that we did not start. An agent's command line and log are kept too, so
``shoal up --restart-agent N`` can start it again as the same node (its state
dir holds its identity).

    {"pids": [...],                      every process, etcd and manager first
     "procs": [{"role", "pid", "start_time", "args", "log"}, ...],
     "agent_dirs": [...], "manager": "HOST:PORT", "etcd": URL,
     "runtime": "process", "context": "local"}
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RECORD = "up.json"


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot); None when there is
    no such process or it is a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass
class Proc:
    role: str  # etcd, manager, agent-N
    pid: int
    start_time: int | None
    args: list[str] = field(default_factory=list)
    log: str = ""

    def alive(self) -> bool:
        now = start_time(self.pid)
        # A record without a start time (an older shoal's) trusts the PID.
        return now is not None and (self.start_time is None or now == self.start_time)


@dataclass
class UpRecord:
    procs: list[Proc] = field(default_factory=list)
    agent_dirs: list[str] = field(default_factory=list)
    manager: str = ""
    etcd: str = ""
    runtime: str = ""
    context: str = ""

    @classmethod
    def load(cls, state_dir: Path) -> UpRecord | None:
        try:
            data: dict[str, Any] = json.loads((state_dir / RECORD).read_text())
        except (OSError, ValueError):
            return None
        procs = [Proc(**p) for p in data.get("procs", [])]
        if not procs:  # an older record: PIDs only
            procs = [Proc("", pid, None) for pid in data.get("pids", [])]
        return cls(
            procs,
            list(data.get("agent_dirs", [])),
            data.get("manager", ""),
            data.get("etcd", ""),
            data.get("runtime", ""),
            data.get("context", ""),
        )

    def save(self, state_dir: Path) -> None:
        data = {"pids": [p.pid for p in self.procs], **asdict(self)}
        tmp = state_dir / (RECORD + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(state_dir / RECORD)

    def running(self) -> bool:
        return any(p.alive() for p in self.procs)

    def agent(self, index: int) -> Proc | None:
        return next((p for p in self.procs if p.role == f"agent-{index}"), None)


def record_proc(role: str, pid: int, args: list[str], log: Path) -> Proc:
    return Proc(role, pid, start_time(pid), list(args), str(log))


def stop(procs: list[Proc], timeout: float = 15) -> None:
    """SIGTERM each live process of ours, then SIGKILL what is left."""
    live = [p for p in procs if p.alive()]
    for p in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in live:
        while p.alive() and time.monotonic() < deadline:
            _reap(p.pid)
            time.sleep(0.1)
        if p.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
        _reap(p.pid)


def _reap(pid: int) -> None:
    """Collect our own child's exit (else it lingers as a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
