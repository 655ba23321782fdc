"""What the CLI says about itself and about things that change under it:
``shoal version`` asks every manager, ``service logs -f`` ends with Ctrl-C
as docs/cli.md says (exit 0), and a service removed while a command waits
for it is named, not numbered.

One cluster (two managers, one agent, process runtime) for the module.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator

import pytest

from shoal.version import shoal_version
from tests.support.cluster import Cluster, sleep_seconds, start_cluster, wait_for, wait_pids
from tests.support.etcd_server import EtcdServer


@pytest.fixture(scope="module")
def shared(etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(etcd_server, tmp_path_factory.mktemp("cli-output"), agents=1)
    try:
        c.start_manager()
        yield c
    finally:
        c.close()


@pytest.fixture
def cluster(shared: Cluster, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield shared
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(shared.dump_logs())


def test_version_shows_the_client_and_each_manager(cluster: Cluster) -> None:
    res = cluster.cli("version")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0] == "Client:"
    assert re.match(rf"^ Version:\s+{re.escape(shoal_version())}$", lines[1]), lines
    managers = lines[lines.index("Managers:") + 1 :]
    assert sorted(m.split()[0].rstrip(":") for m in managers) == sorted(cluster.manager_addrs)
    assert all(m.endswith(f":  {shoal_version()}") for m in managers), managers
    assert sum("(leader)" in m for m in managers) == 1


def test_logs_follow_ends_with_ctrl_c_and_exit_status_0(cluster: Cluster) -> None:
    seconds = sleep_seconds(3811)
    script = f'echo "hello"; exec sleep {seconds}'
    res = cluster.cli("service", "create", "-d", "--name", "talker", "app:1", "sh", "-c", script)
    assert res.code == 0, res.err
    wait_pids(f"sleep {seconds}", 1)
    follower = cluster.popen_cli("service", "logs", "-f", "talker")
    try:
        assert follower.stdout is not None
        first = follower.stdout.readline()
        assert first.rstrip().endswith("| hello"), first
        follower.send_signal(signal.SIGINT)
        assert follower.wait(30) == 0, follower.stderr.read() if follower.stderr else ""
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        assert cluster.cli("service", "rm", "talker").code == 0


def started(cluster: Cluster, service: str) -> bool:
    shown = cluster.cli("service", "ps", service, "--format", "{{.CurrentState}}")
    return shown.code == 0 and shown.out.startswith("Starting")


def test_a_service_removed_while_create_waits_for_it_is_named(cluster: Cluster) -> None:
    # Its task never passes a health check (failures do not count for an
    # hour), so create waits for it for as long as the service exists.
    seconds = sleep_seconds(3812)
    waiting = cluster.popen_cli(
        "service", "create", "--name", "doomed", "--health-cmd", "false", "--health-interval", "1s",
        "--health-start-period", "1h", "app:1", "sleep", seconds,
    )  # fmt: skip
    try:
        # Not wait_pids: the waiting CLI's own command line holds the marker.
        wait_for(lambda: started(cluster, "doomed"), what="doomed's task to start")
        wait_pids(f"sleep {seconds}", 2)  # the CLI and the task
        assert cluster.cli("service", "rm", "doomed").code == 0
        _, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 1
    assert err == "Error: service doomed was removed while waiting for it\n"
