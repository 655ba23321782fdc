"""``stack deploy`` follows each changed service with ``service create``'s
progress and names, with its reason, every one that did not converge."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.cli import progress, stack_deploy
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb

PULL = "pulling image app:nope failed: manifest unknown"


def service(sid: str, name: str) -> pb.Service:
    spec = pb.ServiceSpec(name=name, replicas=1)
    spec.update.monitor = 0  # converged means done: no verify wait
    return pb.Service(meta=pb.Meta(id=sid), spec=spec, spec_version=1)


def task(sid: str, n: int, state: int, err: str = "") -> pb.Task:
    return pb.Task(
        meta=pb.Meta(id=f"{sid}-t{n}", created_at=n),
        service_id=sid,
        service_name=sid,
        slot=1,
        node_id="n1",
        spec_version=1,
        desired_state=pb.TASK_STATE_RUNNING if state <= pb.TASK_STATE_RUNNING else pb.TASK_STATE_SHUTDOWN,
        status=pb.TaskStatus(state=state, err=err),
    )


class Cluster:
    """Answers GetService and ListTasks for a few services, as they stand."""

    def __init__(self, services: list[pb.Service], tasks: dict[str, list[pb.Task]]) -> None:
        self.services = {s.meta.id: s for s in services}
        self.tasks = tasks

    def call(self, method: str, request: Any, **_: Any) -> Any:
        if method == "GetService":
            return self.services[request.ref]
        return cpb.ListTasksResponse(tasks=self.tasks[request.service])


def test_each_service_that_did_not_converge_is_named_with_its_reason(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "POLL", 0.0)
    rejected = [task("b", n, pb.TASK_STATE_REJECTED, PULL) for n in range(progress.REJECT_LIMIT)]
    cluster = Cluster(
        [service("a", "app_web"), service("b", "app_api"), service("c", "app_db")],
        {
            "a": [task("a", 1, pb.TASK_STATE_RUNNING)],
            "b": [*rejected, task("b", 9, pb.TASK_STATE_PENDING)],
            "c": [
                task("c", n, pb.TASK_STATE_REJECTED, "no such file: /bin/db")
                for n in range(3, 3 + progress.REJECT_LIMIT)
            ],
        },
    )
    services = list(cluster.services.values())
    failed = stack_deploy.wait(cluster, services, quiet=False)  # type: ignore[arg-type]
    assert failed == ["app_api", "app_db"]
    out, err = capsys.readouterr()
    assert "verify: Service app_web converged" in out
    assert err.splitlines() == [
        f"app_api: {progress.REJECT_LIMIT} tasks of service app_api were rejected: {PULL}",
        f"app_db: {progress.REJECT_LIMIT} tasks of service app_db were rejected: no such file: /bin/db",
    ]
