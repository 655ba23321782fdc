"""The first thing a user does: create a service, see it run, remove it."""

from __future__ import annotations

from typing import Any

from tests.support.cluster import pids_of, wait_for


def test_replicated_service_runs_spread_and_is_removed(make_cluster: Any) -> None:
    cluster = make_cluster(agents=3)
    marker = "sleep 3601"
    res = cluster.cli(
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "6",
        "--update-monitor",
        "0s",
        "app:1",
        "sleep",
        "3601",
    )
    assert res.code == 0, res.err
    running = cluster.running("web")
    assert len(running) == 6
    assert sorted(Counter(t["node"] for t in running).values()) == [2, 2, 2]
    assert len(pids_of(marker)) == 6
    assert cluster.cli("service", "rm", "web").code == 0
    wait_for(lambda: not pids_of(marker), what="task processes to go")


from collections import Counter  # noqa: E402
