"""Several -c files merge in order as Compose merges them (shoal.stack.merge)."""

from __future__ import annotations

from pathlib import Path

from shoal.stack import load_stack
from shoal.stack.located import plain
from shoal.stack.merge import merge_files
from shoal.stack.normalize import service
from shoal.stack.yamlsafe import parse


def normalized(text: str, name: str) -> object:
    doc = parse(text, name)
    services = doc["services"]
    for key in list(services):
        services.put(key, service(services[key], key, services.at(key), lambda _: None), services.at(key))
    return doc


BASE = """\
services:
  web:
    image: app:1
    command: [serve, --port, "80"]
    environment: [A=1, B=2]
    labels: {team: a}
    ports: ["8080:80", "9090:90"]
    volumes: ["data:/data", "/logs"]
    secrets: [one, {source: two, target: t2}]
    deploy:
      replicas: 2
      placement: {constraints: [node.role == worker]}
      update_config: {parallelism: 1, delay: 5s}
    healthcheck: {test: [CMD, check], interval: 5s}
  db:
    image: db:1
"""

OVERRIDE = """\
services:
  web:
    image: app:2
    command: serve --verbose
    environment: {B: "3", C: "4"}
    ports: ["8080:80", "7070:70"]
    volumes: ["other:/data"]
    secrets: [{source: two, target: t2b}, three]
    deploy:
      placement: {constraints: [node.labels.zone == a]}
      update_config: {delay: 10s}
    healthcheck: {test: [CMD, other]}
  cache:
    image: cache:1
"""


def test_maps_merge_scalars_and_commands_are_replaced_keyed_lists_merge_by_key() -> None:
    merged = plain(merge_files(normalized(BASE, "base.yml"), normalized(OVERRIDE, "override.yml")))  # type: ignore[arg-type]
    web = merged["services"]["web"]
    assert set(merged["services"]) == {"web", "db", "cache"}
    assert web["image"] == "app:2"
    assert web["command"] == "serve --verbose"  # replaced whole, not appended
    assert web["environment"] == {"A": "1", "B": "3", "C": "4"}
    assert web["labels"] == {"team": "a"}
    assert [(p["published"], p["target"]) for p in web["ports"]] == [(9090, 90), (8080, 80), (7070, 70)]
    assert [(v.get("source"), v["target"]) for v in web["volumes"]] == [(None, "/logs"), ("other", "/data")]
    assert [(s["source"], s.get("target")) for s in web["secrets"]] == [
        ("one", None),
        ("two", "t2b"),
        ("three", None),
    ]
    assert web["deploy"]["replicas"] == 2
    assert web["deploy"]["placement"]["constraints"] == ["node.role == worker", "node.labels.zone == a"]
    assert web["deploy"]["update_config"] == {"parallelism": 1, "delay": "10s"}
    assert web["healthcheck"] == {"test": ["CMD", "other"], "interval": "5s"}


def test_locations_come_from_the_file_that_won(tmp_path: Path) -> None:
    merged = merge_files(normalized(BASE, "base.yml"), normalized(OVERRIDE, "override.yml"))  # type: ignore[arg-type]
    web = merged["services"]["web"]
    assert str(web.at("image")) == "override.yml:3"
    assert str(web["environment"].at("A")) == "base.yml:5"
    assert str(web["environment"].at("C")) == "override.yml:5"


def test_files_merge_before_conversion_and_the_later_file_wins(tmp_path: Path) -> None:
    (tmp_path / "base.yml").write_text(
        "services:\n  web:\n    image: app:1\n    command: sleep 1\n    deploy: {replicas: 1}\n"
    )
    (tmp_path / "prod.yml").write_text(
        "services:\n  web:\n    deploy: {replicas: 5}\n    environment: [MODE=prod]\n"
    )
    stack = load_stack([str(tmp_path / "base.yml"), str(tmp_path / "prod.yml")], "s", {})
    [spec] = stack.services
    assert spec.replicas == 5 and list(spec.task.container.env) == ["MODE=prod"]
    assert list(spec.task.container.args) == ["sleep", "1"]
