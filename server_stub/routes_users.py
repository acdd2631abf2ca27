"""HTTP routes of the users' side: create, list, read, cancel, trigger runs, read logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from runner.api.protocol import TASK_ID_PATTERN, CreateRunRequest, RunInfo, RunList
from server_stub import users
from server_stub.deps import AdminDep, ChangesDep, CoreDep, NotifierDep, ReaderDep, errors
from server_stub.params import LogOffset, RunId, TaskId

router = APIRouter()

Queue = Query(pattern="^(queued|leased|paused|done|external|distributed)$")


@router.post("/runs", status_code=201, response_model=RunInfo,
             responses=errors(403, 404, body=True))
async def create_run(req: CreateRunRequest, core: CoreDep, notifier: NotifierDep,
                     changes: ChangesDep, _: AdminDep) -> RunInfo:
    """Queue a run: the ref is resolved to a commit and the workflow validated there."""
    info = await run_in_threadpool(users.create_run, core, req)
    await notifier.notify()
    await changes.notify()
    return info


@router.get("/runs", response_model=RunList, responses=errors(403))
async def list_runs(core: CoreDep, who: ReaderDep,
                    status: Annotated[str | None, Query(max_length=40)] = None,
                    repo: Annotated[str | None, Query(max_length=200)] = None,
                    queue: Annotated[str | None, Queue] = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> RunList:
    """Runs, most recent first, filtered by document status, repository and queue state; a
    runner sees only the runs leased to it or reported by it."""
    found = await run_in_threadpool(users.list_runs, core, who, status=status, repo=repo,
                                    queue=queue, limit=limit)
    return RunList(runs=found)


@router.get("/runs/{run_id:run_id}",
            responses={200: {"content": {"application/json": {}},
                             "description": "the run document"}, **errors(403, 404)})
async def get_run(run_id: RunId, core: CoreDep, who: ReaderDep,
                  history: Annotated[bool, Query()] = False) -> Response:
    """The materialized run document (with `history`: every diff in order)."""
    text = await run_in_threadpool(users.get_doc, core, who, run_id, with_history=history)
    return Response(text, media_type="application/json")


@router.post("/runs/{run_id:run_id}/cancel", response_model=RunInfo,
             responses=errors(403, 404, 409))
async def cancel_run(run_id: RunId, core: CoreDep, notifier: NotifierDep, changes: ChangesDep,
                     _: AdminDep) -> RunInfo:
    """Request cancellation: a queued or paused run ends Canceled at once; a running one sees
    `cancel_requested` in its next heartbeat."""
    info, changed = await run_in_threadpool(users.cancel, core, run_id)
    if changed and info.distributed:  # its claimers may be waiting for nothing more
        await notifier.notify()
    await changes.notify()
    return info


@router.post("/runs/{run_id:run_id}/tasks/{task_id:task_id}/trigger",
             response_model=RunInfo,
             responses=errors(403, 404, 409))
async def trigger_task(run_id: RunId, task_id: TaskId, core: CoreDep, notifier: NotifierDep,
                       changes: ChangesDep, _: AdminDep) -> RunInfo:
    """Trigger one AwaitingTrigger task; a paused run goes back to the queue."""
    info, requeued = await run_in_threadpool(users.trigger, core, run_id, [task_id])
    if requeued:
        await notifier.notify()
    await changes.notify()
    return info


@router.post("/runs/{run_id:run_id}/trigger-all", response_model=RunInfo,
             responses=errors(403, 404, 409))
async def trigger_all(run_id: RunId, core: CoreDep, notifier: NotifierDep,
                      changes: ChangesDep, _: AdminDep) -> RunInfo:
    """Trigger every AwaitingTrigger task of the run."""
    info, requeued = await run_in_threadpool(users.trigger, core, run_id, None)
    if requeued:
        await notifier.notify()
    await changes.notify()
    return info


@router.post("/runs/{run_id:run_id}/retry-failed", response_model=RunInfo,
             responses=errors(403, 404, 409))
async def retry_failed(run_id: RunId, core: CoreDep, notifier: NotifierDep,
                       changes: ChangesDep, _: AdminDep) -> RunInfo:
    """Re-run a Failed run's failed and blocked tasks (its completed ones are kept): the run
    goes back to the queue and any runner resumes it."""
    info = await run_in_threadpool(users.retry_failed, core, run_id)
    await notifier.notify()
    await changes.notify()
    return info


@router.get("/runs/{run_id:run_id}/patch",
            responses={200: {"content": {"text/x-diff": {}},
                             "description": "the change as a patch for git apply"},
                       **errors(403, 404)})
async def read_patch(run_id: RunId, core: CoreDep, who: ReaderDep,
                     task: Annotated[str | None, Query(pattern=TASK_ID_PATTERN)] = None
                     ) -> Response:
    """The change the run made to its workspace: its tasks' patches in the order they ended
    (`task`: one task's); empty when it changed nothing."""
    data = await run_in_threadpool(users.read_patch, core, who, run_id, task)
    return Response(data, media_type="text/x-diff; charset=utf-8")


@router.get("/runs/{run_id:run_id}/logs/{task_id:task_id}",
            responses={200: {"content": {"text/plain": {}}, "description": "log bytes"},
                       **errors(403, 404)})
async def read_log(run_id: RunId, task_id: TaskId, core: CoreDep, who: ReaderDep,
                   offset: LogOffset = 0) -> Response:
    """A task's log from byte `offset` on (empty while it has none or past its end)."""
    data = await run_in_threadpool(users.read_log, core, who, run_id, task_id, offset)
    return Response(data, media_type="text/plain; charset=utf-8")
