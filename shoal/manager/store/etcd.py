"""The one place shoal talks to etcd.

Everything above this module speaks in keys, values, revisions and our own
errors; gRPC errors from etcd are translated here once (STYLE habit 6). The
client is etcd-sdk-python (``pyetcd``), used for its generated etcd v3 stubs;
the channel and endpoint failover are ours, because the library's own
failover parks a failed endpoint for minutes.

Reads and writes (ranges, puts, deletes, transactions) are asyncio gRPC
calls on the event loop's own channel: no thread and no hand-over per call,
which at a hundred thousand tasks was about a tenth of a manager's CPU. Lease calls
and endpoint status, rare, run in a small thread pool on a blocking channel;
watches run on their own thread and hand responses to the loop with
``call_soon_threadsafe``.

Why this module is longer than our ~400 lines: it is the only one that knows
etcd's wire types (requests, compares, the channel and its failover,
watches); kept whole, nothing above it ever sees one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import random
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

import grpc
from pyetcd import etcdrpc

from shoal.manager.store.errors import Compacted, StoreUnavailable

log = logging.getLogger(__name__)

# etcd's --max-txn-ops default: the most compares, and the most operations,
# one transaction may hold.
MAX_TXN_OPS = 128
# etcd's --max-request-bytes default is 1.5 MiB; stay well below it.
MAX_TXN_BYTES = 1024 * 1024
# Page size when listing a prefix: keeps each response far below gRPC's 4 MiB.
LIST_PAGE = 2000
# A page of a listing, or a compaction, may take longer than a write.
LIST_TIMEOUT = 60.0
# A call etcd does not answer in this long fails (and the next call goes to
# another endpoint): a hung or partitioned member must not hold a manager.
CALL_TIMEOUT = 5.0
# The channel pings etcd when quiet, so that a member that stopped answering
# (SIGSTOP, a cut network) is found in seconds, not at the next call's timeout.
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 1_000),
    ("grpc.keepalive_timeout_ms", 1_500),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
# Errors after which the next call tries the next endpoint.
_FAIL_OVER = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with prefix."""
    end = bytearray(prefix)
    for i in reversed(range(len(end))):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


@dataclass(frozen=True)
class EtcdTLS:
    ca: Path
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True)
class EndpointStatus:
    target: str
    healthy: bool
    db_size: int
    leader: bool
    alarms: list[str]
    error: str = ""


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    mod_revision: int
    create_revision: int
    lease: int = 0


class WatchEvent(NamedTuple):
    """One change a watch saw (a tuple: a watch makes hundreds of thousands)."""

    key: bytes
    value: bytes  # empty for a delete
    mod_revision: int
    deleted: bool


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    # For a failed txn whose failure branch ranged over keys: what is there now.
    current: list[KeyValue]


def _kv(kv: Any) -> KeyValue:
    return KeyValue(kv.key, kv.value, kv.mod_revision, kv.create_revision, kv.lease)


def _translate(err: grpc.RpcError, what: str) -> Exception:
    code = err.code() if hasattr(err, "code") else None
    detail = err.details() if hasattr(err, "details") else str(err)
    if detail and "required revision has been compacted" in detail:
        return Compacted(0)
    return StoreUnavailable(
        f"cluster store unavailable (etcd): {what}: {code.name if code else 'error'}: {detail}".strip()
    )


class Etcd:
    """A connection to an etcd cluster (one or more endpoints)."""

    def __init__(self, urls: Sequence[str], tls: EtcdTLS | None = None, workers: int = 8) -> None:
        if not urls:
            raise ValueError("etcd: at least one URL is needed")
        self._targets = [self._target(u) for u in urls]
        self._tls = tls
        self._lock = threading.Lock()
        # Managers start on different members, so that one slow member does
        # not hold them all.
        self._index = random.randrange(len(self._targets))
        # Bumped by every fail-over: a channel made before it is replaced.
        self._generation = 0
        self._channel: grpc.Channel | None = None
        # The asyncio channel and KV stub: (loop, generation, channel, stub).
        self._aio: tuple[asyncio.AbstractEventLoop, int, grpc.aio.Channel, Any] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="etcd")
        self.urls = list(urls)

    @staticmethod
    def _target(url: str) -> str:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        if not parsed.hostname:
            raise ValueError(f"etcd: not a URL: {url!r} (expected http://HOST:PORT)")
        return f"{parsed.hostname}:{parsed.port or 2379}"

    # -------------------------------------------------------------- channel

    def _credentials(self) -> grpc.ChannelCredentials | None:
        if self._tls is None:
            return None
        return grpc.ssl_channel_credentials(
            self._tls.ca.read_bytes(),
            self._tls.key.read_bytes() if self._tls.key else None,
            self._tls.cert.read_bytes() if self._tls.cert else None,
        )

    def _get_channel(self) -> grpc.Channel:
        with self._lock:
            if self._channel is None:
                target = self._targets[self._index % len(self._targets)]
                opts = CHANNEL_OPTIONS
                creds = self._credentials()
                self._channel = (
                    grpc.secure_channel(target, creds, options=opts)
                    if creds
                    else grpc.insecure_channel(target, options=opts)
                )
            return self._channel

    def _fail_over(self, generation: int) -> None:
        """Move to the next endpoint after an unavailable or timed-out call
        on a channel of this generation (once, however many calls failed)."""
        with self._lock:
            if len(self._targets) > 1 and generation == self._generation:
                if self._channel is not None:
                    self._channel.close()
                    self._channel = None
                self._index += 1
                self._generation += 1
                log.info("etcd: moving to %s", self._targets[self._index % len(self._targets)])

    def _kv_stub(self) -> tuple[int, Any]:
        """The KV stub on the running loop's channel to the current endpoint,
        and its generation; the channel is made anew after a fail-over."""
        loop = asyncio.get_running_loop()
        held = self._aio
        if held is not None and held[0] is loop and held[1] == self._generation:
            return held[1], held[3]
        if held is not None and held[0] is loop:
            self._closing = loop.create_task(held[2].close())  # the old endpoint's
        generation = self._generation
        target = self._targets[self._index % len(self._targets)]
        creds = self._credentials()
        channel = (
            grpc.aio.secure_channel(target, creds, options=CHANNEL_OPTIONS)
            if creds
            else grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        )
        stub = etcdrpc.KVStub(channel)
        self._aio = (loop, generation, channel, stub)
        return generation, stub

    async def _kv(self, what: str, call: Callable[[Any], Awaitable[Any]]) -> Any:
        """One KV call on the asyncio channel, errors translated."""
        generation, stub = self._kv_stub()
        try:
            return await call(stub)
        except grpc.RpcError as err:
            if err.code() in _FAIL_OVER:
                self._fail_over(generation)
            raise _translate(err, what) from None

    @property
    def targets(self) -> list[str]:
        return list(self._targets)

    def _call(self, what: str, fn: Callable[[grpc.Channel], Any]) -> Any:
        generation = self._generation
        try:
            return fn(self._get_channel())
        except grpc.RpcError as err:
            if err.code() in _FAIL_OVER:
                self._fail_over(generation)
            raise _translate(err, what) from None

    async def _run(self, what: str, fn: Callable[[grpc.Channel], Any]) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, what, fn)

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._aio = None

    async def aclose(self) -> None:
        """close(), and the asyncio channel's close awaited (on its loop)."""
        held = self._aio
        self.close()
        if held is not None and held[0] is asyncio.get_running_loop():
            await held[2].close()

    # -------------------------------------------------------------- KV

    async def get(self, key: bytes) -> KeyValue | None:
        req = etcdrpc.RangeRequest(key=key)
        resp = await self._kv("get", lambda kv: kv.Range(req, timeout=CALL_TIMEOUT))
        return _kv(resp.kvs[0]) if resp.kvs else None

    async def list_prefix(self, prefix: bytes, revision: int = 0) -> tuple[list[KeyValue], int]:
        """Every key under prefix at one revision (the latest when 0), in
        pages; returns the values and the revision they were read at."""
        out: list[KeyValue] = []
        start, end = prefix, prefix_end(prefix)
        while True:
            req = etcdrpc.RangeRequest(key=start, range_end=end, limit=LIST_PAGE, revision=revision)
            resp = await self._list_page(req)
            out.extend(_kv(kv) for kv in resp.kvs)
            if revision == 0:
                revision = resp.header.revision
            if not resp.more or not resp.kvs:
                return out, revision
            start = resp.kvs[-1].key + b"\0"

    async def _list_page(self, req: Any) -> Any:
        return await self._kv("list", lambda kv: kv.Range(req, timeout=LIST_TIMEOUT))

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        req = etcdrpc.PutRequest(key=key, value=value, lease=lease)
        resp = await self._kv("put", lambda kv: kv.Put(req, timeout=CALL_TIMEOUT))
        return int(resp.header.revision)

    async def delete(self, key: bytes) -> int:
        req = etcdrpc.DeleteRangeRequest(key=key)
        resp = await self._kv("delete", lambda kv: kv.DeleteRange(req, timeout=CALL_TIMEOUT))
        return int(resp.header.revision)

    async def delete_prefix(self, prefix: bytes) -> None:
        req = etcdrpc.DeleteRangeRequest(key=prefix, range_end=prefix_end(prefix))
        await self._kv("delete", lambda kv: kv.DeleteRange(req, timeout=CALL_TIMEOUT))

    async def txn(
        self,
        compare: Sequence[Any],
        success: Sequence[Any],
        failure_ranges: Sequence[bytes] = (),
    ) -> TxnResult:
        """One etcd transaction. compare/success are etcdrpc Compare and
        RequestOp messages (see ``cmp_*`` and ``op_*`` below). When it fails,
        the keys in failure_ranges are read at once (in a second call: a
        read per key built into every transaction cost more than the rare
        conflict's extra round trip), so the caller learns what won."""
        req = etcdrpc.TxnRequest(compare=compare, success=success)
        resp = await self._kv("transaction", lambda kv: kv.Txn(req, timeout=CALL_TIMEOUT))
        current: list[KeyValue] = []
        if not resp.succeeded and failure_ranges:
            ranges = [etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=k)) for k in failure_ranges]
            reads = etcdrpc.TxnRequest(success=ranges)
            got = await self._kv("read", lambda kv: kv.Txn(reads, timeout=CALL_TIMEOUT))
            for r in got.responses:
                current.extend(_kv(kv) for kv in r.response_range.kvs)
        return TxnResult(bool(resp.succeeded), int(resp.header.revision), current)

    async def current_revision(self) -> int:
        """etcd's revision now (a one-key read)."""
        req = etcdrpc.RangeRequest(key=b"\0", count_only=True)
        resp = await self._kv("read", lambda kv: kv.Range(req, timeout=CALL_TIMEOUT))
        return int(resp.header.revision)

    async def endpoint_status(self) -> list[EndpointStatus]:
        """Every endpoint's health, database size and alarms, each asked
        directly (a second apart at most), for `shoal info`."""
        return list(await asyncio.gather(*(asyncio.to_thread(self._status, t) for t in self._targets)))

    def _status(self, target: str) -> EndpointStatus:
        creds = self._credentials()
        channel = (
            grpc.secure_channel(target, creds, options=CHANNEL_OPTIONS)
            if creds
            else grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        )
        try:
            stub = etcdrpc.MaintenanceStub(channel)
            status = stub.Status(etcdrpc.StatusRequest(), 1.0)
            alarms = stub.Alarm(etcdrpc.AlarmRequest(action=etcdrpc.AlarmRequest.GET), 1.0)
            names = {0: "none", 1: "NOSPACE", 2: "CORRUPT"}
            return EndpointStatus(
                target=target,
                healthy=True,
                db_size=int(status.dbSize),
                leader=int(status.leader) == int(status.header.member_id),
                alarms=[names.get(int(a.alarm), str(a.alarm)) for a in alarms.alarms],
            )
        except grpc.RpcError as err:
            return EndpointStatus(target, False, 0, False, [], f"{err.code().name}: {err.details()}")
        finally:
            channel.close()

    async def compact(self, revision: int) -> None:
        req = etcdrpc.CompactionRequest(revision=revision, physical=True)
        await self._kv("compact", lambda kv: kv.Compact(req, timeout=LIST_TIMEOUT))

    # -------------------------------------------------------------- leases

    async def grant_lease(self, ttl: int) -> int:
        req = etcdrpc.LeaseGrantRequest(TTL=ttl)
        resp = await self._run("lease grant", lambda ch: etcdrpc.LeaseStub(ch).LeaseGrant(req, CALL_TIMEOUT))
        return int(resp.ID)

    async def keep_alive(self, lease_id: int) -> int:
        """Refresh a lease once; returns the remaining TTL (<= 0: expired)."""

        def call(ch: grpc.Channel) -> int:
            reqs = iter([etcdrpc.LeaseKeepAliveRequest(ID=lease_id)])
            for resp in etcdrpc.LeaseStub(ch).LeaseKeepAlive(reqs, CALL_TIMEOUT):
                return int(resp.TTL)
            return 0

        return int(await self._run("lease keep-alive", call))

    async def revoke_lease(self, lease_id: int) -> None:
        req = etcdrpc.LeaseRevokeRequest(ID=lease_id)
        await self._run("lease revoke", lambda ch: etcdrpc.LeaseStub(ch).LeaseRevoke(req, CALL_TIMEOUT))

    # -------------------------------------------------------------- watch

    def watch_prefix(
        self,
        prefix: bytes,
        start_revision: int,
        on_events: Callable[[list[WatchEvent], int], None],
        on_error: Callable[[Exception], None],
    ) -> WatchHandle:
        """Stream every change under prefix from start_revision on a thread of
        its own. on_events(events, revision) (revision: everything up to it
        has been seen; 0 when the watch has just been set up) and on_error(err) are called from
        that thread; on_error ends the watch (Compacted when start_revision
        is gone, StoreUnavailable otherwise). Returns a cancel function."""
        requests: queue.Queue[Any] = queue.Queue()
        create = etcdrpc.WatchCreateRequest(
            key=prefix,
            range_end=prefix_end(prefix),
            start_revision=start_revision,
            progress_notify=True,
        )
        requests.put(etcdrpc.WatchRequest(create_request=create))
        stopped = threading.Event()
        call_holder: list[Any] = []

        def request_iter() -> Any:
            while True:
                item = requests.get()
                if item is None:
                    return
                yield item

        generation = self._generation

        def run() -> None:
            try:
                call = etcdrpc.WatchStub(self._get_channel()).Watch(request_iter())
                call_holder.append(call)
                for resp in call:
                    if resp.compact_revision:
                        on_error(Compacted(int(resp.compact_revision)))
                        return
                    if resp.canceled:
                        on_error(StoreUnavailable(f"etcd cancelled the watch: {resp.cancel_reason}"))
                        return
                    events = [
                        WatchEvent(e.kv.key, e.kv.value, e.kv.mod_revision, e.type == 1) for e in resp.events
                    ]
                    if events:
                        # Seen up to the last event: a large catch-up comes in
                        # several responses whose header is already further on.
                        on_events(events, events[-1].mod_revision)
                    elif resp.created:
                        on_events([], 0)  # the watch is up: nothing seen yet
                    else:
                        # A progress notification: nothing is left before its header.
                        on_events([], int(resp.header.revision))
                if not stopped.is_set():
                    on_error(StoreUnavailable("etcd closed the watch stream"))
            except grpc.RpcError as err:
                if not stopped.is_set():
                    if err.code() in _FAIL_OVER:
                        self._fail_over(generation)
                    on_error(_translate(err, "watch"))
            except Exception as err:  # a bug in a callback must not die silently
                log.exception("watch thread failed")
                on_error(err)

        thread = threading.Thread(target=run, name=f"etcd-watch-{next(_watch_ids)}", daemon=True)
        thread.start()

        def cancel() -> None:
            stopped.set()
            requests.put(None)
            for call in call_holder:
                call.cancel()

        def progress() -> None:
            requests.put(etcdrpc.WatchRequest(progress_request=etcdrpc.WatchProgressRequest()))

        return WatchHandle(cancel, progress)


_watch_ids = itertools.count(1)


@dataclass(frozen=True)
class WatchHandle:
    """A running watch: calling it cancels it; ``progress`` asks etcd to say
    how far it is (an on_events call with no events and etcd's revision)."""

    cancel: Callable[[], None]
    progress: Callable[[], None]

    def __call__(self) -> None:
        self.cancel()


# -------------------------------------------------------------- txn pieces


def cmp_absent(key: bytes) -> Any:
    """The key does not exist (its create revision is 0)."""
    return etcdrpc.Compare(
        key=key, result=etcdrpc.Compare.EQUAL, target=etcdrpc.Compare.CREATE, create_revision=0
    )


def cmp_mod(key: bytes, revision: int) -> Any:
    return etcdrpc.Compare(
        key=key, result=etcdrpc.Compare.EQUAL, target=etcdrpc.Compare.MOD, mod_revision=revision
    )


def cmp_created(key: bytes, revision: int) -> Any:
    return etcdrpc.Compare(
        key=key,
        result=etcdrpc.Compare.EQUAL,
        target=etcdrpc.Compare.CREATE,
        create_revision=revision,
    )


def op_put(key: bytes, value: bytes, lease: int = 0) -> Any:
    return etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key, value=value, lease=lease))


def op_delete(key: bytes) -> Any:
    return etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=key))
