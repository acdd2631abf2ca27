"""The retry rule and the tenacity helper: what is retried, how often, and stopping early."""

from __future__ import annotations

import threading

import pytest
import responses

from runner.api.client import ControlClient
from runner.api.retry import RetryPolicy, RetryStopped, call_with_retry, retrying
from runner.errors import AuthError, TransientError

API = "http://cp.test/api/v1"
FAST = RetryPolicy(max_attempts=4, initial=0.001, backoff_factor=2.0, max_wait=0.01)


@responses.activate
def test_transient_errors_are_retried_until_success() -> None:
    responses.get(API + "/runs/r1", status=503)
    responses.get(API + "/runs/r1", status=502)
    responses.get(API + "/runs/r1", json={"id": "r1"})
    client = ControlClient("http://cp.test", "t")
    seen: list[float] = []
    doc = call_with_retry(lambda: client.get_run("r1"), FAST,
                          on_retry=lambda exc, wait: seen.append(wait))
    assert doc == {"id": "r1"}
    assert len(responses.calls) == 3 and len(seen) == 2


@responses.activate
def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    responses.get(API + "/runs/r1", status=500)
    client = ControlClient("http://cp.test", "t")
    with pytest.raises(TransientError, match="HTTP 500"):
        call_with_retry(lambda: client.get_run("r1"), FAST)
    assert len(responses.calls) == 4


@responses.activate
def test_permanent_errors_are_not_retried() -> None:
    responses.get(API + "/runs/r1", status=401, json={"error": "unauthorized", "message": "no"})
    client = ControlClient("http://cp.test", "t")
    with pytest.raises(AuthError):
        call_with_retry(lambda: client.get_run("r1"), FAST)
    assert len(responses.calls) == 1


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=8, initial=1.0, backoff_factor=2.0, max_wait=10.0)
    waits: list[float] = []

    def fail() -> None:
        raise TransientError("down")

    r = retrying(policy, on_retry=lambda exc, wait: waits.append(wait))
    r.sleep = lambda seconds: None  # type: ignore[method-assign]
    with pytest.raises(TransientError):
        r(fail)
    assert len(waits) == 7
    # base 1, 2, 4, 8, then capped at 10; jitter adds at most `initial` on top
    for i, wait in enumerate(waits):
        base = min(1.0 * 2 ** i, 10.0)
        assert base <= wait <= base + 1.0
    assert 10.0 <= waits[-1] <= 11.0


def test_stop_event_interrupts_the_wait() -> None:
    stop = threading.Event()
    calls: list[int] = []

    def fail() -> None:
        calls.append(1)
        stop.set()  # set during the first attempt: the backoff must not sleep 60 s
        raise TransientError("down")

    policy = RetryPolicy(max_attempts=None, initial=60.0, max_wait=60.0)
    with pytest.raises(TransientError):
        retrying(policy, stop_event=stop)(fail)
    assert calls == [1]


def test_stop_event_set_while_sleeping_raises_retry_stopped() -> None:
    stop = threading.Event()
    policy = RetryPolicy(max_attempts=None, initial=60.0, max_wait=60.0)

    def fail() -> None:
        threading.Timer(0.05, stop.set).start()
        raise TransientError("down")

    with pytest.raises(RetryStopped):
        retrying(policy, stop_event=stop)(fail)


def test_from_config_maps_the_seed_retry_config() -> None:
    policy = RetryPolicy.from_config(3, 1.5)
    assert policy.max_attempts == 4 and policy.backoff_factor == 1.5
