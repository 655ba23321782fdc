"""Typed objects in etcd: one key each, optimistic concurrency, batches.

Layout: ``/shoal/v1/<kind>/<id>`` (the prefix is configurable) holds a
serialized protobuf (Cluster, Node, Service, Task, Secret, Config). An
object's ``meta.version`` is the etcd mod_revision it was read at; every
write compares it, so a stale write is a ``VersionConflict``, never a silent
overwrite. A leader's store carries a *fence* (the election
key's create revision): every transaction compares it too, so a manager that
lost leadership cannot write (``LeadershipLost``).

``Batch`` commits many objects in as few transactions as etcd allows
(``MAX_TXN_OPS`` operations, ``MAX_TXN_BYTES`` bytes each), several in flight
at once. A transaction that fails because some objects changed reads those
objects back in its failure branch; the batch sets them aside as conflicts and
commits the rest, so one busy object never holds up a thousand others.

Committed writes are handed to listeners (the View) at once, so the writer's
own in-memory view reflects its writes before the watch echoes them back.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from google.protobuf.message import Message

from shoal.manager.store import etcd as e
from shoal.manager.store.errors import AlreadyExists, LeadershipLost, NotFound, VersionConflict
from shoal.protos import objects_pb2 as pb

DEFAULT_PREFIX = b"/shoal/v1/"

Kind = Literal["clusters", "keys", "nodes", "services", "tasks", "secrets", "configs", "networks"]
Stored = pb.Cluster | pb.ClusterKeys | pb.Node | pb.Service | pb.Task | pb.Secret | pb.Config | pb.Network
S = TypeVar("S", pb.Cluster, pb.ClusterKeys, pb.Node, pb.Service, pb.Task, pb.Secret, pb.Config, pb.Network)
M = TypeVar("M", bound=Stored)

KINDS: dict[str, type[Stored]] = {  # what is stored: one protobuf message per key
    "clusters": pb.Cluster,
    # The cluster's secrets, apart from the cluster object (shoal.manager.keyring).
    "keys": pb.ClusterKeys,
    "nodes": pb.Node,
    "services": pb.Service,
    "tasks": pb.Task,
    # Files for tasks; a secret's value is sealed (shoal.manager.seal).
    "secrets": pb.Secret,
    "configs": pb.Config,
    "networks": pb.Network,
}
KIND_NAMES: dict[type[Stored], str] = {v: k for k, v in KINDS.items()}

# Chunks of one batch committed concurrently: etcd batches fsyncs of
# concurrent transactions, so a few in flight beat one at a time.
CONCURRENT_TXNS = 4

T = TypeVar("T", bound=Message)

# (kind, id, object or None for a delete, revision)
Committed = tuple[str, str, Stored | None, int]
Listener = Callable[[list[Committed]], None]


def kind_of(obj: Message) -> str:
    return KIND_NAMES[type(obj)]  # type: ignore[index]


def clone(obj: T) -> T:
    """A deep copy: objects from the view are shared and must not be mutated."""
    copy = type(obj)()
    copy.CopyFrom(obj)
    return copy


def now_ns() -> int:
    return time.time_ns()


def object_key(prefix: bytes, kind: str, obj_id: str) -> bytes:
    return prefix + kind.encode() + b"/" + obj_id.encode()


def parse_key(prefix: bytes, key: bytes) -> tuple[str, str] | None:
    """(kind, id) of a key under prefix, or None for keys that are not objects."""
    rest = key[len(prefix) :]
    kind, sep, obj_id = rest.partition(b"/")
    k = kind.decode()
    if not sep or k not in KINDS:
        return None
    return k, obj_id.decode()


def _parse(obj: M, value: bytes, revision: int) -> M:
    """obj filled from a stored value, at the etcd revision it was read at."""
    obj.ParseFromString(value)
    obj.meta.version = revision
    return obj


def decode(kind: str, value: bytes, revision: int) -> Stored:
    return _parse(KINDS[kind](), value, revision)


@dataclass
class _Op:
    action: Literal["create", "update", "delete"]
    kind: str  # "" for a raw key (an index entry), not an object
    obj: Any
    key: bytes
    value: bytes = b""
    version: int = 0  # raw keys: the mod_revision an update or delete expects

    def compare(self) -> Any:
        if self.action == "create":
            return e.cmp_absent(self.key)
        return e.cmp_mod(self.key, self.obj.meta.version if self.kind else self.version)

    def request(self) -> Any:
        if self.action == "delete":
            return e.op_delete(self.key)
        return e.op_put(self.key, self.value)

    def size(self) -> int:
        return len(self.key) * 2 + len(self.value) + 16


@dataclass
class Conflict:
    """An object of a batch that was not written because it changed (or
    exists, for a create); ``current`` is what is stored now (None: gone)."""

    obj: Any
    action: str
    current: Any | None


@dataclass
class BatchResult:
    committed: list[Any] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    transactions: int = 0


class Store:
    """Create, update and delete typed objects in etcd."""

    def __init__(
        self, etcd: e.Etcd, prefix: bytes = DEFAULT_PREFIX, fence: tuple[bytes, int] | None = None
    ) -> None:
        self.etcd = etcd
        # Tests give each cluster its own prefix so that one etcd serves many.
        self.prefix = prefix
        self.fence = fence
        self._listeners: list[Listener] = []
        # Counters for benchmarks and `shoal info`: transactions and keys written.
        self.stats = {"txns": 0, "keys": 0}

    def fenced(self, key: bytes, create_revision: int) -> Store:
        """A store whose writes succeed only while `key` still has this
        create revision (the leader's election key)."""
        s = Store(self.etcd, self.prefix, (key, create_revision))
        s._listeners = self._listeners
        s.stats = self.stats
        return s

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _notify(self, committed: builtins.list[Committed]) -> None:
        for listener in self._listeners:
            listener(committed)

    # -------------------------------------------------------------- reads

    async def get(self, cls: type[S], obj_id: str) -> S:
        kind = KIND_NAMES[cls]
        kv = await self.etcd.get(object_key(self.prefix, kind, obj_id))
        if kv is None:
            raise NotFound(f"{kind[:-1]} {obj_id} not found")
        return _parse(cls(), kv.value, kv.mod_revision)

    async def list(self, cls: type[S]) -> builtins.list[S]:
        kind = KIND_NAMES[cls]
        kvs, _ = await self.etcd.list_prefix(self.prefix + kind.encode() + b"/")
        return [_parse(cls(), kv.value, kv.mod_revision) for kv in kvs]

    # -------------------------------------------------------------- writes

    def batch(self) -> Batch:
        return Batch(self)

    async def create(self, obj: S) -> S:
        result = await self.batch().create(obj).commit()
        if result.conflicts:
            raise AlreadyExists(f"{kind_of(obj)[:-1]} {obj.meta.id} already exists")
        return obj

    async def update(self, obj: S) -> S:
        result = await self.batch().update(obj).commit()
        self._raise_conflict(obj, result)
        return obj

    async def delete(self, obj: Stored) -> None:
        result = await self.batch().delete(obj).commit()
        self._raise_conflict(obj, result)

    @staticmethod
    def _raise_conflict(obj: Message, result: BatchResult) -> None:
        if not result.conflicts:
            return
        what = f"{kind_of(obj)[:-1]} {obj.meta.id}"  # type: ignore[attr-defined]
        if result.conflicts[0].current is None:
            raise NotFound(f"{what} not found")
        raise VersionConflict(f"{what} was changed by someone else (version conflict); retry")

    def _check_fence(self, current: dict[bytes, Any]) -> None:
        """After a failed transaction (current: the keys it read back), raise
        LeadershipLost if the fence is why."""
        if self.fence is None:
            return
        fence_kv = current.get(self.fence[0])
        if fence_kv is None or fence_kv.create_revision != self.fence[1]:
            raise LeadershipLost("this manager is no longer the leader")

    async def _commit_chunk(self, ops: builtins.list[_Op], result: BatchResult) -> None:
        pending = ops
        while pending:
            compares = [op.compare() for op in pending]
            ranges = [op.key for op in pending]
            if self.fence is not None:
                compares.append(e.cmp_created(*self.fence))
                ranges.append(self.fence[0])
            txn = await self.etcd.txn(compares, [op.request() for op in pending], ranges)
            result.transactions += 1
            self.stats["txns"] += 1
            if txn.succeeded:
                self._finish(pending, txn.revision, result)
                return
            current = {kv.key: kv for kv in txn.current}
            self._check_fence(current)
            retry: builtins.list[_Op] = []
            for op in pending:
                kv = current.get(op.key)
                ok = (
                    kv is None
                    if op.action == "create"
                    else (kv is not None and kv.mod_revision == op.obj.meta.version)
                )
                if ok:
                    retry.append(op)
                else:
                    cur = decode(op.kind, kv.value, kv.mod_revision) if kv is not None else None
                    result.conflicts.append(Conflict(op.obj, op.action, cur))
            pending = retry

    async def _commit_all_or_nothing(self, ops: builtins.list[_Op]) -> None:
        if len(ops) > e.MAX_TXN_OPS - 1:
            raise ValueError(f"an all-or-nothing write holds at most {e.MAX_TXN_OPS - 1} objects")
        compares = [op.compare() for op in ops]
        ranges = []
        if self.fence is not None:
            compares.append(e.cmp_created(*self.fence))
            ranges.append(self.fence[0])
        txn = await self.etcd.txn(compares, [op.request() for op in ops], ranges)
        self.stats["txns"] += 1
        if not txn.succeeded:
            self._check_fence({kv.key: kv for kv in txn.current})
            names = ", ".join(f"{op.kind[:-1]} {op.obj.meta.id}" for op in ops if op.kind)
            raise VersionConflict(f"{names}: changed by someone else meanwhile (version conflict); retry")
        self._finish(ops, txn.revision, BatchResult())

    def _finish(self, ops: builtins.list[_Op], revision: int, result: BatchResult) -> None:
        committed: builtins.list[Committed] = []
        for op in ops:
            if not op.kind:
                continue  # an index entry: no object to hand to the view
            if op.action == "delete":
                committed.append((op.kind, op.obj.meta.id, None, revision))
            else:
                op.obj.meta.version = revision
                committed.append((op.kind, op.obj.meta.id, op.obj, revision))
            result.committed.append(op.obj)
        self.stats["keys"] += len(ops)
        self._notify(committed)


class Batch:
    """Many writes, committed in as few transactions as etcd allows. Objects
    handed to a batch belong to it: do not mutate them after commit."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._ops: list[_Op] = []

    def __len__(self) -> int:
        return len(self._ops)

    def raw(
        self, action: Literal["create", "update", "delete"], key: bytes, value: bytes = b"", version: int = 0
    ) -> Batch:
        """A plain key written with the objects (an index entry): create
        (must be absent), update or delete (must be at `version`). Only for
        ``commit_all_or_nothing``."""
        self._ops.append(_Op(action, "", None, key, value, version))
        return self

    def ids(self, action: Literal["create", "update", "delete"]) -> list[str]:
        """The IDs of the objects this batch creates (updates, deletes)."""
        return [op.obj.meta.id for op in self._ops if op.action == action and op.kind]

    def _add(self, action: Literal["create", "update", "delete"], obj: Stored) -> Batch:
        kind = kind_of(obj)
        key = object_key(self._store.prefix, kind, obj.meta.id)
        op = _Op(action, kind, obj, key)
        if action != "delete":
            ts = now_ns()
            if action == "create":
                obj.meta.created_at = ts
            obj.meta.updated_at = ts
            # The version lives in etcd's mod_revision, not in the value.
            version = obj.meta.version
            obj.meta.version = 0
            op.value = obj.SerializeToString()
            obj.meta.version = version
        self._ops.append(op)
        return self

    def create(self, obj: Stored) -> Batch:
        return self._add("create", obj)

    def update(self, obj: Stored) -> Batch:
        return self._add("update", obj)

    def delete(self, obj: Stored) -> Batch:
        return self._add("delete", obj)

    def extend(self, action: Literal["create", "update", "delete"], objs: Iterable[Stored]) -> Batch:
        for obj in objs:
            self._add(action, obj)
        return self

    def _chunks(self) -> tuple[list[list[_Op]], bool]:
        """The ops cut into transactions, and whether they must go one after
        another (a key written twice: order matters)."""
        limit = e.MAX_TXN_OPS - (1 if self._store.fence else 0)
        chunks: list[list[_Op]] = []
        chunk: list[_Op] = []
        size = 0
        seen: set[bytes] = set()
        every_key: set[bytes] = set()
        sequential = False
        for op in self._ops:
            sequential = sequential or op.key in every_key
            every_key.add(op.key)
            # etcd refuses two writes of one key in a transaction.
            if len(chunk) >= limit or size + op.size() > e.MAX_TXN_BYTES or op.key in seen:
                chunks.append(chunk)
                chunk, size, seen = [], 0, set()
            chunk.append(op)
            size += op.size()
            seen.add(op.key)
        if chunk:
            chunks.append(chunk)
        return chunks, sequential

    async def commit_all_or_nothing(self) -> None:
        """Write every object of this (small) batch in one transaction, or none
        of them (VersionConflict): for objects that must change together, such
        as a new CA's certificate and its key."""
        ops, self._ops = self._ops, []
        await asyncio.shield(self._store._commit_all_or_nothing(ops))

    async def commit(self) -> BatchResult:
        """Write everything. Shielded: a caller cancelled mid-commit does not
        stop the transactions already sent, and the view still hears of
        every write that went through (else it would act on a stale view)."""
        return await asyncio.shield(self._commit())

    async def _commit(self) -> BatchResult:
        if any(not op.kind for op in self._ops):
            raise ValueError("index entries are written only with commit_all_or_nothing")
        result = BatchResult()
        chunks, sequential = self._chunks()
        self._ops = []
        if len(chunks) <= 1 or sequential:
            for chunk in chunks:
                await self._store._commit_chunk(chunk, result)
            return result
        gate = asyncio.Semaphore(CONCURRENT_TXNS)

        async def one(chunk: list[_Op]) -> None:
            async with gate:
                await self._store._commit_chunk(chunk, result)

        await asyncio.gather(*(one(c) for c in chunks))
        return result
