"""Service names and published ports, unique across every manager.

A manager's view could tell it that a name is free while another manager
(or another call on this one) takes it at the same moment. So each claim is
an etcd key of its own, written in the same transaction as the service:

    <prefix>index/service-names/<name>     the service's ID
    <prefix>index/ports/<proto>/<port>     {"ingress": ID} or {"host": [ID, ...]}

A name is one service's; an ingress port is one service's on every node; a
host-mode port may be shared by services in host mode (the scheduler keeps
them on different nodes) but not with an ingress one. ``plan`` reads the
keys a change touches and returns the writes (or AlreadyExists naming the
holder); the transaction compares each key's revision, so a claim that lost
a race fails as a whole and is planned again.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from shoal.defaults import MESH
from shoal.manager.store import AlreadyExists, Batch, Store, VersionConflict, View
from shoal.protos import objects_pb2 as pb

Port = tuple[str, int]  # (protocol, published port)


@dataclass(frozen=True)
class IndexWrite:
    action: Literal["create", "update", "delete"]
    key: bytes
    value: bytes
    version: int

    def add_to(self, batch: Batch) -> None:
        batch.raw(self.action, self.key, self.value, self.version)


def name_key(store: Store, name: str) -> bytes:
    return store.prefix + b"index/service-names/" + name.encode()


def port_key(store: Store, port: Port) -> bytes:
    return store.prefix + f"index/ports/{port[0]}/{port[1]}".encode()


def _published(spec: pb.ServiceSpec | None) -> dict[Port, str]:
    if spec is None:
        return {}
    return {(p.protocol, p.published_port): p.publish_mode for p in spec.ports if p.published_port}


def _holder_name(view: View, service_id: str) -> str:
    svc = view.services.get(service_id)
    return svc.spec.name if svc is not None else service_id


async def plan(
    view: View, store: Store, service_id: str, old: pb.ServiceSpec | None, new: pb.ServiceSpec | None
) -> list[IndexWrite]:
    """The index writes that take a service from spec old to spec new (None:
    absent): create, update or remove."""
    writes: list[IndexWrite] = []
    if old is None and new is not None:
        key = name_key(store, new.name)
        held = await store.etcd.get(key)
        if held is not None and held.value.decode() != service_id:
            holder = held.value.decode()
            raise AlreadyExists(f'service name "{new.name}" is already in use by service {holder}')
        if held is None:
            writes.append(IndexWrite("create", key, service_id.encode(), 0))
    elif old is not None and new is None:
        held = await store.etcd.get(name_key(store, old.name))
        if held is not None and held.value.decode() == service_id:
            writes.append(IndexWrite("delete", held.key, b"", held.mod_revision))
    before, after = _published(old), _published(new)
    for port in sorted(set(before) | set(after)):
        if before.get(port) == after.get(port):
            continue
        writes.extend(await _port_writes(view, store, service_id, port, after.get(port)))
    return writes


async def _port_writes(
    view: View, store: Store, service_id: str, port: Port, mode: str | None
) -> list[IndexWrite]:
    key = port_key(store, port)
    held = await store.etcd.get(key)
    users: dict[str, Any] = json.loads(held.value) if held is not None else {}
    ingress = str(users.get("ingress", ""))
    hosts = [h for h in users.get("host", []) if isinstance(h, str)]
    if ingress == service_id:
        ingress = ""
    hosts = [h for h in hosts if h != service_id]
    others = ([ingress] if ingress else []) + hosts
    if mode == "ingress" and others:
        raise AlreadyExists(
            f"port {port[1]}/{port[0]} is already published by service {_holder_name(view, others[0])}"
        )
    if mode == "host" and ingress:
        raise AlreadyExists(
            f"port {port[1]}/{port[0]} is already published by service {_holder_name(view, ingress)}"
        )
    if mode == "ingress":
        ingress = service_id
    elif mode == "host":
        hosts.append(service_id)
    value = {"ingress": ingress} if ingress else {"host": sorted(hosts)} if hosts else None
    if value is None:
        return [IndexWrite("delete", key, b"", held.mod_revision)] if held is not None else []
    data = json.dumps(value, sort_keys=True).encode()
    if held is None:
        return [IndexWrite("create", key, data, 0)]
    return [IndexWrite("update", key, data, held.mod_revision)]


def vip_key(store: Store, vip: str) -> bytes:
    return store.prefix + b"index/vips/" + vip.encode()


def new_vip(view: View, store: Store, service: pb.Service) -> IndexWrite:
    """Give a new service a virtual address no service has (random in the
    pool; the key, created in the service's transaction, settles a race
    between managers: the loser is planned again)."""
    net = ipaddress.ip_network(MESH.vip_net)
    used = {s.virtual_ip for s in view.services.values()}
    rng = random.SystemRandom()
    while True:
        vip = str(net[rng.randrange(1, net.num_addresses - 1)])
        if vip not in used:
            break
    service.virtual_ip = vip
    return IndexWrite("create", vip_key(store, vip), service.meta.id.encode(), 0)


async def vip_release(store: Store, service: pb.Service) -> list[IndexWrite]:
    """The write that frees a removed service's virtual address."""
    if not service.virtual_ip:
        return []
    held = await store.etcd.get(vip_key(store, service.virtual_ip))
    if held is None or held.value.decode() != service.meta.id:
        return []
    return [IndexWrite("delete", held.key, b"", held.mod_revision)]


# Swarm's range for ingress ports published without a number.
AUTO_PORT_MIN = 30000
AUTO_PORT_MAX = 32767


def assign_published(view: View, spec: pb.ServiceSpec, previous: pb.ServiceSpec | None) -> None:
    """Give each ingress port published without a number (0) one of Swarm's
    range: the one the service had for that target, else one no service
    publishes (plan then claims it in the same transaction)."""
    had = {
        (p.protocol, p.target_port): p.published_port
        for p in (previous.ports if previous is not None else [])
        if p.publish_mode == "ingress"
    }
    used = {(p.protocol, p.published_port) for s in view.services.values() for p in s.spec.ports}
    used |= {(p.protocol, p.published_port) for p in spec.ports}
    for port in spec.ports:
        if port.publish_mode != "ingress" or port.published_port:
            continue
        kept = had.get((port.protocol, port.target_port), 0)
        if kept and (port.protocol, kept) not in {(p.protocol, p.published_port) for p in spec.ports}:
            port.published_port = kept
            continue
        free = next(
            (n for n in range(AUTO_PORT_MIN, AUTO_PORT_MAX + 1) if (port.protocol, n) not in used), None
        )
        if free is None:
            raise AlreadyExists(
                f"no free port left in {AUTO_PORT_MIN}-{AUTO_PORT_MAX} to publish {port.target_port}"
            )
        port.published_port = free
        used.add((port.protocol, free))


async def backfill(view: View, store: Store, services: Iterable[pb.Service]) -> int:
    """Index the services of a cluster made before the index existed (once:
    a marker key records that it was done); how many were indexed."""
    marker = store.prefix + b"index/built"
    if await store.etcd.get(marker) is not None:
        return 0
    count = 0
    for service in services:
        try:
            writes = await plan(view, store, service.meta.id, None, service.spec)
        except AlreadyExists:
            continue  # a duplicate from before: the first one keeps the name
        batch = store.batch()
        for w in writes:
            w.add_to(batch)
        if len(batch):
            try:
                await batch.commit_all_or_nothing()
            except VersionConflict:
                continue  # another manager, starting too, indexed it
            count += 1
    await store.etcd.put(marker, b"1")
    return count
