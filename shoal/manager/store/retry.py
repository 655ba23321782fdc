"""Retries, for the errors that are temporary only (tenacity).

- ``on_conflict``: a write lost a race (VersionConflict): read again and
  redo, a few times, with a little jitter so two racing writers part;
- ``until_available``: etcd did not answer (StoreUnavailable, or any store
  error of an outage): try again with exponential backoff and jitter, for as
  long as it takes. LeadershipLost is never retried: it ends the leader's
  work;
- ``until_done``: something that must come back (the view's watch): any
  error, again after a wait its caller computes, until it works or stops;
- ``update_with_retry``: a read-modify-write of one object (read from the
  view, written through the store), redone on a conflict (``on_conflict``).
Everything else is a refusal or a bug and goes straight to the caller.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import tenacity

from shoal.manager.store.errors import LeadershipLost, StoreError, VersionConflict
from shoal.manager.store.store import KIND_NAMES, S, Store, clone

if TYPE_CHECKING:
    from shoal.manager.store.view import View

log = logging.getLogger(__name__)


def on_conflict(attempts: int = 10) -> tenacity.AsyncRetrying:
    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(VersionConflict),
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_random(0, 0.05),
        reraise=True,
    )


def _outage(err: BaseException) -> bool:
    return isinstance(err, StoreError) and not isinstance(err, LeadershipLost)


def until_available(what: str, first_wait: float = 0.1, max_wait: float = 5.0) -> tenacity.AsyncRetrying:
    def note(state: tenacity.RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome is not None else None
        n = state.attempt_number
        level = logging.WARNING if n in (1, 10) or n % 50 == 0 else logging.DEBUG
        log.log(level, "%s: %s (attempt %d); retrying", what, err, n)

    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(_outage),
        wait=tenacity.wait_random_exponential(multiplier=first_wait, max=max_wait),
        before_sleep=note,
        reraise=True,
    )


def until_done(
    wait: Callable[[], float], stopped: Callable[[], bool], failed: Callable[[BaseException | None], None]
) -> tenacity.AsyncRetrying:
    """On every error: failed(err), then again wait() seconds later, until an
    attempt works or stopped() says to give up (tenacity.RetryError)."""
    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(Exception),
        stop=lambda _: stopped(),
        wait=lambda _: wait(),
        after=lambda state: failed(state.outcome.exception() if state.outcome is not None else None),
    )


def failure_backoff(failures: int, first: float = 0.1, cap: float = 5.0) -> float:
    """Seconds to wait after `failures` failures in a row: none after the
    first, then exponential from `first` with jitter, at most `cap`; an etcd
    outage then costs an attempt every few seconds, not thousands a second."""
    if failures <= 1:
        return 0.0
    # The exponent stops growing long before a float would overflow (after
    # about a thousand failures: an hour and a half of an outage).
    return min(cap, first * 2.0 ** min(failures - 2, 64)) * random.uniform(0.5, 1.0)


async def update_with_retry(
    view: View, store: Store, cls: type[S], obj_id: str, change: Callable[[S], None], attempts: int = 10
) -> S:
    """Apply change to a copy of the view's object and write it; on a version
    conflict read it again and re-apply. ``change`` may raise (a ValueError
    refuses the update); NotFound when the object is gone."""
    kind = KIND_NAMES[cls]
    async for attempt in on_conflict(attempts):
        with attempt:
            held = view.objects[kind].get(obj_id)
            current: S = held if isinstance(held, cls) else await store.get(cls, obj_id)
            obj = clone(current)
            change(obj)
            try:
                return await store.update(obj)
            except VersionConflict:
                view.observe(await store.get(cls, obj_id))
                raise
    raise AssertionError("unreachable")
