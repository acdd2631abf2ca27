"""The daemon's log line per engine event (`control.events.LogEvents`)."""

from __future__ import annotations

import logging

import pytest

from runner.control.events import LogEvents
from runner.engine.events import TaskStatusChanged


def _event(status: str, *, canceled: bool = False) -> TaskStatusChanged:
    return TaskStatusChanged("run-1", "2026-01-01T00:00:00Z", "task-1", "build", "build",
                             status, "Running", "stopped during step 'x'" if canceled else None,
                             canceled=canceled)


@pytest.mark.parametrize(("status", "canceled", "line"), [
    ("Completed", False, "task completed"),
    ("Failed", False, "task failed"),
    ("Failed", True, "task canceled"),  # stored Failed for the scheduler; it did not fail
])
def test_task_lines_say_what_happened(caplog: pytest.LogCaptureFixture, status: str,
                                      canceled: bool, line: str) -> None:
    with caplog.at_level(logging.INFO, logger="ferry.daemon"):
        LogEvents("run-1").emit(_event(status, canceled=canceled))
    assert [r.getMessage() for r in caplog.records] == [line]
