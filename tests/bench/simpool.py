"""Driving harness processes from a test or a benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def create_sim_services(
    cluster: Any, services: int, replicas: int, *flags: str, first: tuple[str, ...] = ()
) -> None:
    """Services s0..sN-1 of `replicas` simulated tasks each, through the CLI:
    s0 kept off zone c (and given `first`), s1 spread over the zones (the
    filters and the spreading are part of what scale measures)."""
    for i in range(services):
        placement = {
            0: ["--constraint", "node.labels.zone!=c", *first],
            1: ["--placement-pref", "spread=node.labels.zone"],
        }.get(i, [])
        cluster.create_service(f"s{i}", replicas, *flags, *placement, "sim:1", "run")


class SimPool:
    """One harness process playing ``count`` nodes."""

    def __init__(
        self,
        join: str,
        token: str,
        count: int,
        state_dir: Path,
        offset: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.log = open(state_dir.parent / f"harness-{offset}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.bench.harness",
                "--join",
                join,
                "--token",
                token,
                "--count",
                str(count),
                "--offset",
                str(offset),
                "--state-dir",
                str(state_dir),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            text=True,
        )

    def ask(self, cmd: str, **kw: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the harness process died (see harness-*.log)")
        return json.loads(line)

    def close(self) -> None:
        """Ask the harness to quit; kill it when it does not within 10 s
        (it reads its commands only once every node has joined)."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
