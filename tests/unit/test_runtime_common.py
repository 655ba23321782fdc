"""What the backends share: the stop protocol (signal, grace, SIGKILL, and an
error that says where to look when even that fails), the reading of a
spec's stop signal, and how signals are named."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import pytest

from shoal.agent.runtime.base import TaskFailed
from shoal.agent.runtime.common import SignalPlan, signal_plan, stop_task, task_log
from shoal.signals import signal_name

log = task_log(logging.getLogger("tests.stop"), "t1")


class Target:
    """A task that ends on the signals it is told to end on, recording all."""

    def __init__(self, ends_on: set[str]) -> None:
        self.ends_on = ends_on
        self.sent: list[str] = []
        self.alive = True
        self.stop_signal_name = "SIGTERM"

    async def running(self) -> bool:
        return self.alive

    async def send_stop_signal(self) -> None:
        self._got("SIGTERM")

    async def kill(self) -> None:
        self._got("SIGKILL")

    def stuck_error(self, kill_timeout: float) -> str:
        return f"still there {kill_timeout:g}s after SIGKILL"

    def _got(self, name: str) -> None:
        self.sent.append(name)
        if name in self.ends_on:
            self.alive = False


def test_a_task_that_ends_on_the_stop_signal_is_not_killed() -> None:
    target = Target(ends_on={"SIGTERM"})
    asyncio.run(stop_task(target, 10.0, log, poll_max=0.01))
    assert target.sent == ["SIGTERM"]


def test_a_task_that_outlives_its_grace_is_killed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tests.stop")
    target = Target(ends_on={"SIGKILL"})
    t0 = time.monotonic()
    asyncio.run(stop_task(target, 0.2, log, poll_max=0.01))
    assert 0.2 <= time.monotonic() - t0 < 2.0
    assert target.sent == ["SIGTERM", "SIGKILL"]
    assert "task t1: still running 0.2s after SIGTERM; killing it" in caplog.text


def test_sigkill_as_the_stop_signal_gives_no_grace() -> None:
    target = Target(ends_on={"SIGKILL"})
    t0 = time.monotonic()
    asyncio.run(stop_task(target, 30.0, log, poll_max=0.01, kill_at_once=True))
    assert time.monotonic() - t0 < 1.0
    assert target.sent == ["SIGKILL"]


def test_a_task_that_outlives_sigkill_fails_the_stop_with_where_to_look() -> None:
    target = Target(ends_on=set())
    with pytest.raises(TaskFailed, match=r"^still there 0.1s after SIGKILL$"):
        asyncio.run(stop_task(target, 0.1, log, poll_max=0.01, kill_timeout=0.1))
    assert target.sent == ["SIGTERM", "SIGKILL"]


def test_stop_signal_names_are_read_and_an_unknown_one_means_sigterm() -> None:
    assert signal_plan("") == SignalPlan(signal.SIGTERM)
    assert signal_plan("int") == SignalPlan(signal.SIGINT)
    assert signal_plan("SIGKILL") == SignalPlan(signal.SIGKILL)
    assert signal_plan("9") == SignalPlan(signal.SIGKILL)
    assert signal_plan("SIGRTMIN+3") == SignalPlan(signal.SIGRTMIN + 3)
    assert signal_plan("SIGNOPE") == SignalPlan(signal.SIGTERM, unknown=True)
    assert signal_plan("999") == SignalPlan(signal.SIGTERM, unknown=True)


def test_signals_are_named_as_users_write_them() -> None:
    assert signal_name(signal.SIGTERM) == "SIGTERM"
    assert signal_name(signal.SIGRTMIN) == "SIGRTMIN"
    assert signal_name(signal.SIGRTMIN + 3) == f"signal {signal.SIGRTMIN + 3}"
