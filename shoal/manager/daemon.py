"""``shoal manager``: one manager process, wired together.

Start-up, in order:
1. connect to etcd; the first manager on an empty prefix initialises the
   cluster (ID, CA, worker join token, and the keys apart in ClusterKeys) in
   one transaction, so two managers racing cannot make two clusters;
2. fill the view (list + watch) and open the cluster's keys (``keyring``:
   with autolock on, only with the unlock key);
3. serve ControlAPI, Dispatcher and NodeCA on ``--listen`` (mutual TLS only,
   with the limits of ``pki.ServerLimits``); a locked manager serves only the
   unlock call, with the server certificate kept from its last run, and
   waits;
4. keep its own certificates current (``ca.manager_certs``: server
   certificate, accepted roots, the admin bundle in STATE_DIR/admin);
5. register in the manager registry and campaign for leadership; while leader,
   run the leader-only components (orchestrator, scheduler, reaper, node
   monitor, CA rotation) with a fenced store, and cancel them the moment
   leadership is lost.

SIGTERM/SIGINT: stop serving, revoke the lease (hands leadership over at
once), exit 0.

Why this module is longer than our ~400 lines: it is the one place that
holds this start-up order and what each step hands the next (settings, the
cluster's first transaction, serving, leading); every part it wires lives in
a module of its own, so splitting it would only scatter the order.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from shoal import defaults, eventloop, pki
from shoal.ids import new_id
from shoal.manager import seal
from shoal.manager.auth import Authorizer, ca_bundle
from shoal.manager.autoremove import AutoRemover
from shoal.manager.ca.authority import new_root_ca
from shoal.manager.ca.manager_certs import ManagerCertificates, ServerTLS
from shoal.manager.ca.nodeca import NodeCA
from shoal.manager.ca.rotation import RotationFinisher
from shoal.manager.compactor import DEFAULT_INTERVAL as DEFAULT_COMPACTION_INTERVAL
from shoal.manager.compactor import Compactor
from shoal.manager.component import LeaderLoop, supervise
from shoal.manager.controlapi import unique
from shoal.manager.controlapi.logs import LogGatherer
from shoal.manager.controlapi.servicer import Control
from shoal.manager.dispatcher.dispatcher import Dispatcher
from shoal.manager.election import Leadership, ManagerPresence
from shoal.manager.execsource import Peers
from shoal.manager.keyring import KeyRing, Locked, parse_unlock_key, wrap
from shoal.manager.node_monitor import NodeMonitor
from shoal.manager.orchestrator.global_ import GlobalOrchestrator
from shoal.manager.orchestrator.jobs import JobsOrchestrator
from shoal.manager.orchestrator.reaper import TaskReaper
from shoal.manager.orchestrator.replicated import ReplicatedOrchestrator
from shoal.manager.orchestrator.updater import UpdateSupervisor
from shoal.manager.scheduler.scheduler import Scheduler
from shoal.manager.store import (
    Etcd,
    EtcdTLS,
    LeadershipLost,
    NotFound,
    Store,
    StoreError,
    View,
    clone,
    until_available,
)
from shoal.manager.store.etcd import cmp_absent, op_put
from shoal.manager.store.store import DEFAULT_PREFIX, object_key
from shoal.protos import control_pb2 as cpb
from shoal.protos import control_pb2_grpc as cgrpc
from shoal.protos import dispatcher_pb2_grpc as dgrpc
from shoal.protos import objects_pb2 as pb

if TYPE_CHECKING:
    from shoal.manager.dockerapi import DockerAPI

log = logging.getLogger(__name__)

SECOND = 1_000_000_000
# How often every manager reads the manager registry, and so how soon its
# agents learn of a manager that joined or left.
MANAGER_LIST_REFRESH = 2.0


@dataclass(frozen=True)
class ManagerSettings:
    etcd_urls: list[str]
    listen: str
    state_dir: Path
    advertise: str = ""
    # Swarm's dispatcher heartbeat; only used when this manager initialises
    # the cluster (afterwards `shoal cluster update` owns it).
    heartbeat_period_ns: int = defaults.CLUSTER.heartbeat_period
    etcd_tls: EtcdTLS | None = None
    etcd_prefix: bytes = DEFAULT_PREFIX
    # Lease TTL: how long a crashed leader holds leadership at most.
    election_ttl: int = 5
    extra_sans: list[str] = field(default_factory=list)
    # With autolock on: the file holding the unlock key (else unlock later
    # with `shoal cluster unlock`).
    unlock_key_file: Path | None = None
    limits: pki.ServerLimits = field(default_factory=pki.ServerLimits)
    # How often the leader compacts etcd's history (shoal.manager.compactor).
    compaction_interval: float = DEFAULT_COMPACTION_INTERVAL
    # HOST:PORT to serve the Docker Engine API's swarm part on; "" = off.
    docker_api: str = ""

    @property
    def advertise_addr(self) -> str:
        if self.advertise:
            return self.advertise
        host, port = split_hostport(self.listen)
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        return f"{host}:{port}"


class ManagerError(Exception):
    """The manager cannot start, for a reason the operator must fix."""


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
    """The cluster object, created (with its CA, join token and keys) if absent."""
    marker = store.prefix + b"cluster"
    kv = await store.etcd.get(marker)
    if kv is None:
        cluster = pb.Cluster()
        cluster.meta.id = new_id()
        cluster.meta.created_at = cluster.meta.updated_at = time.time_ns()
        cluster.spec.heartbeat_period = heartbeat_period_ns
        cluster.spec.task_history_limit = defaults.CLUSTER.task_history_limit
        cluster.spec.cert_expiry = defaults.CLUSTER.cert_expiry
        root = new_root_ca(cluster.meta.id)
        cluster.root_ca.cert_pem = root.cert_pem
        cluster.root_ca.cert_digest = pki.cert_digest(root.cert_pem)
        cluster.join_tokens.worker = pki.new_join_token(cluster.root_ca.cert_digest)
        cluster.join_tokens.manager = pki.new_join_token(cluster.root_ca.cert_digest)
        keys = wrap(cluster.meta.id, pb.KeyMaterial(ca_key_pem=root.key_pem, seal_key=seal.new_key()), None)
        keys.meta.created_at = keys.meta.updated_at = cluster.meta.created_at
        txn = await store.etcd.txn(
            [cmp_absent(marker)],
            [
                op_put(marker, cluster.meta.id.encode()),
                op_put(object_key(store.prefix, "clusters", cluster.meta.id), cluster.SerializeToString()),
                op_put(object_key(store.prefix, "keys", cluster.meta.id), keys.SerializeToString()),
            ],
        )
        if txn.succeeded:
            log.info("initialised cluster %s", cluster.meta.id)
            created: pb.Cluster = await store.get(pb.Cluster, cluster.meta.id)
            return created
        kv = await store.etcd.get(marker)
        assert kv is not None
    cluster: pb.Cluster = await store.get(pb.Cluster, kv.value.decode())  # type: ignore[no-redef]
    cluster = await _keep_keys_apart(store, cluster)
    if cluster.spec.heartbeat_period != heartbeat_period_ns:
        log.warning(
            "the cluster's heartbeat period is %.3gs (not the %.3gs given here); using the cluster's. "
            "Change it with `shoal cluster update --heartbeat-period`",
            cluster.spec.heartbeat_period / SECOND,
            heartbeat_period_ns / SECOND,
        )
    return cluster


async def _keep_keys_apart(store: Store, cluster: pb.Cluster) -> pb.Cluster:
    """Clusters made before the keys lived in their own object kept them in
    the cluster object: move them, in one transaction."""
    if not cluster.root_ca.key_pem and not cluster.seal_key:
        return cluster
    moved = clone(cluster)
    material = pb.KeyMaterial(ca_key_pem=cluster.root_ca.key_pem, seal_key=cluster.seal_key or seal.new_key())
    moved.root_ca.key_pem = b""
    moved.seal_key = b""
    batch = store.batch().update(moved)
    try:
        await store.get(pb.ClusterKeys, cluster.meta.id)
    except NotFound:
        batch.create(wrap(cluster.meta.id, material, None))
    await batch.commit_all_or_nothing()
    log.info("moved the cluster's CA and seal keys out of the cluster object")
    return moved


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
        self.leader_components: list[LeaderLoop] = []
        self._manager_addrs: list[str] = [settings.advertise_addr]
        self.certs: ManagerCertificates | None = None
        self.dispatcher: Dispatcher | None = None

    def stats(self) -> dict[str, float]:
        out = {f"store_{k}": float(v) for k, v in self.store.stats.items()}
        out["view_relists"] = float(self.view.relists)
        out["leader"] = 1.0 if self.is_leader else 0.0
        for comp in self.leader_components:
            for key, value in getattr(comp, "stats", {}).items():
                out[f"{comp.name.replace('-', '_')}_{key}"] = float(value)
        if self.certs is not None:
            out["manager_cert_renewals"] = float(self.certs.renewals)
        if self.dispatcher is not None:
            out["node_cert_renewals"] = float(self.dispatcher.renewals)
            for key, value in self.dispatcher.stats.items():
                out[f"dispatcher_{key}"] = float(value)
        return out

    def cluster(self) -> pb.Cluster:
        cluster = self.view.cluster()
        assert cluster is not None
        return cluster

    async def _manager_infos(self) -> list[cpb.ManagerInfo]:
        return [cpb.ManagerInfo(id=i, addr=a, leader=lead) for i, a, lead in await self.presence.managers()]

    async def _live_manager_ids(self) -> set[str]:
        managers = await self.presence.managers()
        addrs = sorted(addr for _, addr, _ in managers) or [self.settings.advertise_addr]
        if addrs != self._manager_addrs:
            self._manager_addrs = addrs
            if self.dispatcher is not None:
                self.dispatcher.announce_managers(addrs)
        return {mid for mid, _, _ in managers}

    def _grace(self) -> float:
        period = defaults.heartbeat_period(self.cluster().spec)
        return period / SECOND * defaults.CLUSTER.grace_periods

    def _server_names(self) -> tuple[list[str], list[str]]:
        """The DNS names and IP addresses this manager's certificate carries."""
        host, _ = split_hostport(self.settings.advertise_addr)
        ips, names = [], []
        docker_host = split_hostport(self.settings.docker_api)[0] if self.settings.docker_api else ""
        for h in {host, split_hostport(self.settings.listen)[0], docker_host, *self.settings.extra_sans}:
            try:
                ips.append(str(ipaddress.ip_address(h)))
            except ValueError:
                if h:
                    names.append(h)
        return names, ips

    def _keyring(self) -> KeyRing:
        settings = self.settings
        unlock_key = None
        if settings.unlock_key_file is not None:
            try:
                unlock_key = parse_unlock_key(settings.unlock_key_file.read_text())
            except (OSError, ValueError) as err:
                raise ManagerError(f"--unlock-key-file {settings.unlock_key_file}: {err}") from None
        keyring = KeyRing(self.view, unlock_key)
        keys = self.view.cluster_keys()
        if keys is None:
            raise ManagerError("the cluster has no keys object in etcd; was it made by a newer shoal?")
        if unlock_key is not None and keys.autolock:
            try:
                keyring.unlock(unlock_key)
            except ValueError as err:
                raise ManagerError(f"--unlock-key-file {settings.unlock_key_file}: {err}") from None
        return keyring

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        await ensure_cluster(self.store, settings.heartbeat_period_ns)
        await self.view.start()
        indexed = await unique.backfill(self.view, self.store, list(self.view.services.values()))
        if indexed:
            log.info("indexed the names and ports of %d services made before the index existed", indexed)
        keyring = self._keyring()
        names, ips = self._server_names()
        certs = ManagerCertificates(
            self.view, self.store, keyring, self.manager_id, settings.state_dir, names, ips
        )
        self.certs = certs
        try:
            tls = certs.start()
        except Locked:
            raise ManagerError(
                "the cluster is autolocked and this manager has no server certificate of its own yet: "
                "start it with --unlock-key-file FILE"
            ) from None
        if not keyring.locked:
            await certs.refresh()
        unlocked = asyncio.Event()
        if not keyring.locked:
            unlocked.set()
        authorizer = Authorizer(self.view)
        dispatcher = Dispatcher(
            self.view, self.store, authorizer, keyring, self.manager_id, lambda: self._manager_addrs
        )
        self.dispatcher = dispatcher

        async def forward(addr: str, request: cpb.TaskLogsRequest) -> AsyncIterator[cpb.TaskLogMessage]:
            # Managers reach each other as clients with their own certificate.
            creds = certs.peer_credentials()
            async with grpc.aio.secure_channel(addr, creds, options=pki.CHANNEL_OPTIONS) as channel:
                async for msg in cgrpc.ControlStub(channel).TaskLogs(request):
                    yield msg

        async def manager_addr(manager_id: str) -> str | None:
            for mid, addr, _ in await self.presence.managers():
                if mid == manager_id and mid != self.manager_id:
                    return addr
            return None

        logs = LogGatherer(self.view, dispatcher, forward, manager_addr)
        control = Control(
            self.view,
            self.store,
            authorizer,
            keyring,
            self._manager_infos,
            logs,
            self.stats,
            on_unlock=unlocked.set,
            taskio=dispatcher.taskio,
            peers=Peers(manager_addr, certs.peer_credentials),
        )
        server = grpc.aio.server(options=pki.server_options(settings.limits))
        cgrpc.add_ControlServicer_to_server(control, server)
        dgrpc.add_DispatcherServicer_to_server(dispatcher, server)
        dgrpc.add_NodeCAServicer_to_server(NodeCA(self.view.cluster, keyring, store=self.store), server)
        server.add_secure_port(settings.listen, tls.credentials())
        await server.start()
        self.server = server
        docker_api = None
        try:
            if settings.docker_api:
                docker_api = await self._serve_docker_api(control, tls)
            if keyring.locked:
                log.warning(
                    "manager %s is locked (the cluster has autolock on): it serves nothing until "
                    "unlocked with `shoal cluster unlock` (or restarted with --unlock-key-file)",
                    self.manager_id,
                )
                if not await _first_of(unlocked, stop):
                    return
                await certs.refresh()
            await self.presence.register()
            await self._live_manager_ids()
            cluster_id = self.cluster().meta.id
            log.info("manager %s serving on %s (cluster %s)", self.manager_id, settings.listen, cluster_id)
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self.presence.keep_alive(), name="lease-keepalive"),
                    tg.create_task(supervise("dispatcher", dispatcher.run), name="dispatcher"),
                    tg.create_task(supervise("certificates", certs.run), name="certificates"),
                    tg.create_task(self._lead_forever(), name="leadership"),
                    tg.create_task(self._refresh_managers(), name="manager-list"),
                ]
                await stop.wait()
                for t in tasks:
                    t.cancel()
        finally:
            # Hand leadership over first: the next leader takes office while
            # this manager's calls drain.
            await self.presence.resign()
            if docker_api is not None:
                await docker_api.stop()
            await server.stop(1)
            await self.view.stop()
            await self.etcd.aclose()
            log.info("manager %s stopped", self.manager_id)

    async def _serve_docker_api(self, control: Control, tls: ServerTLS) -> DockerAPI:
        """The Docker API listener, with the gRPC listener's certificate and
        the cluster's roots (both followed as they change)."""
        # Imported here: a manager without --docker-api never loads aiohttp.
        from shoal.manager.dockerapi import DockerAPI

        def material() -> tuple[bytes, bytes, bytes]:
            chain, key, _ = tls.current()
            return chain, key, ca_bundle(self.cluster())

        api = DockerAPI(
            control, material, self.manager_id, self.settings.advertise_addr, self.settings.limits
        )
        host, port = split_hostport(self.settings.docker_api)
        try:
            await api.start(host, port)
        except OSError as err:
            raise ManagerError(f"--docker-api {self.settings.docker_api}: {err.strerror or err}") from None
        return api

    async def _refresh_managers(self) -> None:
        """Keep the failover list handed to agents current on every manager."""
        while True:
            await asyncio.sleep(MANAGER_LIST_REFRESH)
            try:
                await self._live_manager_ids()
            except StoreError as err:
                log.debug("refreshing the manager list: %s", err)

    async def _lead_forever(self) -> None:
        while True:
            async for attempt in until_available("campaign for leadership"):
                with attempt:
                    leadership = await self.presence.campaign()
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
        components: list[LeaderLoop] = [
            ReplicatedOrchestrator(self.view, fenced),
            GlobalOrchestrator(self.view, fenced),
            JobsOrchestrator(self.view, fenced),
            UpdateSupervisor(self.view, fenced),
            Scheduler(self.view, fenced),
            TaskReaper(self.view, fenced),
            RotationFinisher(self.view, fenced),
            Compactor(self.etcd, self.settings.compaction_interval),
            NodeMonitor(self.view, fenced, self._live_manager_ids, self._grace),
            AutoRemover(self.view, fenced),
        ]
        self.leader_components = list(components)
        async with asyncio.TaskGroup() as tg:
            for comp in components:
                tg.create_task(supervise(comp.name, comp.run, resync=self.view.catch_up), name=comp.name)
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


async def _first_of(wanted: asyncio.Event, stop: asyncio.Event) -> bool:
    """Wait for wanted or stop; whether wanted came first."""
    waits = {asyncio.ensure_future(wanted.wait()), asyncio.ensure_future(stop.wait())}
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for p in pending:
        p.cancel()
    return wanted.is_set()


def run_manager(settings: ManagerSettings) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        manager = Manager(settings)
        await manager.run(stop)

    with contextlib.suppress(KeyboardInterrupt):
        eventloop.run(main(), starts_children=False)
