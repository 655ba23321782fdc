"""Shared fixtures: one real etcd for every test that needs one (per
session), the local Docker Engine (per module), clusters (per test)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.docker_engine import engine_or_skip
from tests.support.etcd_server import EtcdServer


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = EtcdServer(tmp_path_factory.mktemp("etcd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    """The local Docker Engine (a docker.DockerClient), test images built."""
    client = engine_or_skip()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def etcd_prefix() -> bytes:
    """A key prefix of this test's own, so tests share one etcd safely."""
    return f"/t-{uuid.uuid4().hex[:12]}/shoal/v1/".encode()


@pytest.fixture
def state_root(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def make_cluster(etcd_server: EtcdServer, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Build clusters (manager + agents as processes); all stopped at the end,
    their logs printed when the test failed."""
    from tests.support.cluster import Cluster

    made: list[Cluster] = []

    def make(
        agents: int = 3,
        heartbeat: str = "1s",
        labels: list[dict[str, str]] | None = None,
        runtime: str | None = None,
    ) -> Cluster:
        """`runtime` ("docker", "auto"): started with `--runtime`; None: the
        agent's default (process)."""
        c = Cluster(etcd_server, tmp_path / f"cluster{len(made)}", heartbeat=heartbeat)
        made.append(c)
        c.start_manager()
        for i in range(agents):
            c.start_agent(labels=(labels[i] if labels else None), **({"runtime": runtime} if runtime else {}))
        if agents:
            c.wait_nodes_ready(agents)
        return c

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for c in made:
        if failed:
            print(c.dump_logs())
        c.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, "rep_" + rep.when, rep)


# The report section that holds a shared cluster's state after a failure.
SHARED_STATE = "shared cluster state"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """CI runs a failed test once more (scripts/test, pytest-rerunfailures):
    show how each first attempt failed, so an intermittent failure is read
    and mended, not only counted."""
    reruns = terminalreporter.stats.get("rerun", [])
    if reruns:
        terminalreporter.section("first attempts of tests that were run again")
        for rep in reruns:
            terminalreporter.line(f"--- {rep.nodeid}")
            terminalreporter.line(rep.longreprtext)
            for title, text in rep.sections:
                if SHARED_STATE in title:
                    terminalreporter.line(f"--- {title}\n{text}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test that failed on a cluster shared by its module leaves behind
    what it made, so that its second attempt (CI reruns a failed test once)
    does not trip over its first: remove the services, secrets, configs and
    networks made during the failed attempt."""
    from tests.support.cluster import Cluster

    started = time.time()
    outcome = yield
    if outcome.excinfo is None:
        return
    fixtures = getattr(item, "_fixtureinfo", None)
    funcargs = getattr(item, "funcargs", {})
    for name, value in funcargs.items():
        defs = fixtures.name2fixturedefs.get(name) if fixtures is not None else None
        if isinstance(value, Cluster) and defs and defs[-1].scope != "function":
            # The shared cluster's state as the attempt left it: its logs are
            # shown nowhere else (the fixture outlives the test).
            try:
                state = value.describe_state()
            except Exception as err:  # must not hide the failure
                state = f"(could not describe the cluster: {err})"
            item.add_report_section("call", SHARED_STATE, state)
            try:
                removed = value.remove_made_since(started)
            except Exception as err:  # clean-up must not hide the failure
                removed = [f"(clean-up failed: {err})"]
            if removed:
                print(f"after the failed attempt, removed from the shared cluster: {', '.join(removed)}")
