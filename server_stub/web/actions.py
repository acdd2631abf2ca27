"""The dashboard's actions (POST, each with the session's CSRF token): sign in and out, cancel,
trigger one task or all, re-run failed tasks, submit a run, revoke and drain runners. Each is
the same store operation the API runs, audited with the session as who."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from runner.api.protocol import CreateRunRequest
from server_stub import runner_admin, users
from server_stub.errors import ApiError
from server_stub.notifier import Notifier
from server_stub.params import RunId, RunnerId, TaskId
from server_stub.web import data, forms, render
from server_stub.web.pages import core_of, run_response
from server_stub.web.session import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    SIGNIN_COOKIE,
    Session,
    check_csrf,
    client_address,
    current,
    local_path,
    set_cookie,
    sign_in,
    sign_out,
)

router = APIRouter(include_in_schema=False)


async def _form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body (the last value of a repeated field)."""
    body = await request.body()
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


async def _guarded(request: Request) -> tuple[Session, dict[str, str]]:
    """The session and the posted form, once the CSRF token checked out."""
    session = await current(request)
    form = await _form(request)
    check_csrf(session, form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER))
    return session, form


async def _wake(request: Request, *, queue: bool) -> None:
    changes: Notifier = request.app.state.changes
    if queue:
        notifier: Notifier = request.app.state.notifier
        await notifier.notify()
    await changes.notify()


def _back(path: str) -> Response:
    return RedirectResponse(path, status_code=303)


@router.post("/sign-in")
async def do_sign_in(request: Request) -> Response:
    """Exchange the admin token for a session cookie."""
    form = await _form(request)
    nonce = request.cookies.get(SIGNIN_COOKIE, "")
    next_url = local_path(form.get("next"))
    if not nonce or not hmac.compare_digest(nonce, form.get("nonce", "")):
        return render.page("sign_in.html", status=403, next=next_url, nonce="", session=None,
                           error="This sign-in form expired or came from another site: "
                                 "reload the page and sign in again.")
    try:
        session_id = await run_in_threadpool(sign_in, core_of(request),
                                             form.get("token", "").strip(),
                                             client_address(request))
    except ApiError as exc:
        return render.page("sign_in.html", status=401, next=next_url, nonce=nonce,
                           session=None, error=f"Sign-in refused: {exc.message}.")
    response = _back(next_url)
    set_cookie(response, request, COOKIE, session_id, max_age=int(
        core_of(request).config.session_ttl))
    response.delete_cookie(SIGNIN_COOKIE, path="/")
    return response


@router.post("/sign-out")
async def do_sign_out(request: Request) -> Response:
    """End the session."""
    await _guarded(request)
    await run_in_threadpool(sign_out, core_of(request), request.cookies.get(COOKIE, ""))
    response = _back("/sign-in")
    response.delete_cookie(COOKIE, path="/")
    return response


async def _run_action(request: Request, run_id: str,
                      action: Callable[[Session], Any], queue: bool) -> Response:
    session, _ = await _guarded(request)
    try:
        await run_in_threadpool(action, session)
    except ApiError as exc:
        return await run_response(request, session, run_id, "", error=exc.message,
                                  status=exc.status)
    await _wake(request, queue=queue)
    return _back(f"/runs/{run_id}")


@router.post("/runs/{run_id:run_id}/cancel")
async def cancel(request: Request, run_id: RunId) -> Response:
    """Cancel the run (at once when nobody runs it, else at its runner's next heartbeat)."""
    core = core_of(request)
    return await _run_action(request, run_id, lambda s: users.cancel(core, run_id, s.actor),
                             queue=False)


@router.post("/runs/{run_id:run_id}/trigger-all")
async def trigger_all(request: Request, run_id: RunId) -> Response:
    """Trigger every task awaiting a trigger."""
    core = core_of(request)
    return await _run_action(request, run_id,
                             lambda s: users.trigger(core, run_id, None, s.actor), queue=True)


@router.post("/runs/{run_id:run_id}/tasks/{task_id:task_id}/trigger")
async def trigger(request: Request, run_id: RunId, task_id: TaskId) -> Response:
    """Trigger one task."""
    core = core_of(request)
    return await _run_action(request, run_id,
                             lambda s: users.trigger(core, run_id, [task_id], s.actor),
                             queue=True)


@router.post("/runs/{run_id:run_id}/retry-failed")
async def retry_failed(request: Request, run_id: RunId) -> Response:
    """Run a Failed run's failed and blocked tasks again (its completed ones are kept)."""
    core = core_of(request)
    return await _run_action(request, run_id,
                             lambda s: users.retry_failed(core, run_id, s.actor), queue=True)


@router.post("/new")
async def submit(request: Request) -> Response:
    """Queue a run from the form; back to the form with the reason when it is refused."""
    session, posted = await _guarded(request)
    core = core_of(request)
    form = await run_in_threadpool(forms.load, core, posted.get("repo", ""),
                                   posted.get("ref", "main"), posted.get("workflow_path", ""),
                                   {k.removeprefix("param."): v for k, v in posted.items()
                                    if k.startswith("param.")})
    form.labels = posted.get("labels", "")
    form.distributed = posted.get("distributed") == "true"
    repos = await run_in_threadpool(data.repositories, core)
    if not form.loaded:
        return render.page("new_run.html", status=400, session=session, form=form, repos=repos)
    params = forms.params_from(form, posted)
    params.update(forms.extra_params(posted.get("extra", "")))
    try:
        req = CreateRunRequest(repo=form.repo, ref=form.ref, workflow_path=form.workflow_path,
                               params=params, labels=[x.strip() for x in form.labels.split(",")
                                                      if x.strip()],
                               distributed=form.distributed or None)
        info = await run_in_threadpool(users.create_run, core, req, session.actor)
    except (ApiError, ValidationError) as exc:
        form.error = exc.message if isinstance(exc, ApiError) else str(exc.errors()[0]["msg"])
        problems = exc.extra.get("problems") if isinstance(exc, ApiError) else None
        form.problems = [str(p.get("rendered") or p.get("message")) for p in problems or []]
        return render.page("new_run.html", status=422, session=session, form=form, repos=repos)
    await _wake(request, queue=True)
    return _back(f"/runs/{quote(info.id)}")


async def _runner_action(request: Request, runner_id: str,
                         action: Callable[[Session], Any]) -> Response:
    session, form = await _guarded(request)
    try:
        await run_in_threadpool(action, session)
    except ApiError as exc:
        found = await run_in_threadpool(data.runner, core_of(request), runner_id)
        return render.page("runner.html", status=exc.status, session=session, runner=found,
                           error=exc.message)
    await _wake(request, queue=True)  # a waiting claim of that runner answers at once
    return _back(local_path(form.get("next") or f"/runners/{runner_id}"))


@router.post("/runners/{runner_id:runner_id}/revoke")
async def revoke(request: Request, runner_id: RunnerId) -> Response:
    """Revoke the runner's token."""
    core = core_of(request)
    return await _runner_action(request, runner_id,
                                lambda s: runner_admin.revoke(core, runner_id, s.actor))


@router.post("/runners/{runner_id:runner_id}/drain")
async def drain(request: Request, runner_id: RunnerId) -> Response:
    """Drain the runner (it claims no more)."""
    core = core_of(request)
    return await _runner_action(request, runner_id,
                                lambda s: runner_admin.drain(core, runner_id, s.actor, True))


@router.post("/runners/{runner_id:runner_id}/undrain")
async def undrain(request: Request, runner_id: RunnerId) -> Response:
    """Let a drained runner claim again."""
    core = core_of(request)
    return await _runner_action(request, runner_id,
                                lambda s: runner_admin.drain(core, runner_id, s.actor, False))
