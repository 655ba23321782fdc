"""Tasks for the docker backend's tests, built as the agent builds them."""

from __future__ import annotations

import uuid

from shoal.agent.runtime.base import TaskContext
from shoal.agent.worker import task_env
from shoal.protos import objects_pb2 as pb


def make_ctx(
    node_id: str,
    command: list[str] | None = None,
    args: list[str] | None = None,
    *,
    image: str = "shoal-test:1",
    env: list[str] | None = None,
    workdir: str = "",
    labels: dict[str, str] | None = None,
    memory_bytes: int = 0,
    nano_cpus: int = 0,
    healthcheck: pb.HealthCheck | None = None,
    ports: list[pb.PortConfig] | None = None,
    mounts: list[pb.Mount] | None = None,
    stop_signal: str = "",
    task_id: str = "",
    endpoints: list[pb.TaskEndpoint] | None = None,
) -> TaskContext:
    """A task of service "web" (slot 1) on node_id as the agent gets it, with
    the agent's SHOAL_* env; a task ID of its own unless one is given, so
    that containers on a shared engine never clash. `endpoints`: the host
    ports the agent gave its ingress ports."""
    spec = pb.TaskSpec(
        container=pb.ContainerSpec(
            image=image,
            command=command or [],
            args=args or [],
            env=env or [],
            workdir=workdir,
            labels=labels or {},
            healthcheck=healthcheck,
            mounts=mounts or [],
            stop_signal=stop_signal,
        ),
        resources=pb.ResourceRequirements(
            limits=pb.Resources(memory_bytes=memory_bytes, nano_cpus=nano_cpus)
        ),
    )
    task = pb.Task(
        meta=pb.Meta(id=task_id or uuid.uuid4().hex[:25]),
        service_id="svc-id-1",
        service_name="web",
        slot=1,
        node_id=node_id,
        spec=spec,
        ports=ports or [],
        desired_state=pb.TASK_STATE_RUNNING,
    )
    given = tuple(endpoints or ())
    return TaskContext(task=task, node_id=node_id, env=task_env(task, node_id, given), endpoints=given)
