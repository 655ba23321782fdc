"""The Docker API's networks (shoal.manager.dockerapi.netspecs): what the
docker CLI sends to create one becomes the spec `shoal network create`
would make; what shoal cannot honour is a warning or a refusal naming the
flag, never dropped; and the filters of `docker network ls` select as the
engine's do."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shoal.manager.dockerapi import filters, netspecs
from shoal.manager.dockerapi.errors import DockerError
from shoal.protos import objects_pb2 as pb

# What docker CLI 20.10 sends for `docker network create -d overlay net1`.
CLI_CREATE: dict[str, Any] = {
    "CheckDuplicate": True,
    "Driver": "overlay",
    "Scope": "",
    "EnableIPv6": False,
    "IPAM": {"Driver": "default", "Options": {}, "Config": []},
    "Internal": False,
    "Attachable": False,
    "Ingress": False,
    "ConfigOnly": False,
    "ConfigFrom": None,
    "Options": {},
    "Labels": {},
    "Name": "net1",
}
# What `docker stack deploy` sends for a Compose network with `attachable: true`.
STACK_CREATE: dict[str, Any] = {
    "CheckDuplicate": False,
    "Driver": "overlay",
    "Scope": "",
    "EnableIPv6": False,
    "IPAM": None,
    "Internal": False,
    "Attachable": True,
    "Ingress": False,
    "ConfigOnly": False,
    "ConfigFrom": None,
    "Options": None,
    "Labels": {"com.docker.stack.namespace": "demo", "tier": "front"},
    "Name": "demo_front",
}


def _with(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(CLI_CREATE)
    body.update(changes)
    return body


def test_the_docker_clis_create_becomes_the_spec_shoals_cli_would_make() -> None:
    spec, warnings = netspecs.create_request(copy.deepcopy(CLI_CREATE))
    assert warnings == []
    assert spec == pb.NetworkSpec(name="net1", driver="overlay")
    # The driver is the ControlAPI's to check (bridge, the CLI's default, is
    # refused there); an empty one is its default.
    spec, _ = netspecs.create_request(_with(Driver="bridge"))
    assert spec.driver == "bridge"
    spec, _ = netspecs.create_request({"Name": "bare"})
    assert spec == pb.NetworkSpec(name="bare")


def test_a_stacks_network_keeps_its_labels_and_attachable_is_a_warning() -> None:
    spec, warnings = netspecs.create_request(copy.deepcopy(STACK_CREATE))
    assert spec.name == "demo_front"
    assert dict(spec.labels) == {"com.docker.stack.namespace": "demo", "tier": "front"}
    assert warnings == ["ignored Attachable (--attachable): shoal runs no standalone containers to attach"]


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"EnableIPv6": True}, "EnableIPv6 (--ipv6)"),
        ({"IPAM": {"Driver": "default", "Config": [{"Subnet": "10.9.0.0/24"}]}}, "IPAM.Config (--subnet"),
        ({"IPAM": {"Driver": "custom"}}, "IPAM.Driver (--ipam-driver)"),
        ({"IPAM": {"Options": {"a": "b"}}}, "IPAM.Options (--ipam-opt)"),
        (
            {"Options": {"com.docker.network.driver.mtu": "1400"}},
            "Options (--opt) com.docker.network.driver.mtu",
        ),
        ({"EnableIPv4": False, "SomethingNew": {"x": 1}}, "ignored SomethingNew"),
    ],
)
def test_what_means_nothing_for_a_shoal_network_is_a_warning_naming_it(
    changes: dict[str, Any], named: str
) -> None:
    spec, warnings = netspecs.create_request(_with(**changes))
    assert spec.name == "net1"
    assert len(warnings) == 1, warnings
    assert named in warnings[0] and warnings[0].startswith("ignored ")


def test_many_driver_options_or_unknown_fields_are_named_within_bounds() -> None:
    _, warnings = netspecs.create_request(_with(Options={f"opt{i:02}": "x" for i in range(20)}))
    assert "opt00, opt01" in warnings[0] and "and 12 more" in warnings[0]
    assert len(warnings[0]) < 300
    made_up = {f"{'K' * 1000}{i}": True for i in range(100)}
    _, warnings = netspecs.create_request(_with(**made_up))
    assert len(warnings) == 1 and "and 92 more" in warnings[0]
    assert len(warnings[0]) < 2000


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"Internal": True}, "Internal (--internal): shoal networks do not cut their services off"),
        ({"Ingress": True}, "Ingress (--ingress): shoal's routing mesh is built in"),
        ({"ConfigOnly": True}, "ConfigOnly (--config-only)"),
        ({"ConfigFrom": {"Network": "template"}}, "ConfigFrom (--config-from)"),
        ({"Options": {"encrypted": ""}}, "shoal does not encrypt the traffic between nodes"),
        ({"Scope": "local"}, 'Scope (--scope): "local": shoal networks span the cluster'),
        ({"Name": ""}, "Name: required"),
        ({"Labels": {"a": 1}}, "Labels: expected an object of strings"),
        ({"Internal": "yes"}, "Internal: expected true or false"),
    ],
)
def test_what_a_shoal_network_cannot_be_is_refused_naming_it(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(DockerError) as caught:
        netspecs.create_request(_with(**changes))
    assert caught.value.status == 400
    assert message in caught.value.message


def _shown(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    n = pb.Network(spec=pb.NetworkSpec(name=name, driver="overlay", labels=labels or {}))
    n.meta.id = f"{name[:3]}{'x' * 22}"
    return netspecs.network(n)


def _names(raw: str, used: frozenset[str] = frozenset()) -> list[str]:
    wanted = filters.parse(raw, netspecs.LIST_FILTERS)
    shown = [
        netspecs.ingress(),
        _shown("net1"),
        _shown("shop_default", {"com.docker.stack.namespace": "shop"}),
    ]
    return [s["Name"] for s in shown if netspecs.listed(wanted, s, s["Name"] in used)]


def test_docker_network_ls_filters_select_as_the_engines_do() -> None:
    everything = ["ingress", "net1", "shop_default"]
    assert _names("") == everything
    # name and id: a part of it, or anchored by ^ and $ (the engine reads a regular expression).
    assert _names('{"name":{"net":true}}') == ["net1"]
    assert _names('{"name":{"default":true}}') == ["shop_default"]
    assert _names('{"name":{"^shop":true}}') == ["shop_default"]
    assert _names('{"name":{"^net1$":true,"ingress":true}}') == ["ingress", "net1"]
    assert _names('{"name":{"^ne$":true}}') == []
    assert _names('{"id":{"^net":true}}') == ["net1"]
    # The label docker stack deploy and stack rm select a stack's networks by.
    assert _names('{"label":{"com.docker.stack.namespace=shop":true}}') == ["shop_default"]
    assert _names('{"driver":{"overlay":true},"scope":{"swarm":true}}') == everything
    assert _names('{"scope":{"local":true}}') == []
    assert _names('{"type":{"builtin":true}}') == ["ingress"]
    assert _names('{"type":{"custom":true}}') == ["net1", "shop_default"]
    # Dangling: no service uses it (the built-in one never is).
    assert _names('{"dangling":{"true":true}}', used=frozenset({"net1"})) == ["shop_default"]
    assert _names('{"dangling":{"false":true}}', used=frozenset({"net1"})) == ["ingress", "net1"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"type":{"local":true}}', "invalid filter 'type'='local'"),
        ('{"dangling":{"maybe":true}}', "invalid filter 'dangling'='maybe'"),
        ('{"color":{"red":true}}', "Invalid filter 'color'"),
    ],
)
def test_a_filter_the_engine_does_not_know_is_refused(raw: str, message: str) -> None:
    with pytest.raises(DockerError) as caught:
        _names(raw)
    assert caught.value.status == 400 and message in caught.value.message
