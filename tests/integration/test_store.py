"""The store on a real etcd: optimistic concurrency, batches, the view."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shoal.manager.store import (
    AlreadyExists,
    Etcd,
    LeadershipLost,
    NotFound,
    Store,
    VersionConflict,
    View,
    clone,
)
from shoal.manager.store.etcd import MAX_TXN_OPS
from shoal.protos import objects_pb2 as pb
from tests.support.etcd_server import EtcdServer


def run(etcd_server: EtcdServer, prefix: bytes, body: Callable[[Store], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        etcd = Etcd([etcd_server.url])
        try:
            return await body(Store(etcd, prefix))
        finally:
            await etcd.aclose()

    return asyncio.run(main())


def make_task(i: int, service: str = "svc1") -> pb.Task:
    t = pb.Task(service_id=service, slot=i, desired_state=pb.TASK_STATE_RUNNING)
    t.meta.id = f"task{i:06d}"
    t.status.state = pb.TASK_STATE_PENDING
    return t


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def test_create_then_stale_update_is_a_version_conflict(etcd_server: EtcdServer, etcd_prefix: bytes) -> None:
    async def body(store: Store) -> None:
        task = await store.create(make_task(1))
        first, second = clone(task), clone(task)
        first.desired_state = pb.TASK_STATE_SHUTDOWN
        await store.update(first)
        second.node_id = "n1"
        with pytest.raises(VersionConflict, match="retry"):
            await store.update(second)
        stored = await store.get(pb.Task, task.meta.id)
        assert stored.desired_state == pb.TASK_STATE_SHUTDOWN and stored.node_id == ""
        with pytest.raises(AlreadyExists):
            await store.create(make_task(1))
        await store.delete(stored)
        with pytest.raises(NotFound):
            await store.get(pb.Task, task.meta.id)

    run(etcd_server, etcd_prefix, body)


def test_concurrent_writers_never_lose_an_increment(etcd_server: EtcdServer, etcd_prefix: bytes) -> None:
    """Ten writers each add 1 to a counter 20 times with read-modify-write;
    conflicts are retried, so the end value counts every increment."""

    async def body(store: Store) -> None:
        await store.create(make_task(7))
        conflicts = 0

        async def writer() -> None:
            nonlocal conflicts
            for _ in range(20):
                while True:
                    t = await store.get(pb.Task, "task000007")
                    t.attempt += 1
                    try:
                        await store.update(t)
                        break
                    except VersionConflict:
                        conflicts += 1

        await asyncio.gather(*(writer() for _ in range(10)))
        final = await store.get(pb.Task, "task000007")
        assert final.attempt == 200
        assert conflicts > 0  # the writers really raced

    run(etcd_server, etcd_prefix, body)


def test_batch_larger_than_one_transaction_commits_everything(
    etcd_server: EtcdServer, etcd_prefix: bytes
) -> None:
    async def body(store: Store) -> None:
        n = MAX_TXN_OPS * 5 + 17
        result = await store.batch().extend("create", (make_task(i) for i in range(n))).commit()
        assert len(result.committed) == n and not result.conflicts
        assert result.transactions >= 6
        stored = await store.list(pb.Task)
        assert len(stored) == n

    run(etcd_server, etcd_prefix, body)


def test_batch_sets_conflicts_aside_and_commits_the_rest(etcd_server: EtcdServer, etcd_prefix: bytes) -> None:
    async def body(store: Store) -> None:
        await store.batch().extend("create", (make_task(i) for i in range(10))).commit()
        tasks = await store.list(pb.Task)
        stale = [clone(t) for t in tasks]
        bumped = clone(tasks[3])
        bumped.node_id = "other-writer"
        await store.update(bumped)
        for t in stale:
            t.desired_state = pb.TASK_STATE_SHUTDOWN
        result = await store.batch().extend("update", stale).commit()
        assert len(result.committed) == 9
        assert [c.obj.meta.id for c in result.conflicts] == [tasks[3].meta.id]
        assert result.conflicts[0].current.node_id == "other-writer"

    run(etcd_server, etcd_prefix, body)


def test_fenced_store_cannot_write_after_losing_the_fence(
    etcd_server: EtcdServer, etcd_prefix: bytes
) -> None:
    async def body(store: Store) -> None:
        fence_key = etcd_prefix + b"leader"
        await store.etcd.put(fence_key, b"me")
        kv = await store.etcd.get(fence_key)
        assert kv is not None
        leader = store.fenced(fence_key, kv.create_revision)
        await leader.create(make_task(1))
        await store.etcd.delete(fence_key)
        await store.etcd.put(fence_key, b"someone else")
        with pytest.raises(LeadershipLost):
            await leader.create(make_task(2))
        with pytest.raises(NotFound):
            await store.get(pb.Task, "task000002")

    run(etcd_server, etcd_prefix, body)


def test_view_follows_writes_from_another_client(etcd_server: EtcdServer, etcd_prefix: bytes) -> None:
    async def body(store: Store) -> None:
        await store.create(make_task(1))
        view = View(store)
        await view.start()
        try:
            assert set(view.tasks) == {"task000001"}
            other_etcd = Etcd([etcd_server.url])
            other = Store(other_etcd, etcd_prefix)
            t = await other.get(pb.Task, "task000001")
            t.node_id = "n9"
            await other.update(t)
            await other.create(make_task(2, service="svc2"))
            await wait_until(lambda: len(view.tasks) == 2 and view.tasks["task000001"].node_id == "n9")
            assert set(view.tasks_by_node["n9"]) == {"task000001"}
            assert set(view.tasks_by_service["svc2"]) == {"task000002"}
            await other.delete(await other.get(pb.Task, "task000002"))
            await wait_until(lambda: "task000002" not in view.tasks)
            assert "svc2" not in view.tasks_by_service
            await other_etcd.aclose()
        finally:
            await view.stop()

    run(etcd_server, etcd_prefix, body)


def test_view_relists_when_its_watch_falls_behind_a_compaction(
    etcd_server: EtcdServer, etcd_prefix: bytes
) -> None:
    async def body(store: Store) -> None:
        await store.batch().extend("create", (make_task(i) for i in range(5))).commit()
        view = View(store)
        await view.start()
        try:
            sub = view.subscribe(["tasks"])
            stale_revision = view.revision
            # Changes the view must learn about only through the relist:
            # written by another client while we pretend the watch is behind.
            other_etcd = Etcd([etcd_server.url])
            other = Store(other_etcd, etcd_prefix)
            gone = await other.get(pb.Task, "task000000")
            await other.delete(gone)
            changed = await other.get(pb.Task, "task000001")
            changed.node_id = "n2"
            await other.update(changed)
            await other.create(make_task(99))
            kv_rev = (await other.etcd.get(etcd_prefix + b"tasks/task000099")).mod_revision  # type: ignore[union-attr]
            await other.etcd.put(etcd_prefix + b"filler", b"x")
            await other.etcd.compact(kv_rev + 1)
            relists = view.relists
            view.restart_watch_from(stale_revision + 1)
            await wait_until(lambda: view.relists > relists)
            assert "task000000" not in view.tasks
            assert view.tasks["task000001"].node_id == "n2"
            assert "task000099" in view.tasks
            events = await sub.get_batch(timeout=1)
            assert {ev.id for ev in events} >= {"task000000", "task000001", "task000099"}
            # ...and the watch carries on after the relist.
            await other.create(make_task(100))
            await wait_until(lambda: "task000100" in view.tasks)
            await other_etcd.aclose()
        finally:
            await view.stop()

    run(etcd_server, etcd_prefix, body)


def test_view_sees_its_own_writes_before_the_watch_echoes_them(
    etcd_server: EtcdServer, etcd_prefix: bytes
) -> None:
    async def body(store: Store) -> None:
        view = View(store)
        await view.start()
        try:
            await store.batch().extend("create", (make_task(i) for i in range(300))).commit()
            assert len(view.tasks) == 300  # no waiting: written through
            await asyncio.sleep(0.3)  # the echoes arrive and change nothing
            assert len(view.tasks) == 300
        finally:
            await view.stop()

    run(etcd_server, etcd_prefix, body)
