"""Contact: one warning when the control plane stops answering, one line when it is back with
what was delivered, nothing for the single failures a flaky network gives (a fake clock)."""

from __future__ import annotations

import logging

import pytest

from runner.control.contact import Contact
from runner.control.metrics import DaemonMetrics
from runner.errors import TransientError

URL = "http://ctl.test:8750"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_lost_once_then_back_with_what_was_delivered(clock: Clock,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ferry")
    metrics = DaemonMetrics()
    contact = Contact(URL, metrics, lost_after=5, clock=clock)
    backlog = [0]
    for _ in range(100):  # a heartbeat and a claim failing every 0.1 s for 10 s
        contact.failed(TransientError("POST /runs/claim: cannot connect"))
        contact.tick(lambda: backlog[0])
        clock.now += 0.1
        backlog[0] += 1
    assert contact.down and contact.losses == 1
    assert _lines(caplog) == [(logging.WARNING, f"lost contact with the control plane at {URL}: "
                               "POST /runs/claim: cannot connect; runs go on offline, their "
                               "records wait in the journal")]
    caplog.clear()
    contact.ok()
    contact.tick(lambda: backlog[0])
    assert _lines(caplog) == [], "nothing said before the kept records are delivered"
    contact.delivered(60)
    backlog[0] = 40
    clock.now += 1
    contact.tick(lambda: backlog[0])
    contact.delivered(40)
    backlog[0] = 0
    contact.tick(lambda: backlog[0])
    contact.tick(lambda: backlog[0])
    assert _lines(caplog) == [(logging.INFO, f"contact with the control plane at {URL} is back "
                               "after 10s: 100 record(s) kept meanwhile delivered")]
    assert metrics.counter("records_delivered") == 100 and not contact.down


def test_back_is_said_after_report_after_even_if_records_still_wait(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ferry")
    contact = Contact(URL, lost_after=1, report_after=30, clock=clock)
    contact.failed("refused")
    clock.now += 2
    contact.tick(lambda: 5)
    contact.ok()
    contact.delivered(2)
    clock.now += 29
    contact.tick(lambda: 3)
    assert len(_lines(caplog)) == 1
    clock.now += 1
    contact.tick(lambda: 3)
    contact.tick(lambda: 3)
    assert _lines(caplog)[1:] == [(logging.INFO, f"contact with the control plane at {URL} is "
                                   "back after 2s: 2 record(s) kept meanwhile delivered, 3 still "
                                   "waiting")]


def test_a_flaky_network_that_still_answers_is_not_a_loss(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ferry")
    contact = Contact(URL, lost_after=5, clock=clock)
    for i in range(1000):  # 30% of requests fail, ten requests a second, for 100 s
        if i % 10 < 3:
            contact.failed("HTTP 500")
        else:
            contact.ok()
        contact.tick(lambda: 0)
        clock.now += 0.1
    assert _lines(caplog) == [] and contact.losses == 0
