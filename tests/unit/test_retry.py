"""The store's retry helpers that need no etcd: the backoff after repeated
failures, and ``until_done`` (what the view restarts its watch with)."""

from __future__ import annotations

import asyncio

import pytest
import tenacity

from shoal.manager.store.retry import failure_backoff, until_done
from tests.support.fake_tasks import run


def test_failure_backoff_is_none_at_first_then_grows_with_jitter_up_to_the_cap() -> None:
    assert failure_backoff(0) == failure_backoff(1) == 0.0
    assert 0.05 <= failure_backoff(2) <= 0.1
    assert 0.1 <= failure_backoff(3) <= 0.2
    assert all(2.5 <= failure_backoff(n) <= 5.0 for n in (8, 50, 10_000))


def test_until_done_tries_again_after_each_failure_until_an_attempt_works() -> None:
    failures: list[str] = []
    attempts = 0

    async def main() -> None:
        nonlocal attempts
        async for attempt in until_done(lambda: 0.0, lambda: False, lambda err: failures.append(str(err))):
            with attempt:
                attempts += 1
                if attempts < 3:
                    raise ConnectionError(f"down {attempts}")

    run(main())
    assert (attempts, failures) == (3, ["down 1", "down 2"])


def test_until_done_gives_up_once_stopped() -> None:
    stopped = False

    def failed(err: BaseException | None) -> None:
        nonlocal stopped
        stopped = True

    async def main() -> None:
        async for attempt in until_done(lambda: 0.0, lambda: stopped, failed):
            with attempt:
                raise ConnectionError("down")

    with pytest.raises(tenacity.RetryError):
        run(main())


def test_until_done_lets_a_cancellation_through() -> None:
    async def main() -> None:
        async def forever() -> None:
            async for attempt in until_done(lambda: 0.01, lambda: False, lambda err: None):
                with attempt:
                    raise ConnectionError("down")

        task = asyncio.create_task(forever())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
