"""What the Docker API answers has the Engine API's shapes (v1.41): every
field is one the swagger definitions (or the Go types the docker CLI
decodes into) name, with that type, so the CLI's decoder takes it; and the
translations a user would notice (update status, job counts, node fields).

SHAPES below transcribes the field names and JSON types of the Engine API
v1.41 swagger definitions we answer with (facts about the wire format).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from shoal import specs
from shoal.manager.dockerapi import engine, filespecs, netspecs, objects
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb

SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND

TIME = "time"  # an RFC 3339 string Go's time.Time decodes
STR, INT, BOOL, NUM = str, int, bool, float
STRMAP = {"*": STR}


def enum(*words: str) -> set[str]:
    return set(words)


VERSION = {"Index": INT}
PORT = {
    "Name": STR,
    "Protocol": enum("tcp", "udp", "sctp"),
    "TargetPort": INT,
    "PublishedPort": INT,
    "PublishMode": enum("ingress", "host"),
}
UPDATE_CONFIG = {
    "Parallelism": INT,
    "Delay": INT,
    "FailureAction": enum("continue", "pause", "rollback"),
    "Monitor": INT,
    "MaxFailureRatio": NUM,
    "Order": enum("stop-first", "start-first"),
}
RESOURCES = {"NanoCPUs": INT, "MemoryBytes": INT, "GenericResources": [{}]}
HEALTH = {"Test": [STR], "Interval": INT, "Timeout": INT, "Retries": INT, "StartPeriod": INT}
MOUNT = {
    "Target": STR,
    "Source": STR,
    "Type": enum("bind", "volume", "tmpfs", "npipe"),
    "ReadOnly": BOOL,
    "Consistency": STR,
    "BindOptions": {},
    "VolumeOptions": {},
    "TmpfsOptions": {"SizeBytes": INT, "Mode": INT},
}
FILE_TARGET = {"Name": STR, "UID": STR, "GID": STR, "Mode": INT}
SECRET_REF = {"File": FILE_TARGET, "SecretID": STR, "SecretName": STR}
CONFIG_REF = {"File": FILE_TARGET, "ConfigID": STR, "ConfigName": STR}
CONTAINER_SPEC = {
    "Image": STR,
    "Labels": STRMAP,
    "Command": [STR],
    "Args": [STR],
    "Hostname": STR,
    "Env": [STR],
    "Dir": STR,
    "User": STR,
    "Groups": [STR],
    "TTY": BOOL,
    "OpenStdin": BOOL,
    "ReadOnly": BOOL,
    "Mounts": [MOUNT],
    "StopSignal": STR,
    "StopGracePeriod": INT,
    # The swagger spells it "HealthCheck"; the Go type (what the engine
    # writes and the CLI reads, case-insensitively) "Healthcheck".
    "Healthcheck": HEALTH,
    "Init": BOOL,
    "Secrets": [SECRET_REF],
    "Configs": [CONFIG_REF],
}
TASK_SPEC = {
    "ContainerSpec": CONTAINER_SPEC,
    "Resources": {"Limits": {"NanoCPUs": INT, "MemoryBytes": INT, "Pids": INT}, "Reservations": RESOURCES},
    "RestartPolicy": {
        "Condition": enum("none", "on-failure", "any"),
        "Delay": INT,
        "MaxAttempts": INT,
        "Window": INT,
    },
    "Placement": {
        "Constraints": [STR],
        "Preferences": [{"Spread": {"SpreadDescriptor": STR}}],
        "MaxReplicas": INT,
    },
    "ForceUpdate": INT,
    "Runtime": STR,
    "Networks": [{"Target": STR, "Aliases": [STR], "DriverOpts": STRMAP}],
}
ENDPOINT_SPEC = {"Mode": enum("vip", "dnsrr"), "Ports": [PORT]}
SERVICE_SPEC = {
    "Name": STR,
    "Labels": STRMAP,
    "TaskTemplate": TASK_SPEC,
    "Mode": {
        "Replicated": {"Replicas": INT},
        "Global": {},
        "ReplicatedJob": {"MaxConcurrent": INT, "TotalCompletions": INT},
        "GlobalJob": {},
    },
    "UpdateConfig": UPDATE_CONFIG,
    "RollbackConfig": UPDATE_CONFIG,
    "EndpointSpec": ENDPOINT_SPEC,
}
UPDATE_STATES = enum(
    "updating", "paused", "completed", "rollback_started", "rollback_paused", "rollback_completed"
)
TASK_STATES = enum(
    "new",
    "allocated",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "ready",
    "starting",
    "running",
    "complete",
    "shutdown",
    "failed",
    "rejected",
    "remove",
    "orphaned",
)
META = {"ID": STR, "Version": VERSION, "CreatedAt": TIME, "UpdatedAt": TIME}
SERVICE = {
    **META,
    "Spec": SERVICE_SPEC,
    # In the Go type the CLI decodes (not in the v1.41 swagger's Service).
    "PreviousSpec": SERVICE_SPEC,
    "Endpoint": {"Spec": ENDPOINT_SPEC, "Ports": [PORT], "VirtualIPs": [{"NetworkID": STR, "Addr": STR}]},
    "UpdateStatus": {"State": UPDATE_STATES, "StartedAt": TIME, "CompletedAt": TIME, "Message": STR},
    "ServiceStatus": {"RunningTasks": INT, "DesiredTasks": INT, "CompletedTasks": INT},
    "JobStatus": {"JobIteration": VERSION, "LastExecution": TIME},
}
TASK = {
    **META,
    "Name": STR,
    "Labels": STRMAP,
    "Spec": TASK_SPEC,
    "ServiceID": STR,
    "Slot": INT,
    "NodeID": STR,
    "Status": {
        "Timestamp": TIME,
        "State": TASK_STATES,
        "Message": STR,
        "Err": STR,
        "ContainerStatus": {"ContainerID": STR, "PID": INT, "ExitCode": INT},
        # In the Go type (TaskStatus.PortStatus).
        "PortStatus": {"Ports": [PORT]},
    },
    "DesiredState": TASK_STATES,
    "JobIteration": VERSION,
}
NODE = {
    **META,
    "Spec": {
        "Name": STR,
        "Labels": STRMAP,
        "Role": enum("worker", "manager"),
        "Availability": enum("active", "pause", "drain"),
    },
    "Description": {
        "Hostname": STR,
        "Platform": {"Architecture": STR, "OS": STR},
        "Resources": RESOURCES,
        "Engine": {"EngineVersion": STR, "Labels": STRMAP, "Plugins": [{"Type": STR, "Name": STR}]},
        "TLSInfo": {"TrustRoot": STR, "CertIssuerSubject": STR, "CertIssuerPublicKey": STR},
    },
    "Status": {"State": enum("unknown", "down", "ready", "disconnected"), "Message": STR, "Addr": STR},
    "ManagerStatus": {"Leader": BOOL, "Reachability": STR, "Addr": STR},
}
SYSTEM_VERSION = {
    "Platform": {"Name": STR},
    "Components": [{"Name": STR, "Version": STR, "Details": STRMAP}],
    "Version": STR,
    "ApiVersion": STR,
    "MinAPIVersion": STR,
    "GitCommit": STR,
    "GoVersion": STR,
    "Os": STR,
    "Arch": STR,
    "KernelVersion": STR,
    "Experimental": BOOL,
    "BuildTime": STR,
}
SWARM_SPEC = {
    "Name": STR,
    "Labels": STRMAP,
    "Orchestration": {"TaskHistoryRetentionLimit": INT},
    "Raft": {"SnapshotInterval": INT, "KeepOldSnapshots": INT, "ElectionTick": INT, "HeartbeatTick": INT},
    "Dispatcher": {"HeartbeatPeriod": INT},
    "CAConfig": {"NodeCertExpiry": INT, "ForceRotate": INT},
    "EncryptionConfig": {"AutoLockManagers": BOOL},
    "TaskDefaults": {"LogDriver": {"Name": STR, "Options": STRMAP}},
}
SYSTEM_INFO = {
    "ID": STR,
    "Containers": INT,
    "ContainersRunning": INT,
    "ContainersPaused": INT,
    "ContainersStopped": INT,
    "Images": INT,
    "ServerVersion": STR,
    "OperatingSystem": STR,
    "OSType": STR,
    "Architecture": STR,
    "KernelVersion": STR,
    "NCPU": INT,
    "MemTotal": INT,
    "Name": STR,
    "Labels": [STR],
    "ExperimentalBuild": BOOL,
    "Warnings": [STR],
    "Swarm": {
        "NodeID": STR,
        "NodeAddr": STR,
        "LocalNodeState": enum("", "inactive", "pending", "active", "error", "locked"),
        "ControlAvailable": BOOL,
        "Error": STR,
        "RemoteManagers": [{"NodeID": STR, "Addr": STR}],
        "Nodes": INT,
        "Managers": INT,
        "Cluster": {
            **META,
            "Spec": SWARM_SPEC,
            "TLSInfo": {"TrustRoot": STR},
            "RootRotationInProgress": BOOL,
            "DataPathPort": INT,
            "SubnetSize": INT,
        },
    },
}

SECRET = {**META, "Spec": {"Name": STR, "Labels": STRMAP, "Data": STR, "Driver": {}, "Templating": {}}}
CONFIG = {**META, "Spec": {"Name": STR, "Labels": STRMAP, "Data": STR, "Templating": {}}}
NETWORK = {
    "Name": STR,
    "Id": STR,
    "Created": TIME,
    "Scope": STR,
    "Driver": STR,
    "EnableIPv6": BOOL,
    "IPAM": {"Driver": STR, "Config": [STRMAP], "Options": STRMAP},
    "Internal": BOOL,
    "Attachable": BOOL,
    "Ingress": BOOL,
    "Containers": {},
    "Options": STRMAP,
    "Labels": STRMAP,
}

_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def conforms(value: Any, shape: Any, path: str = "") -> list[str]:
    """Where value does not have the shape (empty: it does)."""
    if shape == TIME:
        return [] if isinstance(value, str) and _RFC3339.match(value) else [f"{path}: not an RFC 3339 time"]
    if isinstance(shape, set):
        return [] if value in shape else [f"{path}: {value!r} is not one of {sorted(shape)}"]
    if shape is NUM:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected a number"]
    if shape is INT:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected an integer"]
    if shape in (STR, BOOL):
        return [] if isinstance(value, shape) else [f"{path}: expected {shape.__name__}"]
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [p for i, item in enumerate(value) for p in conforms(item, shape[0], f"{path}[{i}]")]
    if not isinstance(value, dict):
        return [f"{path}: expected an object"]
    problems = []
    for key, item in value.items():
        if "*" in shape:
            problems += conforms(item, shape["*"], f"{path}.{key}")
        elif key not in shape:
            problems.append(f"{path}.{key}: not a field of this definition")
        else:
            problems += conforms(item, shape[key], f"{path}.{key}")
    return problems


def _service(mode: int = pb.SERVICE_MODE_REPLICATED) -> pb.Service:
    svc = pb.Service(spec_version=3, previous_spec_version=2)
    svc.meta.id, svc.meta.version = "svc1", 42
    svc.meta.created_at, svc.meta.updated_at = T0, T0 + 10 * SECOND
    svc.spec.name, svc.spec.mode = "web", mode  # type: ignore[assignment]
    if mode in (pb.SERVICE_MODE_REPLICATED, pb.SERVICE_MODE_REPLICATED_JOB):
        svc.spec.replicas = 5
    svc.spec.task.container.image = "shoal-test:2"
    svc.spec.task.container.healthcheck.test.extend(["CMD", "true"])
    svc.spec.task.container.mounts.add(type="tmpfs", target="/t", tmpfs_size=1024)
    svc.spec.task.container.secrets.add(id="s1", name="pw", mode=0o400)
    svc.spec.task.container.configs.add(id="c1", name="conf", target="/etc/conf")
    svc.spec.task.resources.limits.memory_bytes = 1 << 26
    svc.spec.task.placement.preferences.add(spread="node.labels.zone")
    svc.spec.ports.add(target_port=80, published_port=8080)
    specs.apply_defaults(svc.spec)
    svc.previous_spec.CopyFrom(svc.spec)
    svc.previous_spec.task.container.image = "shoal-test:1"
    svc.update_status.state = pb.UPDATE_STATE_UPDATING
    svc.update_status.started_at = T0 + 9 * SECOND
    svc.update_status.message = "update in progress"
    return svc


def _through_json(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


@pytest.mark.parametrize("mode", [pb.SERVICE_MODE_REPLICATED, pb.SERVICE_MODE_GLOBAL_JOB])
def test_a_service_has_the_engines_service_shape(mode: int) -> None:
    svc = _service(mode)
    summary = cpb.ServiceSummary(service=svc, replicas_desired=5, replicas_running=4, completed=1)
    out = _through_json(objects.service(svc, summary))
    assert conforms(out, SERVICE) == []
    assert out["Version"] == {"Index": 42}
    assert out["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "shoal-test:2"
    assert out["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "shoal-test:1"
    assert out["Endpoint"]["Ports"] == [
        {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}
    ]
    assert out["UpdateStatus"]["State"] == "updating"
    assert ("JobStatus" in out) == (mode == pb.SERVICE_MODE_GLOBAL_JOB)


def test_service_status_counts_what_service_ls_shows() -> None:
    svc = _service()
    summary = cpb.ServiceSummary(service=svc, replicas_desired=5, replicas_running=3)
    assert objects.service(svc, summary)["ServiceStatus"] == {
        "RunningTasks": 3,
        "DesiredTasks": 5,
        "CompletedTasks": 0,
    }
    assert "ServiceStatus" not in objects.service(svc)


def test_a_replicated_job_desires_what_may_run_now() -> None:
    svc = _service(pb.SERVICE_MODE_REPLICATED_JOB)
    svc.spec.replicas, svc.spec.max_concurrent = 10, 3
    summary = cpb.ServiceSummary(service=svc, replicas_desired=10, replicas_running=3, completed=8)
    status = objects.service(svc, summary)["ServiceStatus"]
    assert status == {"RunningTasks": 3, "DesiredTasks": 2, "CompletedTasks": 8}
    assert objects.service(svc)["JobStatus"]["JobIteration"] == {"Index": 3}


def test_a_global_job_desires_the_tasks_not_completed_yet() -> None:
    svc = _service(pb.SERVICE_MODE_GLOBAL_JOB)
    summary = cpb.ServiceSummary(service=svc, replicas_desired=3, replicas_running=1, completed=2)
    assert objects.service(svc, summary)["ServiceStatus"] == {
        "RunningTasks": 1,
        "DesiredTasks": 1,
        "CompletedTasks": 2,
    }


def test_a_finished_rollouts_status_shows_until_the_service_is_written_again() -> None:
    svc = _service()
    svc.update_status.state = pb.UPDATE_STATE_COMPLETED
    svc.update_status.completed_at = T0 + 20 * SECOND
    svc.meta.updated_at = svc.update_status.completed_at + 30_000  # the same write
    assert objects.service(svc)["UpdateStatus"]["State"] == "completed"
    svc.meta.updated_at = svc.update_status.completed_at + 40 * SECOND  # scaled since
    assert "UpdateStatus" not in objects.service(svc)
    # A rollout still under way, or paused, shows whatever came after it.
    svc.update_status.state = pb.UPDATE_STATE_PAUSED
    assert objects.service(svc)["UpdateStatus"]["State"] == "paused"
    # A service never updated has none.
    assert "UpdateStatus" not in objects.service(pb.Service(spec=svc.spec))


def _task(state: int = pb.TASK_STATE_RUNNING) -> pb.Task:
    t = pb.Task(service_id="svc1", service_name="web", slot=2, node_id="node1", spec_version=3)
    t.meta.id, t.meta.version, t.meta.created_at = "task1", 7, T0
    t.spec.CopyFrom(_service().spec.task)
    t.desired_state = pb.TASK_STATE_RUNNING
    t.status.state = state  # type: ignore[assignment]
    t.status.timestamp = T0 + SECOND
    t.status.pid = 1234
    t.ports.add(protocol="tcp", target_port=80, published_port=30080, publish_mode="host")
    return t


def test_a_task_has_the_engines_task_shape() -> None:
    t = _task()
    t.status.err = "boom"
    out = _through_json(objects.task(t, job=True))
    assert conforms(out, TASK) == []
    assert out["Name"] == "web.2.task1"
    assert (out["NodeID"], out["ServiceID"]) == ("node1", "svc1")
    assert out["Status"]["State"] == "running"
    assert out["Status"]["ContainerStatus"]["PID"] == 1234
    assert out["Status"]["PortStatus"]["Ports"][0]["PublishedPort"] == 30080
    assert out["JobIteration"] == {"Index": 3}
    assert "JobIteration" not in objects.task(t)
    # A job's slots count from 0 in the engine (its CLI's job progress relies
    # on it), and its tasks are meant to complete.
    assert (objects.task(t)["Slot"], out["Slot"]) == (2, 1)
    assert (objects.task(t)["DesiredState"], out["DesiredState"]) == ("running", "complete")


def test_every_task_state_has_the_engines_word() -> None:
    for value in pb.TaskState.values():
        assert conforms(objects.task(_task(value))["Status"]["State"], TASK_STATES) == []


def test_a_node_has_the_engines_node_shape() -> None:
    n = pb.Node(role=pb.NODE_ROLE_WORKER)
    n.meta.id, n.meta.version, n.meta.created_at = "node1", 9, T0
    n.spec.availability = pb.NODE_AVAILABILITY_DRAIN
    n.spec.labels["zone"] = "a"
    n.description.hostname = "node-1"
    n.description.platform.os, n.description.platform.arch = "linux", "amd64"
    n.description.resources.nano_cpus, n.description.resources.memory_bytes = 2 * SECOND, 1 << 30
    n.description.runtime = "process"
    n.status.state, n.status.addr = pb.NODE_STATE_READY, "127.0.0.11"
    out = _through_json(objects.node(n))
    assert conforms(out, NODE) == []
    assert out["Spec"] == {"Labels": {"zone": "a"}, "Role": "worker", "Availability": "drain"}
    assert out["Status"] == {"State": "ready", "Message": "", "Addr": "127.0.0.11"}
    assert out["Description"]["Engine"]["EngineVersion"] == "shoal (process runtime)"


HOST = engine.Host(
    name="box", kernel="6.1", os_name="Debian", arch="amd64", cpus=2, memory=1 << 30, python="3", shoal="0.1"
)


def test_version_and_info_have_the_engines_shapes_and_the_swarm_fields_the_cli_reads() -> None:
    assert conforms(_through_json(engine.version_info(HOST)), SYSTEM_VERSION) == []
    cluster = cpb.ClusterInfo(cluster_id="c1", nodes=3, created_at=T0)
    cluster.managers.add(id="m1", addr="127.0.0.1:2377", leader=True)
    cluster.managers.add(id="m2", addr="127.0.0.2:2377")
    cluster.spec.heartbeat_period = 5 * SECOND
    cluster.spec.task_history_limit = 5
    out = _through_json(engine.info(HOST, cluster, cpb.CAStatus(rotating=True), "m1", "127.0.0.1:2377", ""))
    assert conforms(out, SYSTEM_INFO) == []
    swarm = out["Swarm"]
    assert (swarm["NodeID"], swarm["LocalNodeState"], swarm["ControlAvailable"]) == ("m1", "active", True)
    assert (swarm["Nodes"], swarm["Managers"], swarm["Cluster"]["ID"]) == (3, 2, "c1")
    assert [m["Addr"] for m in swarm["RemoteManagers"]] == ["127.0.0.1:2377", "127.0.0.2:2377"]
    assert swarm["Cluster"]["Spec"]["Dispatcher"]["HeartbeatPeriod"] == 5 * SECOND
    assert swarm["Cluster"]["RootRotationInProgress"] is True


def test_a_locked_manager_says_so_as_the_engine_does() -> None:
    out = engine.info(HOST, cpb.ClusterInfo(cluster_id="c1", locked=True), cpb.CAStatus(), "m1", "a:1", "")
    assert (out["Swarm"]["LocalNodeState"], out["Swarm"]["ControlAvailable"]) == ("locked", False)


def test_the_shape_check_itself_catches_a_wrong_type_and_a_stray_field() -> None:
    assert conforms({"Index": "1"}, VERSION) == [".Index: expected an integer"]
    assert conforms({"Index": 1, "Extra": 2}, VERSION) == [".Extra: not a field of this definition"]
    assert conforms("2024-01-01 00:00", TIME) != []


def test_secrets_and_configs_have_the_engines_shapes() -> None:
    secret = pb.Secret(spec=pb.SecretSpec(name="pw", labels={"a": "b"}), size=3)
    secret.meta.id, secret.meta.created_at = "s1", T0
    out = _through_json(filespecs.secret(secret))
    assert conforms(out, SECRET) == []
    assert "Data" not in out["Spec"]  # a secret's value is never shown
    config = pb.Config(spec=pb.ConfigSpec(name="conf", data=b"x=1\n"))
    config.meta.id, config.meta.created_at = "c1", T0
    out = _through_json(filespecs.config(config))
    assert conforms(out, CONFIG) == []
    assert out["Spec"]["Data"] == "eD0xCg=="


def test_a_network_and_ingress_have_the_engines_network_shape() -> None:
    n = pb.Network(spec=pb.NetworkSpec(name="shop_default", driver="overlay"))
    n.spec.labels["com.docker.stack.namespace"] = "shop"
    n.meta.id, n.meta.created_at = "n" * 25, T0
    out = _through_json(netspecs.network(n))
    assert conforms(out, NETWORK) == []
    assert (out["Name"], out["Id"], out["Scope"], out["Driver"]) == (
        "shop_default",
        "n" * 25,
        "swarm",
        "overlay",
    )
    assert out["Labels"] == {"com.docker.stack.namespace": "shop"}
    assert (out["Ingress"], out["Internal"], out["Attachable"]) == (False, False, False)
    assert out["Created"] == "2023-11-14T22:13:20.000000000Z"
    ingress = _through_json(netspecs.ingress())
    assert conforms(ingress, NETWORK) == []
    assert (ingress["Name"], ingress["Scope"], ingress["Driver"], ingress["Ingress"]) == (
        "ingress",
        "swarm",
        "overlay",
        True,
    )
    # A stable ID of shoal's length, by which it is found as by its name.
    assert len(ingress["Id"]) == 25 and ingress["Id"] == netspecs.INGRESS_ID
    assert netspecs.is_ingress("ingress") and netspecs.is_ingress(ingress["Id"])
    assert not netspecs.is_ingress("shop_default")


def test_a_services_networks_are_shown_by_id_with_its_virtual_address_on_each() -> None:
    svc = _service()
    svc.spec.networks.extend(["front", "back"])
    svc.virtual_ip = "10.208.0.7"
    ids = {"front": "f" * 25, "back": "b" * 25}
    out = _through_json(objects.service(svc, None, ids))
    assert conforms(out, SERVICE) == []
    assert out["Spec"]["TaskTemplate"]["Networks"] == [{"Target": "f" * 25}, {"Target": "b" * 25}]
    assert out["Endpoint"]["VirtualIPs"] == [
        {"NetworkID": "f" * 25, "Addr": "10.208.0.7/14"},
        {"NetworkID": "b" * 25, "Addr": "10.208.0.7/14"},
    ]
    # On no network: the cluster's default scope, which the API shows as ingress.
    svc.spec.ClearField("networks")
    out = _through_json(objects.service(svc))
    assert "Networks" not in out["Spec"]["TaskTemplate"]
    assert out["Endpoint"]["VirtualIPs"] == [{"NetworkID": netspecs.INGRESS_ID, "Addr": "10.208.0.7/14"}]
    # No virtual address (a service stored before there were any): none shown.
    svc.virtual_ip = ""
    assert "VirtualIPs" not in objects.service(svc)["Endpoint"]
