"""Every Compose key the issue lists becomes the ServiceSpec field it means;
every other key is one warning naming it and its service; what cannot be
deployed is refused with file and line (shoal.stack.convert, loader)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shoal.protos import objects_pb2 as pb
from shoal.stack import NAMESPACE_LABEL, Stack, StackError, load_stack


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None, stack: str = "s") -> Stack:
    path = tmp_path / "stack.yml"
    path.write_text(textwrap.dedent(text))
    return load_stack([str(path)], stack, env or {})


def one(tmp_path: Path, body: str, env: dict[str, str] | None = None) -> pb.ServiceSpec:
    text = "services:\n  web:\n" + textwrap.indent(textwrap.dedent(body), "    ")
    stack = load(tmp_path, text, env)
    assert len(stack.services) == 1
    return stack.services[0]


def refused(tmp_path: Path, text: str, *mentions: str) -> str:
    with pytest.raises(StackError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    for word in mentions:
        assert word in message, message
    return message


def test_names_labels_image_commands_and_container_fields(tmp_path: Path) -> None:
    spec = one(
        tmp_path,
        """\
        image: app:1
        entrypoint: /bin/entry --flag "two words"
        command: [serve, 80]
        labels: [com.example.a=1, com.example.b]
        working_dir: /srv
        user: "1000:1000"
        stop_grace_period: 1m30s
        stop_signal: SIGINT
        deploy:
          labels: {tier: front}
        """,
    )
    c = spec.task.container
    assert spec.name == "s_web" and spec.labels == {"tier": "front", NAMESPACE_LABEL: "s"}
    assert c.image == "app:1"
    assert list(c.command) == ["/bin/entry", "--flag", "two words"] and list(c.args) == ["serve", "80"]
    assert dict(c.labels) == {"com.example.a": "1", "com.example.b": "", NAMESPACE_LABEL: "s"}
    assert (c.workdir, c.user, c.stop_signal) == ("/srv", "1000:1000", "SIGINT")
    assert c.stop_grace_period == 90 * 10**9


def test_environment_lists_maps_env_files_and_the_shell(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("FROM_FILE=file\nBOTH=file\nBARE\n")
    spec = one(
        tmp_path,
        """\
        image: app:1
        env_file: a.env
        environment:
          BOTH: service
          NUM: 42
          FLAG: true
          FROM_SHELL:
        """,
        env={"FROM_SHELL": "shell", "BARE": "bare-shell"},
    )
    assert list(spec.task.container.env) == [
        "FROM_FILE=file",
        "BOTH=service",
        "BARE=bare-shell",
        "NUM=42",
        "FLAG=true",
        "FROM_SHELL=shell",
    ]
    stack = load(tmp_path, "services:\n  web:\n    image: app:1\n    environment: [UNSET_HERE]\n")
    assert list(stack.services[0].task.container.env) == []
    assert any("environment UNSET_HERE has no value" in w for w in stack.warnings)


def test_ports_short_syntax_ranges_addresses_and_long_syntax(tmp_path: Path) -> None:
    stack = load(
        tmp_path,
        """\
        services:
          web:
            image: app:1
            ports:
              - 3000
              - "3001-3002"
              - "8000:80"
              - "9090-9091:8080-8081/udp"
              - "127.0.0.1:8443:443"
              - {target: 5000, published: 5000, mode: ingress}
              - {target: 6000, published: "6000", protocol: udp, mode: host}
        """,
    )
    ports = [(p.published_port, p.target_port, p.protocol, p.publish_mode) for p in stack.services[0].ports]
    assert ports == [
        (0, 3000, "tcp", "ingress"),
        (0, 3001, "tcp", "ingress"),
        (0, 3002, "tcp", "ingress"),
        (8000, 80, "tcp", "ingress"),
        (9090, 8080, "udp", "ingress"),
        (9091, 8081, "udp", "ingress"),
        (8443, 443, "tcp", "ingress"),
        (5000, 5000, "tcp", "ingress"),
        (6000, 6000, "udp", "host"),
    ]
    assert any("stack.yml:9" in w and "127.0.0.1 is not honoured" in w for w in stack.warnings)
    refused(
        tmp_path, "services:\n  web:\n    image: app:1\n    ports: ['80-81:90']\n", "as long as each other"
    )
    refused(
        tmp_path, "services:\n  web:\n    image: app:1\n    ports: ['x:90']\n", "stack.yml:4", "invalid port"
    )


def test_healthchecks_in_every_form(tmp_path: Path) -> None:
    def health(body: str) -> pb.HealthCheck:
        return one(
            tmp_path, "image: app:1\nhealthcheck:\n" + textwrap.indent(body, "  ")
        ).task.container.healthcheck

    hc = health("test: curl -f http://localhost\ninterval: 10s\ntimeout: 2s\nretries: 3\nstart_period: 5s\n")
    assert list(hc.test) == ["CMD-SHELL", "curl -f http://localhost"]
    assert (hc.interval, hc.timeout, hc.retries, hc.start_period) == (10**10, 2 * 10**9, 3, 5 * 10**9)
    assert list(health("test: [CMD, check, --now]\n").test) == ["CMD", "check", "--now"]
    assert list(health("test: [CMD-SHELL, check]\n").test) == ["CMD-SHELL", "check"]
    assert list(health("test: [NONE]\n").test) == ["NONE"]
    assert list(health("disable: true\n").test) == ["NONE"]
    refused(
        tmp_path, "services:\n  web:\n    image: app:1\n    healthcheck: {test: [check]}\n", "must start with"
    )


def test_secrets_and_configs_short_and_long_with_their_objects(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("hunter2")
    stack = load(
        tmp_path,
        """\
        services:
          web:
            image: app:1
            secrets:
              - pw
              - {source: api, target: /etc/api.key, uid: "103", gid: 103, mode: 0400}
            configs:
              - {source: conf, target: /etc/app.conf, mode: "0440"}
        secrets:
          pw: {file: ./pw, labels: [kind=password]}
          api: {external: true}
          unused: {file: ./missing}
        configs:
          conf: {content: "a=1", name: app-conf-v2}
        """,
    )
    c = stack.services[0].task.container
    assert [(r.name, r.target, r.uid, r.gid) for r in c.secrets] == [
        ("s_pw", "pw", "", ""),
        ("api", "/etc/api.key", "103", "103"),
    ]
    assert not c.secrets[0].HasField("mode") and c.secrets[1].mode == 0o400
    assert [(r.name, r.target, r.mode) for r in c.configs] == [("app-conf-v2", "/etc/app.conf", 0o440)]
    objects = {(o.kind, o.name): o for o in stack.secrets + stack.configs}
    assert objects[("secret", "s_pw")].data == b"hunter2"
    assert objects[("secret", "s_pw")].labels == {"kind": "password", NAMESPACE_LABEL: "s"}
    assert objects[("secret", "api")].external and objects[("config", "app-conf-v2")].data == b"a=1"
    assert any("secrets.unused: no service uses it" in w for w in stack.warnings)
    refused(
        tmp_path,
        "services:\n  web:\n    image: app:1\n    secrets: [pw]\nsecrets:\n  pw: {file: ./nope}\n",
        "secrets.pw", "nope",
    )  # fmt: skip
    (tmp_path / "huge").write_bytes(b"x" * (500 * 1024 + 1))
    refused(
        tmp_path,
        "services:\n  web:\n    image: app:1\n    secrets: [big]\nsecrets:\n  big: {file: ./huge}\n",
        "500 KiB",
    )


def test_deploy_modes_replicas_placement_resources_and_policies(tmp_path: Path) -> None:
    spec = one(
        tmp_path,
        """\
        image: app:1
        deploy:
          mode: replicated
          replicas: "4"
          endpoint_mode: vip
          placement:
            constraints: [node.role == manager, node.labels.disk==ssd]
            preferences: [{spread: node.labels.zone}, {spread: node.labels.rack}]
            max_replicas_per_node: 2
          resources:
            limits: {cpus: '0.5', memory: 1.5G}
            reservations: {cpus: 0.25, memory: 512M}
          restart_policy: {condition: on-failure, delay: 3s, max_attempts: 4, window: 1m}
          update_config: {parallelism: 2, delay: 1s, failure_action: rollback, monitor: 30s,
                          max_failure_ratio: 0.5, order: start-first}
          rollback_config: {parallelism: 0, failure_action: continue, order: stop-first}
        """,
    )
    task = spec.task
    assert spec.mode == pb.SERVICE_MODE_REPLICATED and spec.replicas == 4
    assert list(task.placement.constraints) == ["node.role == manager", "node.labels.disk==ssd"]
    assert [p.spread for p in task.placement.preferences] == ["node.labels.zone", "node.labels.rack"]
    assert task.placement.max_replicas_per_node == 2
    assert (task.resources.limits.nano_cpus, task.resources.limits.memory_bytes) == (5 * 10**8, 3 * 2**29)
    assert (task.resources.reservations.nano_cpus, task.resources.reservations.memory_bytes) == (
        25 * 10**7,
        2**29,
    )
    r = task.restart
    assert (r.condition, r.delay, r.max_attempts, r.window) == (
        pb.RESTART_CONDITION_ON_FAILURE,
        3 * 10**9,
        4,
        6 * 10**10,
    )
    u = spec.update
    assert (u.parallelism, u.delay, u.failure_action, u.monitor, u.order) == (
        2, 10**9, pb.FAILURE_ACTION_ROLLBACK, 30 * 10**9, pb.UPDATE_ORDER_START_FIRST,
    )  # fmt: skip
    assert u.max_failure_ratio == pytest.approx(0.5)
    assert (spec.rollback.parallelism, spec.rollback.failure_action) == (0, pb.FAILURE_ACTION_CONTINUE)
    for mode, value in (
        ("global", pb.SERVICE_MODE_GLOBAL),
        ("replicated-job", pb.SERVICE_MODE_REPLICATED_JOB),
        ("global-job", pb.SERVICE_MODE_GLOBAL_JOB),
    ):
        job = one(tmp_path, f"image: app:1\ndeploy: {{mode: {mode}, restart_policy: {{delay: 1s}}}}\n")
        assert job.mode == value
        jobs = (pb.SERVICE_MODE_REPLICATED_JOB, pb.SERVICE_MODE_GLOBAL_JOB)
        expected = pb.RESTART_CONDITION_ON_FAILURE if value in jobs else pb.RESTART_CONDITION_ANY
        assert job.task.restart.condition == expected
    refused(tmp_path, "services:\n  web:\n    image: app:1\n    deploy: {mode: sometimes}\n", "not one of")
    refused(tmp_path, "services:\n  web:\n    image: app:1\n    deploy: {replicas: two}\n", "whole number")
    refused(tmp_path, "services:\n  web:\n    image: app:1\n    deploy: {mode: global, replicas: 2}\n",
            "only replicated services have replicas")  # fmt: skip


def test_volumes_and_tmpfs_become_mounts(tmp_path: Path) -> None:
    stack = load(
        tmp_path,
        """\
        services:
          web:
            image: app:1
            volumes:
              - /cache
              - data:/data:ro
              - ./site:/www
              - /host/logs:/logs
              - {type: tmpfs, target: /scratch, tmpfs: {size: 64M}}
              - {type: volume, source: shared, target: /shared}
              - {type: npipe, source: x, target: /x}
            tmpfs: ["/run:size=1m"]
        volumes:
          data:
          shared: {external: true}
        """,
    )
    mounts = [
        (m.type, m.source, m.target, m.readonly, m.tmpfs_size)
        for m in stack.services[0].task.container.mounts
    ]
    assert mounts == [
        ("volume", "", "/cache", False, 0),
        ("volume", "s_data", "/data", True, 0),
        ("bind", str(tmp_path / "site"), "/www", False, 0),
        ("bind", "/host/logs", "/logs", False, 0),
        ("tmpfs", "", "/scratch", False, 64 * 2**20),
        ("volume", "shared", "/shared", False, 0),
        ("tmpfs", "", "/run", False, 2**20),
    ]
    assert any('type "npipe" are not supported' in w for w in stack.warnings)
    refused(tmp_path, "services:\n  web:\n    image: app:1\n    volumes: ['undeclared:/x']\n", "stack.yml:4",
            'volume "undeclared" is not declared')  # fmt: skip


def test_every_unsupported_key_is_one_warning_naming_key_and_service(tmp_path: Path) -> None:
    stack = load(
        tmp_path,
        """\
        version: "3.9"
        name: ignored-project-name
        x-shared: {anything: goes}
        services:
          web:
            image: app:1
            build: .
            depends_on: [db]
            privileged: true
            cap_add: [ALL]
            networks: [front]
            x-custom: fine
            restart: always
            deploy:
              resources: {limits: {pids: 10}}
              endpoint_mode: dnsrr
          db:
            image: db:1
            healthcheck: {test: [CMD, x], start_interval: 1s}
        networks:
          front:
        what: is this
        """,
    )
    expected = {
        "stack.yml:7: service web: build",
        "stack.yml:8: service web: depends_on",
        "stack.yml:9: service web: privileged",
        "stack.yml:10: service web: cap_add",
        "stack.yml:15: service web: deploy.resources.limits.pids",
        "stack.yml:16: service web: deploy.endpoint_mode dnsrr",
        "stack.yml:19: service db: healthcheck.start_interval",
        "stack.yml:22: what is not a top-level Compose key",
    }
    for prefix in expected:
        assert sum(f"/{prefix}" in w for w in stack.warnings) == 1, (prefix, stack.warnings)
    assert len(stack.warnings) == len(expected), stack.warnings
    assert not any("x-" in w or "version" in w for w in stack.warnings)
    # restart: always is honoured when deploy gives no restart policy.
    assert stack.services[0].task.restart.condition == pb.RESTART_CONDITION_ANY


def test_what_cannot_be_deployed_is_refused_with_its_location(tmp_path: Path) -> None:
    refused(tmp_path, "- just\n- a list\n", "not a Compose file")
    refused(tmp_path, "version: '3'\n", "no services")
    refused(tmp_path, "services:\n  web:\n    command: sleep 1\n", "stack.yml:2", "image is required")
    web = "services:\n  web:\n    image: app:1\n"
    bad_constraint = web + "    deploy: {placement: {constraints: [zone=a]}}\n"
    refused(tmp_path, bad_constraint, "stack.yml:2", "service web", 'constraint "zone=a"')
    refused(tmp_path, "services:\n  web:\n    image: BAD IMAGE\n", "stack.yml:2", "image")
    refused(tmp_path, "services:\n  web:\n    image: app:1\n    stop_grace_period: 10\n", "stack.yml:4",
            "a duration such as 10s")  # fmt: skip
    refused(tmp_path, web + "    deploy: {resources: {limits: {memory: lots}}}\n", "invalid size")
    with pytest.raises(StackError, match="stack name"):
        load(tmp_path, "services:\n  web:\n    image: app:1\n", stack="bad name")
