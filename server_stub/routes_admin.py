"""HTTP routes of runner management and the audit trail (admin token): list runners, revoke a
runner's token, drain a runner or let it claim again, read who did what."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from runner.api.protocol import AuditList, RunnerInfo, RunnerList
from server_stub import runner_admin
from server_stub.admin_store import API_ACTOR
from server_stub.deps import AdminDep, ChangesDep, CoreDep, NotifierDep, errors
from server_stub.params import RunId, RunnerId

router = APIRouter()

@router.get("/runners", response_model=RunnerList, responses=errors(403))
async def list_runners(core: CoreDep, _: AdminDep) -> RunnerList:
    """Every registered runner: labels, last contact, online, version, drain, current runs."""
    return RunnerList(runners=await run_in_threadpool(runner_admin.list_runners, core))


@router.post("/runners/{runner_id:runner_id}/revoke", response_model=RunnerInfo,
             responses=errors(403, 404, 409))
async def revoke_runner(runner_id: RunnerId, core: CoreDep, notifier: NotifierDep,
                        changes: ChangesDep, _: AdminDep) -> RunnerInfo:
    """Revoke the runner's token: its next request answers 401 (its daemon exits 6); runs it
    held go back to the queue."""
    info = await run_in_threadpool(runner_admin.revoke, core, runner_id, API_ACTOR)
    await notifier.notify()  # its waiting claim is answered 401 now, not when the hold ends
    await changes.notify()
    return info


@router.post("/runners/{runner_id:runner_id}/drain", response_model=RunnerInfo,
             responses=errors(403, 404, 409))
async def drain_runner(runner_id: RunnerId, core: CoreDep, notifier: NotifierDep,
                       changes: ChangesDep, _: AdminDep) -> RunnerInfo:
    """Drain the runner: its claims answer 409 `runner_draining` (its daemon finishes the
    runs it has and exits 0)."""
    info = await run_in_threadpool(runner_admin.drain, core, runner_id, API_ACTOR, True)
    await notifier.notify()
    await changes.notify()
    return info


@router.delete("/runners/{runner_id:runner_id}/drain", response_model=RunnerInfo,
               responses=errors(403, 404, 409))
async def undrain_runner(runner_id: RunnerId, core: CoreDep, changes: ChangesDep,
                         _: AdminDep) -> RunnerInfo:
    """Let a drained runner claim runs again."""
    info = await run_in_threadpool(runner_admin.drain, core, runner_id, API_ACTOR, False)
    await changes.notify()
    return info


@router.get("/runners/{runner_id:runner_id}/audit", response_model=AuditList,
            responses=errors(403, 404))
async def runner_audit(runner_id: RunnerId, core: CoreDep, _: AdminDep) -> AuditList:
    """Who revoked or drained the runner, and when."""
    entries = await run_in_threadpool(runner_admin.audit_entries, core, runner_id=runner_id)
    return AuditList(entries=entries)


@router.get("/runs/{run_id:run_id}/audit", response_model=AuditList, responses=errors(403, 404))
async def run_audit(run_id: RunId, core: CoreDep, _: AdminDep) -> AuditList:
    """Who created, canceled, triggered or re-ran the run, and when."""
    entries = await run_in_threadpool(runner_admin.audit_entries, core, run_id=run_id)
    return AuditList(entries=entries)
