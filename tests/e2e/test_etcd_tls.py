"""A cluster on an etcd that serves only clients with a certificate of its CA."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shoal.manager.store import Etcd, EtcdTLS, StoreUnavailable
from tests.support.cluster import Cluster, sleep_seconds, wait_for, wait_pids
from tests.support.etcd_server import EtcdServer


def test_a_cluster_works_end_to_end_on_an_etcd_that_requires_client_certificates(tmp_path: Path) -> None:
    etcd = EtcdServer(tmp_path / "etcd", tls=True)
    assert etcd.url.startswith("https://") and etcd.certs is not None
    cluster = Cluster(etcd, tmp_path / "cluster")
    try:
        cluster.start_manager()
        cluster.start_agent()
        cluster.wait_nodes_ready(1)
        marker = sleep_seconds(3660)
        assert cluster.cli("service", "create", "--name", "sealed", "app:1", "sleep", marker).code == 0
        wait_pids(f"sleep {marker}", 1)
        wait_for(lambda: cluster.services()[0]["replicas_running"] == 1, what="1/1")

        async def without(tls: EtcdTLS | None) -> None:
            client = Etcd([etcd.url], tls)
            try:
                await client.get(b"/")
            finally:
                client.close()

        # Neither a plain client nor one that trusts etcd but has no certificate gets in.
        for tls in (None, EtcdTLS(etcd.certs.ca)):
            with pytest.raises(StoreUnavailable):
                asyncio.run(without(tls))
    finally:
        cluster.close()
        etcd.stop()
