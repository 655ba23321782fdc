"""The local Docker Engine for tests that run services as containers.

``engine_or_skip()`` is what a module fixture calls: a client of the engine
(as ``DOCKER_HOST`` etc. name it) with the test images built. Without an
engine the tests skip, except under CI (``CI`` set), where they fail: the CI
installs and starts one, so its absence there is a broken build, not a reason
to skip. ``containers_of`` lists a service's containers through the SDK, not
through shoal, so tests check what really runs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shoal.agent.runtime.docker import LABEL_NODE_ID, LABEL_SERVICE_NAME

REPO = Path(__file__).resolve().parents[2]


def engine_or_skip() -> Any:
    """A docker.DockerClient of the local engine, test images built; the
    caller closes it."""
    import docker

    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as err:
        why = f"no Docker engine answers ({err}); start one: dockerd > /tmp/dockerd.log 2>&1 &"
        if os.environ.get("CI"):
            pytest.fail(f"CI needs Docker: {why}")
        pytest.skip(why)
    subprocess.run([str(REPO / "scripts" / "build-test-images")], check=True)
    return client


def containers_of(engine: Any, service: str, node_ids: set[str], running_only: bool = True) -> list[Any]:
    """The containers of the service called `service` (docker SDK objects)
    on the nodes `node_ids` (one cluster's: other clusters may share the
    engine and the service name); only running ones unless running_only is
    False."""
    import docker.errors

    # The SDK lists, then inspects each container: one removed in between
    # (what `service rm` tests wait for) makes that fail, so list again.
    for _ in range(10):
        try:
            found = engine.containers.list(
                all=not running_only, filters={"label": f"{LABEL_SERVICE_NAME}={service}"}
            )
        except docker.errors.NotFound:
            continue
        return [c for c in found if c.labels.get(LABEL_NODE_ID) in node_ids]
    raise AssertionError(f"containers of {service} kept vanishing while being listed")
