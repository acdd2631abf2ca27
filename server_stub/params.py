"""Path and query parameters shared by the routes: ids validated by pattern before any handler
runs (and declared in the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from runner.api.protocol import RUN_ID_PATTERN, TASK_ID_PATTERN
from runner.limits import MAX_LOG_OFFSET

RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="a run id (UUID)")]
TaskId = Annotated[str, Path(pattern=TASK_ID_PATTERN, description="a task id")]
LogOffset = Annotated[int, Query(ge=0, le=MAX_LOG_OFFSET, description="byte offset")]
