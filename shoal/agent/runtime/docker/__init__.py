"""The ``docker`` backend: each task is a container on a Docker Engine.

The engine holds every piece of state: a container carries labels that say
which task it runs and which node owns it, so a restarted agent (a new
``DockerRuntime`` with the same node ID) finds its containers again by label
and adopts them. Nothing is written under ``state_dir``. Several agents may
share one engine (tests run many nodes on one machine), so everything this
backend lists, adopts or removes is filtered by ``shoal.node.id``.

Data flow: the worker calls the ``DockerTaskController`` that
``DockerRuntime`` made; the controller turns the task's spec into create
options (``options``, pure), and every call it makes to the engine goes
through ``Engine`` (``engine``), which runs the blocking SDK off the event
loop and translates its errors, once, into ``TaskRejected`` and
``TaskFailed``.

The rooms, each with one job:

    options      spec -> ContainerOptions, image references, labels (pure)
    engine       the SDK behind a thread pool; error translation; stop, pull
    logs         the container's log: a thread per stream, merged by time
    execs        shoal exec: the engine's exec, and its hang-up
    commits      shoal commit: the engine's commit, then a push
    health       State.Health -> HealthReport (pure)
    controller   DockerTaskController: the TaskController of one task
    runtime      DockerRuntime: the Runtime (client, list, discard)
"""

from __future__ import annotations

from shoal.agent.runtime.docker.controller import DockerTaskController
from shoal.agent.runtime.docker.engine import PROBE_TIMEOUT, EngineUnavailable, probe_engine
from shoal.agent.runtime.docker.options import (
    LABEL_NODE_ID,
    LABEL_SERVICE_ID,
    LABEL_SERVICE_NAME,
    LABEL_SLOT,
    LABEL_TASK_ID,
    ContainerOptions,
    ImageRef,
    container_name,
    container_options,
    registry_auth,
)
from shoal.agent.runtime.docker.runtime import DockerRuntime

__all__ = [
    "LABEL_NODE_ID",
    "LABEL_SERVICE_ID",
    "LABEL_SERVICE_NAME",
    "LABEL_SLOT",
    "LABEL_TASK_ID",
    "PROBE_TIMEOUT",
    "ContainerOptions",
    "DockerRuntime",
    "DockerTaskController",
    "EngineUnavailable",
    "ImageRef",
    "container_name",
    "container_options",
    "probe_engine",
    "registry_auth",
]
