"""A real shoal cluster for tests: manager and agent processes on one etcd.

Each cluster gets its own etcd key prefix (so one etcd serves the whole
session), its own state dirs and ports, and agents on their own loopback
addresses (127.0.0.11, .12, ...). The CLI is run as a real subprocess against
it. Everything started here is stopped by PID in ``close()``, and the task
processes of the agents are killed too, even when a test fails.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from shoal import launcher, pki
from shoal.protos import control_pb2_grpc as cgrpc
from tests.support.etcd_server import EtcdServer, free_port

# Tests find their task processes by command line (pids_of), and other
# clusters may run on this machine meanwhile (a developer's `shoal up`, another
# test session) with the same commands. A suffix drawn once per session keeps
# the markers ours.
_SESSION_SUFFIX = f"{random.SystemRandom().randrange(10**6):06d}"


def sleep_seconds(seconds: int) -> str:
    """An argument for `sleep` that is unique to this test session: with
    `seconds=3602`, "3602.<6 digits>". Pass it to `sleep` and look for
    f"sleep {it}" with pids_of."""
    return f"{seconds}.{_SESSION_SUFFIX}"


def wait_for(cond: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll cond until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or cond} (last: {last!r})")


def stays(cond: Callable[[], bool], seconds: float, what: str) -> None:
    """Assert cond() holds at every check for `seconds` (for "nothing else
    happens" claims: there is no event to wait for)."""
    deadline = time.monotonic() + seconds
    while True:
        assert cond(), f"expected {what} to hold for {seconds}s"
        if time.monotonic() >= deadline:
            return
        time.sleep(0.2)


def assert_refused(res: CLIResult, *mentions: str) -> str:
    """A refusal as CLI.md says it looks: non-zero exit, exactly one
    ``Error:`` line on stderr mentioning each word, no traceback; the line."""
    everything = res.out + res.err
    assert res.code != 0, f"expected a refusal, got exit 0:\n{everything}"
    assert "Traceback" not in everything, everything
    errors = [line for line in res.err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, f"expected exactly one 'Error:' line on stderr, got:\n{res.err}"
    for word in mentions:
        assert word.lower() in errors[0].lower(), f"the error should mention {word!r}: {errors[0]}"
    return errors[0]


@dataclass
class CLIResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Proc:
    name: str
    args: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as f:
            self.popen = subprocess.Popen(
                self.args, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.kill()
            self.popen.wait()

    def running_or_fail(self) -> bool:
        """True while the process runs; an AssertionError with the end of its
        log once it has exited (so a daemon that dies at start fails the
        test at once, saying why, instead of after a timeout)."""
        if self.alive():
            return True
        code = self.popen.returncode if self.popen is not None else None
        raise AssertionError(f"{self.name} exited with status {code}:\n{self.output()[-3000:]}")

    def wait_exit(self, timeout: float = 30) -> int:
        """The exit status, once the process has ended on its own."""
        assert self.popen is not None
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still runs after {timeout}s") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 10) -> None:
        if not self.alive():
            return
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


@dataclass
class Cluster:
    etcd: EtcdServer
    root: Path
    heartbeat: str = "1s"
    prefix: str = field(default_factory=lambda: f"/t-{uuid.uuid4().hex[:10]}/shoal/v1/")
    managers: list[Proc] = field(default_factory=list)
    agents: list[Proc] = field(default_factory=list)
    manager_addrs: list[str] = field(default_factory=list)
    # Containers of this cluster's nodes that close() had to remove after
    # stop_agent_tasks (IDs); empty when the agents' own cleanup did it all.
    swept_containers: list[str] = field(default_factory=list)
    # service_ps's connection to a manager, made on first use.
    _client: Any = field(default=None, repr=False, compare=False)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("SHOAL_HOST", None)
        env.pop("SHOAL_TLS_DIR", None)
        env["SHOAL_CONTEXT"] = str(self.root / "no-context.json")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    @property
    def tls_dir(self) -> Path:
        return self.root / "manager-1" / "admin"

    def start_manager(self, *extra: str) -> Proc:
        """manager-N on its own port; extra flags go on its command line."""
        index = len(self.managers) + 1
        port = free_port()
        addr = f"127.0.0.1:{port}"
        command = launcher.ManagerCommand(
            self.etcd.url,
            addr,
            self.root / f"manager-{index}",
            self.heartbeat,
            self.etcd.manager_args(),
            ("--etcd-prefix", self.prefix, *extra),
        )
        proc = Proc(f"manager-{index}", command.args(), self.root / "logs" / f"manager-{index}.log")
        proc.start(self.env)
        self.managers.append(proc)
        self.manager_addrs.append(addr)
        key = self.root / f"manager-{index}" / "admin" / "key.pem"
        wait_for(lambda: proc.running_or_fail() and key.exists(), what="admin bundle")
        wait_for(lambda: proc.running_or_fail() and self.cli("info").code == 0, what="manager to answer")
        return proc

    def restart(self, proc: Proc) -> None:
        proc.start(self.env)

    def agent_dir(self, proc: Proc) -> Path:
        return self.root / f"agent-{self.agents.index(proc) + 1}"

    def manager_id(self, proc: Proc) -> str:
        return (self.root / f"manager-{self.managers.index(proc) + 1}" / "manager-id").read_text().strip()

    def leader(self) -> Proc | None:
        """The manager that leads now, as `info` says (None: no answer, or none leads)."""
        res = self.cli("info", "--format", "json", timeout=30)
        if res.code != 0:
            return None
        ids = {self.manager_id(m): m for m in self.managers}
        return next((ids[m["id"]] for m in res.json()["managers"] if m["leader"] and m["id"] in ids), None)

    def token(self) -> str:
        res = self.cli("join-token", "-q", "worker")
        assert res.code == 0, res.err
        return res.out.strip()

    def start_agent(
        self, labels: dict[str, str] | None = None, hostname: str = "", token: str | None = None, **flags: str
    ) -> Proc:
        """Start agent-N (state dir ROOT/agent-N) with the cluster's join
        token, or with `token` (tests of refused joins pass a wrong one), in
        a token file as a careful operator would."""
        index = len(self.agents) + 1
        token_file = self.root / f"agent-{index}.token"
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.touch(mode=0o600)
        token_file.write_text((self.token() if token is None else token) + "\n")
        command = launcher.AgentCommand(
            list(self.manager_addrs),
            self.root / f"agent-{index}",
            hostname or f"node-{index}",
            launcher.agent_address(index),
            token_file=token_file,
            labels=labels or {},
            extra=tuple(a for key, value in flags.items() for a in (f"--{key.replace('_', '-')}", value)),
        )
        proc = Proc(f"agent-{index}", command.args(), self.root / "logs" / f"agent-{index}.log")
        proc.start(self.env)
        self.agents.append(proc)
        return proc

    def wait_nodes_ready(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        def ready() -> list[dict[str, Any]] | None:
            res = self.cli("node", "ls", "--format", "json")
            if res.code != 0:
                return None
            nodes = [n for n in res.json() if n["status"] == "ready"]
            return nodes if len(nodes) >= count else None

        result: list[dict[str, Any]] = wait_for(ready, timeout, what=f"{count} ready nodes")
        return result

    def cli(
        self, *args: str, timeout: float = 120, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> CLIResult:
        """The CLI as this cluster's admin; `env` adds to its environment."""
        return self.cli_as(self.tls_dir, *args, timeout=timeout, stdin=stdin, env=env)

    def _cli_command(self, tls_dir: Path, args: tuple[str, ...]) -> list[str]:
        hosts = ",".join(self.manager_addrs)
        return [sys.executable, "-m", "shoal", "--host", hosts, "--tls-dir", str(tls_dir), *args]

    def cli_argv(self, *args: str) -> list[str]:
        """The command line of the CLI as this cluster's admin (to run it
        some other way: in a terminal, in the background)."""
        return self._cli_command(self.tls_dir, args)

    def cli_as(
        self,
        tls_dir: Path,
        *args: str,
        timeout: float = 120,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
    ) -> CLIResult:
        """The CLI with another TLS bundle (another admin, a node's own, a forged one)."""
        cmd = self._cli_command(tls_dir, args)
        full_env = {**self.env, **(env or {})}
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, input=stdin)
        return CLIResult(res.returncode, res.stdout, res.stderr)

    def popen_cli(self, *args: str) -> subprocess.Popen[str]:
        """The CLI as a background process (for commands that keep running,
        such as `service logs -f`): text pipes for stdout and stderr. The
        caller terminates it."""
        return subprocess.Popen(
            self._cli_command(self.tls_dir, args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )

    def control(self, proc: Proc) -> tuple[grpc.Channel, cgrpc.ControlStub]:
        """A ControlAPI stub straight to one manager, as this cluster's
        admin (for calls the CLI cannot aim at one manager). The caller
        closes the channel."""
        files = pki.read_tls_dir(self.tls_dir)
        assert files is not None
        creds = pki.channel_credentials(files.ca_pem, files.cert_pem, files.key_pem)
        address = self.manager_addrs[self.managers.index(proc)]
        channel = grpc.secure_channel(address, creds, options=pki.CHANNEL_OPTIONS)
        return channel, cgrpc.ControlStub(channel)

    def create_service(self, name: str, replicas: int, *args: str, timeout: float = 120) -> None:
        """`service create -d --name NAME --replicas N ARGS...`, which must
        succeed (the image and command are the last of ARGS)."""
        create = ("service", "create", "-d", "--name", name, "--replicas", str(replicas))
        res = self.cli(*create, *args, timeout=timeout)
        assert res.code == 0, res.err

    def tasks(self, service: str) -> list[dict[str, Any]]:
        res = self.cli("service", "ps", service, "--format", "json")
        assert res.code == 0, res.err
        tasks: list[dict[str, Any]] = res.json()
        return tasks

    def running(self, service: str) -> list[dict[str, Any]]:
        return [
            t
            for t in self.tasks(service)
            if t["current_state"] == "running" and t["desired_state"] == "running"
        ]

    def services(self) -> list[dict[str, Any]]:
        res = self.cli("service", "ls", "--format", "json")
        assert res.code == 0, res.err
        services: list[dict[str, Any]] = res.json()
        return services

    def describe_state(self) -> str:
        """What a failed test on this cluster should show: nodes, every
        task with its error, and the tail of every log."""
        parts = []
        for args in (("node", "ls"), ("service", "ls")):
            res = self.cli(*args, timeout=60)
            parts.append(f"$ shoal {' '.join(args)}\n{res.out}{res.err}")
        names = self.cli("service", "ls", "-q", timeout=60).out.split()
        if names:
            res = self.cli("service", "ps", "--no-trunc", *names, timeout=60)
            parts.append(f"$ shoal service ps --no-trunc ...\n{res.out}{res.err}")
        parts.append(self.dump_logs())
        return "\n".join(parts)

    def remove_made_since(self, started: float) -> list[str]:
        """Remove the services, secrets, configs and networks made at or
        after `started` (a time.time()), so that a test on a shared cluster
        can run again after a failed attempt; what was removed, as KIND NAME."""
        removed = []
        for kind in ("service", "secret", "config", "network"):
            listed = self.cli(kind, "ls", "-q", timeout=60)
            if listed.code != 0 or not listed.out.split():
                continue
            shown = self.cli(kind, "inspect", *listed.out.split(), timeout=60)
            if shown.code != 0:
                continue
            for obj in shown.json():
                made = obj.get("created_at", "")
                name = obj.get("name") or obj.get("spec", {}).get("name", "")
                recent = bool(made and name) and _epoch(made) >= started - 1
                if recent and self.cli(kind, "rm", name, timeout=60).code == 0:
                    removed.append(f"{kind} {name}")
        return removed

    def nodes(self) -> list[dict[str, Any]]:
        res = self.cli("node", "ls", "--format", "json")
        assert res.code == 0, res.err
        nodes: list[dict[str, Any]] = res.json()
        return nodes

    def task_dir(self, task_id: str) -> Path:
        """The process runtime's folder of a task, on whichever agent has it."""
        for i in range(len(self.agents)):
            path = self.root / f"agent-{i + 1}" / "runtime" / "tasks" / task_id
            if path.is_dir():
                return path
        raise AssertionError(f"no agent of this cluster has a folder for task {task_id}")

    def service_ps(self, service: str, timeout: float = 2.0) -> list[dict[str, Any]] | None:
        """What `service ps SERVICE --format json` prints, read in-process
        (no CLI process per call, so samplers can poll every 200 ms); None
        when no manager answers. Keeps one connection between calls."""
        from shoal.cli.client import Client, CLIError, Target
        from shoal.cli.render import sort_tasks_for_ps, task_json
        from shoal.protos import control_pb2 as cpb

        try:
            if self._client is None:
                self._client = Client(
                    Target(list(self.manager_addrs), self.tls_dir), timeout=timeout
                ).connect()
            resp = self._client.call("ListTasks", cpb.ListTasksRequest(service=service))
        except CLIError:
            if self._client is not None:
                self._client.close()
            self._client = None
            return None
        hostnames = dict(resp.node_hostnames)
        addrs = dict(resp.node_addrs)
        return [task_json(t, hostnames, addrs) for t in sort_tasks_for_ps(list(resp.tasks))]

    def kill_tasks_of(self, agent: Proc) -> set[int]:
        """SIGKILL every task process group `agent` started (what a machine
        that dies takes with it). Reads the process runtime's handle.json
        files; returns the process group IDs that were signalled."""
        tasks = self.root / f"agent-{self.agents.index(agent) + 1}" / "runtime" / "tasks"
        killed: set[int] = set()
        for handle_file in tasks.glob("*/handle.json"):
            try:
                handle = json.loads(handle_file.read_text())
                stat = Path(f"/proc/{handle['pid']}/stat").read_text()
            except (OSError, ValueError, KeyError):
                continue  # never started, or long gone
            fields = stat.rsplit(")", 1)[1].split()
            # fields[19] is starttime: a reused pid is someone else's process.
            if int(fields[19]) != handle["start_time"] or fields[0] in ("Z", "X"):
                continue
            try:
                os.killpg(handle["pid"], signal.SIGKILL)
                killed.add(handle["pid"])
            except ProcessLookupError:
                pass
        return killed

    def close(self) -> None:
        """Stop every process this cluster started, and its agents' tasks,
        even if one step fails."""
        errors: list[BaseException] = []
        if self._client is not None:
            self._client.close()
            self._client = None
        for proc in self.agents:
            try:
                proc.stop()
            except Exception as err:  # keep going: the rest must stop too
                errors.append(err)
        agent_dirs = [self.root / f"agent-{i + 1}" for i in range(len(self.agents))]
        try:
            _kill_agent_tasks(agent_dirs)
        except Exception as err:
            errors.append(err)
        try:
            # A safety net under stop_agent_tasks: whatever container of
            # these nodes is still there (it failed, or a test interfered).
            self.swept_containers = remove_containers_of(_node_ids(agent_dirs))
            if self.swept_containers:
                print(f"cluster {self.root}: removed {len(self.swept_containers)} containers left behind")
        except Exception as err:
            errors.append(err)
        for proc in self.managers:
            try:
                proc.stop()
            except Exception as err:
                errors.append(err)
        if errors:
            raise errors[0]

    def dump_logs(self) -> str:
        out = []
        for log in sorted((self.root / "logs").glob("*.log")):
            out.append(f"==== {log.name}\n" + log.read_text(errors="replace")[-4000:])
        return "\n".join(out)


def start_cluster(
    etcd: EtcdServer,
    root: Path,
    agents: int = 3,
    heartbeat: str = "1s",
    labels: list[dict[str, str]] | None = None,
    runtime: str | None = None,
) -> Cluster:
    """A manager and `agents` ready agents (what make_cluster builds), for
    fixtures shared by a whole module. Stopped again if it fails to start."""
    cluster = Cluster(etcd, root, heartbeat=heartbeat)
    try:
        cluster.start_manager()
        for i in range(agents):
            cluster.start_agent(
                labels=(labels[i] if labels else None), **({"runtime": runtime} if runtime else {})
            )
        if agents:
            cluster.wait_nodes_ready(agents)
    except BaseException:
        print(cluster.dump_logs())
        cluster.close()
        raise
    return cluster


def _kill_agent_tasks(agent_dirs: list[Path]) -> None:
    """Every task process and container the agents of a test started."""
    from shoal.cli.runtimes import stop_agent_tasks

    stop_agent_tasks([d for d in agent_dirs if d.exists()])


def _node_ids(agent_dirs: list[Path]) -> list[str]:
    """The node IDs the agents got when they joined (from their state dirs)."""
    from shoal.agent.identity import JoinError, load_identity

    ids = []
    for d in agent_dirs:
        try:
            identity = load_identity(d) if d.exists() else None
        except JoinError:
            continue
        if identity is not None:
            ids.append(identity.node_id)
    return ids


def remove_containers_of(node_ids: list[str]) -> list[str]:
    """Force-remove every container labelled with one of these node IDs
    (shoal.node.id), through the Docker SDK rather than shoal's code; their
    IDs. Nothing to do when no engine answers (then there are none)."""
    if not node_ids:
        return []
    try:
        import docker
        import docker.errors

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception:
        return []
    removed = []
    try:
        for node_id in node_ids:
            for c in client.api.containers(all=True, filters={"label": f"shoal.node.id={node_id}"}):
                try:
                    client.api.remove_container(c["Id"], force=True, v=True)
                except docker.errors.NotFound:
                    continue
                removed.append(str(c["Id"]))
            # The node's own network (service discovery), once it is empty.
            for net in client.api.networks(names=[f"shoal-{node_id}"]):
                try:
                    client.api.remove_network(net["Id"])
                except docker.errors.APIError:
                    continue
    finally:
        client.close()
    return removed


def alive(pid: int) -> bool:
    """Whether pid is a live process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_pids(marker: str, count: int, timeout: float = 15.0) -> set[int]:
    """Wait until exactly count live processes carry marker; return their PIDs."""
    seen: list[set[int]] = [set()]

    def exactly() -> set[int] | None:
        seen[0] = pids_of(marker)
        return seen[0] if len(seen[0]) == count else None

    try:
        pids: set[int] = wait_for(exactly, timeout)
    except AssertionError:
        raise AssertionError(
            f"timed out after {timeout}s waiting for exactly {count} processes running {marker!r}; "
            f"last seen {len(seen[0])}: {sorted(seen[0])}"
        ) from None
    return pids


def pids_of(marker: str) -> set[int]:
    """PIDs of processes whose command line contains marker (like pgrep -f)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if marker in cmdline and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.add(int(entry.name))
    return found


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
