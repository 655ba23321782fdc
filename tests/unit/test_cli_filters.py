"""-f/--filter with docker's keys: any value of a key, every key (labels: all)."""

from __future__ import annotations

import pytest

from shoal.cli.client import CLIError
from shoal.cli.filters import (
    FILE_KEYS,
    NODE_KEYS,
    SERVICE_KEYS,
    TASK_KEYS,
    file_matches,
    node_matches,
    parse_filters,
    service_matches,
    task_matches,
)
from shoal.cli.listing import natural_key
from shoal.protos import objects_pb2 as pb


def service(sid: str, name: str, mode: int = pb.SERVICE_MODE_REPLICATED, **labels: str) -> pb.Service:
    return pb.Service(meta=pb.Meta(id=sid), spec=pb.ServiceSpec(name=name, mode=mode, labels=labels))


SERVICES = [
    service("aaa111", "web", env="prod", tier="front"),
    service("aab222", "webhook", env="dev"),
    service("bbb333", "api", pb.SERVICE_MODE_GLOBAL, env="prod"),
    service("ccc444", "batch", pb.SERVICE_MODE_REPLICATED_JOB),
]


def names(*flags: str) -> list[str]:
    f = parse_filters(flags, SERVICE_KEYS)
    return [s.spec.name for s in SERVICES if service_matches(f, s)]


def test_service_filters_match_as_dockers_do() -> None:
    assert names() == ["web", "webhook", "api", "batch"]
    assert names("name=we") == ["web", "webhook"], "name is a prefix"
    assert names("name=web", "name=api") == ["web", "webhook", "api"], "values of one key: any"
    assert names("name=we", "label=env=prod") == ["web"], "different keys: all"
    assert names("label=env") == ["web", "webhook", "api"]
    assert names("label=env=prod", "label=tier") == ["web"], "label filters: all must match"
    assert names("mode=global") == ["api"]
    assert names("mode=replicated-job", "mode=global") == ["api", "batch"]
    assert names("id=aa") == ["web", "webhook"]


@pytest.mark.parametrize(
    ("flag", "says"),
    [
        ("nope=1", 'unknown key "nope" (keys: id, name, label, mode)'),
        ("name", "expected KEY=VALUE"),
        ("mode=swarm", "mode must be one of replicated, global, replicated-job, global-job"),
    ],
)
def test_unknown_keys_and_values_are_refused_naming_what_is_allowed(flag: str, says: str) -> None:
    with pytest.raises(CLIError) as err:
        parse_filters([flag], SERVICE_KEYS)
    assert says in str(err.value)


def task(tid: str, slot: int, node: str, desired: int, svc: str = "web") -> pb.Task:
    return pb.Task(meta=pb.Meta(id=tid), service_name=svc, slot=slot, node_id=node, desired_state=desired)


TASKS = [
    task("t1aaa", 1, "n1xyz", pb.TASK_STATE_RUNNING),
    task("t1old", 1, "n2xyz", pb.TASK_STATE_SHUTDOWN),
    task("t2aaa", 2, "n2xyz", pb.TASK_STATE_RUNNING),
    task("t10aa", 10, "n1xyz", pb.TASK_STATE_ACCEPTED),
]
HOSTNAMES = {"n1xyz": "node-1", "n2xyz": "node-2"}


def task_ids(*flags: str) -> list[str]:
    f = parse_filters(flags, TASK_KEYS)
    return [t.meta.id for t in TASKS if task_matches(f, t, HOSTNAMES)]


def test_task_filters_match_as_dockers_do() -> None:
    assert task_ids("desired-state=running") == ["t1aaa", "t2aaa", "t10aa"]
    assert task_ids("desired-state=shutdown") == ["t1old"]
    assert task_ids("desired-state=accepted") == ["t10aa"]
    assert task_ids("node=node-2") == ["t1old", "t2aaa"], "by hostname"
    assert task_ids("node=n1") == ["t1aaa", "t10aa"], "by ID prefix"
    assert task_ids("name=web.1") == ["t1aaa", "t1old"], "a slot's tasks, not web.10's"
    assert task_ids("name=web.1.t1o") == ["t1old"]
    assert task_ids("id=t1", "desired-state=running") == ["t1aaa", "t10aa"], "an ID prefix"
    assert task_ids("id=t1a", "id=t2") == ["t1aaa", "t2aaa"]
    assert task_ids("node=node-1", "node=node-2", "desired-state=shutdown") == ["t1old"]


def node(
    nid: str, host: str, role: int = pb.NODE_ROLE_WORKER, agent: dict[str, str] | None = None, **spec: str
) -> pb.Node:
    return pb.Node(
        meta=pb.Meta(id=nid),
        role=role,
        description=pb.NodeDescription(hostname=host, labels=agent or {}),
        spec=pb.NodeSpec(labels=spec),
    )


NODES = [
    node("n1", "node-1", agent={"disk": "ssd"}, zone="a"),
    node("n2", "node-2", zone="b"),
    node("m1", "mgr-1", pb.NODE_ROLE_MANAGER),
]


def hosts(*flags: str) -> list[str]:
    f = parse_filters(flags, NODE_KEYS)
    return [n.description.hostname for n in NODES if node_matches(f, n)]


def test_node_filters_match_as_dockers_do() -> None:
    assert hosts("role=worker") == ["node-1", "node-2"]
    assert hosts("role=manager") == ["mgr-1"]
    assert hosts("name=node") == ["node-1", "node-2"]
    assert hosts("node.label=zone=b") == ["node-2"]
    assert hosts("node.label=zone") == ["node-1", "node-2"]
    assert hosts("label=disk=ssd") == ["node-1"], "label: the agent's own labels"
    assert hosts("membership=accepted") == ["node-1", "node-2", "mgr-1"]
    assert hosts("membership=pending") == []
    assert hosts("id=n", "role=worker", "node.label=zone=a") == ["node-1"]


def test_secret_and_config_filters_take_id_name_prefix_and_labels() -> None:
    found = [
        pb.Secret(meta=pb.Meta(id="s1aaa"), spec=pb.SecretSpec(name="app_token", labels={"stack": "app"})),
        pb.Secret(meta=pb.Meta(id="s2bbb"), spec=pb.SecretSpec(name="app_key")),
        pb.Config(meta=pb.Meta(id="c1ccc"), spec=pb.ConfigSpec(name="web_conf", labels={"stack": "web"})),
    ]

    def matching(*flags: str) -> list[str]:
        f = parse_filters(flags, FILE_KEYS)
        return [o.spec.name for o in found if file_matches(f, o)]

    assert matching("name=app_") == ["app_token", "app_key"]
    assert matching("id=s2", "id=c1") == ["app_key", "web_conf"]
    assert matching("label=stack") == ["app_token", "web_conf"]
    assert matching("label=stack=app", "name=app") == ["app_token"]
    with pytest.raises(CLIError, match='unknown key "mode" \\(keys: id, name, label\\)'):
        parse_filters(["mode=global"], FILE_KEYS)


def test_listings_sort_names_as_docker_does_numbers_by_value() -> None:
    names = ["web10", "api", "web2", "web1", "web2b"]
    assert sorted(names, key=natural_key) == ["api", "web1", "web2", "web2b", "web10"]
