"""The values shoal uses when nobody says otherwise, each once, with why.

Shared by the manager, the agent and the CLI (it imports neither side).
Durations are nanoseconds, as in the protos, unless the name says seconds.
Most are swarm mode's own, so that a Swarm user's expectations hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.protos import objects_pb2 as pb

SECOND = 1_000_000_000
DAY = 86_400 * SECOND


@dataclass(frozen=True)
class ClusterDefaults:
    # Swarm's dispatcher heartbeat: frequent enough to find a dead node in
    # seconds, rare enough that a thousand nodes cost a manager little.
    heartbeat_period: int = 5 * SECOND
    # A node is down after this many silent periods: long enough to ride out
    # a GC pause, a slow disk or one lost packet (Swarm's value).
    grace_periods: int = 3
    # Below this, heartbeats of a thousand nodes would be all a manager does.
    min_heartbeat_period: int = 100_000_000
    # Ended tasks kept per slot for `service ps` (Swarm's task history).
    task_history_limit: int = 5
    # Node and manager certificates (Swarm's default, renewed at 50-80 %).
    cert_expiry: int = 90 * DAY


@dataclass(frozen=True)
class ServiceDefaults:
    # Swarm's defaults (api/defaults/service.go).
    stop_grace_period: int = 10 * SECOND
    restart_delay: int = 5 * SECOND
    update_monitor: int = 5 * SECOND
    update_parallelism: int = 1
    replicas: int = 1


CLUSTER = ClusterDefaults()
SERVICE = ServiceDefaults()


def heartbeat_period(spec: pb.ClusterSpec | None) -> int:
    """The cluster's heartbeat period (ns), or the default when unset."""
    return (spec.heartbeat_period if spec is not None else 0) or CLUSTER.heartbeat_period


def cert_expiry(spec: pb.ClusterSpec | None) -> int:
    """The cluster's certificate lifetime (ns), or the default when unset."""
    return (spec.cert_expiry if spec is not None else 0) or CLUSTER.cert_expiry


def stop_grace_seconds(container: pb.ContainerSpec) -> float:
    grace = (
        container.stop_grace_period if container.HasField("stop_grace_period") else SERVICE.stop_grace_period
    )
    return grace / SECOND


@dataclass(frozen=True)
class MeshDefaults:
    # Host ports an agent hands to tasks' endpoints: Nomad's dynamic range,
    # below Linux's ephemeral range (32768-60999) so that outgoing
    # connections never hold a port a task is about to bind.
    dynamic_port_min: int = 20_000
    dynamic_port_max: int = 32_000
    # How long the agent gathers mesh changes before it applies them to the
    # data path: a burst of task starts becomes one nft transaction.
    apply_delay: float = 0.05
    # Service virtual addresses (one per service, cluster-wide) and task
    # addresses (`tasks.SERVICE`, chosen by each node for its own resolver
    # and rules): private ranges that only the mesh's DNAT gives meaning,
    # away from Docker's default pools (172.17-31, 192.168) and the small
    # 10.x subnets that networks commonly use.
    vip_net: str = "10.208.0.0/14"
    task_addr_net: str = "10.212.0.0/14"
    # Each docker agent's bridge network takes a /24 of this range.
    bridge_net: str = "10.200.0.0/16"
    # A node reports its mesh when its shape changes (ports, data paths,
    # errors: at most once per heartbeat period), but a change of backend
    # counts alone only once in this many periods (30 s by default): while a
    # 10,000-task service starts, every node's counts change all the time,
    # and a thousand nodes reporting each period would be a thousand Node
    # writes per period.
    report_counts_periods: int = 6


MESH = MeshDefaults()
