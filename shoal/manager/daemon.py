"""``shoal manager``: one manager process, wired together.

Start-up, in order:
1. connect to etcd; the first manager on an empty prefix initialises the
   cluster (ID, CA, worker join token) in one transaction, so two managers
   racing cannot make two clusters;
2. fill the view (list + watch), write an admin TLS bundle to
   STATE_DIR/admin if there is none, issue this manager's server certificate;
3. serve ControlAPI, Dispatcher and NodeCA on ``--listen`` (mutual TLS only);
4. register in the manager registry and campaign for leadership; while leader,
   run the leader-only components (orchestrator, scheduler, reaper, node
   monitor) with a fenced store, and cancel them the moment leadership is lost.

SIGTERM/SIGINT: stop serving, revoke the lease (hands leadership over at
once), exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from shoal import pki
from shoal.ids import new_id
from shoal.manager import seal
from shoal.manager.auth import Authorizer
from shoal.manager.ca.authority import CertificateAuthority, new_root_ca
from shoal.manager.ca.nodeca import DEFAULT_CERT_EXPIRY_NS, NodeCA
from shoal.manager.component import Component, supervise
from shoal.manager.controlapi.logs import LogGatherer
from shoal.manager.controlapi.service import Control
from shoal.manager.dispatcher.dispatcher import GRACE_MULTIPLIER, Dispatcher
from shoal.manager.election import Leadership, ManagerPresence
from shoal.manager.node_monitor import NodeMonitor
from shoal.manager.orchestrator.global_ import GlobalOrchestrator
from shoal.manager.orchestrator.jobs import JobsOrchestrator
from shoal.manager.orchestrator.reaper import TaskReaper
from shoal.manager.orchestrator.replicated import ReplicatedOrchestrator
from shoal.manager.orchestrator.updater import UpdateSupervisor
from shoal.manager.scheduler.scheduler import Scheduler
from shoal.manager.store import Etcd, EtcdTLS, LeadershipLost, Store, StoreError, View
from shoal.manager.store.etcd import cmp_absent, op_put
from shoal.manager.store.store import DEFAULT_PREFIX, object_key
from shoal.protos import control_pb2 as cpb
from shoal.protos import control_pb2_grpc as cgrpc
from shoal.protos import dispatcher_pb2_grpc as dgrpc
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

SECOND = 1_000_000_000


@dataclass(frozen=True)
class ManagerSettings:
    etcd_urls: list[str]
    listen: str
    state_dir: Path
    advertise: str = ""
    # Swarm's dispatcher heartbeat; only used when this manager initialises
    # the cluster (afterwards `shoal cluster update` owns it).
    heartbeat_period_ns: int = 5 * SECOND
    etcd_tls: EtcdTLS | None = None
    etcd_prefix: bytes = DEFAULT_PREFIX
    # Lease TTL: how long a crashed leader holds leadership at most.
    election_ttl: int = 5
    extra_sans: list[str] = field(default_factory=list)

    @property
    def advertise_addr(self) -> str:
        if self.advertise:
            return self.advertise
        host, port = split_hostport(self.listen)
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        return f"{host}:{port}"


def split_hostport(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f'address "{addr}": expected HOST:PORT')
    return host.strip("[]"), int(port)


def load_or_create_id(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    value = new_id()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")
    return value


async def ensure_cluster(store: Store, heartbeat_period_ns: int) -> pb.Cluster:
    """The cluster object, created (with its CA and join token) if absent."""
    marker = store.prefix + b"cluster"
    kv = await store.etcd.get(marker)
    if kv is None:
        cluster = pb.Cluster()
        cluster.meta.id = new_id()
        cluster.meta.created_at = cluster.meta.updated_at = time.time_ns()
        cluster.spec.heartbeat_period = heartbeat_period_ns
        cluster.spec.task_history_limit = 5
        cluster.spec.cert_expiry = DEFAULT_CERT_EXPIRY_NS
        root = new_root_ca(cluster.meta.id)
        cluster.root_ca.cert_pem = root.cert_pem
        cluster.root_ca.key_pem = root.key_pem
        cluster.root_ca.cert_digest = pki.cert_digest(root.cert_pem)
        cluster.join_tokens.worker = pki.new_join_token(cluster.root_ca.cert_digest)
        cluster.seal_key = seal.new_key()
        key = object_key(store.prefix, "clusters", cluster.meta.id)
        txn = await store.etcd.txn(
            [cmp_absent(marker)],
            [op_put(marker, cluster.meta.id.encode()), op_put(key, cluster.SerializeToString())],
        )
        if txn.succeeded:
            log.info("initialised cluster %s", cluster.meta.id)
            created: pb.Cluster = await store.get("clusters", cluster.meta.id)
            return created
        kv = await store.etcd.get(marker)
        assert kv is not None
    cluster: pb.Cluster = await store.get("clusters", kv.value.decode())  # type: ignore[no-redef]
    if cluster.spec.heartbeat_period != heartbeat_period_ns:
        log.warning(
            "the cluster's heartbeat period is %.3gs (not the %.3gs given here); using the cluster's. "
            "Change it with `shoal cluster update --heartbeat-period`",
            cluster.spec.heartbeat_period / SECOND,
            heartbeat_period_ns / SECOND,
        )
    return cluster


def write_admin_bundle(directory: Path, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    (directory / "ca.pem").write_bytes(ca_pem)
    (directory / "cert.pem").write_bytes(cert_pem)
    key_path = directory / "key.pem"
    key_path.touch(mode=0o600)
    key_path.write_bytes(key_pem)


class Manager:
    def __init__(self, settings: ManagerSettings) -> None:
        self.settings = settings
        self.etcd = Etcd(settings.etcd_urls, settings.etcd_tls)
        self.store = Store(self.etcd, settings.etcd_prefix)
        self.view = View(self.store)
        self.manager_id = load_or_create_id(settings.state_dir / "manager-id")
        self.presence = ManagerPresence(
            self.etcd, settings.etcd_prefix, self.manager_id, settings.advertise_addr, settings.election_ttl
        )
        self.is_leader = False
        self.server: grpc.aio.Server | None = None
        self.leader_components: list[Component | NodeMonitor] = []
        self._manager_addrs: list[str] = [settings.advertise_addr]

    def stats(self) -> dict[str, float]:
        out = {f"store_{k}": float(v) for k, v in self.store.stats.items()}
        out["view_relists"] = float(self.view.relists)
        out["leader"] = 1.0 if self.is_leader else 0.0
        for comp in self.leader_components:
            for key, value in getattr(comp, "stats", {}).items():
                out[f"{comp.name.replace('-', '_')}_{key}"] = float(value)
        return out

    def cluster(self) -> pb.Cluster:
        cluster = self.view.cluster()
        assert cluster is not None
        return cluster

    async def _manager_infos(self) -> list[cpb.ManagerInfo]:
        return [cpb.ManagerInfo(id=i, addr=a, leader=lead) for i, a, lead in await self.presence.managers()]

    async def _live_manager_ids(self) -> set[str]:
        managers = await self.presence.managers()
        self._manager_addrs = [addr for _, addr, _ in managers] or [self.settings.advertise_addr]
        return {mid for mid, _, _ in managers}

    def _grace(self) -> float:
        period = self.cluster().spec.heartbeat_period or 5 * SECOND
        return period / SECOND * GRACE_MULTIPLIER

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        cluster = await ensure_cluster(self.store, settings.heartbeat_period_ns)
        await self.view.start()
        ca = CertificateAuthority(cluster.root_ca.cert_pem, cluster.root_ca.key_pem)
        admin_dir = settings.state_dir / "admin"
        if not (admin_dir / "cert.pem").exists():
            cert, key = ca.issue("admin-" + self.manager_id[:12], pki.ROLE_ADMIN, cluster.meta.id, 90 * 86400)
            write_admin_bundle(admin_dir, ca.cert_pem, cert, key)
        host, _ = split_hostport(settings.advertise_addr)
        ips, names = [], []
        for h in {host, split_hostport(settings.listen)[0], *settings.extra_sans}:
            try:
                ips.append(ipaddress.ip_address(h))
            except ValueError:
                if h:
                    names.append(h)
        server_cert, server_key = ca.issue(
            self.manager_id, pki.ROLE_MANAGER, cluster.meta.id, 365 * 86400, dns_names=names, ip_addresses=ips
        )
        authorizer = Authorizer(lambda: self.cluster().root_ca.cert_pem, lambda: self.cluster().meta.id)
        dispatcher = Dispatcher(
            self.view, self.store, authorizer, self.manager_id, lambda: self._manager_addrs
        )
        peer_creds = pki.channel_credentials(ca.cert_pem, server_cert, server_key)

        async def forward(addr: str, request: cpb.TaskLogsRequest) -> AsyncIterator[cpb.TaskLogMessage]:
            # Managers reach each other as clients with their own certificate.
            async with grpc.aio.secure_channel(addr, peer_creds, options=pki.CHANNEL_OPTIONS) as channel:
                async for msg in cgrpc.ControlStub(channel).TaskLogs(request):
                    yield msg

        async def manager_addr(manager_id: str) -> str | None:
            for mid, addr, _ in await self.presence.managers():
                if mid == manager_id and mid != self.manager_id:
                    return addr
            return None

        logs = LogGatherer(self.view, dispatcher, forward, manager_addr)
        control = Control(self.view, self.store, authorizer, self._manager_infos, logs, self.stats)
        server = grpc.aio.server(options=pki.SERVER_OPTIONS)
        cgrpc.add_ControlServicer_to_server(control, server)
        dgrpc.add_DispatcherServicer_to_server(dispatcher, server)
        dgrpc.add_NodeCAServicer_to_server(NodeCA(self.view.cluster), server)
        creds = pki.server_credentials(
            ca.cert_pem, server_cert, server_key, require_client_auth=True, accept_bootstrap=True
        )
        server.add_secure_port(settings.listen, creds)
        await server.start()
        self.server = server
        await self.presence.register()
        await self._live_manager_ids()
        log.info("manager %s serving on %s (cluster %s)", self.manager_id, settings.listen, cluster.meta.id)
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self.presence.keep_alive(), name="lease-keepalive"),
                    tg.create_task(supervise("dispatcher", dispatcher.run), name="dispatcher"),
                    tg.create_task(self._lead_forever(), name="leadership"),
                    tg.create_task(self._refresh_managers(), name="manager-list"),
                ]
                await stop.wait()
                for t in tasks:
                    t.cancel()
        finally:
            await server.stop(1)
            await self.presence.resign()
            await self.view.stop()
            self.etcd.close()
            log.info("manager %s stopped", self.manager_id)

    async def _refresh_managers(self) -> None:
        """Keep the failover list handed to agents current on every manager."""
        while True:
            await asyncio.sleep(5)
            try:
                await self._live_manager_ids()
            except StoreError as err:
                log.debug("refreshing the manager list: %s", err)

    async def _lead_forever(self) -> None:
        while True:
            try:
                leadership = await self.presence.campaign()
            except StoreError as err:
                log.warning("campaign failed: %s", err)
                await asyncio.sleep(1)
                continue
            log.info("manager %s is now the leader", self.manager_id)
            self.is_leader = True
            try:
                await self._lead(leadership)
            except* LeadershipLost:
                log.warning("lost leadership")
            except* StoreError as group:
                log.warning("leadership ended: %s", group.exceptions[0])
            finally:
                self.is_leader = False
            await asyncio.sleep(0.5)

    async def _lead(self, leadership: Leadership) -> None:
        fenced = self.store.fenced(self.presence.leader_key, leadership.create_revision)
        components: list[Component | NodeMonitor] = [
            ReplicatedOrchestrator(self.view, fenced),
            GlobalOrchestrator(self.view, fenced),
            JobsOrchestrator(self.view, fenced),
            UpdateSupervisor(self.view, fenced),
            Scheduler(self.view, fenced),
            TaskReaper(self.view, fenced),
            NodeMonitor(self.view, fenced, self._live_manager_ids, self._grace),
        ]
        self.leader_components = list(components)
        async with asyncio.TaskGroup() as tg:
            for comp in components:
                tg.create_task(supervise(comp.name, comp.run), name=comp.name)
            tg.create_task(self._watch_leadership(leadership), name="leadership-check")

    async def _watch_leadership(self, leadership: Leadership) -> None:
        while True:
            await asyncio.sleep(self.settings.election_ttl / 3)
            try:
                still = await self.presence.still_leader(leadership)
            except StoreError:
                continue
            if not still:
                raise LeadershipLost("the leader key is gone")


def run_manager(settings: ManagerSettings) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        manager = Manager(settings)
        await manager.run(stop)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
