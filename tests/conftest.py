"""Session-wide fixtures: one real etcd for every test that needs one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.etcd_server import EtcdServer


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = EtcdServer(tmp_path_factory.mktemp("etcd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def etcd_prefix() -> bytes:
    """A key prefix of this test's own, so tests share one etcd safely."""
    return f"/t-{uuid.uuid4().hex[:12]}/shoal/v1/".encode()


@pytest.fixture
def state_root(tmp_path: Path) -> Path:
    return tmp_path
