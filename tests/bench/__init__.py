"""Benchmarks: scripts that print figures (never timed assertions).

``python3 -m tests.bench.NAME`` works from a checkout after
``scripts/setup --dev`` whichever ``python3`` comes first on PATH: when it
lacks shoal's dependencies, the benchmark runs itself again under the venv's
Python (``/opt/shoal/venv``), with this checkout first on PYTHONPATH so that
the manager and agents it starts run this checkout's code.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

VENV_PYTHON = Path(os.environ.get("SHOAL_PREFIX", "/opt/shoal")) / "venv" / "bin" / "python"


def _in_venv_if_needed() -> None:
    if importlib.util.find_spec("grpc") is not None or not VENV_PYTHON.exists():
        return
    if os.environ.get("SHOAL_BENCH_REEXEC"):
        return  # the venv's Python lacks them too: let the import error say so
    checkout = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, SHOAL_BENCH_REEXEC="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (checkout, env.get("PYTHONPATH", "")) if p)
    os.execve(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.orig_argv[1:]], env)


if __name__ != "__main__" and sys.orig_argv[1:2] == ["-m"]:
    _in_venv_if_needed()
