"""The pure rules of the trust model: join rate limits, what a node may
report, the sealing of the cluster's keys, and assignments in bounded
messages. (The same rules against real processes: tests/e2e/test_trust.py.)"""

from __future__ import annotations

import pytest

from shoal.manager.ca.nodeca import JoinRateLimit
from shoal.manager.dispatcher.checks import NotYours, check_status, cut
from shoal.manager.dispatcher.session import ASSIGNMENT_CHUNK_BYTES, assignment_messages
from shoal.manager.keyring import _open, new_unlock_key, parse_unlock_key, wrap
from shoal.protos import objects_pb2 as pb
from shoal.rules import limits


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_refused_joins_are_limited_per_peer_and_refill_over_time() -> None:
    clock = Clock()
    limit = JoinRateLimit(burst=3, per_second=0.5, clock=clock)
    assert all(limit.allow("10.0.0.1") for _ in range(100)), "successful joins cost nothing"
    for _ in range(3):
        assert limit.allow("10.0.0.1")
        limit.failed("10.0.0.1")
    assert not limit.allow("10.0.0.1")
    assert limit.allow("10.0.0.2"), "another peer has its own bucket"
    clock.now = 1.0
    assert not limit.allow("10.0.0.1")
    clock.now = 2.0
    assert limit.allow("10.0.0.1")


def _task(node: str, state: int = pb.TASK_STATE_RUNNING) -> pb.Task:
    task = pb.Task(node_id=node)
    task.meta.id = "t1"
    task.status.state = state  # type: ignore[assignment]
    return task


def test_a_node_may_report_only_its_own_tasks_in_agent_states() -> None:
    ok = check_status("n1", _task("n1"), pb.TaskStatus(state=pb.TASK_STATE_FAILED))
    assert ok.state == pb.TASK_STATE_FAILED
    with pytest.raises(NotYours, match="task t1 is not assigned to node n1"):
        check_status("n1", _task("n2"), pb.TaskStatus(state=pb.TASK_STATE_FAILED))
    for state in (
        pb.TASK_STATE_NEW,
        pb.TASK_STATE_PENDING,
        pb.TASK_STATE_ASSIGNED,
        pb.TASK_STATE_ORPHANED,
        999,
    ):
        with pytest.raises(ValueError, match="is not one an agent reports"):
            check_status("n1", _task("n1"), pb.TaskStatus(state=state))  # type: ignore[arg-type]


def test_long_status_texts_are_cut_not_refused() -> None:
    long = "é" * 5000
    capped = check_status(
        "n1", _task("n1"), pb.TaskStatus(state=pb.TASK_STATE_FAILED, err=long, message=long)
    )
    assert len(capped.err.encode()) <= limits.MAX_STATUS_TEXT
    assert capped.err.endswith("...") and capped.message.endswith("...")
    assert cut("short", 10) == "short"


def test_the_cluster_keys_open_only_with_their_unlock_key() -> None:
    material = pb.KeyMaterial(ca_key_pem=b"-----BEGIN PRIVATE KEY-----x", seal_key=b"k" * 32)
    key = parse_unlock_key(new_unlock_key())
    sealed = wrap("c1", material, key)
    assert sealed.autolock and b"PRIVATE KEY" not in sealed.material
    assert _open(sealed, key) == material
    with pytest.raises(ValueError, match="wrong key"):
        _open(sealed, parse_unlock_key(new_unlock_key()))
    plain = wrap("c1", material, None)
    assert not plain.autolock and _open(plain, None) == material
    assert plain.material_digest == sealed.material_digest  # same keys, two wrappings


@pytest.mark.parametrize("text", ["", "SWMKEY-1-abc", "SHOALKEY-1-short", "SHOALKEY-1-" + "!" * 43])
def test_a_malformed_unlock_key_is_refused_with_its_shape(text: str) -> None:
    with pytest.raises(ValueError, match=r"unlock key: expected SHOALKEY-1-<43 characters of base64>"):
        parse_unlock_key(text)


def test_a_large_assignment_set_goes_in_bounded_messages() -> None:
    tasks = []
    for i in range(3000):
        t = pb.Task(service_id="s", slot=i + 1)
        t.meta.id = f"t{i:05d}"
        t.spec.container.env.append("PAD=" + "x" * 1000)
        tasks.append(t)
    messages = assignment_messages(tasks, ["gone"], full=True)
    assert len(messages) > 1
    assert all(m.assignments.full for m in messages)
    assert [m.assignments.more for m in messages] == [True] * (len(messages) - 1) + [False]
    assert all(m.ByteSize() <= ASSIGNMENT_CHUNK_BYTES + 2048 for m in messages)
    sent = [t.meta.id for m in messages for t in m.assignments.tasks]
    assert sent == [t.meta.id for t in tasks]
    assert list(messages[-1].assignments.removed) == ["gone"]
    small = assignment_messages(tasks[:3], [], full=False)
    assert len(small) == 1 and not small[0].assignments.more
