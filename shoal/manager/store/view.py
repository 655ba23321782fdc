"""The manager's in-memory view of etcd, kept current by a watch.

Start: list every object under the prefix at one revision R, then watch from
R+1 (as Kubernetes informers do). A watch that fails is restarted from the last
revision seen; when etcd answers that this revision is compacted, the view
lists everything again and tells subscribers what changed in between.

Writes made through the Store are applied here as soon as etcd acknowledges
them (write-through), so a component never acts twice on a state it already
changed just because the watch has not caught up. Each object carries its
mod_revision; an event older than what the view holds is dropped, and deleted
keys leave a tombstone until the watch passes the delete.

Indexes kept up to date on every change, so no one scans all tasks per event:
tasks by service, tasks by node, and each service's running and completed
task counts.

Objects handed out are shared: clone before modifying (``store.clone``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import tenacity

from shoal.manager.store import etcd as e
from shoal.manager.store.errors import Compacted
from shoal.manager.store.events import Event, Subscription
from shoal.manager.store.retry import failure_backoff, until_done
from shoal.manager.store.store import (
    KINDS,
    Committed,
    Store,
    Stored,
    decode,
    kind_of,
    parse_key,
)
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)


class View:
    """Every cluster object in memory, fed by one etcd watch."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.objects: dict[str, dict[str, Any]] = {k: {} for k in KINDS}  # kind -> ID -> object of that kind
        self.tasks_by_service: dict[str, dict[str, pb.Task]] = defaultdict(dict)
        self.tasks_by_node: dict[str, dict[str, pb.Task]] = defaultdict(dict)
        # Per service: tasks desired and observed running, and completed
        # ones (service ls asks for these; counting them here keeps it O(1)).
        self.running_by_service: Counter[str] = Counter()
        self.completed_by_service: Counter[str] = Counter()
        self.revision = 0
        self._tombstones: dict[tuple[str, str], int] = {}
        self._subscribers: set[Subscription] = set()
        self._cancel_watch: e.WatchHandle | None = None
        self._ready = asyncio.Event()
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._restart: asyncio.Task[None] | None = None
        self._revision_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.relists = 0
        self._watch_failures = 0
        self._broken_since = 0.0
        store.add_listener(self._apply)

    # -------------------------------------------------------------- queries

    @property
    def nodes(self) -> dict[str, pb.Node]:
        return self.objects["nodes"]

    @property
    def services(self) -> dict[str, pb.Service]:
        return self.objects["services"]

    @property
    def tasks(self) -> dict[str, pb.Task]:
        return self.objects["tasks"]

    @property
    def secrets(self) -> dict[str, pb.Secret]:
        return self.objects["secrets"]

    @property
    def configs(self) -> dict[str, pb.Config]:
        return self.objects["configs"]

    @property
    def networks(self) -> dict[str, pb.Network]:
        return self.objects["networks"]

    def cluster(self) -> pb.Cluster | None:
        return next(iter(self.objects["clusters"].values()), None)

    def cluster_keys(self) -> pb.ClusterKeys | None:
        return next(iter(self.objects["keys"].values()), None)

    def service_by_name(self, name: str) -> pb.Service | None:
        for svc in self.services.values():
            if svc.spec.name == name:
                return svc
        return None

    def observe(self, obj: Stored) -> None:
        """Take in an object read straight from etcd (e.g. the current value
        returned with a version conflict), if it is newer than ours."""
        self._apply([(kind_of(obj), obj.meta.id, obj, obj.meta.version)])

    def subscribe(self, kinds: Iterable[str] | None = None) -> Subscription:
        sub = Subscription(set(kinds) if kinds is not None else None, self._subscribers.discard)
        self._subscribers.add(sub)
        return sub

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """List everything and start watching; returns once the view is full."""
        self._loop = asyncio.get_running_loop()
        await self._relist()
        self._ready.set()

    async def stop(self) -> None:
        self._stopped = True
        if self._cancel_watch:
            self._cancel_watch()
        if self._restart:
            self._restart.cancel()

    async def catch_up(self, timeout: float = 10.0) -> None:
        """Return once the view holds everything etcd held when called: after
        a write whose outcome is unknown, decide again only on what is there."""
        revision = await self.store.etcd.current_revision()
        if self._cancel_watch is not None:
            # Writes elsewhere in etcd move its revision without an event here.
            self._cancel_watch.progress()
        await asyncio.wait_for(self.wait_for_revision(revision), timeout)

    async def wait_for_revision(self, revision: int) -> None:
        """Return once the view has seen every change up to revision."""
        if self.revision >= revision:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._revision_waiters.append((revision, fut))
        await fut

    async def _relist(self) -> None:
        kvs, revision = await self.store.etcd.list_prefix(self.store.prefix)
        fresh: dict[str, dict[str, Stored]] = {k: {} for k in KINDS}
        for kv in kvs:
            parsed = parse_key(self.store.prefix, kv.key)
            if parsed is None:
                continue
            kind, obj_id = parsed
            fresh[kind][obj_id] = decode(kind, kv.value, kv.mod_revision)
        changes: list[Committed] = []
        for kind in KINDS:
            old, new = self.objects[kind], fresh[kind]
            for obj_id, obj in new.items():
                if obj_id not in old or old[obj_id].meta.version < obj.meta.version:
                    changes.append((kind, obj_id, obj, obj.meta.version))
            for obj_id, obj in list(old.items()):
                # Keep what we wrote after the list's revision.
                if obj_id not in new and obj.meta.version <= revision:
                    changes.append((kind, obj_id, None, revision))
        self._apply(changes)
        self._set_revision(revision)
        self._watch(revision + 1)
        self.relists += 1

    def _watch(self, start_revision: int) -> None:
        loop = self._loop
        assert loop is not None

        def on_events(events: list[e.WatchEvent], revision: int) -> None:
            loop.call_soon_threadsafe(self._on_watch, events, revision)

        def on_error(err: Exception) -> None:
            loop.call_soon_threadsafe(self._on_watch_error, err)

        self._cancel_watch = self.store.etcd.watch_prefix(
            self.store.prefix, start_revision, on_events, on_error
        )

    @property
    def stale_for(self) -> float:
        """Seconds since this view lost its watch on etcd (0: it has not)."""
        return time.monotonic() - self._broken_since if self._broken_since else 0.0

    def _on_watch_error(self, err: Exception) -> None:
        if self._stopped:
            return
        if self._cancel_watch:
            self._cancel_watch()
        self._watch_failures += 1
        if not self._broken_since:
            self._broken_since = time.monotonic()
        if isinstance(err, Compacted):
            log.info("watch fell behind a compaction; listing everything again")
        elif self._watch_failures == 1 or self._watch_failures % 20 == 0:
            log.warning(
                "watch failed (%s); restarting from revision %d (attempt %d)",
                err,
                self.revision + 1,
                self._watch_failures,
            )
        self._restart = asyncio.ensure_future(self._restart_watch(isinstance(err, Compacted)))

    def _backoff(self) -> float:
        return failure_backoff(self._watch_failures)

    async def _restart_watch(self, relist: bool) -> None:
        """Watch again from the last revision seen (list everything again
        after a compaction or a failed attempt), until it works or we stop."""

        def failed(err: BaseException | None) -> None:
            nonlocal relist
            self._watch_failures, relist = self._watch_failures + 1, True
            log.debug("cannot restart the watch yet: %s", err)

        await asyncio.sleep(self._backoff())
        with contextlib.suppress(tenacity.RetryError):  # the view stopped
            async for attempt in until_done(self._backoff, lambda: self._stopped, failed):
                with attempt:
                    if self._stopped:
                        return
                    if relist:
                        await self._relist()
                    else:
                        self._watch(self.revision + 1)

    def restart_watch_from(self, revision: int) -> None:
        """Drop the current watch and watch again from revision (tests use it
        to simulate a watch that fell behind)."""
        if self._cancel_watch:
            self._cancel_watch()
        self._watch(revision)

    # -------------------------------------------------------------- applying

    def _on_watch(self, events: list[e.WatchEvent], revision: int) -> None:
        if self._stopped:
            return
        if self._watch_failures or self._broken_since:
            if self._broken_since:
                log.info("watch on etcd restored after %.1fs", time.monotonic() - self._broken_since)
            self._watch_failures = 0
            self._broken_since = 0.0
        changes: list[Committed] = []
        for ev in events:
            parsed = parse_key(self.store.prefix, ev.key)
            if parsed is None:
                continue
            kind, obj_id = parsed
            held = self.objects[kind].get(obj_id)
            if held is not None and held.meta.version >= ev.mod_revision:
                continue  # the echo of our own write: do not even decode it
            obj = None if ev.deleted else decode(kind, ev.value, ev.mod_revision)
            changes.append((kind, obj_id, obj, ev.mod_revision))
        self._apply(changes)
        self._set_revision(revision)

    def _set_revision(self, revision: int) -> None:
        if revision <= self.revision:
            return
        self.revision = revision
        if self._tombstones:
            self._tombstones = {k: r for k, r in self._tombstones.items() if r > revision}
        if self._revision_waiters:
            still = []
            for want, fut in self._revision_waiters:
                if want <= revision:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    still.append((want, fut))
            self._revision_waiters = still

    def _apply(self, changes: Iterable[Committed]) -> None:
        events: list[Event] = []
        for kind, obj_id, obj, revision in changes:
            table = self.objects[kind]
            old = table.get(obj_id)
            if old is not None and old.meta.version >= revision:
                continue  # already have this or newer (write-through)
            if obj is None:
                if old is None:
                    continue
                del table[obj_id]
                self._tombstones[(kind, obj_id)] = revision
                self._unindex(kind, old)
            else:
                tomb = self._tombstones.get((kind, obj_id))
                if tomb is not None and tomb >= revision:
                    continue  # an echo of a put we already saw deleted
                table[obj_id] = obj
                if old is not None:
                    self._unindex(kind, old)
                self._index(kind, obj)
            events.append(Event(kind, obj_id, old, obj))
        if events:
            for sub in list(self._subscribers):
                sub.put_many(events)

    def _index(self, kind: str, obj: Stored) -> None:
        if isinstance(obj, pb.Task):
            self.tasks_by_service[obj.service_id][obj.meta.id] = obj
            if obj.node_id:
                self.tasks_by_node[obj.node_id][obj.meta.id] = obj
            self._count(obj, 1)

    def _count(self, task: pb.Task, delta: int) -> None:
        if task.status.state == pb.TASK_STATE_RUNNING and task.desired_state <= pb.TASK_STATE_RUNNING:
            self.running_by_service[task.service_id] += delta
        elif task.status.state == pb.TASK_STATE_COMPLETE:
            self.completed_by_service[task.service_id] += delta

    def _unindex(self, kind: str, obj: Stored) -> None:
        if isinstance(obj, pb.Task):
            self._count(obj, -1)
            _drop(self.tasks_by_service, obj.service_id, obj.meta.id)
            if obj.node_id:
                _drop(self.tasks_by_node, obj.node_id, obj.meta.id)


def _drop(index: dict[str, dict[str, pb.Task]], key: str, task_id: str) -> None:
    """Take a task out of an index, and its key once it holds none."""
    held = index.get(key)
    if held is not None:
        held.pop(task_id, None)
        if not held:
            del index[key]
