"""Real-world stack files (tests/fixtures/compose, with their sources and
licences in their headers): the Docker samples' voting app and the docker/cli
Compose loader's full example load as Docker reads them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shoal.protos import objects_pb2 as pb
from shoal.stack import StackError, load_stack

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "compose"
SECOND = 10**9


def test_the_voting_app_loads_with_its_replicas_constraints_and_policies() -> None:
    stack = load_stack([str(FIXTURES / "voting-app" / "docker-stack.yml")], "vote", {})
    specs = {s.name: s for s in stack.services}
    assert list(specs) == [f"vote_{n}" for n in ("redis", "db", "vote", "result", "worker", "visualizer")]
    assert {n: s.replicas for n, s in specs.items() if s.HasField("replicas")} == {
        "vote_redis": 1,
        "vote_vote": 2,
        "vote_result": 1,
        "vote_worker": 1,
    }
    for name in ("vote_db", "vote_worker", "vote_visualizer"):
        assert list(specs[name].task.placement.constraints) == ["node.role == manager"]
    assert (specs["vote_redis"].update.parallelism, specs["vote_redis"].update.delay) == (2, 10 * SECOND)
    worker = specs["vote_worker"]
    assert dict(worker.labels)["APP"] == "VOTING"
    restart = worker.task.restart
    assert (restart.condition, restart.delay, restart.max_attempts, restart.window) == (
        pb.RESTART_CONDITION_ON_FAILURE, 10 * SECOND, 3, 120 * SECOND,
    )  # fmt: skip
    assert list(specs["vote_db"].task.container.env) == [
        "POSTGRES_USER=postgres",
        "POSTGRES_PASSWORD=postgres",
    ]
    [db_mount] = specs["vote_db"].task.container.mounts
    assert (db_mount.type, db_mount.source, db_mount.target) == (
        "volume",
        "vote_db-data",
        "/var/lib/postgresql/data",
    )
    visualizer = specs["vote_visualizer"]
    assert visualizer.task.container.stop_grace_period == 90 * SECOND
    assert [(p.published_port, p.target_port) for p in specs["vote_vote"].ports] == [(5000, 80)]
    # Networks are discovery scopes: vote and redis share frontend, db and
    # result backend, worker both; the visualizer is on the default one.
    on = {n: list(s.networks) for n, s in specs.items()}
    assert on["vote_vote"] == on["vote_redis"] == ["vote_frontend"]
    assert on["vote_db"] == on["vote_result"] == ["vote_backend"]
    assert on["vote_worker"] == ["vote_frontend", "vote_backend"]
    assert {n.name for n in stack.networks} >= {"vote_frontend", "vote_backend"}
    assert not any("networks" in w for w in stack.warnings)
    # What cannot be honoured is named, once per key and service.
    assert sum("depends_on is ignored" in w for w in stack.warnings) == 3


def test_the_full_example_is_refused_as_shipped_naming_what_docker_refuses_too(tmp_path: Path) -> None:
    folder = tmp_path / "full"
    shutil.copytree(FIXTURES / "full-example", folder)
    with pytest.raises(StackError, match='volume "datavolume" is not declared'):
        load_stack([str(folder / "full-example.yml")], "full", {})
    (folder / "volumes.yml").write_text("volumes:\n  datavolume:\n")
    with pytest.raises(StackError, match="network other-other-network is not defined"):
        load_stack([str(folder / "full-example.yml"), str(folder / "volumes.yml")], "full", {})
    (folder / "volumes.yml").write_text("volumes:\n  datavolume:\nnetworks:\n  other-other-network:\n")
    with pytest.raises(StackError, match='constraint "node=foo"'):
        load_stack([str(folder / "full-example.yml"), str(folder / "volumes.yml")], "full", {})


def test_the_full_example_converts_every_key_it_can_and_names_the_others(tmp_path: Path) -> None:
    folder = tmp_path / "full"
    shutil.copytree(FIXTURES / "full-example", folder)
    fixed = folder / "fixed.yml"
    fixed.write_text((folder / "full-example.yml").read_text().replace("[node=foo]", "[node.labels.az==a]"))
    (folder / "volumes.yml").write_text("volumes:\n  datavolume:\nnetworks:\n  other-other-network:\n")
    stack = load_stack([str(fixed), str(folder / "volumes.yml")], "full", {"QUX": "from_shell"})
    [spec] = stack.services
    c = spec.task.container
    assert spec.name == "full_foo" and spec.replicas == 6 and dict(spec.labels)["FOO"] == "BAR"
    assert list(c.command) == ["/code/entrypoint.sh", "-p", "3000"]
    assert list(c.args) == ["bundle", "exec", "thin", "-p", "3000"]
    assert list(c.env) == [
        "FOO=foo_from_env_file",
        "BAR=bar_from_env_file_2",
        "BAZ=baz_from_service_def",
        "QUX=from_shell",
    ]
    assert (c.workdir, c.user, c.stop_signal, c.stop_grace_period) == (
        "/code",
        "someone",
        "SIGUSR1",
        20 * SECOND,
    )
    assert list(c.healthcheck.test) == ["CMD-SHELL", 'echo "hello world"'] and c.healthcheck.retries == 5
    assert dict(c.labels)["com.example.number"] == "42"
    assert [(r.name, r.target, r.uid, r.mode) for r in c.secrets] == [
        ("full_secret1", "secret1", "", 0),
        ("my_secret", "my_secret", "103", 0o440),
    ]
    assert [(r.name, r.target) for r in c.configs] == [
        ("full_config1", "config1"),
        ("my_config", "/my_config"),
    ]
    limits, reservations = spec.task.resources.limits, spec.task.resources.reservations
    assert (limits.nano_cpus, limits.memory_bytes) == (10**6, 50 * 2**20)
    assert (reservations.nano_cpus, reservations.memory_bytes) == (10**5, 20 * 2**20)
    placement = spec.task.placement
    assert list(placement.constraints) == ["node.labels.az==a"] and placement.max_replicas_per_node == 5
    assert [p.spread for p in placement.preferences] == ["node.labels.az"]
    for cfg in (spec.update, spec.rollback):
        assert (cfg.parallelism, cfg.delay, cfg.failure_action, cfg.monitor, cfg.order) == (
            3, 10 * SECOND, pb.FAILURE_ACTION_CONTINUE, 60 * SECOND, pb.UPDATE_ORDER_START_FIRST,
        )  # fmt: skip
    assert len(spec.ports) == 22 and {p.publish_mode for p in spec.ports} == {"ingress"}
    assert list(spec.networks) == ["full_some-network", "full_other-network", "full_other-other-network"]
    assert [(p.target_port, p.protocol) for p in spec.expose] == [(3000, "tcp"), (8000, "tcp")]
    assert [m.type for m in c.mounts].count("tmpfs") == 3  # one volume entry, two from tmpfs:
    secrets = {o.name: o for o in stack.secrets}
    assert secrets["full_secret1"].data == b"secret data written for shoal tests\n"
    assert secrets["my_secret"].external
    for key in (
        "build",
        "cap_add",
        "cap_drop",
        "devices",
        "dns",
        "privileged",
        "ulimits",
        "logging",
        "sysctls",
    ):
        assert sum(f"service foo: {key} is ignored" in w for w in stack.warnings) == 1, key
    assert not any("x-foo" in w or "x-bar" in w for w in stack.warnings)
