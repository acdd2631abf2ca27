"""The dashboard's pages (GET): sign-in, runs, a run (tree, graph, log, history, audit), a task's
log download, runners, a runner, the new-run form. Each needs a session (`current`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from server_stub.core import Core
from server_stub.params import RunId, RunnerId, TaskId
from server_stub.web import data, forms, render, views
from server_stub.web.session import (
    SIGNIN_COOKIE,
    Session,
    current,
    local_path,
    set_cookie,
)

router = APIRouter(include_in_schema=False)

LOG_SHOWN = 512 * 1024
"""The tail of a task's log the page shows at first (the download has all of it)."""


def core_of(request: Request) -> Core:
    """The server's state."""
    core: Core = request.app.state.core
    return core


@router.get("/")
async def home() -> Response:
    """The dashboard starts at the runs."""
    return RedirectResponse("/runs", status_code=303)


@router.get("/sign-in")
async def sign_in_form(request: Request, next: Annotated[str, Query(max_length=2000)] = "/runs",
                       ) -> Response:
    """The sign-in form; a pre-session cookie protects it from cross-site posts."""
    import secrets

    nonce = secrets.token_urlsafe(24)
    response = render.page("sign_in.html", next=local_path(next), nonce=nonce, error="",
                           session=None)
    set_cookie(response, request, SIGNIN_COOKIE, nonce, max_age=3600)
    return response


@router.get("/runs")
async def runs_list(request: Request, status: Annotated[str, Query(max_length=40)] = "",
                    repo: Annotated[str, Query(max_length=200)] = "",
                    page: Annotated[int, Query(ge=1, le=10**6)] = 1) -> Response:
    """Runs, most recent first, filtered by status and repository, 50 a page; live."""
    session = await current(request)
    listing = await run_in_threadpool(data.runs_page, core_of(request), status, repo, page)
    return render.page("runs.html", session=session, listing=listing,
                       statuses=data.STATUSES, views=views)


@router.get("/runs/{run_id:run_id}")
async def run_page(request: Request, run_id: RunId,
                   task: Annotated[str, Query(max_length=100)] = "") -> Response:
    """A run: header, actions, graph, task tree, the chosen task's log, history, audit; live."""
    session = await current(request)
    return await run_response(request, session, run_id, task)


async def run_response(request: Request, session: Session, run_id: str, task: str,
                       error: str = "", status: int = 200) -> Response:
    """The run page (also answered, with `error`, when an action on it was refused)."""
    core = core_of(request)
    view = await run_in_threadpool(data.run_view, core, run_id)
    tree = views.task_tree(view.doc)
    ids = {row.id for row in tree if not row.master}
    chosen = task if task in ids else ""
    task = chosen or views.auto_task(tree)  # none chosen: follow the running task
    log_html, offset, cut = "", 0, 0
    if task:
        size = await run_in_threadpool(core.log_size, run_id, task)
        start = max(0, size - LOG_SHOWN)
        raw = await run_in_threadpool(core.read_log, run_id, task, start)
        from server_stub.web.ansi import AnsiHtml

        log_html, offset, cut = AnsiHtml().feed(raw), start + len(raw), start
    return render.page("run.html", status=status, session=session, view=view, tree=tree,
                       views=views, task=task, chosen=chosen, log_html=log_html,
                       log_offset=offset,
                       log_cut=cut, error=error,
                       graph=views.graph(view.doc, f"/runs/{run_id}"))


@router.get("/runs/{run_id:run_id}/tasks/{task_id:task_id}/log.txt")
async def log_download(request: Request, run_id: RunId, task_id: TaskId) -> Response:
    """A task's whole log as a file (ANSI codes as they are)."""
    await current(request)
    core = core_of(request)
    await run_in_threadpool(data.run_marks, core, run_id)  # 404 for an unknown run
    raw = await run_in_threadpool(core.read_log, run_id, task_id, 0)
    return Response(raw, media_type="text/plain; charset=utf-8", headers={
        **render.HEADERS,
        "Content-Disposition": f'attachment; filename="{run_id[:8]}-{task_id}.log"'})


@router.get("/runners")
async def runners_list(request: Request) -> Response:
    """Every runner: state, version, labels, current runs, last contact; live."""
    session = await current(request)
    found = await run_in_threadpool(data.runners, core_of(request))
    return render.page("runners.html", session=session, runners=found, error="")


@router.get("/runners/{runner_id:runner_id}")
async def runner_page(request: Request, runner_id: RunnerId) -> Response:
    """One runner, its runs and the admin's actions on it."""
    session = await current(request)
    found = await run_in_threadpool(data.runner, core_of(request), runner_id)
    return render.page("runner.html", session=session, runner=found, error="")


@router.get("/new")
async def new_run_form(request: Request, repo: Annotated[str, Query(max_length=200)] = "",
                       ref: Annotated[str, Query(max_length=400)] = "main",
                       workflow_path: Annotated[str, Query(max_length=1000)] = "") -> Response:
    """Submit a run: repository, ref and workflow path, then the workflow's declared params
    at that ref as a form."""
    session = await current(request)
    core = core_of(request)
    form = await run_in_threadpool(forms.load, core, repo, ref, workflow_path)
    repos = await run_in_threadpool(data.repositories, core)
    return render.page("new_run.html", status=400 if form.error else 200, session=session,
                       form=form, repos=repos)
