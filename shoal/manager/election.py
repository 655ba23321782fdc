"""Leader election and the manager registry, both on etcd leases.

Every manager keeps ``<prefix>managers/<id> = HOST:PORT`` alive with a lease,
so any manager can list the live ones (``shoal info``, agent failover).

The leader is whoever holds ``<prefix>leader`` (value: its manager ID), put
only if absent and tied to the same lease. The lease lives ``ttl`` seconds
(5 by default): a leader that crashes or hangs holds office at most that
long, and a leader must reach etcd at least once in that time (it refreshes
every ttl/3) or lose office; shorter would make a busy etcd or a long
garbage-collection pause cost leadership, longer would leave the cluster
without a leader longer after a crash. A leader that stops cleanly revokes
its lease, and the next one takes office within ``CAMPAIGN_POLL``. The key's create revision is the
leader's *fence*: the leader's store compares it on every write, so a manager
that lost its lease cannot write even if it has not noticed yet.

A manager restarted with the same state dir (same ID) that finds the leader
key still holding its own ID from before the crash revokes that old lease and
takes over at once instead of waiting out the TTL.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from shoal.manager.store import StoreError
from shoal.manager.store.etcd import Etcd, cmp_absent, op_put

log = logging.getLogger(__name__)

# How often a follower looks whether the leader key is free.
CAMPAIGN_POLL = 0.2


@dataclass(frozen=True)
class Leadership:
    create_revision: int


class ManagerPresence:
    """This manager's lease, its registry key and its bid for leadership."""

    def __init__(self, etcd: Etcd, prefix: bytes, manager_id: str, addr: str, ttl: int = 5) -> None:
        self.etcd = etcd
        self.prefix = prefix
        self.manager_id = manager_id
        self.addr = addr
        self.ttl = ttl
        self.lease = 0
        self.leader_key = prefix + b"leader"
        self.registry_prefix = prefix + b"managers/"

    async def register(self) -> None:
        """Take a lease and announce this manager (retried by the caller)."""
        self.lease = await self.etcd.grant_lease(self.ttl)
        await self.etcd.put(self.registry_prefix + self.manager_id.encode(), self.addr.encode(), self.lease)

    async def keep_alive(self) -> None:
        """Refresh the lease every ttl/3. A refresh that fails is retried (etcd
        may be briefly away); a lease that expired meanwhile is replaced by a
        new one (leadership, tied to the old lease, is gone with it)."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                remaining = await self.etcd.keep_alive(self.lease)
            except StoreError as err:
                log.warning("lease keep-alive failed (%s); retrying", err)
                continue
            if remaining <= 0:
                log.warning("this manager's etcd lease expired; registering again")
                try:
                    await self.register()
                except StoreError as err:
                    log.warning("registering again failed (%s); retrying", err)

    async def campaign(self) -> Leadership:
        """Return once this manager is the leader."""
        stale_revoked = False
        while True:
            kv = await self.etcd.get(self.leader_key)
            from_before = kv is not None and kv.value.decode() == self.manager_id and kv.lease != self.lease
            if kv is not None and from_before and not stale_revoked:
                log.info("the leader key is held by this manager's previous run; taking over")
                stale_revoked = True
                try:
                    await self.etcd.revoke_lease(kv.lease)
                except StoreError:
                    await self.etcd.delete(self.leader_key)
                continue
            if kv is not None and kv.lease == self.lease:
                return Leadership(kv.create_revision)
            if kv is None:
                txn = await self.etcd.txn(
                    [cmp_absent(self.leader_key)],
                    [op_put(self.leader_key, self.manager_id.encode(), self.lease)],
                )
                if txn.succeeded:
                    return Leadership(txn.revision)
            # Often enough that a leader that hands over (SIGTERM revokes its
            # lease) is followed within a second; one small read each time.
            await asyncio.sleep(CAMPAIGN_POLL)

    async def still_leader(self, leadership: Leadership) -> bool:
        kv = await self.etcd.get(self.leader_key)
        return kv is not None and kv.create_revision == leadership.create_revision

    async def managers(self) -> list[tuple[str, str, bool]]:
        """(id, addr, is_leader) of every live manager."""
        kvs, _ = await self.etcd.list_prefix(self.registry_prefix)
        leader = await self.etcd.get(self.leader_key)
        leader_id = leader.value.decode() if leader else ""
        out = []
        for kv in kvs:
            mid = kv.key[len(self.registry_prefix) :].decode()
            out.append((mid, kv.value.decode(), mid == leader_id))
        return out

    async def resign(self) -> None:
        """Hand over at once: revoking the lease deletes both keys."""
        if self.lease:
            try:
                await self.etcd.revoke_lease(self.lease)
            except StoreError as err:
                log.warning("could not revoke the lease on shutdown: %s", err)
            self.lease = 0
