"""One point of the scale benchmark: a cluster of N simulated nodes, its phases.

A fresh etcd, one real manager process, and ``nodes`` simulated nodes in
harness processes (``harness.py``: the real agent code on SimRuntime). The
phases, each accounted for separately (``accounting.Accounts``):

- join: every node joins (token, TLS, certificate) and opens its session;
- converge: ``services`` services of ``replicas`` tasks (one with a
  constraint, one with a spread preference) from the create requests until
  every task runs;
- mesh (``publish`` only): s0 publishes a port in ingress mode; from the
  end of converge until every node's mesh holds each of s0's tasks as a
  backend (``mesh_converge_seconds`` counts from the create requests);
- etcd-only: etcd alone writing as many keys, batched as shoal batches them
  (the ceiling shoal is compared with);
- reads: ``service ps`` of one service and ``service ls``;
- idle: ``idle`` seconds of nothing but heartbeats;
- node loss: a tenth of the nodes vanish; detection (their heartbeats stop
  until the manager marks them down) and replacement (until every
  replacement runs);
- rolling update: one service to a new image with parallelism 500.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from shoal.cli.client import Client, Target
from shoal.manager.store.etcd import MAX_TXN_OPS, Etcd, op_put
from shoal.protos import control_pb2 as cpb
from tests.bench.accounting import Accounts
from tests.bench.create_replicas import etcd_counters
from tests.bench.simpool import SimPool, create_sim_services
from tests.support.cluster import Cluster, wait_for
from tests.support.etcd_server import EtcdServer

# Nodes one harness process plays at most: beyond this one process's event
# loop is late with heartbeats when the machine is busy.
NODES_PER_POOL = 500
MIB = 1 << 20


@dataclass
class Point:
    nodes: int = 1000
    services: int = 10
    replicas: int = 10000
    pools: int = 0  # harness processes; 0: one per NODES_PER_POOL nodes (at least 2)
    kill: int = 0  # nodes lost; 0: a tenth
    heartbeat: str = "5s"
    update_parallelism: int = 500
    idle: float = 15.0
    full: bool = True  # node loss and rolling update too
    ceiling: bool = True  # measure etcd alone for the same keys
    profile: Path | None = None  # a directory for py-spy profiles of the manager
    publish: bool = False  # s0 publishes a port (ingress): the mesh's endpoint sets at scale

    @property
    def tasks(self) -> int:
        return self.services * self.replicas


class Figures(dict[str, Any]):
    """Prints each figure as it is measured, so a run cut short still shows
    what it got."""

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        if not isinstance(value, dict):
            print(f"  {key:<40}  {value}", flush=True)


def running_total(client: Client) -> int:
    resp = client.call("ListServices", cpb.ListServicesRequest(), timeout=120)
    return sum(s.replicas_running for s in resp.services)


def nodes_down(client: Client) -> int:
    nodes = client.call("ListNodes", cpb.ListNodesRequest(), timeout=60).nodes
    return sum(1 for n in nodes if n.status.state == 1)


def stats(client: Client) -> dict[str, float]:
    return dict(client.call("GetClusterInfo", cpb.GetClusterInfoRequest()).stats)


def etcd_ceiling(url: str, keys: int, value_size: int) -> float:
    """Seconds etcd alone needs to write `keys` values of value_size bytes,
    batched like shoal batches (MAX_TXN_OPS per txn, 4 in flight)."""

    async def run() -> float:
        etcd = Etcd([url])
        value = b"x" * value_size
        gate = asyncio.Semaphore(4)

        async def txn(start: int) -> None:
            async with gate:
                ops = [
                    op_put(f"/ceiling/{i:08d}".encode(), value)
                    for i in range(start, min(keys, start + MAX_TXN_OPS))
                ]
                await etcd.txn([], ops)

        began = time.perf_counter()
        await asyncio.gather(*(txn(s) for s in range(0, keys, MAX_TXN_OPS)))
        took = time.perf_counter() - began
        # The keys stay: this is the point's last phase and its etcd goes
        # with it. (Deleting 1.5 million keys in one call outlasted etcd's
        # ping allowance: it ended the connection with "too_many_pings".)
        await etcd.aclose()
        return took

    return asyncio.run(run())


def timed_cli(cluster: Cluster, *args: str) -> float:
    began = time.perf_counter()
    res = cluster.cli(*args, timeout=300)
    took = time.perf_counter() - began
    if res.code != 0:
        raise RuntimeError(res.err)
    return took


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found


@contextmanager
def profiled(pid: int, out: Path | None) -> Iterator[None]:
    """py-spy records pid for the block (nothing when out is None)."""
    if out is None:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [py_spy(), "record", "-o", str(out), "--format", "speedscope", "--pid", str(pid)]
    proc = subprocess.Popen(
        [*cmd, "--rate", "50", "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield
    finally:
        proc.send_signal(2)
        proc.wait(120)


class PointRun:
    """Runs one Point; its figures and its accounts once ``run`` returns."""

    def __init__(self, point: Point) -> None:
        self.p = point
        self.figures: dict[str, Any] = Figures(nodes=point.nodes, services=point.services, tasks=point.tasks)
        self.accounts = Accounts()

    def _phase(self, name: str) -> Any:
        return self.accounts.phase(name)

    def _profile(self, name: str, who: str = "manager") -> Any:
        pid = self.manager.pid if who == "manager" else self.pools[0].proc.pid
        out = self.p.profile / f"{who}-{self.p.nodes}-{name}.speedscope.json" if self.p.profile else None
        return profiled(pid, out)

    def run(self) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            etcd = EtcdServer(root / "etcd")
            cluster = Cluster(etcd, root / "cluster", heartbeat=self.p.heartbeat)
            self.pools: list[SimPool] = []
            try:
                self.accounts.add("etcd", etcd.process.pid)
                cluster.start_manager()
                self.manager = psutil.Process(cluster.managers[0].pid)
                self.accounts.add("manager", self.manager.pid)
                self.client = Client(Target(cluster.manager_addrs, cluster.tls_dir), timeout=120).connect()
                self._join(cluster, root)
                self._converge(cluster, etcd)
                if self.p.full:
                    self._reads(cluster)
                self._idle()
                if self.p.full:
                    self._node_loss()
                    self._rolling_update(cluster)
                if self.p.ceiling:
                    self._etcd_ceiling(etcd)
                self.figures["manager_rss_mib_end"] = round(self.manager.memory_info().rss / MIB, 1)
                self.figures["manager_stats"] = {k: round(v, 3) for k, v in stats(self.client).items()}
            finally:
                for pool in self.pools:
                    pool.close()
                cluster.close()
                etcd.stop()
        self.figures["phases"] = {name: ph.as_json() for name, ph in self.accounts.phases.items()}
        return self.figures

    # -------------------------------------------------------------- phases

    def _join(self, cluster: Cluster, root: Path) -> None:
        p, f = self.p, self.figures
        count = p.pools or max(2, -(-p.nodes // NODES_PER_POOL))
        per_pool = -(-p.nodes // count)
        token = cluster.token()
        with self._phase("join") as ph:
            for i in range(count):
                n = min(per_pool, p.nodes - i * per_pool)
                if n <= 0:
                    break
                pool = SimPool(cluster.manager_addrs[0], token, n, root / "sim", offset=i * per_pool)
                self.pools.append(pool)
                self.accounts.add("harness", pool.proc.pid)
            for pool in self.pools:
                pool.ask("ready")
            wait_for(
                lambda: (
                    self.client.call("GetClusterInfo", cpb.GetClusterInfoRequest()).nodes_ready >= p.nodes
                ),
                timeout=1200,
                interval=0.5,
                what="all nodes ready",
            )
        f["harness_processes"] = len(self.pools)
        f["join_seconds"] = round(ph.seconds, 2)
        self.rss_before = self.manager.memory_info().rss
        f["manager_rss_mib_nodes_only"] = round(self.rss_before / MIB, 1)

    def _converge(self, cluster: Cluster, etcd: EtcdServer) -> None:
        p, f = self.p, self.figures
        stats_before = stats(self.client)
        counters_before = etcd_counters(etcd.url)
        with self._profile("converge"), self._profile("converge", "harness"), self._phase("converge") as ph:
            create_sim_services(
                cluster,
                p.services,
                p.replicas,
                "--update-parallelism",
                str(p.update_parallelism),
                "--update-monitor",
                "0s",
                first=("--publish", "18080:80") if p.publish else (),
            )
            wait_for(
                lambda: running_total(self.client) == p.tasks,
                timeout=3600,
                interval=0.5,
                what="all tasks running",
            )
        converge = ph.seconds
        f["converge_seconds"] = round(converge, 2)
        if p.publish:
            with self._phase("mesh") as mesh_phase:
                # Every node's mesh holds each of s0's tasks.
                wanted = p.nodes * p.replicas
                wait_for(
                    lambda: sum(pool.ask("stats")["mesh_backends"] for pool in self.pools) >= wanted,
                    timeout=3600,
                    interval=0.5,
                    what="every node's mesh to hold every backend",
                )
            f["mesh_converge_seconds"] = round(converge + mesh_phase.seconds, 2)
            f["agent_cpu_seconds_mesh"] = round(mesh_phase.cpu.get("harness", 0.0), 1)
        f["tasks_running_per_second"] = round(p.tasks / converge, 1)
        after = stats(self.client)
        placed = after.get("scheduler_placed", 0) - stats_before.get("scheduler_placed", 0)
        placing = after.get("scheduler_seconds", 0) - stats_before.get("scheduler_seconds", 0)
        deciding = after.get("scheduler_decide_seconds", 0) - stats_before.get("scheduler_decide_seconds", 0)
        f["scheduler_placements_per_second"] = round(placed / placing, 1) if placing else None
        if deciding:
            f["scheduler_decisions_per_second"] = round(placed / deciding, 1)
        counters = etcd_counters(etcd.url)
        txns = counters["etcd_mvcc_txn_total"] - counters_before["etcd_mvcc_txn_total"]
        keys = counters["etcd_mvcc_put_total"] - counters_before["etcd_mvcc_put_total"]
        for way in ("in", "out"):
            sent = after.get(f"dispatcher_messages_{way}", 0) - stats_before.get(
                f"dispatcher_messages_{way}", 0
            )
            f[f"session_messages_{way}_per_task"] = round(sent / p.tasks, 3)
        f["etcd_txns_per_task"] = round(txns / p.tasks, 4)
        f["etcd_keys_per_task"] = round(keys / p.tasks, 3)
        rss = self.manager.memory_info().rss
        f["manager_rss_mib"] = round(rss / MIB, 1)
        f["manager_bytes_per_task"] = round((rss - self.rss_before) / p.tasks)
        for group, key in (("manager", "manager"), ("harness", "agent"), ("etcd", "etcd")):
            f[f"{key}_cpu_seconds_converge"] = round(ph.cpu.get(group, 0.0), 1)
            f[f"{key}_cpu_ms_per_task"] = round(1000 * ph.cpu.get(group, 0.0) / p.tasks, 3)
        self.converge_keys = int(keys)
        self.converge_seconds = converge

    def _etcd_ceiling(self, etcd: EtcdServer) -> None:
        """etcd alone writing as many keys as the convergence did. Last of
        the point: deleting 100,000 keys afterwards kept etcd busy for
        seconds, which the node-loss phase used to pay for (etcd 3 CPU-s
        there instead of 0.2-0.7)."""
        f = self.figures
        keys = self.converge_keys
        with self._phase("etcd-only") as ceiling_phase:
            ceiling = etcd_ceiling(etcd.url, keys, 600)
        f["etcd_only_seconds_same_keys"] = round(ceiling, 2)
        f["etcd_batched_puts_per_second"] = round(keys / ceiling, 0)
        f["converge_vs_etcd_ratio"] = round(self.converge_seconds / ceiling, 2)
        f["etcd_cpu_seconds_etcd_only"] = round(ceiling_phase.cpu.get("etcd", 0.0), 1)

    def _reads(self, cluster: Cluster) -> None:
        f = self.figures
        with self._phase("reads"):
            ps = timed_cli(cluster, "service", "ps", "s2", "--format", "json")
            f["service_ps_seconds_cli"] = round(ps, 3)
            began = time.perf_counter()
            self.client.call("ListTasks", cpb.ListTasksRequest(service="s2"), timeout=120)
            f["service_ps_seconds_rpc"] = round(time.perf_counter() - began, 3)
            f["service_ls_seconds_cli"] = round(timed_cli(cluster, "service", "ls", "--format", "json"), 3)

    def _idle(self) -> None:
        with self._profile("idle"), self._phase("idle") as ph:
            time.sleep(self.p.idle)
        f = self.figures
        f["idle_seconds"] = round(ph.seconds, 1)
        f["idle_manager_cpu_percent"] = round(100 * ph.cpu.get("manager", 0.0) / ph.seconds, 1)
        f["idle_etcd_cpu_percent"] = round(100 * ph.cpu.get("etcd", 0.0) / ph.seconds, 1)
        f["idle_agent_cpu_percent"] = round(100 * ph.cpu.get("harness", 0.0) / ph.seconds, 1)

    def _node_loss(self) -> None:
        p, f = self.p, self.figures
        kill = p.kill or max(1, p.nodes // 10)
        with self._phase("node loss: detect"):
            per = -(-kill // len(self.pools))
            left = kill
            for pool in self.pools:
                n = min(per, left)
                if n:
                    pool.ask("kill", count=n)
                left -= n
            killed_at = time.perf_counter()
            wait_for(
                lambda: nodes_down(self.client) >= kill, timeout=600, interval=0.2, what="dead nodes detected"
            )
        detected_at = time.perf_counter()
        with (
            self._profile("replace"),
            self._profile("replace", "harness"),
            self._phase("node loss: replace") as ph,
        ):
            wait_for(
                lambda: running_total(self.client) == p.tasks,
                timeout=1800,
                interval=0.2,
                what="replacements running",
            )
        f["killed_nodes"] = kill
        f["replaced_tasks"] = kill * p.tasks // p.nodes
        f["death_to_detection_seconds"] = round(detected_at - killed_at, 2)
        f["detection_to_replaced_seconds"] = round(ph.seconds, 2)

    def _rolling_update(self, cluster: Cluster) -> None:
        p, f = self.p, self.figures

        def update_done() -> bool:
            svc = self.client.call("GetService", cpb.ObjectRef(ref="s3"))
            return bool(svc.update_status.state == 3)

        with self._profile("update"), self._profile("update", "harness"), self._phase("rolling update") as ph:
            res = cluster.cli("service", "update", "-d", "--image", "sim:2", "s3")
            if res.code != 0:
                raise RuntimeError(res.err)
            wait_for(update_done, timeout=3600, interval=0.2, what="rolling update")
        f["rolling_update_seconds"] = round(ph.seconds, 2)
        f["rolling_update_replicas"] = p.replicas
        f["rolling_update_parallelism"] = p.update_parallelism


def run_point(point: Point, log: Callable[[str], None] = print) -> tuple[dict[str, Any], Accounts]:
    run = PointRun(point)
    log(f"== {point.nodes:,} nodes, {point.tasks:,} tasks")
    figures = run.run()
    log(run.accounts.table())
    return figures, run.accounts
