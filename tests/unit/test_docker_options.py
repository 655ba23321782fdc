"""The docker backend's pure parts, no engine needed: a task's spec as
container create options, image references read as Docker reads them,
registry credentials, SDK errors translated into ours, and the engine's
health and exit state read back."""

from __future__ import annotations

import base64
import json

import docker.errors
import pytest
import requests

from shoal.agent.runtime.base import ExitStatus, Health, HealthReport, TaskFailed, TaskRejected
from shoal.agent.runtime.docker import ImageRef, container_name, container_options, registry_auth
from shoal.agent.runtime.docker.engine import ContainerGone, exit_status, translate
from shoal.agent.runtime.docker.health import health_report
from shoal.protos import objects_pb2 as pb
from tests.support.docker_tasks import make_ctx

SECOND = 1_000_000_000
MIB = 1024 * 1024
TASK_ID = "abcdefghijklmnopqrstuvwxy"


def test_image_references_are_read_as_docker_reads_them() -> None:
    digest = "sha256:" + "ab" * 32
    assert str(ImageRef.parse("busybox")) == "busybox:latest"
    assert str(ImageRef.parse("shoal-test:2")) == "shoal-test:2"
    assert ImageRef.parse("registry:5000/team/app") == ImageRef("registry:5000/team/app", tag="latest")
    assert ImageRef.parse("registry:5000/app:1.2") == ImageRef("registry:5000/app", tag="1.2")
    assert ImageRef.parse(f"app@{digest}") == ImageRef("app", digest=digest)
    assert ImageRef.parse(f"app:1@{digest}").pull_tag == digest
    for bad in ("", "app:", "app@"):
        with pytest.raises(TaskRejected, match=r"container\.image"):
            ImageRef.parse(bad)


def test_spec_becomes_container_options() -> None:
    check = pb.HealthCheck(test=["NONE"])
    ports = [
        pb.PortConfig(protocol="udp", target_port=53, published_port=5353, publish_mode="host"),
        pb.PortConfig(target_port=80, published_port=8080, publish_mode="host"),
        pb.PortConfig(target_port=80, published_port=80, publish_mode="ingress"),
        pb.PortConfig(target_port=81, published_port=8081, publish_mode="ingress"),
    ]
    # Ingress targets go to the host ports the agent chose (80), or to any
    # free one when it chose none (81).
    endpoints = [pb.TaskEndpoint(protocol="tcp", target_port=80, host_port=20123)]
    ctx = make_ctx(
        "n1", ["a"], ["b"], healthcheck=check, ports=ports, stop_signal="SIGINT", endpoints=endpoints
    )
    ctx.task.spec.container.stop_grace_period = 1_500_000_000
    opts = container_options(ctx, "n1", "10.0.0.5")
    assert opts.port_bindings == {
        "53/udp": [("10.0.0.5", 5353)],
        "80/tcp": [("10.0.0.5", 8080), ("10.0.0.5", 20123)],
        "81/tcp": [("10.0.0.5", None)],
    }
    assert opts.healthcheck == {"Test": ["NONE"], "Interval": 0, "Timeout": 0, "Retries": 0, "StartPeriod": 0}
    assert (opts.entrypoint, opts.command, opts.stop_signal, opts.stop_timeout) == (["a"], ["b"], "SIGINT", 2)
    assert container_options(make_ctx("n1"), "n1").port_bindings == {}
    assert container_options(make_ctx("n1"), "n1").healthcheck is None
    bad = make_ctx("n1", mounts=[pb.Mount(type="nfs", target="/x")])
    with pytest.raises(TaskRejected, match=r"container.mounts\[0\].type: must be bind, volume or tmpfs"):
        container_options(bad, "n1")
    bad = make_ctx("n1", ports=[pb.PortConfig(protocol="icmp", target_port=1)])
    with pytest.raises(TaskRejected, match=r"ports\[0\].protocol"):
        container_options(bad, "n1")


def test_labels_name_env_and_limits_become_options() -> None:
    ctx = make_ctx(
        "n1",
        env=["GREETING=hello world"],
        labels={"team": "blue", "shoal.node.id": "not-mine"},
        workdir="/srv",
        memory_bytes=64 * MIB,
        nano_cpus=500_000_000,
        task_id=TASK_ID,
    )
    ctx.task.spec.resources.reservations.memory_bytes = 32 * MIB
    opts = container_options(ctx, "n1")
    assert opts.name == f"web.1.{TASK_ID}"
    assert opts.image == ImageRef("shoal-test", tag="1")
    assert opts.labels == {
        "team": "blue",
        "shoal.task.id": TASK_ID,
        "shoal.service.id": "svc-id-1",
        "shoal.service.name": "web",
        "shoal.node.id": "n1",  # a service label cannot disown it
        "shoal.task.slot": "1",
    }
    assert "GREETING=hello world" in opts.environment
    assert f"SHOAL_TASK_ID={TASK_ID}" in opts.environment
    assert (opts.working_dir, opts.mem_limit, opts.nano_cpus, opts.mem_reservation) == (
        "/srv",
        64 * MIB,
        500_000_000,
        32 * MIB,
    )
    # Nothing set: the image's entrypoint, cmd, workdir, stop signal and timeout.
    plain = container_options(make_ctx("n1"), "n1")
    assert (plain.entrypoint, plain.command, plain.working_dir) == (None, None, None)
    assert (plain.stop_signal, plain.stop_timeout) == (None, None)
    assert (plain.mem_limit, plain.nano_cpus, plain.mem_reservation) == (None, None, None)


def test_container_name_is_the_task_name_made_valid() -> None:
    assert container_name(make_ctx("n1", task_id=TASK_ID), "n1") == f"web.1.{TASK_ID}"
    odd = make_ctx("n1", task_id=TASK_ID)
    odd.env["SHOAL_TASK_NAME"] = "my web/1 task"
    assert container_name(odd, "n1") == "my_web_1_task"
    hopeless = make_ctx("n1", task_id=TASK_ID)
    hopeless.env["SHOAL_TASK_NAME"] = "//"
    assert container_name(hopeless, "n1") == f"shoal.{TASK_ID}"


def test_ports_bind_on_all_addresses_without_an_advertise_address() -> None:
    ctx = make_ctx("n1", ports=[pb.PortConfig(target_port=80, published_port=8080, publish_mode="host")])
    assert container_options(ctx, "n1").port_bindings == {"80/tcp": [("0.0.0.0", 8080)]}
    missing = make_ctx("n1", ports=[pb.PortConfig(published_port=8080)])
    with pytest.raises(TaskRejected, match=r"^ports\[0\].target_port: must be set$"):
        container_options(missing, "n1")


def test_mounts_become_docker_mounts_and_nonsense_is_rejected_by_field() -> None:
    mounts = [
        pb.Mount(type="bind", source="/srv/data", target="/data", readonly=True),
        pb.Mount(target="/cache"),  # a volume without a source: anonymous
        pb.Mount(type="tmpfs", target="/scratch", tmpfs_size=16 * MIB),
    ]
    opts = container_options(make_ctx("n1", mounts=mounts), "n1")
    assert [(m["Type"], m["Source"], m["Target"], m["ReadOnly"]) for m in opts.mounts] == [
        ("bind", "/srv/data", "/data", True),
        ("volume", None, "/cache", False),
        ("tmpfs", None, "/scratch", False),
    ]
    assert opts.mounts[2]["TmpfsOptions"] == {"SizeBytes": 16 * MIB}
    for bad, message in [
        (pb.Mount(type="volume", target="/x", tmpfs_size=1), r"mounts\[0\].tmpfs_size: only a tmpfs mount"),
        (
            pb.Mount(type="tmpfs", source="/x", target="/x"),
            r"mounts\[0\].source: a tmpfs mount has no source",
        ),
    ]:
        with pytest.raises(TaskRejected, match=message):
            container_options(make_ctx("n1", mounts=[bad]), "n1")


def test_health_check_fields_go_to_the_engine_in_nanoseconds() -> None:
    check = pb.HealthCheck(test=["CMD", "true"], interval=2 * SECOND, timeout=SECOND, retries=4)
    opts = container_options(make_ctx("n1", healthcheck=check), "n1")
    assert opts.healthcheck == {
        "Test": ["CMD", "true"],
        "Interval": 2 * SECOND,
        "Timeout": SECOND,
        "Retries": 4,
        "StartPeriod": 0,
    }
    # Fields without a test: the image's test with our timing.
    timing_only = container_options(make_ctx("n1", healthcheck=pb.HealthCheck(retries=2)), "n1")
    assert timing_only.healthcheck is not None and timing_only.healthcheck["Retries"] == 2


def test_a_stop_grace_period_becomes_whole_seconds_rounded_up() -> None:
    ctx = make_ctx("n1")
    ctx.task.spec.container.stop_grace_period = 0
    assert container_options(ctx, "n1").stop_timeout == 0
    ctx.task.spec.container.stop_grace_period = 10 * SECOND + 1
    assert container_options(ctx, "n1").stop_timeout == 11


def test_registry_credentials_are_decoded_for_the_sdk() -> None:
    task = make_ctx("n1").task
    assert registry_auth(task) is None
    task.registry_auth = base64.b64encode(json.dumps({"username": "u", "password": "p"}).encode()).decode()
    assert registry_auth(task) == {"username": "u", "password": "p"}
    for junk in (base64.b64encode(b"[1, 2]").decode(), base64.b64encode(b"not json").decode()):
        task.registry_auth = junk
        assert registry_auth(task) is None


def test_sdk_errors_become_ours_once() -> None:
    response = requests.Response()
    response.status_code = 404
    gone = docker.errors.NotFound("404", response=response, explanation="No such container: abc")
    assert isinstance(translate(gone, "inspecting container"), ContainerGone)
    assert str(translate(gone, "inspecting container")) == (
        "inspecting container failed: No such container: abc"
    )
    missing_image = docker.errors.ImageNotFound("404", response=response, explanation="no such image")
    failed = translate(missing_image, "creating container")
    assert type(failed) is TaskFailed
    rejected = translate(missing_image, "pulling image app:1", rejected=True)
    assert type(rejected) is TaskRejected
    assert str(rejected) == "pulling image app:1 failed: no such image"
    unreachable = translate(ConnectionError("socket closed"), "listing containers")
    assert str(unreachable) == "listing containers failed: Docker engine unreachable: socket closed"
    bug = ValueError("a bug")
    assert translate(bug, "anything") is bug


def test_engine_health_and_exit_state_are_read_back() -> None:
    assert health_report(None) == HealthReport(Health.NONE)
    assert health_report({"State": {}}) == HealthReport(Health.NONE)
    log = [
        {"ExitCode": 1, "Output": "not ready\n"},
        {"ExitCode": 0, "Output": ""},
        {"ExitCode": -1, "Output": "Health check exceeded timeout (1s)"},
    ]
    assert health_report({"State": {"Health": {"Status": "unhealthy", "Log": log}}}) == HealthReport(
        Health.UNHEALTHY, "health check failed: Health check exceeded timeout (1s)"
    )
    assert health_report({"State": {"Health": {"Status": "healthy", "Log": log[:2]}}}) == HealthReport(
        Health.HEALTHY, "health check exit code 1: not ready"
    )
    assert exit_status({"ExitCode": 3}) == ExitStatus(3)
    assert exit_status({"ExitCode": 137, "OOMKilled": True, "Error": ""}) == ExitStatus(
        137, "OOMKilled: the container ran out of memory"
    )
