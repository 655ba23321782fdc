"""The trust model, tried as an attacker would, against real managers and agents.

Who is calling is decided by the cluster CA's signature only; a node may
speak only for itself; join tokens admit nodes and nothing else; removed
nodes and revoked admin bundles are refused from their next call on.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal import pki
from shoal.protos import objects_pb2 as pb
from tests.support import forge, raw_session
from tests.support.cluster import Cluster, pids_of, sleep_seconds, start_cluster, wait_for, wait_pids
from tests.support.etcd_server import EtcdServer


@pytest.fixture(scope="module")
def cluster(etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    c = start_cluster(
        etcd_server, tmp_path_factory.mktemp("trust"), agents=2, labels=[{"zone": "a"}, {"zone": "b"}]
    )
    yield c
    c.close()


def node_files(cluster: Cluster, index: int) -> pki.TLSFiles:
    files = pki.read_tls_dir(cluster.root / f"agent-{index}" / "node")
    assert files is not None
    return files


def node_id(cluster: Cluster, index: int) -> str:
    return pki.identity_from_cert(node_files(cluster, index).cert_pem).node_id


@contextlib.contextmanager
def impersonating(cluster: Cluster, index: int) -> Iterator[pki.TLSFiles]:
    """Node index's own certificate, with its real agent stopped meanwhile
    (else the agent's reconnects would take the session back at once); the
    agent is started again afterwards and adopts its tasks."""
    agent = cluster.agents[index - 1]
    agent.stop()
    try:
        yield node_files(cluster, index)
    finally:
        cluster.restart(agent)
        cluster.wait_nodes_ready(len(cluster.agents))


SIGNERS = ["own key, look-alike CA", "join key, look-alike CA", "join key, leaf only"]


def forged_bundle(cluster: Cluster, directory: Path, how: str, role: str, claim: str) -> Path:
    ca_pem = (cluster.tls_dir / "ca.pem").read_bytes()
    signer = forge.own_signer() if how.startswith("own") else forge.join_signer(cluster.token())
    chain, key = forge.forged_chain(signer, ca_pem, role, claim, via_lookalike="look-alike" in how)
    return forge.write_bundle(directory, ca_pem, chain, key)


@pytest.mark.parametrize("how", SIGNERS)
@pytest.mark.parametrize("role", [pki.ROLE_ADMIN, pki.ROLE_MANAGER])
def test_forged_admin_and_manager_chains_get_no_access(
    cluster: Cluster, tmp_path: Path, role: str, how: str
) -> None:
    before = [s["name"] for s in cluster.services()]
    forged = forged_bundle(cluster, tmp_path / "forged", how, role, "admin-forged")
    listing = cluster.cli_as(forged, "service", "ls")
    created = cluster.cli_as(forged, "service", "create", "--name", "forged", "-d", "app:1", "sleep", "9")
    token = cluster.cli_as(forged, "join-token", "-q", "worker")
    for res in (listing, created, token):
        assert res.code == 1, res.out
        assert res.err.startswith("Error: ")
    assert cluster.token() not in token.out
    assert [s["name"] for s in cluster.services()] == before


@pytest.mark.parametrize("how", SIGNERS)
def test_a_forged_worker_chain_cannot_impersonate_a_node(cluster: Cluster, tmp_path: Path, how: str) -> None:
    victim = node_id(cluster, 1)
    forged = pki.read_tls_dir(forged_bundle(cluster, tmp_path / "forged", how, pki.ROLE_WORKER, victim))
    assert forged is not None
    outcome = raw_session.session(cluster.manager_addrs[0], forged, [raw_session.register("impostor")])
    # Refused at the handshake, or as a caller without an identity: no
    # assignments, no credentials, and the node is not taken over.
    assert outcome.code is not None and outcome.code.name in ("UNAVAILABLE", "UNAUTHENTICATED")
    assert not any(m.WhichOneof("msg") == "assignments" for m in outcome.received)
    hostnames = {n["hostname"] for n in cluster.nodes()}
    assert "impostor" not in hostnames


def test_a_node_certificate_cannot_call_the_control_api(cluster: Cluster) -> None:
    res = cluster.cli_as(cluster.root / "agent-1" / "node", "service", "ls")
    assert res.code == 1
    assert "role shoal-worker may not call this" in res.err


def test_a_node_cannot_report_status_for_another_nodes_task(cluster: Cluster) -> None:
    created = cluster.cli("service", "create", "--name", "pair", "--replicas", "2", "app:1", "sleep", "3600")
    assert created.code == 0
    tasks = wait_for(lambda: len(cluster.running("pair")) == 2 and cluster.running("pair"), what="2 running")
    b_id = node_id(cluster, 2)
    theirs = next(t for t in tasks if t["node_id"] == b_id)
    with impersonating(cluster, 1) as files:
        outcome = raw_session.session(
            cluster.manager_addrs[0],
            files,
            [
                raw_session.register("node-1", {"zone": "a"}),
                raw_session.status(theirs["id"], pb.TASK_STATE_FAILED),
            ],
        )
    assert outcome.code is not None and outcome.code.name == "PERMISSION_DENIED"
    assert f"not assigned to node {node_id(cluster, 1)}" in outcome.details
    after = {t["id"]: t for t in cluster.tasks("pair")}
    assert after[theirs["id"]]["current_state"] == "running"
    assert after[theirs["id"]]["desired_state"] == "running"
    assert cluster.cli("service", "rm", "pair").code == 0


def test_a_node_may_report_only_the_states_agents_own(cluster: Cluster) -> None:
    assert cluster.cli("service", "create", "--name", "own", "app:1", "sleep", "3600").code == 0
    task = wait_for(lambda: cluster.running("own") and cluster.running("own")[0], what="running")
    index = 1 if task["node_id"] == node_id(cluster, 1) else 2
    with impersonating(cluster, index) as files:
        outcome = raw_session.session(
            cluster.manager_addrs[0],
            files,
            [raw_session.register(f"node-{index}"), raw_session.status(task["id"], pb.TASK_STATE_PENDING)],
        )
    assert outcome.code is not None and outcome.code.name == "INVALID_ARGUMENT"
    assert "is not one an agent reports" in outcome.details
    assert cluster.running("own")[0]["id"] == task["id"]
    assert cluster.cli("service", "rm", "own").code == 0


def test_a_reregistering_agent_cannot_change_its_labels(cluster: Cluster) -> None:
    node = node_id(cluster, 1)
    with impersonating(cluster, 1) as files:
        raw_session.session(
            cluster.manager_addrs[0], files, [raw_session.register("node-1", {"zone": "b", "gpu": "yes"})]
        )
    labels = cluster.cli("node", "inspect", node).json()[0]["labels"]
    assert labels == {"zone": "a"}
    # A service meant for zone b stays off node 1.
    zb = ["--name", "zb", "--constraint", "node.labels.zone==b", "app:1", "sleep", "3600"]
    assert cluster.cli("service", "create", *zb).code == 0
    tasks = wait_for(lambda: cluster.running("zb"), what="zb running")
    assert tasks[0]["node_id"] == node_id(cluster, 2)
    # The operator still can.
    assert cluster.cli("node", "update", "--label-add", "zone=c", node).code == 0
    assert cluster.cli("node", "inspect", node).json()[0]["labels"] == {"zone": "c"}
    assert cluster.cli("node", "update", "--label-add", "zone=a", node).code == 0
    assert cluster.cli("service", "rm", "zb").code == 0


def _refused_join(cluster: Cluster, token: str) -> str:
    before = len(cluster.nodes())
    agent = cluster.start_agent(token=token, hostname="intruder")
    code = agent.wait_exit(60)
    assert code != 0
    assert len(cluster.nodes()) == before
    assert "intruder" not in {n["hostname"] for n in cluster.nodes()}
    return agent.output()


def test_a_wrong_token_does_not_join_and_says_why(cluster: Cluster) -> None:
    real = pki.parse_join_token(cluster.token())
    wrong = pki.new_join_token(real.digest)  # this cluster's CA, another secret
    assert "does not accept this join token" in _refused_join(cluster, wrong)


def test_a_rotated_out_token_does_not_join(cluster: Cluster) -> None:
    old = cluster.token()
    assert cluster.cli("join-token", "--rotate", "worker").code == 0
    assert cluster.token() != old
    assert "does not accept this join token" in _refused_join(cluster, old)


def test_a_token_with_a_tampered_ca_digest_does_not_join(cluster: Cluster) -> None:
    real = pki.parse_join_token(cluster.token())
    flipped = ("1" if real.digest[0] == "0" else "0") + real.digest[1:]
    output = _refused_join(cluster, f"SHOAL-1-{flipped}-{real.secret}")
    assert "does not match the join token's digest" in output


def test_a_revoked_admin_bundle_is_refused_on_its_next_call(cluster: Cluster, tmp_path: Path) -> None:
    bundle = tmp_path / "ops"
    issued = cluster.cli("cluster", "admin-bundle", "--out", str(bundle), "--note", "ops laptop")
    assert issued.code == 0, issued.err
    assert cluster.cli_as(bundle, "service", "ls").code == 0
    listed = cluster.cli("cluster", "admin-bundle", "ls", "--format", "json").json()
    mine = next(b for b in listed if b["issued_to"] == "ops laptop")
    assert not mine["revoked"]
    assert cluster.cli("cluster", "admin-bundle", "revoke", mine["id"]).code == 0
    res = cluster.cli_as(bundle, "service", "ls")
    assert res.code == 1
    assert f"this admin bundle ({mine['id']}) was revoked" in res.err
    assert cluster.cli("service", "ls").code == 0  # others are not affected


def test_an_admin_bundle_expiry_must_be_sane(cluster: Cluster, tmp_path: Path) -> None:
    res = cluster.cli("cluster", "admin-bundle", "--out", str(tmp_path / "b"), "--expiry", "30s")
    assert res.code == 1
    assert res.err.strip() == "Error: expiry: must be between 1m and 3650 days, got 30s"
    assert not (tmp_path / "b").exists()


def test_a_removed_node_is_refused_at_once_and_for_good(make_cluster: Any) -> None:
    c = make_cluster(agents=2)
    gone = c.agents[1]
    marker = sleep_seconds(3640)
    create = ["--name", "held", "--replicas", "2", "--replicas-max-per-node", "1", "app:1", "sleep", marker]
    assert c.cli("service", "create", *create).code == 0
    theirs = wait_pids(f"sleep {marker}", 2)
    assert c.cli("node", "rm", "--force", "node-2").code == 0
    # Its open session is closed at once; the agent is told why, stops its
    # tasks (they are replaced elsewhere) and exits with a status that
    # systemd does not restart.
    assert gone.wait_exit(30) == 78
    assert "was removed from the cluster" in gone.output()
    assert len(pids_of(f"sleep {marker}") & theirs) == 1, "node-2's task was stopped, node-1's runs on"
    c.restart(gone)
    assert gone.wait_exit(30) == 78
    assert "node-2" not in {n["hostname"] for n in c.nodes()}


def test_agents_started_by_shoal_up_keep_the_token_out_of_the_process_list(
    etcd_server: EtcdServer, tmp_path: Path
) -> None:
    env = dict(os.environ, SHOAL_CONTEXT=str(tmp_path / "context.json"))
    env.pop("SHOAL_HOST", None)
    env.pop("SHOAL_TLS_DIR", None)
    state = tmp_path / "up"
    up = [sys.executable, "-m", "shoal", "up", "-d", "--agents", "1", "--runtime", "process"]
    started = subprocess.run(
        [*up, "--state-dir", str(state), "--etcd", etcd_server.url],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    try:
        assert started.returncode == 0, started.stderr
        token_res = subprocess.run(
            [sys.executable, "-m", "shoal", "join-token", "-q", "worker"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        token = token_res.stdout.strip()
        assert token.startswith("SHOAL-1-")
        # node-1 joined with the manager token: a manager-role node.
        shoal = [sys.executable, "-m", "shoal"]
        manager_res = subprocess.run(
            [*shoal, "join-token", "-q", "manager"], capture_output=True, text=True, env=env, timeout=30
        )
        manager_token = manager_res.stdout.strip()
        assert manager_token.startswith("SHOAL-1-") and manager_token != token
        nodes = subprocess.run(
            [*shoal, "node", "ls", "--format", "json"], capture_output=True, text=True, env=env, timeout=30
        )
        assert [(n["hostname"], n["role"]) for n in json.loads(nodes.stdout)] == [("node-1", "manager")]
        pids = json.loads((state / "up.json").read_text())["pids"]
        for pid in pids:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            assert token not in cmdline and manager_token not in cmdline
        # What `ps -eo args` shows any user: every process's command line.
        assert pids_of(token) == set() and pids_of(manager_token) == set()
    finally:
        subprocess.run(
            [sys.executable, "-m", "shoal", "down", "--state-dir", str(state)],
            env=env,
            timeout=60,
            check=False,
        )
