"""Path and query parameters shared by the routes: ids validated by pattern before any handler
runs (and declared in the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from starlette.convertors import Convertor, register_url_convertor

from runner.api.protocol import RUN_ID_PATTERN, TASK_ID_PATTERN
from runner.limits import MAX_LOG_OFFSET


class _Pattern(Convertor[str]):
    """A path segment matching an id pattern: a request whose id does not match is routed
    nowhere (404), so `GET /runs/claim` is a 405 of `POST /runs/claim`, not a bad run id."""

    def convert(self, value: str) -> str:
        """The id as text."""
        return value

    def to_string(self, value: str) -> str:
        """The id in a URL."""
        return value


class RunIdSegment(_Pattern):
    """`{run_id:run_id}`."""

    regex = RUN_ID_PATTERN.removeprefix("^").removesuffix("$")


class TaskIdSegment(_Pattern):
    """`{task_id:task_id}`."""

    regex = TASK_ID_PATTERN.removeprefix("^").removesuffix("$")


class RunnerIdSegment(_Pattern):
    """`{runner_id:runner_id}` (runner ids are UUIDs too)."""

    regex = RUN_ID_PATTERN.removeprefix("^").removesuffix("$")


register_url_convertor("run_id", RunIdSegment())
register_url_convertor("runner_id", RunnerIdSegment())
register_url_convertor("task_id", TaskIdSegment())

RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="a run id (UUID)")]
RunnerId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="a runner id (UUID)")]
TaskId = Annotated[str, Path(pattern=TASK_ID_PATTERN, description="a task id")]
LogOffset = Annotated[int, Query(ge=0, le=MAX_LOG_OFFSET, description="byte offset")]
