"""Whose CPU a benchmark phase cost: per process group, with the machine's load.

A benchmark on a shared two-core machine measures everything running on it.
``Accounts`` names the processes of the run in groups (the manager, etcd,
the harness processes that play the nodes, the benchmark driver itself and
the CLI processes it waits for) and, around each phase, reads:

- the CPU seconds (user + system) of each group;
- the whole machine's busy CPU seconds (``/proc/stat``), so that what no
  group of ours accounts for is shown as ``others`` (other users' processes,
  and ours that came and went uncounted);
- the load average before and after, so a reader can judge the figures.

    accounts = Accounts()
    accounts.add("manager", pid)
    with accounts.phase("converge"):
        ...
    accounts.phases["converge"].cpu["manager"]
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil

DRIVER = "driver"


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))


def load() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def _driver_cpu() -> float:
    """This process and the children it has waited for (CLI calls)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # group -> CPU seconds
    others: float = 0.0  # busy CPU seconds of the machine no group accounts for
    capacity: float = 0.0  # cores x seconds
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def as_json(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 2),
            "cpu_seconds": {k: round(v, 2) for k, v in self.cpu.items()},
            "others_cpu_seconds": round(self.others, 2),
            "machine_capacity_cpu_seconds": round(self.capacity, 2),
            "loadavg_before": list(self.load_before),
            "loadavg_after": list(self.load_after),
        }


class Accounts:
    def __init__(self) -> None:
        self._groups: dict[str, dict[int, psutil.Process]] = {}
        # The last CPU reading of each process: a process that has exited
        # keeps what it had used (it stays counted in every later reading).
        self._last: dict[int, float] = {}
        self.phases: dict[str, Phase] = {}

    def add(self, group: str, pid: int) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            self._groups.setdefault(group, {})[pid] = psutil.Process(pid)

    def groups(self) -> list[str]:
        return [*self._groups, DRIVER]

    def _cpu(self, proc: psutil.Process) -> float:
        try:
            times = proc.cpu_times()
            self._last[proc.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            pass
        return self._last.get(proc.pid, 0.0)

    def reading(self) -> tuple[float, dict[str, float], float]:
        """(monotonic time, CPU seconds per group, machine busy seconds)."""
        cpu = {g: sum(self._cpu(p) for p in procs.values()) for g, procs in self._groups.items()}
        cpu[DRIVER] = _driver_cpu()
        return time.monotonic(), cpu, machine_busy()

    def cpu_of(self, group: str) -> float:
        return self.reading()[1].get(group, 0.0)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        """Account the CPU of everything inside the block to phase ``name``
        (a second block of the same name adds to it)."""
        ph = self.phases.setdefault(name, Phase(name))
        before_load = load()
        t0, cpu0, busy0 = self.reading()
        try:
            yield ph
        finally:
            t1, cpu1, busy1 = self.reading()
            if not ph.seconds:
                ph.load_before = before_load
            ph.load_after = load()
            ph.seconds += t1 - t0
            ours = 0.0
            for group, value in cpu1.items():
                spent = max(0.0, value - cpu0.get(group, 0.0))
                ph.cpu[group] = ph.cpu.get(group, 0.0) + spent
                ours += spent
            ph.others += max(0.0, (busy1 - busy0) - ours)
            ph.capacity += (t1 - t0) * (os.cpu_count() or 1)

    def table(self) -> str:
        """The phases as a table: seconds, each group's CPU, others, load."""
        groups = self.groups()
        head = f"{'phase':<18}{'seconds':>9}" + "".join(f"{g:>10}" for g in groups)
        head += f"{'others':>10}{'of cap.':>9}  load before -> after"
        lines = [head, "-" * len(head)]
        for ph in self.phases.values():
            row = f"{ph.name:<18}{ph.seconds:>9.1f}"
            row += "".join(f"{ph.cpu.get(g, 0.0):>10.1f}" for g in groups)
            used = sum(ph.cpu.values()) + ph.others
            share = used / ph.capacity if ph.capacity else 0.0
            row += f"{ph.others:>10.1f}{share:>9.0%}  {ph.load_before[0]:.2f} -> {ph.load_after[0]:.2f}"
            lines.append(row)
        lines.append("(CPU seconds per group; 'of cap.': all CPU used / (cores x seconds))")
        return "\n".join(lines)


def wait_for_quiet(max_load: float, timeout: float) -> tuple[float, float, float]:
    """Wait (up to timeout seconds) until the 1-minute load average is below
    max_load; the load when done waiting."""
    deadline = time.monotonic() + timeout
    while load()[0] >= max_load and time.monotonic() < deadline:
        time.sleep(5)
    return load()
