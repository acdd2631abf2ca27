"""Live pages over Server-Sent Events: each stream waits on the server's change notifier (no
polling), re-renders its fragments when what it shows moved, and sends them; the page's script
swaps them in. A comment line every `KEEPALIVE` seconds keeps proxies from closing an idle
stream; the runners list is also re-rendered then (its "12s ago" and online ages with time;
running durations tick in the page's script).

    GET /runs/events?status=&repo=&page=     event `frag` {"id": "runs-body", "html": ...}
    GET /runs/{id}/events                     event `frag` for the header, actions, graph, tree,
                                              history and audit
    GET /runs/{id}/tasks/{task}/log/events?offset=N   event `log` (HTML to append), `end`
    GET /runners/events                       event `frag` {"id": "runners-body", ...}

Without a session a stream answers 401 (the page itself redirects to sign-in).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from runner.document import TERMINAL_RUN
from server_stub.notifier import Notifier
from server_stub.params import LogOffset, RunId, TaskId
from server_stub.web import data, render, views
from server_stub.web.ansi import AnsiHtml
from server_stub.web.pages import core_of
from server_stub.web.session import current

router = APIRouter(include_in_schema=False)

KEEPALIVE = 15.0
COALESCE = 0.2
"""Seconds to let a burst of changes settle before rendering (a run's diffs come in bursts)."""
LOG_CHUNK = 256 * 1024

Frags = dict[str, str | tuple[str, str]]
"""Fragment id -> its HTML, or (HTML, key): the page swaps a keyed fragment only when its key
changed (the log panel: only when the followed task changed, not at every re-render)."""


def _event(name: str, payload: object) -> str:
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"


def _changed(frags: Frags, sent: dict[str, str]) -> list[str]:
    """The events of the fragments whose HTML differs from what was sent (and remember it)."""
    out = []
    for frag_id, value in frags.items():
        html, key = value if isinstance(value, tuple) else (value, None)
        if sent.get(frag_id) != html:
            sent[frag_id] = html
            out.append(_event("frag", {"id": frag_id, "html": html,
                                       **({"key": key} if key is not None else {})}))
    return out


async def _stream(request: Request, marks: Callable[[], Awaitable[object]],
                  render_frags: Callable[[], Awaitable[Frags]],
                  refresh_on_keepalive: bool = False) -> AsyncIterator[str]:
    """Send every fragment once (whatever changed between the page and this stream's start is
    not missed), then wait for changes; when `marks()` moved, send the fragments that changed."""
    changes: Notifier = request.app.state.changes
    seen_marks: object = await marks()
    sent: dict[str, str] = {}
    yield "retry: 2000\n\n"
    for event in _changed(await render_frags(), sent):
        yield event
    while True:
        version = changes.version
        woke = await changes.wait(version, KEEPALIVE)
        if await request.is_disconnected():
            return
        if woke:
            await asyncio.sleep(COALESCE)
            now = await marks()
            if now == seen_marks:
                continue
            seen_marks = now
        elif not refresh_on_keepalive:
            yield ": keep-alive\n\n"
            continue
        for event in _changed(await render_frags(), sent):
            yield event
        if not woke:
            yield ": keep-alive\n\n"


def _sse(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers={
        **render.HEADERS, "X-Accel-Buffering": "no"})


@router.get("/runs/events")
async def runs_events(request: Request, status: Annotated[str, Query(max_length=40)] = "",
                      repo: Annotated[str, Query(max_length=200)] = "",
                      page: Annotated[int, Query(ge=1, le=10**6)] = 1) -> StreamingResponse:
    """The runs list, live."""
    session = await current(request)
    core = core_of(request)

    async def marks() -> object:
        return await run_in_threadpool(data.list_marks, core)

    async def frags() -> Frags:
        listing = await run_in_threadpool(data.runs_page, core, status, repo, page)
        return {"runs-body": render.fragment("_runs_rows.html", listing=listing, views=views,
                                             session=session),
                "runs-count": render.fragment("_runs_count.html", listing=listing)}

    return _sse(_stream(request, marks, frags))


@router.get("/runs/{run_id:run_id}/events")
async def run_events(request: Request, run_id: RunId) -> StreamingResponse:
    """A run's page, live."""
    session = await current(request)
    core = core_of(request)
    await run_in_threadpool(data.run_marks, core, run_id)

    async def marks() -> object:
        return await run_in_threadpool(data.run_marks, core, run_id)

    async def frags() -> Frags:
        view = await run_in_threadpool(data.run_view, core, run_id)
        tree = views.task_tree(view.doc)
        chosen = request.query_params.get("task", "")
        context = {"view": view, "tree": tree, "views": views, "session": session,
                   "task": chosen}
        out: Frags = {}
        if not chosen:  # the page follows the running task: a new one gets its log panel
            followed = views.auto_task(tree)
            out["run-log"] = (render.fragment("_run_log.html", **{
                **context, "task": followed, "log_html": "", "log_offset": 0, "log_cut": 0}),
                followed)
        return {**out, "run-head": render.fragment("_run_head.html", **context),
                "run-actions": render.fragment("_run_actions.html", **context),
                "run-graph": views.graph(view.doc, f"/runs/{run_id}"),
                "run-tree": render.fragment("_run_tree.html", **context),
                "run-history": render.fragment("_run_history.html", **context),
                "run-audit": render.fragment("_run_audit.html", **context)}

    return _sse(_stream(request, marks, frags))


@router.get("/runs/{run_id:run_id}/tasks/{task_id:task_id}/log/events")
async def log_events(request: Request, run_id: RunId, task_id: TaskId,
                     offset: LogOffset = 0) -> StreamingResponse:
    """A task's log from `offset`, as HTML, as it grows; `end` once the run has ended and
    everything was sent."""
    await current(request)
    core = core_of(request)
    await run_in_threadpool(data.run_marks, core, run_id)
    changes: Notifier = request.app.state.changes
    terminal = {s.value for s in TERMINAL_RUN}

    async def body() -> AsyncIterator[str]:
        converter = AnsiHtml()
        position = offset
        yield "retry: 2000\n\n"
        while True:
            version = changes.version
            size = await run_in_threadpool(core.log_size, run_id, task_id)
            while position < size:
                raw = await run_in_threadpool(core.read_log, run_id, task_id, position)
                raw = raw[:LOG_CHUNK]
                if not raw:
                    break
                position += len(raw)
                yield _event("log", {"html": converter.feed(raw), "offset": position})
            view = await run_in_threadpool(data.run_view_row, core, run_id)
            if view["status"] in terminal and view["queue"] in ("done", "external") \
                    and position >= await run_in_threadpool(core.log_size, run_id, task_id):
                yield _event("end", {"offset": position, "status": view["status"]})
                return
            if not await changes.wait(version, KEEPALIVE):
                yield ": keep-alive\n\n"
            if await request.is_disconnected():
                return

    return _sse(body())


@router.get("/runners/events")
async def runners_events(request: Request) -> StreamingResponse:
    """The runners list, live (and refreshed every `KEEPALIVE` seconds: contact ages)."""
    session = await current(request)
    core = core_of(request)

    async def marks() -> object:
        found = await run_in_threadpool(data.runners, core)
        return [(r["info"].model_dump_json()) for r in found]

    async def frags() -> Frags:
        found = await run_in_threadpool(data.runners, core)
        return {"runners-body": render.fragment("_runners_rows.html", runners=found,
                                                session=session)}

    return _sse(_stream(request, marks, frags, refresh_on_keepalive=True))
