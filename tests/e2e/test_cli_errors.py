"""Refused requests: bad input, strangers without the cluster's certificate,
agents with a wrong join token.

Every refusal of the CLI must look the same (CLI.md, Errors): a non-zero exit
status, exactly one stderr line starting ``Error:`` (detail lines may follow),
never a traceback, and nothing changed in the cluster.

All tests share one cluster (a manager, one agent and one running service),
since none of them may change it; the bad-input tests check that they did not.
The test with a foreign certificate makes a second cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from shoal import pki
from shoal.protos import control_pb2 as cpb
from shoal.protos import control_pb2_grpc as cgrpc
from tests.support.cluster import Cluster, assert_refused, sleep_seconds, start_cluster, wait_pids
from tests.support.etcd_server import EtcdServer

NEW = ["service", "create", "--name", "newsvc", "-d"]
# The shared service runs `sleep SECONDS`; refused creates would have run RUN.
SECONDS = sleep_seconds(3620)
RUN = ["app:1", "sleep", sleep_seconds(3621)]


@pytest.fixture(scope="module")
def shared_cluster(etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(etcd_server, tmp_path_factory.mktemp("cli-errors"), agents=1)
    try:
        res = c.cli(
            "service", "create", "--name", "taken", "--update-monitor", "0s", "app:1", "sleep", SECONDS
        )
        assert res.code == 0, res.out + res.err
        wait_pids(f"sleep {SECONDS}", 1)
        yield c
    finally:
        c.close()


@pytest.fixture
def cluster(shared_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The shared cluster; its logs are printed after a test that failed."""
    yield shared_cluster
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(shared_cluster.dump_logs())


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        pytest.param([*NEW, "--replicas", "-1", *RUN], "replicas", id="negative-replicas"),
        pytest.param([*NEW, "--replicas", "abc", *RUN], "replicas", id="non-numeric-replicas"),
        pytest.param(["service", "create", "--name", "taken", "-d", *RUN], "taken", id="duplicate-name"),
        pytest.param(["service", "create", "--name", "bad/name", "-d", *RUN], "name", id="name-with-slash"),
        pytest.param(["service", "create", "--name", "n" * 64, "-d", *RUN], "name", id="name-of-64-chars"),
        pytest.param([*NEW, "--restart-delay", "5x", *RUN], "--restart-delay", id="malformed-duration"),
        pytest.param([*NEW, "--stop-grace-period", "abc", *RUN], "--stop-grace-period", id="non-duration"),
        pytest.param([*NEW, "--reserve-memory", "12q", *RUN], "--reserve-memory", id="malformed-size"),
        pytest.param(["service", "scale", "nosuch=3"], "nosuch", id="scale-unknown-service"),
        pytest.param(["service", "rm", "nosuch"], "nosuch", id="rm-unknown-service"),
        pytest.param(["service", "ps", "nosuch"], "nosuch", id="ps-unknown-service"),
        pytest.param(["service", "inspect", "nosuch"], "nosuch", id="inspect-unknown-service"),
        pytest.param(["node", "inspect", "nosuch"], "nosuch", id="inspect-unknown-node"),
        # Bounds: every field has one, named in the refusal.
        pytest.param([*NEW, "--replicas", "1000000000000", *RUN], "at most 100000", id="too-many-replicas"),
        pytest.param(["service", "scale", "taken=1000000000"], "max-replicas", id="scale-beyond-limit"),
        pytest.param(
            [*NEW, "--health-cmd", "true", "--health-interval", "1ns", *RUN],
            "health_interval",
            id="1ns-health",
        ),
        pytest.param([*NEW, "--limit-memory", "1", *RUN], "limit_memory", id="1-byte-memory-limit"),
        pytest.param([*NEW, "--stop-signal", "SIGFOO", *RUN], "stop_signal", id="unknown-signal"),
        pytest.param(
            ["service", "create", "--name", "newsvc", "-d", "App:1", "sleep", "1"], "image", id="bad-image"
        ),
        pytest.param([*NEW, "--update-max-failure-ratio", "1.5", *RUN], "ratio", id="ratio-above-one"),
        pytest.param(["cluster", "update", "--cert-expiry", "30s"], "cert_expiry", id="cert-expiry-below-1m"),
        pytest.param(
            ["cluster", "update", "--heartbeat-period", "2h"], "heartbeat_period", id="heartbeat-2h"
        ),
    ],
)
def test_bad_input_is_refused_with_one_error_line_and_changes_nothing(
    cluster: Cluster, args: list[str], mentions: str
) -> None:
    before = cluster.services()
    res = cluster.cli(*args)
    assert_refused(res, mentions)
    assert cluster.services() == before


def test_removing_a_ready_node_without_force_is_refused(cluster: Cluster) -> None:
    nodes_before = cluster.nodes()
    services_before = cluster.services()
    res = cluster.cli("node", "rm", "node-1")
    assert_refused(res, "not down")
    assert cluster.nodes() == nodes_before
    assert cluster.services() == services_before


# ------------------------------------------------------------------ security


def list_services(address: str, creds: grpc.ChannelCredentials | None) -> Any:
    """ListServices over a channel of our own (not the CLI)."""
    channel = (
        grpc.secure_channel(address, creds, options=pki.CHANNEL_OPTIONS)
        if creds is not None
        else grpc.insecure_channel(address)
    )
    with channel:
        return cgrpc.ControlStub(channel).ListServices(cpb.ListServicesRequest(), timeout=10)


def test_the_admin_bundle_is_accepted(cluster: Cluster) -> None:
    """The control case for the refusals below: same call, the right bundle."""
    tls = cluster.tls_dir
    creds = pki.channel_credentials(
        (tls / "ca.pem").read_bytes(), (tls / "cert.pem").read_bytes(), (tls / "key.pem").read_bytes()
    )
    names = [s.service.spec.name for s in list_services(cluster.manager_addrs[0], creds).services]
    assert names == ["taken"]


def test_a_client_without_a_certificate_is_refused(cluster: Cluster) -> None:
    ca = (cluster.tls_dir / "ca.pem").read_bytes()
    with pytest.raises(grpc.RpcError) as refused:
        list_services(cluster.manager_addrs[0], grpc.ssl_channel_credentials(root_certificates=ca))
    assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


def test_a_plaintext_client_is_refused(cluster: Cluster) -> None:
    with pytest.raises(grpc.RpcError):
        list_services(cluster.manager_addrs[0], None)


def test_a_certificate_from_another_clusters_ca_is_refused(cluster: Cluster, make_cluster: Any) -> None:
    other = make_cluster(agents=0)
    creds = pki.channel_credentials(
        (cluster.tls_dir / "ca.pem").read_bytes(),
        (other.tls_dir / "cert.pem").read_bytes(),
        (other.tls_dir / "key.pem").read_bytes(),
    )
    with pytest.raises(grpc.RpcError) as refused:
        list_services(cluster.manager_addrs[0], creds)
    assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


# ------------------------------------------------------------------ join tokens


def with_other_secret(token: str) -> str:
    """The same token with the last characters of its secret changed (still
    well-formed base36, so only the manager can tell it is wrong)."""
    head, tail = token[:-4], token[-4:]
    changed = "".join("0" if c != "0" else "1" for c in tail)
    assert changed != tail
    return head + changed


def assert_agent_refused(cluster: Cluster, token: str, mentions: str) -> None:
    nodes_before = {n["id"] for n in cluster.nodes()}
    agent = cluster.start_agent(token=token)
    code = agent.wait_exit(30)
    output = agent.output()
    assert code != 0, f"an agent that cannot join must exit non-zero:\n{output}"
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, f"expected one 'Error:' line, got:\n{output}"
    assert mentions in errors[0].lower(), f"the error should mention {mentions!r}: {errors[0]}"
    assert {n["id"] for n in cluster.nodes()} == nodes_before, "a refused agent must not become a node"


def test_an_agent_with_a_wrong_token_is_refused(cluster: Cluster) -> None:
    assert_agent_refused(cluster, with_other_secret(cluster.token()), "token")


def test_an_agent_with_a_malformed_token_is_refused(cluster: Cluster) -> None:
    assert_agent_refused(cluster, "SHOAL-1-nope", "invalid join token")
