"""Nothing a caller sends can stall or crash a manager: bounds on every field,
generated specs and malformed agent messages, floods of idle connections."""

from __future__ import annotations

import contextlib
import math
import resource
import select
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal import pki
from shoal.protos import control_pb2 as cpb
from shoal.protos import control_pb2_grpc as cgrpc
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import objects_pb2 as pb
from tests.support import raw_session
from tests.support.cluster import Cluster, start_cluster, wait_for
from tests.support.etcd_server import EtcdServer

# Every generated service carries this constraint, so whatever is accepted
# is never placed on a node (and never runs a generated command).
NOWHERE = "node.labels.fuzz==never"
REFUSALS = {"INVALID_ARGUMENT", "ALREADY_EXISTS", "NOT_FOUND", "FAILED_PRECONDITION", "ABORTED"}


@contextlib.contextmanager
def control(cluster: Cluster) -> Iterator[Any]:
    files = pki.read_tls_dir(cluster.tls_dir)
    assert files is not None
    creds = pki.channel_credentials(files.ca_pem, files.cert_pem, files.key_pem)
    with grpc.secure_channel(cluster.manager_addrs[0], creds, options=pki.CHANNEL_OPTIONS) as channel:
        yield cgrpc.ControlStub(channel)


def test_huge_replica_counts_are_refused_naming_the_limit(make_cluster: Any) -> None:
    c: Cluster = make_cluster(agents=0)
    assert (
        c.cli(
            "service", "create", "--name", "many", "-d", "--constraint", NOWHERE, "app:1", "sleep", "9"
        ).code
        == 0
    )
    scale = c.cli("service", "scale", "many=1000000000")
    assert scale.code == 1
    assert scale.err.startswith("Error: replicas: at most 100000 per service (the cluster's max-replicas")
    create = c.cli(
        "service", "create", "--name", "more", "-d", "--replicas", "1000000000000", "app:1", "true"
    )
    assert create.code == 1
    assert "replicas: at most 100000 per service" in create.err
    assert [s["name"] for s in c.services()] == ["many"]
    raised = c.cli("cluster", "update", "--max-replicas", "20000000")
    assert raised.code == 1
    assert "max_replicas: must be between 1 and 1e+07" in raised.err


def test_a_large_accepted_scale_never_stalls_the_control_plane(make_cluster: Any) -> None:
    c: Cluster = make_cluster(agents=0)
    assert (
        c.cli("service", "create", "--name", "wide", "-d", "--constraint", NOWHERE, "app:1", "true").code == 0
    )
    assert c.cli("service", "scale", "wide=20000", "-d").code == 0
    slowest = 0.0
    with control(c) as stub:

        def count() -> int:
            nonlocal slowest
            started = time.monotonic()
            resp = stub.ListServices(cpb.ListServicesRequest(), timeout=10)
            slowest = max(slowest, time.monotonic() - started)
            return len(stub.ListTasks(cpb.ListTasksRequest(service="wide"), timeout=10).tasks) if resp else 0

        wait_for(lambda: count() >= 20000, timeout=180, interval=0.5, what="20,000 tasks made")
        assert c.cli("service", "scale", "wide=1", "-d").code == 0
        wait_for(lambda: count() <= 6, timeout=180, interval=0.5, what="back to one task (and history)")
    assert c.managers[0].running_or_fail()
    print(f"slowest ListServices during the scale: {slowest:.2f}s")


# ---------------------------------------------------------------- generated specs

texts = st.text(max_size=80) | st.sampled_from(["", "\0", "a\0b", "x" * 70_000, "web", "App:1", "app:1"])
durations = st.sampled_from([0, 1, 999_999, 10**9, -1, 2**62, 400 * 86_400 * 10**9]) | st.integers(
    -(2**63), 2**63 - 1
)
counts = st.sampled_from([0, 1, 3, -1, 10**6, 2**40]) | st.integers(-(2**63), 2**63 - 1)


FIELDS = 40  # at least the number of v(...) draws below


@st.composite
def service_specs(draw: st.DrawFn) -> pb.ServiceSpec:
    """Half the specs are wild in every field; the other half are sound but
    for at most one field, so that the checks of each field are reached and
    accepted specs are stored too."""
    wild = draw(st.booleans())
    odd_one = draw(st.integers(0, FIELDS))  # beyond the last field: none is odd
    index = iter(range(10**6))

    def v(sound: st.SearchStrategy[Any], weird: st.SearchStrategy[Any]) -> Any:
        return draw(weird if wild or next(index) == odd_one else sound)

    spec = pb.ServiceSpec()
    spec.name = v(
        st.sampled_from(["fuzz", "f-1", "a.b_c"]), st.sampled_from(["x" * 64, "bad name", "a\0", ""]) | texts
    )
    spec.mode = v(st.sampled_from([0, 2]), st.integers(-3, 8))
    if spec.mode in (0, 2) and draw(st.booleans()):
        spec.replicas = v(st.integers(0, 3), counts)
    spec.max_concurrent = v(st.integers(0, 3), counts)
    c = spec.task.container
    c.image = v(st.sampled_from(["busybox:1", "reg.example:5000/a/b:t", "a@sha256:" + "0" * 64]), texts)
    c.command.extend(v(st.lists(st.text("abc -", max_size=8), max_size=3), st.lists(texts, max_size=3)))
    c.args.extend(v(st.lists(st.text("xyz", max_size=8), max_size=3), st.lists(texts, max_size=3)))
    c.env.extend(
        v(
            st.lists(st.sampled_from(["A=1", "B=", "C=x=y"]), max_size=3),
            st.lists(texts | st.sampled_from(["=x", "K\0=v", "K=v\0"]), max_size=4),
        )
    )
    c.workdir = v(st.sampled_from(["", "/srv", "data"]), texts)
    c.stop_signal = v(
        st.sampled_from(["", "SIGTERM", "KILL", "15", "RTMIN+3"]), st.sampled_from(["99", "SIGFOO"]) | texts
    )
    if draw(st.booleans()):
        c.stop_grace_period = v(st.integers(0, 60 * 10**9), durations)
    for key, value in v(
        st.dictionaries(st.text("kl", min_size=1, max_size=5), st.text(max_size=5), max_size=3),
        st.dictionaries(texts, texts, max_size=3),
    ).items():
        spec.labels[key] = value
    hc = c.healthcheck
    hc.test.extend(
        v(
            st.sampled_from([[], ["NONE"], ["CMD", "true"], ["CMD-SHELL", "exit 0"]]),
            st.lists(st.sampled_from(["CMD", "CMD-SHELL", "NONE", "true", "x"]) | texts, max_size=3),
        )
    )
    sound_period = st.sampled_from([0, 10**6, 10**9, 30 * 10**9])
    hc.interval, hc.timeout = v(sound_period, durations), v(sound_period, durations)
    hc.start_period = v(sound_period, durations)
    hc.retries = v(st.integers(0, 10), st.integers(0, 2**32 - 1))
    res = spec.task.resources
    res.limits.memory_bytes = v(st.sampled_from([0, 4 << 20, 1 << 30]), counts)
    res.limits.nano_cpus = v(st.sampled_from([0, 5 * 10**8]), counts)
    res.reservations.memory_bytes = v(st.sampled_from([0, 1 << 20]), counts)
    restart = spec.task.restart
    restart.condition = v(st.integers(0, 2), st.integers(-2, 6))
    restart.delay, restart.window = v(sound_period, durations), v(sound_period, durations)
    restart.max_attempts = v(st.integers(0, 5), counts)
    for cfg in (spec.update, spec.rollback):
        cfg.parallelism = draw(st.integers(0, 3)) if not wild else draw(counts)
        cfg.delay, cfg.monitor = draw(sound_period), draw(sound_period)
        cfg.failure_action = draw(st.integers(0, 1)) if not wild else draw(st.integers(-2, 6))  # type: ignore[assignment]
        cfg.order = draw(st.integers(0, 1)) if not wild else draw(st.integers(-2, 4))  # type: ignore[assignment]
        cfg.max_failure_ratio = v(
            st.sampled_from([0.0, 0.5, 1.0]), st.floats(allow_nan=True, allow_infinity=True, width=32)
        )
    for _ in range(draw(st.integers(0, 2))):
        port = spec.ports.add()
        port.target_port = v(st.integers(1, 65535), st.integers(0, 2**32 - 1))
        port.published_port = v(st.integers(0, 65535), st.integers(0, 2**32 - 1))
        port.protocol = (
            draw(st.sampled_from(["tcp", "udp"])) if not wild else draw(st.sampled_from(["", "icmp"]) | texts)
        )
        port.publish_mode = (
            draw(st.sampled_from(["host", "ingress"]))
            if not wild
            else draw(st.sampled_from(["", "host"]) | texts)
        )
    spec.task.placement.constraints.extend(
        v(
            st.sampled_from([[], ["node.role==worker"]]),
            st.lists(texts | st.just("node.role==manager"), max_size=2),
        )
    )
    spec.task.placement.constraints.append(NOWHERE)
    return spec


@pytest.fixture(scope="module")
def fuzz_cluster(etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A manager and one agent, stopped at once: its node bundle is a real
    worker identity for the malformed sessions, and nothing generated runs."""
    c = start_cluster(etcd_server, tmp_path_factory.mktemp("fuzz"), agents=1)
    c.agents[0].stop()
    yield c
    c.close()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(spec=service_specs())
def test_generated_specs_are_stored_whole_or_refused_cleanly(
    fuzz_cluster: Cluster, spec: pb.ServiceSpec
) -> None:
    c = fuzz_cluster
    with control(c) as stub:
        before = len(stub.ListServices(cpb.ListServicesRequest(), timeout=10).services)
        if before:  # an accepted spec of an earlier example whose ports clash with this one
            for summary in stub.ListServices(cpb.ListServicesRequest(), timeout=10).services:
                stub.RemoveService(cpb.ObjectRef(ref=summary.service.meta.id), timeout=10)
            before = 0
        try:
            created = stub.CreateService(cpb.CreateServiceRequest(spec=spec), timeout=10)
        except grpc.RpcError as err:
            assert err.code().name in REFUSALS, f"{err.code().name}: {err.details()}"
            assert "\n" not in (err.details() or ""), "one line"
            assert len(stub.ListServices(cpb.ListServicesRequest(), timeout=10).services) == before
        else:
            stored = stub.GetService(cpb.ObjectRef(ref=created.meta.id), timeout=10)
            assert stored.spec.task.placement.constraints[-1] == NOWHERE
            assert stored.spec.replicas <= 100_000
            assert not math.isnan(stored.spec.update.max_failure_ratio)
            stub.RemoveService(cpb.ObjectRef(ref=created.meta.id), timeout=10)
        assert stub.GetClusterInfo(cpb.GetClusterInfoRequest(), timeout=10).cluster_id
    assert c.managers[0].running_or_fail()


def all_tasks(cluster: Cluster) -> int:
    with control(cluster) as stub:
        return len(stub.ListTasks(cpb.ListTasksRequest(), timeout=10).tasks)


agent_messages = st.one_of(
    st.builds(
        lambda host, runtime, addr: raw_session.register(host, addr=addr),
        texts,
        texts,
        st.sampled_from(["", "127.0.0.9", "::1", "not-an-ip", "1.2.3.4.5"]) | texts,
    ),
    st.builds(
        lambda task, state, msg: raw_session.status(task, state, msg),
        texts | st.sampled_from(["", "t" * 25]),
        st.integers(-5, 2000),
        texts,
    ),
    st.builds(
        lambda csr: dpb.AgentMessage(cert_request=dpb.CertificateRequest(csr_pem=csr)),
        st.binary(max_size=9000),
    ),
    st.builds(
        lambda rid, n: dpb.AgentMessage(
            log_chunk=dpb.LogChunk(request_id=rid, lines=[dpb.LogLine(data=b"x" * 100)] * n)
        ),
        texts,
        st.integers(0, 20),
    ),
    st.just(dpb.AgentMessage(heartbeat=dpb.Heartbeat())),
    st.just(dpb.AgentMessage()),
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(messages=st.lists(agent_messages, min_size=1, max_size=3))
def test_malformed_agent_messages_end_the_session_cleanly(
    fuzz_cluster: Cluster, messages: list[dpb.AgentMessage]
) -> None:
    c = fuzz_cluster
    files = pki.read_tls_dir(c.root / "agent-1" / "node")
    assert files is not None
    # The tasks of the services the spec test removed are reaped in the
    # background; none may appear or vanish because of these messages.
    wait_for(lambda: all_tasks(c) == 0, what="the removed services' tasks reaped")
    outcome = raw_session.session(c.manager_addrs[0], files, messages, linger=0.5)
    allowed = {"INVALID_ARGUMENT", "PERMISSION_DENIED", "CANCELLED", "RESOURCE_EXHAUSTED"}
    assert outcome.code is None or outcome.code.name in allowed, f"{outcome.code}: {outcome.details}"
    assert c.managers[0].running_or_fail()
    assert c.cli("info").code == 0
    assert all_tasks(c) == 0
    labels = c.cli("node", "inspect", c.nodes()[0]["id"]).json()[0]["labels"]
    assert labels == {}


# ---------------------------------------------------------------- floods


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def _closed(sock: socket.socket | ssl.SSLSocket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(65536) == b"" or False
    except (OSError, ssl.SSLError):
        return True


def _tls_joiner(port: int, ca_pem: bytes, token: str, directory: Path) -> ssl.SSLSocket:
    cert, key = pki.join_client_bundle(token)
    (directory / "c.pem").write_bytes(cert)
    (directory / "k.pem").write_bytes(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=ca_pem.decode())
    ctx.load_cert_chain(directory / "c.pem", directory / "k.pem")
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname=pki.SERVER_NAME)
    # The HTTP/2 preface: a connected client that then never calls.
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    return sock


def test_a_flood_of_idle_connections_is_cut_and_clients_are_served_meanwhile(
    etcd_server: EtcdServer, tmp_path: Path
) -> None:
    _raise_fd_limit(4096)
    c = Cluster(etcd_server, tmp_path / "flood")
    try:
        c.start_manager("--handshake-timeout", "2s", "--idle-timeout", "4s")
        port = int(c.manager_addrs[0].rsplit(":", 1)[1])
        ca_pem = (c.tls_dir / "ca.pem").read_bytes()
        token = c.token()
        socks: list[socket.socket | ssl.SSLSocket] = []
        try:
            for _ in range(700):  # never start TLS
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            for _ in range(300):  # finish TLS and HTTP/2 set-up, then stay silent
                socks.append(_tls_joiner(port, ca_pem, token, tmp_path))
            started = time.monotonic()
            for _ in range(3):
                res = c.cli("service", "ls", timeout=30)
                assert res.code == 0, res.err
            served = time.monotonic() - started
            remaining = list(socks)

            def all_cut() -> bool:
                remaining[:] = [s for s in remaining if not _closed(s)]
                return not remaining

            wait_for(all_cut, timeout=30, interval=0.2, what="the manager to close idle connections")
            print(f"3 CLI calls during a 1,000-connection flood: {served:.2f}s")
        finally:
            for s in socks:
                s.close()
        assert c.cli("info").code == 0
    finally:
        c.close()
