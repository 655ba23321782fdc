"""`--with-registry-auth`: credentials reach the manager sealed, never in
plain text in etcd, and go only to the nodes that run the service's tasks."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from shoal.cli.service_flags import registry_auth_for
from shoal.manager import seal
from shoal.manager.store import Etcd, Store
from shoal.protos import objects_pb2 as pb

PASSWORD = "s3cret-passw0rd-for-shoal-tests"


def docker_config(tmp_path: Path, registry: str = "https://index.docker.io/v1/") -> Path:
    d = tmp_path / "docker-config"
    d.mkdir()
    auth = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    (d / "config.json").write_text(json.dumps({"auths": {registry: {"auth": auth}}}))
    return d


def test_the_cli_finds_credentials_for_the_image_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path)))
    decoded = json.loads(base64.b64decode(registry_auth_for("busybox:1")))
    assert decoded["username"] == "alice" and decoded["password"] == PASSWORD
    assert registry_auth_for("registry.example:5000/app:1") == ""


def test_sealed_credentials_open_only_with_the_key_and_service() -> None:
    key = seal.new_key()
    sealed = seal.seal(key, b"secret", b"service-1")
    assert b"secret" not in sealed
    assert seal.unseal(key, sealed, b"service-1") == b"secret"
    with pytest.raises(Exception):  # noqa: B017 (cryptography's InvalidTag)
        seal.unseal(key, sealed, b"service-2")


def test_registry_credentials_are_never_stored_in_plain_text(make_cluster: Any, tmp_path: Path) -> None:
    cluster = make_cluster(agents=1)
    env_config = docker_config(tmp_path)
    import subprocess
    import sys

    env = dict(cluster.env, DOCKER_CONFIG=str(env_config))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "shoal",
            "--host",
            cluster.manager_addrs[0],
            "--tls-dir",
            str(cluster.tls_dir),
            "service",
            "create",
            "-d",
            "--with-registry-auth",
            "--name",
            "private",
            "busybox:1",
            "sleep",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    service_id = res.stdout.strip()

    async def raw() -> tuple[bytes, pb.ClusterKeys, pb.Service]:
        etcd = Etcd([cluster.etcd.url])
        store = Store(etcd, cluster.prefix.encode())
        try:
            kvs, _ = await etcd.list_prefix(cluster.prefix.encode())
            everything = b"".join(kv.value for kv in kvs)
            svc = await store.get(pb.Service, service_id)
            keys = await store.list(pb.ClusterKeys)
            return everything, keys[0], svc
        finally:
            await etcd.aclose()

    everything, keys, svc = asyncio.run(raw())
    assert PASSWORD.encode() not in everything
    assert base64.b64encode(f"alice:{PASSWORD}".encode()) not in everything
    # The seal key is apart from the service, in the cluster's keys object
    # (plain, as autolock is off: whoever reads etcd holds the cluster).
    material = pb.KeyMaterial.FromString(keys.material)
    opened = json.loads(
        base64.b64decode(seal.unseal(material.seal_key, svc.registry_auth_sealed, service_id.encode()))
    )
    assert opened["password"] == PASSWORD
