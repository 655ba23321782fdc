"""The networks part of the ControlAPI: create, inspect, list, remove.

A network is a discovery scope, not a wire: services that share one resolve
each other's names (docs/architecture.md, Networking). Names are unique
across managers, claimed by an index key (``<prefix>index/network-names/<name>``)
in the network's own transaction, as service names are. A network is removed
only when no service (nor a service's previous spec, which a rollback would
bring back) names it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from shoal.ids import new_id
from shoal.manager.controlapi.common import ControlBase, Ctx, resolve, rpc
from shoal.manager.store import AlreadyExists, NotFound, VersionConflict, View, clone, on_conflict
from shoal.names import DEFAULT_NETWORK, INGRESS_NETWORK
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb
from shoal.rules import limits, validate
from shoal.rules.errors import InvalidRequest

WRITE_ATTEMPTS = 5
# Drivers a client may ask for: Docker's and Compose's word for a
# cluster-wide network is "overlay"; shoal makes every network cluster-wide.
DRIVERS = ("", "overlay")


def name_key(prefix: bytes, name: str) -> bytes:
    return prefix + b"index/network-names/" + name.encode()


def users_of(services: list[pb.Service], name: str) -> list[str]:
    """The names of the services whose spec (or previous spec) uses network name."""
    return sorted(
        s.spec.name
        for s in services
        if name in s.spec.networks or (s.HasField("previous_spec") and name in s.previous_spec.networks)
    )


class NetworkAPI(ControlBase):
    def resolve_network(self, ref: str) -> pb.Network:
        network: pb.Network = resolve(ref, self.view.networks, lambda n: n.spec.name, "network")
        return network

    @rpc
    async def CreateNetwork(self, request: cpb.CreateNetworkRequest, context: Ctx) -> pb.Network:
        spec = clone(request.spec)
        validate.validate_name(spec.name)
        if spec.name == DEFAULT_NETWORK:
            raise InvalidRequest(
                f'name "{DEFAULT_NETWORK}": the scope of services on no network; choose another'
            )
        if spec.name == INGRESS_NETWORK:
            raise InvalidRequest(
                f'name "{INGRESS_NETWORK}": the routing mesh\'s network, as in swarm mode; choose another'
            )
        limits.check_labels("labels", spec.labels)
        if spec.driver not in DRIVERS:
            raise InvalidRequest(f'driver "{spec.driver[:32]}": only overlay (the default) is supported')
        spec.driver = spec.driver or "overlay"
        async for attempt in on_conflict(WRITE_ATTEMPTS):
            with attempt:
                key = name_key(self.store.prefix, spec.name)
                held = await self.store.etcd.get(key)
                if held is not None:
                    raise AlreadyExists(
                        f'network name "{spec.name}" is already in use by network {held.value.decode()}'
                    )
                network = pb.Network(spec=spec)
                network.meta.id = new_id()
                batch = self.store.batch().create(network)
                batch.raw("create", key, network.meta.id.encode(), 0)
                await batch.commit_all_or_nothing()
                return network
        raise AssertionError("unreachable")

    @rpc
    async def GetNetwork(self, request: cpb.ObjectRef, context: Ctx) -> pb.Network:
        return self.resolve_network(request.ref)

    @rpc
    async def ListNetworks(self, request: cpb.ListNetworksRequest, context: Ctx) -> cpb.ListNetworksResponse:
        networks: list[pb.Network] = sorted(self.view.networks.values(), key=lambda n: n.spec.name)
        return cpb.ListNetworksResponse(networks=networks)

    @rpc
    async def RemoveNetwork(self, request: cpb.ObjectRef, context: Ctx) -> cpb.RemoveObjectResponse:
        async for attempt in on_conflict(WRITE_ATTEMPTS):
            with attempt:
                network = self.resolve_network(request.ref)
                users = users_of(list(self.view.services.values()), network.spec.name)
                if users:
                    # Worded as Swarm's refusal ("network X is in use by service Y").
                    one = len(users) == 1
                    raise InvalidRequest(
                        f"network {network.spec.name} is in use by "
                        + ("service " if one else "services ")
                        + ", ".join(users[:5])
                        + (f" and {len(users) - 5} more" if len(users) > 5 else "")
                        + f"; remove {'it' if one else 'them'} or take {'it' if one else 'them'} off "
                        "the network (service update --network-rm) first"
                    )
                batch = self.store.batch().delete(network)
                held = await self.store.etcd.get(name_key(self.store.prefix, network.spec.name))
                if held is not None and held.value.decode() == network.meta.id:
                    batch.raw("delete", held.key, b"", held.mod_revision)
                try:
                    await batch.commit_all_or_nothing()
                except VersionConflict:
                    with contextlib.suppress(NotFound):
                        self.view.observe(await self.store.get(pb.Network, network.meta.id))
                    raise
                return cpb.RemoveObjectResponse(id=network.meta.id, name=network.spec.name)
        raise AssertionError("unreachable")


def check_networks(view: View, spec: pb.ServiceSpec, planned: Iterable[str] = ()) -> None:
    """InvalidRequest unless every network the spec names exists (or is
    planned: a stack's, checked before it is made), once."""
    names = list(spec.networks)
    if len(names) > limits.MAX_NETWORKS:
        raise InvalidRequest(f"networks: at most {limits.MAX_NETWORKS}, got {len(names)}")
    known = {n.spec.name for n in view.networks.values()} | set(planned)
    for name in names:
        if name not in known:
            raise InvalidRequest(
                f"network {name[:64]} not found (create it with: shoal network create {name[:64]})"
            )
    if len(set(names)) != len(names):
        raise InvalidRequest("networks: a network is named twice")
