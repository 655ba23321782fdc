"""What this manager says about itself as a Docker engine: the ``/_ping``
headers, ``/version`` and ``/info`` (with the Swarm fields the docker CLI
reads).

Pure: facts in, JSON-ready dicts out. The manager is not one of the
cluster's nodes (shoal's nodes are its agents), so ``Swarm.NodeID`` names
the manager: ``docker node ls`` marks no node with ``*``, and ``docker node
ps`` without a node name finds none. Fields with no meaning here (images,
containers, storage driver, raft settings) are left zero.
"""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import psutil

from shoal.manager.dockerapi import versions
from shoal.manager.dockerapi.wire import rfc3339, version
from shoal.protos import control_pb2 as cpb

Json = dict[str, Any]


def shoal_version() -> str:
    try:
        return metadata.version("shoal")
    except metadata.PackageNotFoundError:
        return "unknown"


_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        return platform.system()


@dataclass(frozen=True)
class Host:
    """The machine this manager runs on, as ``docker info`` shows an engine's."""

    name: str = field(default_factory=socket.gethostname)
    kernel: str = field(default_factory=platform.release)
    os_name: str = field(default_factory=_os_name)
    arch: str = field(default_factory=lambda: _ARCH.get(platform.machine(), platform.machine()))
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    memory: int = field(default_factory=lambda: int(psutil.virtual_memory().total))
    python: str = field(default_factory=platform.python_version)
    shoal: str = field(default_factory=shoal_version)


def ping_headers(host: Host) -> dict[str, str]:
    """The headers of every answer (the engine's version middleware), and
    of ``/_ping`` in particular: the CLI negotiates its version from them."""
    return {
        "Api-Version": versions.API_VERSION,
        "Ostype": "linux",
        "Docker-Experimental": "false",
        "Swarm": "active/manager",
        "Server": f"shoal/{host.shoal} (linux)",
    }


def version_info(host: Host) -> Json:
    # One component, named "Engine" as the docker CLI expects (it adds one
    # of that name otherwise); the platform name says it is shoal.
    details = {
        "ApiVersion": versions.API_VERSION,
        "MinAPIVersion": versions.MIN_API_VERSION,
        "Os": "linux",
        "Arch": host.arch,
        "KernelVersion": host.kernel,
        "Experimental": "false",
        "GitCommit": "",
        "GoVersion": f"none (Python {host.python})",
        "BuildTime": "",
    }
    return {
        "Platform": {"Name": f"shoal {host.shoal}"},
        "Components": [{"Name": "Engine", "Version": host.shoal, "Details": details}],
        "Version": host.shoal,
        "ApiVersion": versions.API_VERSION,
        "MinAPIVersion": versions.MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": details["GoVersion"],
        "Os": "linux",
        "Arch": host.arch,
        "KernelVersion": host.kernel,
        "Experimental": False,
        "BuildTime": "",
    }


def info(
    host: Host,
    cluster: cpb.ClusterInfo,
    ca: cpb.CAStatus,
    manager_id: str,
    manager_addr: str,
    trust_root: str,
) -> Json:
    spec = cluster.spec
    swarm: Json = {
        "NodeID": manager_id,
        "NodeAddr": manager_addr.rsplit(":", 1)[0],
        "LocalNodeState": "locked" if cluster.locked else "active",
        "ControlAvailable": not cluster.locked,
        "Error": "",
        "RemoteManagers": [{"NodeID": m.id, "Addr": m.addr} for m in cluster.managers],
        "Nodes": cluster.nodes,
        "Managers": len(cluster.managers),
        "Cluster": {
            "ID": cluster.cluster_id,
            "Version": version(0),
            "CreatedAt": rfc3339(cluster.created_at),
            "UpdatedAt": rfc3339(cluster.created_at),
            "Spec": {
                "Name": "default",
                "Labels": {},
                "Orchestration": {"TaskHistoryRetentionLimit": spec.task_history_limit},
                "Raft": {},
                "Dispatcher": {"HeartbeatPeriod": spec.heartbeat_period},
                "CAConfig": {"NodeCertExpiry": spec.cert_expiry},
                "EncryptionConfig": {"AutoLockManagers": cluster.autolock},
                "TaskDefaults": {},
            },
            "TLSInfo": {"TrustRoot": trust_root},
            "RootRotationInProgress": ca.rotating,
        },
    }
    return {
        "ID": cluster.cluster_id,
        "Containers": 0,
        "ContainersRunning": 0,
        "ContainersPaused": 0,
        "ContainersStopped": 0,
        "Images": 0,
        "ServerVersion": host.shoal,
        "OperatingSystem": host.os_name,
        "OSType": "linux",
        "Architecture": host.arch,
        "KernelVersion": host.kernel,
        "NCPU": host.cpus,
        "MemTotal": host.memory,
        "Name": host.name,
        "ExperimentalBuild": False,
        "Swarm": swarm,
        # Without a warning of its own the docker CLI infers a list from the
        # engine features this answer does not claim (memory limits, ...).
        "Warnings": [
            "WARNING: this is a shoal manager: it serves the swarm part of the Engine API "
            "(services, tasks, nodes); containers and images are its nodes' business"
        ],
    }
