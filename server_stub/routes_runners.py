"""HTTP routes of the runners' side: register, claim (long poll), start, heartbeat, diffs,
logs, finish, report."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from runner.api.protocol import (
    ClaimRequest,
    ClaimResponse,
    DiffAck,
    DiffBatch,
    FinishRequest,
    HeartbeatResponse,
    LeaseRequest,
    LogAck,
    LogChunk,
    RegisterRequest,
    RegisterResponse,
    ReportRunRequest,
    RunInfo,
)
from server_stub import runners
from server_stub.deps import ChangesDep, CoreDep, NotifierDep, RegistrarDep, RunnerDep, errors
from server_stub.params import RunId

router = APIRouter()



@router.post("/runners/register", response_model=RegisterResponse,
             responses=errors(403, body=True))
async def register(req: RegisterRequest, core: CoreDep, changes: ChangesDep,
                   _: RegistrarDep) -> RegisterResponse:
    """Register a runner (registration token); the answer holds its token, shown once."""
    answer = await run_in_threadpool(runners.register, core, req)
    await changes.notify()
    return answer


@router.post("/runs/claim", response_model=ClaimResponse,
             responses={204: {"description": "nothing matched before the hold ended"},
                        **errors(403, 409, body=True)})
async def claim(req: ClaimRequest, request: Request, core: CoreDep, notifier: NotifierDep,
                changes: ChangesDep, who: RunnerDep) -> ClaimResponse | Response:
    """Long poll: held up to `wait` seconds and answered as soon as a matching run is queued;
    409 `runner_draining` once the admin drains this runner, 401 once its token is revoked."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(req.wait, core.config.max_claim_wait)
    while True:
        seen = notifier.version
        got = await run_in_threadpool(runners.claim_once, core, who, req.labels,
                                      bool(req.tasks))
        if got is not None:
            await changes.notify()
            return got
        if not await notifier.wait(seen, deadline - loop.time()):
            return Response(status_code=204)
        if await request.is_disconnected():
            return Response(status_code=204)  # nobody to hand a run to


@router.post("/runs/report", response_model=RunInfo, status_code=201,
             responses={200: {"model": RunInfo, "description": "already reported"},
                        **errors(403, 409, body=True)})
async def report(req: ReportRunRequest, response: Response, core: CoreDep, changes: ChangesDep,
                 who: RunnerDep) -> RunInfo:
    """Create a run this runner executes outside the queue (idempotent by id and digest)."""
    info, created = await run_in_threadpool(runners.report, core, who, req.run)
    await changes.notify()
    if not created:
        response.status_code = 200
    return info


@router.post("/runs/{run_id:run_id}/start",
             response_model=HeartbeatResponse,
             responses=errors(403, 404, 409, body=True))
async def start(run_id: RunId, req: LeaseRequest, core: CoreDep,
                who: RunnerDep) -> HeartbeatResponse:
    """Confirm a claim (renews the lease)."""
    return await run_in_threadpool(runners.control, core, who, run_id, req.lease)


@router.post("/runs/{run_id:run_id}/heartbeat",
             response_model=HeartbeatResponse,
             responses=errors(403, 404, 409, body=True))
async def heartbeat(run_id: RunId, req: LeaseRequest, core: CoreDep,
                    who: RunnerDep) -> HeartbeatResponse:
    """Renew the lease; the answer says whether a cancel was requested."""
    return await run_in_threadpool(runners.control, core, who, run_id, req.lease)


@router.post("/runs/{run_id:run_id}/diffs", response_model=DiffAck,
             responses=errors(403, 404, 409, body=True))
async def post_diffs(run_id: RunId, batch: DiffBatch, core: CoreDep, changes: ChangesDep,
                     who: RunnerDep) -> DiffAck:
    """Apply diffs in order: duplicates acknowledged, a gap refused (409 `seq_gap`), a diff that
    does not apply refused (422) with the accepted prefix kept."""
    try:
        return await run_in_threadpool(runners.post_diffs, core, who, run_id, batch)
    finally:  # a refused batch may have committed its accepted prefix
        await changes.notify()


@router.post("/runs/{run_id:run_id}/logs", response_model=LogAck,
             responses=errors(403, 404, 409, body=True))
async def post_log(run_id: RunId, chunk: LogChunk, core: CoreDep, changes: ChangesDep,
                   who: RunnerDep) -> LogAck:
    """Append log bytes at `offset` (409 `offset_mismatch` with the server's length)."""
    ack = await run_in_threadpool(runners.post_log, core, who, run_id, chunk)
    await changes.notify()
    return ack


@router.post("/runs/{run_id:run_id}/finish", response_model=RunInfo,
             responses=errors(403, 404, 409, body=True))
async def finish(run_id: RunId, req: FinishRequest, core: CoreDep, notifier: NotifierDep,
                 changes: ChangesDep, who: RunnerDep) -> RunInfo:
    """Hand the run back: its final status, or AwaitingTrigger to release it until a trigger."""
    info, requeued = await run_in_threadpool(runners.finish, core, who, run_id, req)
    if requeued:  # or, for a task's lease: its dependents were queued, or the run ended
        await notifier.notify()
    await changes.notify()
    return info
