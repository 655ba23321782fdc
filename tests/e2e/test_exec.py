"""`shoal exec` and `shoal logs TASK` end to end, on both runtimes.

One cluster for the module (``support.taskio.mixed_cluster``): two process
nodes, a docker node (when an engine answers; under CI it must), and a
second manager that holds no session, so that a client of it has its execs
forwarded. ``pweb`` runs one task on each process node, ``dweb`` one on the
docker node; tests exec into them and leave them as they found them.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import pytest

from shoal import execflow, pki
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import dispatcher_pb2_grpc as dgrpc
from shoal.protos import taskio_pb2 as tpb
from tests.support import raw_session
from tests.support.cluster import Cluster, assert_refused, sleep_seconds, wait_for
from tests.support.etcd_server import EtcdServer
from tests.support.taskio import IMAGE, Mixed, argv_via, cli_via, mixed_cluster, running_commands, vm_hwm_kib
from tests.support.terminal import Terminal

# Each task prints three lines (the middle one on stderr), then waits to be
# stopped (a container's PID 1 must trap TERM itself). The process runtime
# orders its two log files by when each was last written: the pauses make
# that order the order of the lines.
LINES = 'echo "line 1 of $SHOAL_TASK_SLOT"; sleep 0.3; echo "line 2" >&2; sleep 0.3; echo "line 3"'
WAIT = "trap 'exit 0' TERM; sleep 3600 & wait"
TARGETS = {"process": "pweb", "docker": "dweb"}
RUNTIMES = ["process", pytest.param("docker", marks=pytest.mark.docker)]


@pytest.fixture(scope="module")
def mixed(etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mixed]:
    with mixed_cluster(etcd_server, tmp_path_factory.mktemp("exec")) as mixed:
        start_targets(mixed)
        yield mixed


def start_targets(mixed: Mixed) -> None:
    """pweb on both process nodes, dweb on the docker node; all running."""
    cluster = mixed.cluster
    script = f"{LINES}; {WAIT}"
    constraint = ("--constraint", "node.labels.rt==process", "--replicas-max-per-node", "1")
    cluster.create_service("pweb", 2, *constraint, IMAGE, "sh", "-c", script)
    if mixed.engine is not None:
        cluster.create_service("dweb", 1, "--constraint", "node.labels.rt==docker", IMAGE, "sh", "-c", script)
    wait_for(lambda: len(cluster.running("pweb")) == 2, what="pweb's two tasks")
    if mixed.engine is not None:
        wait_for(lambda: len(cluster.running("dweb")) == 1, what="dweb's task")


@pytest.fixture
def cluster(mixed: Mixed, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield mixed.cluster
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(mixed.cluster.dump_logs())


def shoal(cluster: Cluster, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    res = cluster.cli(*args, stdin=stdin)
    return res.code, res.out, res.err


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_prints_the_slot_keeps_stderr_apart_and_exits_with_the_commands_code(
    mixed: Mixed, cluster: Cluster, runtime: str
) -> None:
    mixed.need(runtime)
    service = TARGETS[runtime]
    tasks = cluster.running(service)
    assert len({t["node"] for t in tasks}) == len(tasks), "one task per node"
    for task in tasks:
        code, out, err = shoal(
            cluster,
            "exec",
            f"{service}.{task['slot']}",
            "sh",
            "-c",
            "echo $SHOAL_TASK_SLOT; echo err >&2; exit 7",
        )
        assert (code, out, err) == (7, f"{task['slot']}\n", "err\n"), f"on {task['node']}"
        agent_log = cluster.agents[int(task["node"].removeprefix("node-")) - 1].output()
        # Who, which task, the command and its exit code, on the agent and the manager.
        started = f"in task {task['id']} by admin-"
        assert started in agent_log and "sh -c 'echo $SHOAL_TASK_SLOT; echo err >&2; exit 7'" in agent_log
        assert re.search(rf"in task {task['id']} by admin-\S+ ended: exit code 7", agent_log), agent_log[
            -2000:
        ]
    manager_log = cluster.managers[0].output()
    assert re.search(
        rf"exec in task {service}\.1 \(\w+\) on node node-\d by admin-\S+ ended: exit code 7", manager_log
    )
    # By task ID, and by a unique prefix of it.
    code, out, _ = shoal(cluster, "exec", tasks[0]["id"][:10], "sh", "-c", "echo $SHOAL_TASK_ID")
    assert (code, out) == (0, tasks[0]["id"] + "\n")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_through_a_manager_that_does_not_hold_the_nodes_session(
    mixed: Mixed, cluster: Cluster, runtime: str
) -> None:
    mixed.need(runtime)
    service = TARGETS[runtime]
    res = cli_via(
        cluster, 1, "exec", f"{service}.1", "sh", "-c", "echo $SHOAL_TASK_SLOT; echo err >&2; exit 7"
    )
    assert (res.code, res.out, res.err) == (7, "1\n", "err\n")
    res = cli_via(cluster, 1, "exec", "-i", f"{service}.1", "cat", stdin="through two managers\n")
    assert (res.code, res.out) == (0, "through two managers\n")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_forwards_stdin_and_sets_env_and_workdir(mixed: Mixed, cluster: Cluster, runtime: str) -> None:
    mixed.need(runtime)
    task = f"{TARGETS[runtime]}.1"
    assert shoal(cluster, "exec", "-i", task, "cat", stdin="hello\n") == (0, "hello\n", "")
    code, out, _ = shoal(
        cluster, "exec", "-e", "GREETING=hi there", "-w", "/tmp", task, "sh", "-c", 'echo "$GREETING"; pwd'
    )
    assert (code, out) == (0, "hi there\n/tmp\n")
    # Without -i the command's stdin is empty, whatever the client has.
    assert shoal(cluster, "exec", task, "cat", stdin="not forwarded\n") == (0, "", "")
    # Many windows of arbitrary bytes, there and back, unchanged.
    data = os.urandom(5 * execflow.WINDOW + 1234)
    echoed = subprocess.run(
        cluster.cli_argv("exec", "-i", task, "cat"), input=data, capture_output=True, env=cluster.env
    )
    assert (echoed.returncode, len(echoed.stdout), echoed.stdout == data) == (0, len(data), True), (
        echoed.stderr
    )


def test_exec_refusals_say_what_is_wrong(mixed: Mixed, cluster: Cluster) -> None:
    assert_refused(cluster.cli("exec", "pweb.9", "true"), "no such task: pweb.9")
    assert_refused(cluster.cli("exec", "nosuchservice.1", "true"), "no such task")
    node_tls = cluster.root / "agent-1" / "node"
    assert_refused(cluster.cli_as(node_tls, "exec", "pweb.1", "true"), "role")
    assert_refused(cluster.cli("exec", "-w", "relative", "pweb.1", "true"), "absolute")
    code, _, err = shoal(cluster, "exec", "pweb.1", "no-such-command")
    assert code == 127 and "executable file not found" in err
    # A task that has ended: there is nothing to exec in.
    job = cluster.cli("run", "-d", "--constraint", "node.labels.rt==process", IMAGE, "true")
    assert job.code == 0, job.err
    task_id = job.out.strip()
    wait_for(
        lambda: any(t["id"] == task_id and t["current_state"] == "complete" for t in _all_tasks(cluster)),
        what="the job to complete",
    )
    assert_refused(cluster.cli("exec", task_id, "true"), "not running")


def _all_tasks(cluster: Cluster) -> list[dict[str, Any]]:
    return [t for s in cluster.services() for t in cluster.tasks(s["name"])]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("manager", [0, 1], ids=["session-here", "forwarded"])
def test_killing_the_client_hangs_the_command_up(
    mixed: Mixed, cluster: Cluster, runtime: str, manager: int
) -> None:
    mixed.need(runtime)
    service = TARGETS[runtime]
    marker = sleep_seconds(3601 + manager)
    client = subprocess.Popen(
        argv_via(cluster, manager, "exec", f"{service}.1", "sleep", marker), env=cluster.env
    )
    try:
        wait_for(
            lambda: running_commands(mixed, runtime, f"sleep {marker}", service), what="the exec'd sleep"
        )
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
    # SIGHUP ends sleep at once; SIGKILL follows after a grace otherwise.
    wait_for(
        lambda: not running_commands(mixed, runtime, f"sleep {marker}", service), 20, what="the sleep to end"
    )


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_command_that_ignores_the_hang_up_is_killed_after_the_grace(
    mixed: Mixed, cluster: Cluster, runtime: str
) -> None:
    mixed.need(runtime)
    service = TARGETS[runtime]
    marker = sleep_seconds(3604)
    client = cluster.popen_cli("exec", f"{service}.1", "sh", "-c", f"trap '' HUP; exec sleep {marker}")
    try:
        wait_for(
            lambda: running_commands(mixed, runtime, f"sleep {marker}", service), what="the exec'd sleep"
        )
    finally:
        client.send_signal(signal.SIGKILL)
        client.communicate()
    wait_for(lambda: not running_commands(mixed, runtime, f"sleep {marker}", service), 30, what="SIGKILL")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_hundreds_of_megabytes_of_output_keep_manager_and_agent_memory_bounded(
    mixed: Mixed, cluster: Cluster, runtime: str
) -> None:
    mixed.need(runtime)
    service = TARGETS[runtime]
    size = 300 * 1024 * 1024
    task = cluster.running(service)[0]
    agent = cluster.agents[int(task["node"].removeprefix("node-")) - 1]
    manager = cluster.managers[0]
    before = {"manager": vm_hwm_kib(manager.pid), "agent": vm_hwm_kib(agent.pid)}
    client = cluster.popen_cli("exec", f"{service}.{task['slot']}", "head", "-c", str(size), "/dev/zero")
    assert client.stdout is not None
    received = 0
    started = time.monotonic()
    while chunk := client.stdout.buffer.read(1 << 20):  # type: ignore[attr-defined]
        received += len(chunk)
    code = client.wait(60)
    seconds = time.monotonic() - started
    after = {"manager": vm_hwm_kib(manager.pid), "agent": vm_hwm_kib(agent.pid)}
    print(
        f"\n{runtime}: {received / 2**20:.0f} MiB in {seconds:.1f}s; peak RSS (VmHWM) "
        + ", ".join(f"{who} {before[who] / 1024:.0f} -> {after[who] / 1024:.0f} MiB" for who in before)
    )
    assert (code, received) == (0, size)
    for who in before:
        grown = (after[who] - before[who]) / 1024
        assert grown < 64, (
            f"the {who}'s peak memory grew by {grown:.0f} MiB while {size >> 20} MiB went through"
        )


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_with_a_terminal_is_a_real_terminal(mixed: Mixed, cluster: Cluster, runtime: str) -> None:
    mixed.need(runtime)
    service = TARGETS[runtime]
    argv = cluster.cli_argv("exec", "-it", f"{service}.1", "sh")
    term = Terminal(argv, cluster.env, rows=30, cols=100)
    try:
        term.type("PS1='pro''mpt> '\r")  # the echo of this line is no prompt
        term.expect("prompt> ")
        term.type("stty size\r")
        term.expect("30 100")
        term.resize(40, 120)  # the client gets SIGWINCH and passes the size on
        wait_for(lambda: _size_is(term, "40 120"), 15, interval=0.5, what="the new window size")
        marker = sleep_seconds(100)
        term.type(f"sleep {marker}\r")
        wait_for(lambda: running_commands(mixed, runtime, f"sleep {marker}", service), what="sleep to run")
        term.type("\x03")  # Ctrl-C reaches the remote terminal: it stops sleep, not the shell
        wait_for(
            lambda: not running_commands(mixed, runtime, f"sleep {marker}", service), 15, what="sleep to stop"
        )
        term.type("echo alive-$((6*7))\r")
        term.expect("alive-42")
        term.type("exit 5\r")
        assert term.wait() == 5
        assert term.attributes_restored(), "the terminal was left in raw mode"
    finally:
        term.close()


def _size_is(term: Terminal, size: str) -> bool:
    term.type("stty size\r")
    time.sleep(0.3)
    return re.search(rf"^{size}\r?$", term.output, re.M) is not None


def test_many_execs_at_once_leave_heartbeats_and_statuses_alone(mixed: Mixed, cluster: Cluster) -> None:
    """Eight streams of output through one node's session while a service
    is created there: the node stays ready and the service converges."""
    node = cluster.running("pweb")[0]["node"]
    downs: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            downs.extend(n["hostname"] for n in cluster.nodes() if n["status"] != "ready")
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    clients = [
        subprocess.Popen(
            cluster.cli_argv("exec", "pweb.1", "head", "-c", str(40 << 20), "/dev/zero"),
            stdout=subprocess.DEVNULL,
            env=cluster.env,
        )
        for _ in range(8)
    ]
    try:
        created = cluster.cli(
            "service",
            "create",
            "--name",
            "busy",
            "--constraint",
            f"node.hostname=={node}",
            IMAGE,
            "sh",
            "-c",
            WAIT,
        )
        assert created.code == 0, created.err
        assert [c.wait(300) for c in clients] == [0] * 8
    finally:
        stop.set()
        watcher.join()
        for c in clients:
            if c.poll() is None:
                c.kill()
        cluster.cli("service", "rm", "busy")
    assert downs == [], f"nodes not ready while the execs ran: {sorted(set(downs))}"


# ---------------------------------------------------------------- shoal logs TASK


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_logs_of_one_task_with_tail_and_timestamps(mixed: Mixed, cluster: Cluster, runtime: str) -> None:
    mixed.need(runtime)
    task = f"{TARGETS[runtime]}.1"
    code, out, err = shoal(cluster, "logs", task)
    assert (code, out, err) == (0, "line 1 of 1\nline 3\n", "line 2\n")
    code, out, _ = shoal(cluster, "logs", "--tail", "1", task)
    assert (code, out) == (0, "line 3\n")
    code, out, _ = shoal(cluster, "logs", "--timestamps", "--tail", "1", task)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z line 3\n", out), out
    assert_refused(cluster.cli("logs", f"{TARGETS[runtime]}.7"), "no such task")


def test_logs_follow_waits_for_a_task_to_start_and_ends_after_it(mixed: Mixed, cluster: Cluster) -> None:
    node = cluster.running("pweb")[0]["node"]
    created = cluster.cli(
        "service",
        "create",
        "-d",
        "--name",
        "later",
        "--mode",
        "replicated-job",
        "--constraint",
        "node.labels.later==yes",
        IMAGE,
        "sh",
        "-c",
        "sleep 1; echo first; sleep 1; echo second",
    )
    assert created.code == 0, created.err
    try:
        follower = cluster.popen_cli("logs", "-f", "later.1")
        time.sleep(1)
        assert follower.poll() is None, "logs -f of a task that has not started waits for it"
        assert cluster.cli("node", "update", "--label-add", "later=yes", node).code == 0
        out, err = follower.communicate(timeout=60)
        assert (follower.returncode, out) == (0, "first\nsecond\n"), err
    finally:
        cluster.cli("node", "update", "--label-rm", "later", node)
        cluster.cli("service", "rm", "later")


# ---------------------------------------------------------------- a node that breaks the rules


def test_a_node_that_sends_beyond_its_credit_has_the_exec_cut_off(make_cluster: Any) -> None:
    """The manager holds at most a window of an exec's output: a node that
    sends more without acknowledgement loses the exec (and the client is
    told), instead of the manager buffering it."""
    cluster = make_cluster(agents=1)
    cluster.create_service("victim", 1, IMAGE, "sh", "-c", WAIT)
    wait_for(lambda: cluster.running("victim"), what="the task to run")
    agent = cluster.agents[0]
    agent.kill9()  # its task runs on; a node of ours takes its place
    files = pki.read_tls_dir(cluster.root / "agent-1" / "node")
    assert files is not None
    clients: list[subprocess.Popen[str]] = []
    hung_up = asyncio.run(
        _flood_the_exec(
            cluster.manager_addrs[0],
            files,
            lambda: clients.append(cluster.popen_cli("exec", "victim.1", "true")),
        )
    )
    out, err = clients[0].communicate(timeout=60)
    assert clients[0].returncode == 255, (out, err)
    assert "flow control" in err, err
    assert hung_up, "the manager tells the node that the exec is over"


async def _flood_the_exec(addr: str, files: pki.TLSFiles, start_client: Callable[[], None]) -> bool:
    """Be node-1: once the session is up, start the client, answer its exec
    with more output than the window, all at once; whether the manager then
    hung the exec up."""
    outgoing: asyncio.Queue[dpb.AgentMessage] = asyncio.Queue()
    await outgoing.put(raw_session.register("node-1"))

    async def messages() -> AsyncIterator[dpb.AgentMessage]:
        while True:
            yield await outgoing.get()

    creds = pki.channel_credentials(files.ca_pem, files.cert_pem, files.key_pem)
    async with grpc.aio.secure_channel(addr, creds, options=pki.CHANNEL_OPTIONS) as channel:
        call = dgrpc.DispatcherStub(channel).Session(messages())
        exec_id = ""
        async for msg in call:
            if msg.WhichOneof("msg") == "started":
                start_client()
            if msg.WhichOneof("msg") != "exec":
                continue
            if msg.exec.WhichOneof("msg") == "open":
                exec_id = msg.exec.exec_id
                chunk = tpb.ExecChunk(data=b"x" * execflow.CHUNK)
                # The client does not read its stdout: once its pipe is
                # full (64 KiB) it acknowledges nothing more.
                for _ in range(execflow.WINDOW // execflow.CHUNK + 6):
                    await outgoing.put(dpb.AgentMessage(exec=tpb.ExecOutput(exec_id=exec_id, output=chunk)))
            elif msg.exec.exec_id == exec_id and msg.exec.WhichOneof("msg") == "hangup":
                call.cancel()
                return True
    return False


def test_a_client_that_sends_stdin_beyond_its_credit_has_the_exec_cut_off(
    mixed: Mixed, cluster: Cluster
) -> None:
    """A client is held to the stdin window as a node is to the output's:
    stdin the command does not read is not buffered without bound."""
    marker = sleep_seconds(3605)
    channel, stub = cluster.control(cluster.managers[0])
    chunk = b"x" * execflow.CHUNK
    opened = tpb.ExecOpen(task="pweb.1", command=["sleep", marker], stdin=True)
    requests = [tpb.ExecInput(open=opened)] + [tpb.ExecInput(stdin=chunk)] * (
        execflow.WINDOW // execflow.CHUNK + 6
    )

    def slowly() -> Iterator[tpb.ExecInput]:
        yield requests[0]
        wait_for(lambda: running_commands(mixed, "process", f"sleep {marker}", "pweb"), what="the command")
        yield from requests[1:]
        time.sleep(30)  # keep the stream open: the end of input is not the point

    try:
        exits = [out.exit for out in stub.Exec(slowly(), timeout=60) if out.WhichOneof("msg") == "exit"]
    finally:
        channel.close()
    assert [(e.exit_code, "flow control" in e.error) for e in exits] == [(255, True)], exits
    wait_for(
        lambda: not running_commands(mixed, "process", f"sleep {marker}", "pweb"), 20, what="the hang-up"
    )
