"""The Docker API's ServiceSpec translation, both ways (shoal.manager.dockerapi
spec_in / spec_out): what the docker CLI sends becomes the spec a user of
`shoal service create` would get, what shoal shows reads back unchanged, and
every field shoal cannot honour is a warning or a refusal, never dropped."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from shoal import specs
from shoal.defaults import SERVICE
from shoal.manager.dockerapi import spec_in, spec_out, updates
from shoal.manager.dockerapi.errors import DockerError
from shoal.protos import objects_pb2 as pb

SECOND = 1_000_000_000


def _rich_spec(mode: int = pb.SERVICE_MODE_REPLICATED) -> pb.ServiceSpec:
    spec = pb.ServiceSpec(name="web", mode=mode)  # type: ignore[arg-type]
    spec.labels["team"] = "fish"
    if mode == pb.SERVICE_MODE_REPLICATED:
        spec.replicas = 3
    if mode == pb.SERVICE_MODE_REPLICATED_JOB:
        spec.replicas = 6
        spec.max_concurrent = 2
    c = spec.task.container
    c.image = "shoal-test:1"
    c.command.extend(["/bin/sh", "-c"])
    c.args.extend(["echo hi; sleep 3600"])
    c.env.extend(["A=1", "B=two words"])
    c.workdir = "/srv"
    c.stop_signal = "SIGINT"
    c.stop_grace_period = 3 * SECOND
    c.labels["c"] = "d"
    c.healthcheck.test.extend(["CMD-SHELL", "true"])
    c.healthcheck.interval = 2 * SECOND
    c.healthcheck.timeout = SECOND
    c.healthcheck.retries = 4
    c.healthcheck.start_period = 5 * SECOND
    c.mounts.add(type="tmpfs", target="/scratch", tmpfs_size=1 << 20)
    c.mounts.add(type="bind", source="/etc", target="/host-etc", readonly=True)
    c.user = "1000:1000"
    c.secrets.add(id="s1", name="db-pass", target="db", uid="1000", gid="1000", mode=0o400)
    c.secrets.add(id="s2", name="api-key")
    c.configs.add(id="c1", name="site.conf", target="/etc/site.conf")
    res = spec.task.resources
    res.limits.nano_cpus = 500_000_000
    res.limits.memory_bytes = 256 << 20
    res.reservations.nano_cpus = 250_000_000
    res.reservations.memory_bytes = 64 << 20
    spec.task.restart.condition = pb.RESTART_CONDITION_ON_FAILURE
    spec.task.restart.delay = 2 * SECOND
    spec.task.restart.max_attempts = 3
    spec.task.restart.window = 30 * SECOND
    spec.task.placement.constraints.extend(["node.labels.zone!=b", "node.role==worker"])
    spec.task.placement.preferences.add(spread="node.labels.zone")
    spec.task.placement.max_replicas_per_node = 2
    spec.task.force_update = 4
    spec.update.CopyFrom(
        pb.UpdateConfig(
            parallelism=2,
            delay=SECOND,
            failure_action=pb.FAILURE_ACTION_ROLLBACK,
            monitor=7 * SECOND,
            max_failure_ratio=0.25,
            order=pb.UPDATE_ORDER_START_FIRST,
        )
    )
    spec.rollback.CopyFrom(specs.default_update_config())
    spec.ports.add(protocol="tcp", target_port=80, published_port=8080, publish_mode="ingress")
    spec.ports.add(protocol="udp", target_port=53, published_port=5353, publish_mode="host")
    spec.networks.extend(["front", "back"])
    return spec


def _round_trip(spec: pb.ServiceSpec) -> tuple[pb.ServiceSpec, list[str]]:
    # Through JSON text, as on the wire.
    return spec_in.service_spec(json.loads(json.dumps(spec_out.service_spec(spec))))


@pytest.mark.parametrize(
    "mode",
    [
        pb.SERVICE_MODE_REPLICATED,
        pb.SERVICE_MODE_GLOBAL,
        pb.SERVICE_MODE_REPLICATED_JOB,
        pb.SERVICE_MODE_GLOBAL_JOB,
    ],
)
def test_what_shoal_shows_reads_back_as_the_same_spec_without_warnings(mode: int) -> None:
    spec = _rich_spec(mode)
    back, warnings = _round_trip(spec)
    assert warnings == []
    assert back == spec


def test_a_spec_with_shoals_defaults_applied_round_trips_too() -> None:
    spec = pb.ServiceSpec(name="plain")
    spec.task.container.image = "busybox"
    specs.apply_defaults(spec)
    back, warnings = _round_trip(spec)
    assert warnings == []
    assert back == spec


# What docker CLI 20.10 sends for
#   docker service create --name web --replicas 3 shoal-test:1 sleep 3600
# (flags not given are empty values: Init false, an empty DNSConfig...).
CLI_CREATE: dict[str, Any] = {
    "Name": "web",
    "Labels": {},
    "TaskTemplate": {
        "ContainerSpec": {
            "Image": "shoal-test:1",
            "Args": ["sleep", "3600"],
            "Init": False,
            "DNSConfig": {},
            "Isolation": "default",
        },
        "Resources": {"Limits": {}, "Reservations": {}},
        "Placement": {},
        "ForceUpdate": 0,
    },
    "Mode": {"Replicated": {"Replicas": 3}},
    "EndpointSpec": {"Mode": "vip"},
}


def test_the_docker_clis_create_body_becomes_the_spec_shoals_cli_would_make() -> None:
    spec, warnings = spec_in.service_spec(copy.deepcopy(CLI_CREATE))
    assert warnings == []
    assert spec.name == "web"
    assert spec.mode == pb.SERVICE_MODE_REPLICATED
    assert spec.replicas == 3
    assert spec.task.container.image == "shoal-test:1"
    assert list(spec.task.container.args) == ["sleep", "3600"]
    assert list(spec.task.container.command) == []
    # Unset here, so the ControlAPI applies Swarm's defaults.
    assert not spec.task.HasField("restart")
    assert not spec.HasField("update")
    assert not spec.task.container.HasField("stop_grace_period")


def _with(path: list[str], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(CLI_CREATE)
    node = body
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (["TaskTemplate", "Resources", "Limits", "Pids"], 10, "Pids (--limit-pids)"),
        (["TaskTemplate", "ContainerSpec", "Hostname"], "box", "Hostname (--hostname)"),
        (["TaskTemplate", "ContainerSpec", "Sysctls"], {"net.core.somaxconn": "1024"}, "Sysctls (--sysctl)"),
        (["TaskTemplate", "ContainerSpec", "TTY"], True, "TTY (--tty)"),
        (["TaskTemplate", "ContainerSpec", "Init"], True, "Init (--init)"),
        (["TaskTemplate", "ContainerSpec", "DNSConfig"], {"Nameservers": ["1.1.1.1"]}, "DNSConfig"),
        (["TaskTemplate", "ContainerSpec", "CapabilityAdd"], ["CAP_NET_ADMIN"], "CapabilityAdd"),
        (["TaskTemplate", "ContainerSpec", "Isolation"], "hyperv", "Isolation"),
        (
            ["TaskTemplate", "ContainerSpec", "Mounts"],
            [{"Type": "volume", "Target": "/d", "VolumeOptions": {"NoCopy": True}}],
            "Mounts.VolumeOptions",
        ),
        (["TaskTemplate", "LogDriver"], {"Name": "syslog"}, "LogDriver (--log-driver)"),
        (
            ["TaskTemplate", "Networks"],
            [{"Target": "net1", "DriverOpts": {"x": "y"}}],
            "Networks.DriverOpts (--network driver-opt=)",
        ),
        (["TaskTemplate", "Placement", "Platforms"], [{"OS": "linux"}], "Placement.Platforms"),
        (["EndpointSpec", "Mode"], "dnsrr", "EndpointSpec.Mode (--endpoint-mode dnsrr)"),
        (["EndpointSpec", "Ports"], [{"Name": "http", "TargetPort": 80}], "Ports.Name"),
        (["TaskTemplate", "ContainerSpec", "OomScoreAdj"], 5, "ContainerSpec.OomScoreAdj"),
        (["SomethingNew"], {"x": 1}, "SomethingNew"),
    ],
)
def test_a_field_shoal_cannot_honour_is_a_warning_naming_it(path: list[str], value: Any, named: str) -> None:
    spec, warnings = spec_in.service_spec(_with(path, value))
    assert len(warnings) == 1, warnings
    assert named in warnings[0]
    assert warnings[0].startswith("ignored ")
    # The rest of the spec is still read.
    assert spec.task.container.image == "shoal-test:1"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_with(["TaskTemplate", "PluginSpec"], {"Name": "p"}), "PluginSpec"),
        (_with(["TaskTemplate", "Runtime"], "plugin"), "Runtime"),
        (_with(["TaskTemplate", "ContainerSpec", "Secrets"], [{"SecretName": "s"}]), "files only"),
        (
            _with(["TaskTemplate", "ContainerSpec", "Configs"], [{"ConfigName": "c", "Runtime": {}}]),
            "a credential spec",
        ),
        (_with(["TaskTemplate", "ContainerSpec", "Secrets"], [{"File": {"Name": "x"}}]), "SecretName or"),
        (
            _with(
                ["TaskTemplate", "ContainerSpec", "Secrets"], [{"SecretName": "s", "File": {"Mode": 70000}}]
            ),
            "permission bits",
        ),
        (_with(["Mode"], {"Replicated": {"Replicas": 1}, "Global": {}}), "exactly one"),
        (_with(["Mode", "Replicated", "Replicas"], "3"), "Mode.Replicated.Replicas: expected an integer"),
        (_with(["Mode", "Replicated", "Replicas"], True), "expected an integer"),
        (_with(["Mode", "Replicated", "Replicas"], -1), "between 0"),
        (_with(["TaskTemplate", "ContainerSpec", "Env"], "A=1"), "ContainerSpec.Env: expected a list of"),
        (_with(["TaskTemplate", "RestartPolicy"], {"Condition": "sometimes"}), "none, on-failure or any"),
        (_with(["UpdateConfig"], {"FailureAction": "explode"}), "UpdateConfig.FailureAction"),
        (_with(["UpdateConfig"], {"Order": "random"}), "UpdateConfig.Order"),
        (_with(["EndpointSpec", "Ports"], [{"TargetPort": 70000}]), "1-65535"),
        (_with(["EndpointSpec", "Mode"], "magic"), "vip or dnsrr"),
        ({"Name": "x"}, "TaskTemplate: required"),
        ({"TaskTemplate": {}}, "ContainerSpec: required"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_a_field_shoal_cannot_take_is_refused_naming_it(body: Any, message: str) -> None:
    with pytest.raises(DockerError) as caught:
        spec_in.service_spec(body)
    assert caught.value.status == 400
    assert message in caught.value.message


def test_the_docker_clis_secret_defaults_mean_shoals_defaults() -> None:
    # `docker service create --secret db-pass --config source=site,target=/etc/site,mode=0440`
    refs = [
        {
            "File": {"Name": "db-pass", "UID": "0", "GID": "0", "Mode": 0o444},
            "SecretID": "s1",
            "SecretName": "db-pass",
        }
    ]
    body = _with(["TaskTemplate", "ContainerSpec", "Secrets"], refs)
    body["TaskTemplate"]["ContainerSpec"]["Configs"] = [
        {
            "File": {"Name": "/etc/site", "UID": "0", "GID": "0", "Mode": 0o440},
            "ConfigID": "c1",
            "ConfigName": "site",
        }
    ]
    spec, warnings = spec_in.service_spec(body)
    assert warnings == []
    (secret,) = spec.task.container.secrets
    assert (secret.id, secret.name, secret.target, secret.uid, secret.gid) == ("s1", "db-pass", "", "", "")
    assert not secret.HasField("mode")  # the runtime's default: 0400 for a process task's secret
    (config,) = spec.task.container.configs
    assert (config.name, config.target, config.mode) == ("site", "/etc/site", 0o440)


def test_field_names_match_regardless_of_case_as_gos_decoder_does() -> None:
    body = _with(["TaskTemplate", "ContainerSpec", "HealthCheck"], {"Test": ["CMD", "true"], "Retries": 2})
    spec, warnings = spec_in.service_spec(body)
    assert warnings == []
    assert list(spec.task.container.healthcheck.test) == ["CMD", "true"]
    assert spec.task.container.healthcheck.retries == 2


def test_a_restart_policy_without_a_delay_has_swarms_default_delay() -> None:
    spec, _ = spec_in.service_spec(_with(["TaskTemplate", "RestartPolicy"], {"Condition": "none"}))
    assert spec.task.restart.condition == pb.RESTART_CONDITION_NONE
    assert spec.task.restart.delay == SERVICE.restart_delay


def test_a_jobs_restart_policy_without_a_condition_retries_failures_only() -> None:
    body = _with(["Mode"], {"ReplicatedJob": {"TotalCompletions": 4, "MaxConcurrent": 2}})
    body["TaskTemplate"]["RestartPolicy"] = {"MaxAttempts": 2}
    spec, _ = spec_in.service_spec(body)
    assert spec.mode == pb.SERVICE_MODE_REPLICATED_JOB
    assert (spec.replicas, spec.max_concurrent) == (4, 2)
    assert spec.task.restart.condition == pb.RESTART_CONDITION_ON_FAILURE
    assert spec.task.restart.max_attempts == 2


def test_an_update_config_without_a_monitor_has_the_default_monitor() -> None:
    spec, _ = spec_in.service_spec(_with(["UpdateConfig"], {"Parallelism": 0, "Order": "start-first"}))
    assert spec.update.monitor == SERVICE.update_monitor
    assert spec.update.parallelism == 0
    assert spec.update.order == pb.UPDATE_ORDER_START_FIRST
    assert spec.update.failure_action == pb.FAILURE_ACTION_PAUSE


def test_force_update_is_the_task_templates_counter() -> None:
    spec, _ = spec_in.service_spec(_with(["TaskTemplate", "ForceUpdate"], 7))
    assert spec.task.force_update == 7


def test_registry_auth_from_the_docker_cli_reaches_the_controlapi_as_standard_base64() -> None:
    creds = {"username": "fish", "password": "pw>>>???", "serveraddress": "registry.local:5000"}
    raw = json.dumps(creds).encode()
    header = base64.urlsafe_b64encode(raw).decode()
    assert "-" in header or "_" in header  # the case the ControlAPI's decoder would refuse
    converted = spec_in.registry_auth(header)
    assert json.loads(base64.b64decode(converted, validate=True)) == creds
    # No credentials: the CLI's empty object, or nothing.
    assert spec_in.registry_auth(base64.urlsafe_b64encode(b"{}").decode()) == ""
    assert spec_in.registry_auth("") == ""
    # Not base64 of JSON: passed on for the ControlAPI to refuse.
    assert spec_in.registry_auth("not base64!") == "not base64!"


def test_an_update_that_asks_for_the_same_template_sends_the_stored_one() -> None:
    # Stored as shoal's CLI may leave it: empty messages set, defaults applied.
    current = pb.ServiceSpec(name="web", replicas=2)
    current.task.container.image = "shoal-test:1"
    current.task.container.args.extend(["sleep", "3600"])
    current.task.placement.max_replicas_per_node = 0
    current.task.resources.limits.nano_cpus = 0
    specs.apply_defaults(current)
    assert current.task.HasField("placement") and current.task.HasField("resources")
    # What `docker service scale web=5` sends: what it read, replicas changed.
    body = spec_out.service_spec(current)
    body["Mode"]["Replicated"]["Replicas"] = 5
    spec, warnings = spec_in.service_spec(json.loads(json.dumps(body)))
    assert warnings == []
    updates.keep_unchanged_template(spec, current)
    stored = current.task.SerializeToString(deterministic=True)
    assert spec.task.SerializeToString(deterministic=True) == stored
    assert spec.replicas == 5
    # A real change is left alone.
    body["TaskTemplate"]["ContainerSpec"]["Image"] = "shoal-test:2"
    changed, _ = spec_in.service_spec(json.loads(json.dumps(body)))
    updates.keep_unchanged_template(changed, current)
    assert changed.task.container.image == "shoal-test:2"


def test_a_services_networks_are_read_from_the_task_template_and_the_deprecated_place() -> None:
    body = _with(["TaskTemplate", "Networks"], [{"Target": "f" * 25}, {"Target": "back"}])
    body["Networks"] = [{"Target": "old"}]
    spec, warnings = spec_in.service_spec(body)
    assert warnings == []
    # As given (an ID or a name): the handler turns each into its network's name.
    assert list(spec.networks) == ["f" * 25, "back", "old"]


def test_the_aliases_docker_stack_deploy_gives_are_honoured_and_others_named() -> None:
    body = _with(["Name"], "shop_api")
    body["Labels"] = {"com.docker.stack.namespace": "shop"}
    body["TaskTemplate"]["Networks"] = [
        {"Target": "shop_default", "Aliases": ["api"]},  # what docker stack deploy sends
        {"Target": "shop_front", "Aliases": ["api", "shop_api", "backend", "db"]},
        {"Target": "shared", "Aliases": ["backend"]},
    ]
    spec, warnings = spec_in.service_spec(body)
    assert list(spec.networks) == ["shop_default", "shop_front", "shared"]
    assert warnings == [
        "ignored the network aliases backend, db (--network alias=): a service is resolved by its "
        "name (in a stack, by its short name too)"
    ]
    # Outside a stack only the service's own name is its name.
    plain = _with(["TaskTemplate", "Networks"], [{"Target": "net1", "Aliases": ["web", "api"]}])
    _, warnings = spec_in.service_spec(plain)
    assert len(warnings) == 1 and "aliases api (" in warnings[0]


def test_a_network_attachment_without_a_target_is_refused() -> None:
    with pytest.raises(DockerError) as caught:
        spec_in.service_spec(_with(["TaskTemplate", "Networks"], [{"Aliases": ["x"]}]))
    assert caught.value.status == 400
    assert "TaskTemplate.Networks[0].Target: required" in caught.value.message


def test_networks_are_shown_by_id_and_what_a_client_sends_back_names_them_by_id() -> None:
    spec = _rich_spec()
    ids = {"front": "f" * 25, "back": "b" * 25}
    body = json.loads(json.dumps(spec_out.service_spec(spec, ids)))
    assert body["TaskTemplate"]["Networks"] == [{"Target": "f" * 25}, {"Target": "b" * 25}]
    back, warnings = spec_in.service_spec(body)
    assert warnings == []
    assert list(back.networks) == ["f" * 25, "b" * 25]


def test_an_update_keeps_what_the_engine_api_cannot_say() -> None:
    current = pb.ServiceSpec(name="web", replicas=2)
    current.task.container.image = "shoal-test:1"
    current.ports.add(target_port=80, published_port=8080, proxy_protocol="v2")
    current.ports.add(target_port=53, published_port=5353, protocol="udp")
    current.expose.add(target_port=9000, protocol="tcp")
    specs.apply_defaults(current)
    # What `docker service scale web=3` sends: what it read, replicas changed.
    body = spec_out.service_spec(current)
    body["Mode"]["Replicated"]["Replicas"] = 3
    spec, _ = spec_in.service_spec(json.loads(json.dumps(body)))
    assert not spec.expose and not spec.ports[0].proxy_protocol
    updates.keep_what_the_engine_cannot_say(spec, current)
    updates.keep_unchanged_template(spec, current)
    assert list(spec.expose) == list(current.expose)
    assert list(spec.ports) == list(current.ports)
    assert spec.replicas == 3
    # Published elsewhere, the port is another one: its PROXY protocol is not carried over.
    body["EndpointSpec"]["Ports"][0]["PublishedPort"] = 8081
    moved, _ = spec_in.service_spec(json.loads(json.dumps(body)))
    updates.keep_what_the_engine_cannot_say(moved, current)
    assert moved.ports[0].proxy_protocol == ""
