"""The one retry rule for control-plane calls: what is worth another try, and how hard to try.

`is_transient` decides; `retrying` (tenacity: jittered exponential backoff, bounded by a
`RetryPolicy`, stoppable by an Event) does the waiting. The client never sleeps; callers wrap
its calls here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from runner.errors import TransientError

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """The one retry rule: connection trouble, timeouts, 5xx and 429 are worth another try."""
    return isinstance(exc, TransientError)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts (None = unbounded), total time, and the backoff curve."""

    max_attempts: int | None = 5
    max_time: float | None = None
    initial: float = 0.5
    backoff_factor: float = 2.0
    max_wait: float = 30.0

    @classmethod
    def from_config(cls, max_retries: int, backoff_factor: float) -> RetryPolicy:
        """Butterflow's `retryConfig` (maxRetries, backoffFactor): retries after the first try."""
        return cls(max_attempts=max_retries + 1, backoff_factor=max(backoff_factor, 1.0))


DEFAULT_POLICY = RetryPolicy()
"""Five attempts, 0.5 s doubling up to 30 s, with jitter."""


class RetryStopped(TransientError):
    """The stop event was set while waiting to retry."""


def retrying(policy: RetryPolicy = DEFAULT_POLICY, *, stop_event: threading.Event | None = None,
             retry_on: Callable[[BaseException], bool] = is_transient,
             on_retry: Callable[[BaseException, float], None] | None = None,
             ) -> tenacity.Retrying:
    """A tenacity `Retrying` for control-plane calls: jittered exponential backoff on transient
    errors, bounded by the policy, waking and raising `RetryStopped` when `stop_event` is set.
    The last error is re-raised as itself when the policy gives up."""
    event = stop_event or threading.Event()
    stops: list[tenacity.stop.stop_base] = [tenacity.stop_when_event_set(event)]
    if policy.max_attempts is not None:
        stops.append(tenacity.stop_after_attempt(policy.max_attempts))
    if policy.max_time is not None:
        stops.append(tenacity.stop_after_delay(policy.max_time))
    # exponential from `initial`, capped, plus up to `initial` of jitter so that many runners
    # coming back after one outage do not knock in step
    wait = (tenacity.wait_exponential(multiplier=policy.initial, exp_base=policy.backoff_factor,
                                      max=policy.max_wait)
            + tenacity.wait_random(0, policy.initial))

    def _sleep(seconds: float) -> None:
        if event.wait(seconds):
            raise RetryStopped("stopped while waiting to retry")

    def _before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            exc = state.outcome.exception()
            if exc is not None:
                on_retry(exc, state.upcoming_sleep)

    return tenacity.Retrying(stop=tenacity.stop_any(*stops), wait=wait,
                             retry=tenacity.retry_if_exception(retry_on), sleep=_sleep,
                             before_sleep=_before_sleep, reraise=True)


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy = DEFAULT_POLICY, *,
                    stop_event: threading.Event | None = None,
                    on_retry: Callable[[BaseException, float], None] | None = None) -> T:
    """Call `fn` under `retrying(...)`."""
    result: T = retrying(policy, stop_event=stop_event, on_retry=on_retry)(fn)
    return result

