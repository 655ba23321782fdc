"""Certificates live and die on schedule: renewal over the session, CA
rotation without disturbing tasks, and autolock of the cluster's keys."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from shoal import pki
from shoal.manager.keyring import new_unlock_key
from shoal.manager.store import Etcd
from tests.support.cluster import Cluster, sleep_seconds, wait_for, wait_pids
from tests.support.etcd_server import EtcdServer


def _read(path: Any) -> bytes:
    try:
        return bytes(path.read_bytes())
    except OSError:
        return b""


def test_an_agent_keeps_its_session_node_and_tasks_across_certificate_renewals(make_cluster: Any) -> None:
    c: Cluster = make_cluster(agents=0)
    assert c.cli("cluster", "update", "--cert-expiry", "1m").code == 0
    # The manager's own certificate follows the new lifetime from its next issue.
    c.managers[0].stop()
    c.restart(c.managers[0])
    wait_for(lambda: c.cli("info").code == 0, what="manager back")
    agent = c.start_agent()
    c.wait_nodes_ready(1)
    marker = sleep_seconds(3650)
    assert c.cli("service", "create", "--name", "steady", "app:1", "sleep", marker).code == 0
    pids = wait_pids(f"sleep {marker}", 1)
    node_dir = c.agent_dir(agent) / "node"
    node_id = pki.identity_from_cert(_read(node_dir / "cert.pem")).node_id
    server_cert = c.root / "manager-1" / "server" / "cert.pem"

    seen = [_read(node_dir / "cert.pem")]
    seen_server = [_read(server_cert)]

    def renewed_three_times() -> bool:
        current = _read(node_dir / "cert.pem")
        if current and current != seen[-1]:
            seen.append(current)
        server = _read(server_cert)
        if server and server != seen_server[-1]:
            seen_server.append(server)
        return len(seen) >= 4

    wait_for(renewed_three_times, timeout=240, interval=0.5, what="three certificate renewals")
    for cert in seen:
        assert pki.identity_from_cert(cert).node_id == node_id
    assert len({pki.cert_info(cert).serial for cert in seen}) == 4
    assert len(seen_server) >= 2, "the manager renews its own server certificate too"
    assert wait_pids(f"sleep {marker}", 1) == pids
    assert [t["id"] for t in c.running("steady")] == [t["id"] for t in c.tasks("steady")]
    log = agent.output()
    assert log.count("session with manager") == 1, "one session all along"
    assert log.count("renewed this node's certificate") >= 3
    assert c.nodes()[0]["status"] == "ready"


def test_ca_rotation_recertifies_every_node_without_restarting_a_task(make_cluster: Any) -> None:
    c: Cluster = make_cluster(agents=2)
    marker = sleep_seconds(3651)
    assert c.cli("service", "create", "--name", "calm", "--replicas", "2", "app:1", "sleep", marker).code == 0
    pids = wait_pids(f"sleep {marker}", 2)
    tasks_before = sorted(t["id"] for t in c.running("calm"))
    old_token = c.token()
    old_root = _read(c.tls_dir / "ca.pem")

    res = c.cli("cluster", "ca", "--rotate", timeout=180)
    assert res.code == 0, res.err
    assert "CA rotation complete" in res.out
    status = c.cli("cluster", "ca", "--format", "json").json()
    assert not status["rotating"]
    assert status["digest"] != pki.cert_digest(old_root)

    new_root = _read(c.tls_dir / "ca.pem")
    assert pki.cert_digest(new_root) == status["digest"]
    for agent in c.agents:
        node_dir = c.agent_dir(agent) / "node"
        assert pki.issuer_of(_read(node_dir / "cert.pem"), (new_root,)) is not None
        # Once the rotation is over, nodes trust the new root alone.
        wait_for(lambda d=node_dir: _read(d / "ca.pem") == new_root, what="agent trusts the new root only")
    assert wait_pids(f"sleep {marker}", 2) == pids
    assert sorted(t["id"] for t in c.running("calm")) == tasks_before
    assert c.token() != old_token

    intruder = c.start_agent(token=old_token, hostname="late")
    assert intruder.wait_exit(60) != 0
    assert "does not match the join token's digest" in intruder.output()
    newcomer = c.start_agent(hostname="fresh")
    wait_for(lambda: "fresh" in {n["hostname"] for n in c.nodes() if n["status"] == "ready"}, what="new node")
    assert newcomer.running_or_fail()


def _etcd_values(etcd_server: EtcdServer, prefix: str) -> list[bytes]:
    async def read() -> list[bytes]:
        etcd = Etcd([etcd_server.url])
        try:
            kvs, _ = await etcd.list_prefix(prefix.encode())
            return [kv.value for kv in kvs]
        finally:
            await etcd.aclose()

    return asyncio.run(read())


def test_autolock_keeps_a_restarted_manager_locked_until_it_gets_the_key(
    make_cluster: Any, etcd_server: EtcdServer
) -> None:
    c: Cluster = make_cluster(agents=1)
    assert any(b"PRIVATE KEY" in v for v in _etcd_values(etcd_server, c.prefix)), "plain without autolock"
    res = c.cli("cluster", "update", "--autolock", "true")
    assert res.code == 0, res.err
    match = re.search(r"SHOALKEY-1-\S+", res.out)
    assert match is not None, res.out
    key = match.group(0)
    values = _etcd_values(etcd_server, c.prefix)
    assert not any(b"PRIVATE KEY" in v for v in values), "the CA key is sealed"
    assert not any(key.encode() in v for v in values), "etcd never sees the unlock key"

    manager = c.managers[0]
    manager.stop()
    c.restart(manager)
    locked = wait_for(lambda: (r := c.cli("info")).code == 0 and r, what="locked manager answers")
    assert "LOCKED" in locked.out
    refused = c.cli("service", "ls")
    assert refused.code == 1
    assert "this manager is locked" in refused.err
    wrong = c.cli("cluster", "unlock", stdin=new_unlock_key() + "\n")
    assert wrong.code == 1
    assert "wrong key" in wrong.err
    assert c.cli("service", "ls").code == 1
    assert c.cli("cluster", "unlock", stdin=key + "\n").code == 0
    wait_for(lambda: c.cli("service", "ls").code == 0, what="unlocked manager serves")
    c.wait_nodes_ready(1)

    # With the key in a file, a restart is unlocked at once.
    key_file = c.root / "unlock.key"
    key_file.write_text(key + "\n")
    manager.stop()
    manager.args += ["--unlock-key-file", str(key_file)]
    c.restart(manager)
    wait_for(lambda: c.cli("service", "ls").code == 0, what="manager unlocked by its key file")
    c.wait_nodes_ready(1)
