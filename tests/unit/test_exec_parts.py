"""The parts of exec, run and commit that need no cluster: flow control, the
session outbox's two classes, image references, which task a reference
names, when a `run --rm` job is finished, the engine's exec frames, and the
process runtime's exec (real processes: pipes, a pty, hang-up)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shoal import execflow, imagerefs, specs
from shoal.agent.runtime.base import STDERR, STDOUT, ExecFailed, ExecSpec, TaskContext
from shoal.agent.runtime.docker.execs import DockerExec
from shoal.agent.runtime.process.execs import session_members, start_exec
from shoal.manager.autoremove import job_finished, removal_delay
from shoal.manager.controlapi.taskrefs import resolve_task
from shoal.manager.dispatcher.execrelay import ExecRelay
from shoal.manager.dispatcher.session import NodeSession
from shoal.manager.store import NotFound
from shoal.outbox import Outbox
from shoal.protos import objects_pb2 as pb
from shoal.protos import taskio_pb2 as tpb
from shoal.rules.errors import InvalidRequest

# ---------------------------------------------------------------- flow control


def test_a_sender_waits_for_credit_and_a_relay_refuses_a_sender_beyond_it() -> None:
    async def scenario() -> None:
        credit = execflow.Credit(window=100)
        await credit.take(60)
        waiting = asyncio.ensure_future(credit.take(60))
        await asyncio.sleep(0.01)
        assert not waiting.done(), "a take beyond the window must wait"
        credit.release(60)
        await asyncio.wait_for(waiting, 1)
        assert credit.outstanding == 60

    asyncio.run(scenario())
    relay = execflow.Credit(window=100)
    relay.charge(90)
    with pytest.raises(execflow.CreditExceeded, match="window"):
        relay.charge(20)
    with pytest.raises(execflow.CreditExceeded, match="acknowledgement"):
        relay.release(91)
    with pytest.raises(execflow.CreditExceeded, match="chunk"):
        execflow.Credit().charge(execflow.CHUNK + 1)


def test_an_open_wide_credit_no_longer_holds_a_sender_back() -> None:
    async def scenario() -> None:
        credit = execflow.Credit(window=10)
        await credit.take(10)
        waiting = asyncio.ensure_future(credit.take(10))
        await asyncio.sleep(0.01)
        credit.open_wide()
        await asyncio.wait_for(waiting, 1)

    asyncio.run(scenario())


def test_control_messages_overtake_bulk_and_the_end_stops_the_reader() -> None:
    async def scenario() -> list[str | None]:
        box: Outbox[str] = Outbox()
        for i in range(3):
            box.put_bulk(f"output {i}")
        box.put_nowait("heartbeat")
        first = [await box.get(), await box.get()]
        box.put_nowait("status")
        rest = [await box.get(), await box.get()]
        box.end()
        return [*first, *rest, await box.get()]

    assert asyncio.run(scenario()) == ["heartbeat", "output 0", "status", "output 1", None]


# ---------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("text", "repository", "tag"),
    [
        ("app", "app", "latest"),
        ("team/app:v1.2", "team/app", "v1.2"),
        ("registry.example.com:5000/team/app", "registry.example.com:5000/team/app", "latest"),
        ("localhost:5000/a_b__c-d:x", "localhost:5000/a_b__c-d", "x"),
    ],
)
def test_commit_references_are_read_as_docker_reads_them(text: str, repository: str, tag: str) -> None:
    assert imagerefs.parse_commit_ref(text) == imagerefs.CommitRef(repository, tag)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("App", "invalid reference format"),
        ("app:", "tag"),
        ("app:.x", "tag"),
        ("a//b", "invalid reference format"),
        ("app@sha256:" + "0" * 64, "digest"),
        ("", "must not be empty"),
        ("a" * 256, "at most 255"),
    ],
)
def test_bad_commit_references_are_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        imagerefs.parse_commit_ref(text)


def test_only_the_instructions_docker_commit_applies_are_accepted() -> None:
    imagerefs.check_change("ENV A=1")
    imagerefs.check_change('cmd ["sh"]')
    with pytest.raises(ValueError, match="must be one instruction of CMD"):
        imagerefs.check_change("RUN rm -rf /")


# ---------------------------------------------------------------- task references


def _task(task_id: str, service: pb.Service, slot: int = 0, node: str = "", **status: Any) -> pb.Task:
    task = pb.Task(service_id=service.meta.id, service_name=service.spec.name, slot=slot, node_id=node)
    task.meta.id = task_id
    task.meta.created_at = int(status.pop("created", 1))
    task.desired_state = status.pop("desired", pb.TASK_STATE_RUNNING)
    task.status.state = status.pop("state", pb.TASK_STATE_RUNNING)
    return task


def _view(services: list[pb.Service], tasks: list[pb.Task], nodes: list[pb.Node]) -> Any:
    """What resolve_task reads of the manager's view (a fake with its shape)."""
    by_service: dict[str, dict[str, pb.Task]] = {}
    for t in tasks:
        by_service.setdefault(t.service_id, {})[t.meta.id] = t
    return SimpleNamespace(
        tasks={t.meta.id: t for t in tasks},
        services={s.meta.id: s for s in services},
        nodes={n.meta.id: n for n in nodes},
        tasks_by_service=by_service,
    )


def test_a_task_reference_names_one_task_by_id_prefix_slot_node_or_logs_prefix() -> None:
    web = pb.Service(spec=pb.ServiceSpec(name="api.v2"))
    web.meta.id = "svcweb"
    agent = pb.Service(spec=pb.ServiceSpec(name="agent", mode=pb.SERVICE_MODE_GLOBAL))
    agent.meta.id = "svcagent"
    node = pb.Node(description=pb.NodeDescription(hostname="node-2"))
    node.meta.id = "nodeid2"
    old = _task("aaa111", web, slot=1, created=1, desired=pb.TASK_STATE_SHUTDOWN, state=pb.TASK_STATE_FAILED)
    current = _task("aaa222", web, slot=1, created=2)
    other = _task("bbb333", web, slot=2, created=3)
    global_task = _task("ccc444", agent, node="nodeid2")
    view = _view([web, agent], [old, current, other, global_task], [node])
    assert resolve_task(view, "aaa222") is current
    assert resolve_task(view, "bbb") is other
    assert resolve_task(view, "api.v2.1") is current  # the slot's current task
    assert resolve_task(view, "api.v2.2") is other
    assert resolve_task(view, "agent.node-2") is global_task
    assert resolve_task(view, "agent.nodeid2") is global_task
    assert resolve_task(view, "api.v2.1.aaa111") is old  # the prefix `service logs` prints
    with pytest.raises(InvalidRequest, match="ambiguous"):
        resolve_task(view, "aaa")
    for unknown in ("api.v2.9", "web.1", "agent.node-9", "api.v2.2.aaa222", "zzz"):
        with pytest.raises(NotFound, match=f"no such task: {unknown}"):
            resolve_task(view, unknown)


# ---------------------------------------------------------------- run --rm


def test_a_run_job_is_finished_once_its_task_ended_and_will_not_be_restarted() -> None:
    service = pb.Service(spec=pb.ServiceSpec(mode=pb.SERVICE_MODE_REPLICATED_JOB, replicas=1))
    service.meta.id = "svc"
    service.spec.task.restart.condition = pb.RESTART_CONDITION_NONE
    now = time.time_ns()
    assert not job_finished(service, [], now), "no task made yet"
    running = _task("t1", service, slot=1)
    assert not job_finished(service, [running], now)
    failed = _task("t1", service, slot=1, state=pb.TASK_STATE_FAILED)
    assert job_finished(service, [failed], now)
    service.spec.task.restart.condition = pb.RESTART_CONDITION_ON_FAILURE
    assert not job_finished(service, [failed], now), "the policy replaces it"
    assert job_finished(service, [_task("t2", service, slot=1, state=pb.TASK_STATE_COMPLETE)], now)


def test_the_autoremove_label_says_when() -> None:
    service = pb.Service(spec=pb.ServiceSpec(mode=pb.SERVICE_MODE_REPLICATED_JOB))
    assert removal_delay(service) is None
    service.spec.labels[specs.AUTOREMOVE_LABEL] = "true"
    assert removal_delay(service) == 0
    service.spec.labels[specs.AUTOREMOVE_LABEL] = "1m"
    assert removal_delay(service) == 60 * 10**9
    service.spec.labels[specs.AUTOREMOVE_LABEL] = "soon"
    assert removal_delay(service) is None
    service.spec.mode = pb.SERVICE_MODE_REPLICATED
    service.spec.labels[specs.AUTOREMOVE_LABEL] = "true"
    assert removal_delay(service) is None, "only jobs end"


# ---------------------------------------------------------------- docker exec frames


def test_the_engines_frames_become_stdout_and_stderr_in_bounded_pieces() -> None:
    async def scenario() -> list[tuple[int, bytes]]:
        ours, engine_end = socket.socketpair()
        big = b"x" * (execflow.CHUNK + 10)
        frames = b"".join(
            bytes([kind, 0, 0, 0]) + len(data).to_bytes(4, "big") + data
            for kind, data in [(1, b"out\n"), (2, b"err\n"), (1, big)]
        )
        engine_end.sendall(frames)
        engine_end.close()
        ex = DockerExec(SimpleNamespace(), "c", "e", ours, ExecSpec(("true",)))  # type: ignore[arg-type]
        pieces = []
        while (piece := await ex.read()) is not None:
            pieces.append(piece)
        await ex.close()
        return pieces

    pieces = asyncio.run(scenario())
    assert pieces[:2] == [(STDOUT, b"out\n"), (STDERR, b"err\n")]
    assert all(len(data) <= execflow.CHUNK for _, data in pieces)
    assert b"".join(data for stream, data in pieces[2:] if stream == STDOUT) == b"x" * (execflow.CHUNK + 10)


# ---------------------------------------------------------------- process exec


def _ctx(tmp_path: Path, **env: str) -> TaskContext:
    (tmp_path / "work").mkdir(exist_ok=True)
    task = pb.Task()
    task.meta.id = "t1"
    return TaskContext(task=task, node_id="n1", env={"SHOAL_TASK_SLOT": "3", **env})


async def _run(tmp_path: Path, spec: ExecSpec, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    proc = await start_exec(_ctx(tmp_path, GREETING="hi"), tmp_path, spec)
    if stdin:
        await proc.write(stdin)
    if spec.stdin:
        await proc.close_stdin()
    out, err = b"", b""
    while (piece := await proc.read()) is not None:
        if piece[0] == STDOUT:
            out += piece[1]
        else:
            err += piece[1]
    code = await proc.wait()
    await proc.close()
    return code, out, err


def test_a_process_exec_has_the_tasks_env_and_workdir_and_keeps_stderr_apart(tmp_path: Path) -> None:
    script = 'echo "$SHOAL_TASK_SLOT $GREETING $EXTRA"; pwd; echo oops >&2; exit 7'
    code, out, err = asyncio.run(_run(tmp_path, ExecSpec(("sh", "-c", script), env={"EXTRA": "x"})))
    assert (code, out, err) == (7, f"3 hi x\n{tmp_path / 'work'}\n".encode(), b"oops\n")
    code, out, _ = asyncio.run(_run(tmp_path, ExecSpec(("pwd",), workdir="/")))
    assert out == b"/\n"


def test_a_process_exec_reads_stdin_until_its_end(tmp_path: Path) -> None:
    code, out, _ = asyncio.run(_run(tmp_path, ExecSpec(("cat",), stdin=True), b"hello\n"))
    assert (code, out) == (0, b"hello\n")
    code, out, _ = asyncio.run(_run(tmp_path, ExecSpec(("cat",))))
    assert (code, out) == (0, b""), "without -i stdin is empty"


def test_a_process_exec_with_a_tty_gets_the_window_size_and_a_controlling_terminal(tmp_path: Path) -> None:
    spec = ExecSpec(("sh", "-c", "stty size; test -t 0 && echo tty"), tty=True, rows=30, cols=100)
    code, out, err = asyncio.run(_run(tmp_path, spec))
    assert code == 0 and err == b""
    assert out.replace(b"\r\n", b"\n") == b"30 100\ntty\n"


def test_a_process_exec_that_cannot_start_says_why_with_dockers_codes(tmp_path: Path) -> None:
    with pytest.raises(ExecFailed, match="executable file not found") as missing:
        asyncio.run(_run(tmp_path, ExecSpec(("no-such-command",))))
    assert missing.value.exit_code == 127
    with pytest.raises(ExecFailed, match="no such directory") as nowhere:
        asyncio.run(_run(tmp_path, ExecSpec(("true",), workdir="/no/such/dir")))
    assert nowhere.value.exit_code == 126


def test_a_hang_up_reaches_the_command_and_what_it_started(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, list[int]]:
        spec = ExecSpec(("sh", "-c", "sleep 300 & sleep 301; wait"))
        proc = await start_exec(_ctx(tmp_path), tmp_path, spec)
        pid = proc.pid
        for _ in range(100):
            if len(session_members(pid)) >= 3:
                break
            await asyncio.sleep(0.05)
        members = session_members(pid)
        await proc.signal(signal.SIGHUP)
        code = await asyncio.wait_for(proc.wait(), 10)
        await proc.close()
        for _ in range(100):
            if not session_members(pid):
                break
            await asyncio.sleep(0.05)
        return code, members

    code, members = asyncio.run(scenario())
    assert len(members) >= 3, "sh and both sleeps run in the exec's own session"
    assert code == 128 + signal.SIGHUP
    alive = [m for m in members if _alive(m)]
    assert alive == [], f"still running after the hang-up: {alive}"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_the_exec_helper_leaks_no_descriptor_of_the_agent(tmp_path: Path) -> None:
    leaked_r, leaked_w = os.pipe()
    os.set_inheritable(leaked_w, True)
    try:
        code, out, _ = asyncio.run(_run(tmp_path, ExecSpec(("sh", "-c", "ls /proc/self/fd"))))
    finally:
        os.close(leaked_r)
        os.close(leaked_w)
    fds = {int(x) for x in out.split()}
    assert code == 0 and fds <= {0, 1, 2, 3}, f"the command holds descriptors {sorted(fds)}"


def test_the_end_of_input_never_overtakes_the_input_on_the_way_to_the_node() -> None:
    async def scenario() -> list[str]:
        session = NodeSession("n1", b"")
        relay = ExecRelay()
        ex = relay.open(session, tpb.ExecOpen(task_id="t1", command=["cat"], stdin=True))
        for data in (b"a", b"b"):
            ex.send(tpb.ExecInput(stdin=data))
        ex.send(tpb.ExecInput(stdin_eof=True))
        ex.send(tpb.ExecInput(resize=tpb.WindowSize(rows=1, cols=1)))
        kinds = []
        while session.queue.qsize():
            msg = await session.queue.get()
            assert msg is not None
            kinds.append(msg.exec.WhichOneof("msg"))
        return kinds

    assert asyncio.run(scenario()) == ["open", "resize", "stdin", "stdin", "stdin_eof"]
