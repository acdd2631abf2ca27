"""The web dashboard served by `ferry-server` itself: server-rendered pages (Jinja2), a little
plain JavaScript, live updates over Server-Sent Events, sign-in with the admin token.

`install(app)` adds its routes (outside `/api/v1`, not in the OpenAPI document), its static
files (`/static`), and the handlers that turn "no session" into a redirect to the sign-in form
and a missing CSRF token into 403.
"""

from __future__ import annotations

import inspect
import time

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.api.protocol import API_PREFIX
from server_stub.errors import ApiError
from server_stub.web import actions, live, pages, render
from server_stub.web.session import CsrfRefused, SignInRequired, sign_in_url


async def _sign_in(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    if request.url.path.endswith("/events") or request.method != "GET":
        return PlainTextResponse("sign in first", status_code=401, headers=render.HEADERS)
    return RedirectResponse(sign_in_url(exc.next_url), status_code=303)


async def _csrf(request: Request, exc: Exception) -> Response:
    return render.page("error.html", status=403, session=None, title="Refused",
                       message="This form was not sent from a page of this dashboard (its "
                               "CSRF token is missing or wrong). Reload the page and try "
                               "again.")


def _html_errors(app: FastAPI) -> None:
    """API errors on dashboard pages (an unknown run, ...) as an HTML page; JSON elsewhere."""
    json_handler = app.exception_handlers[ApiError]

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        if request.url.path.startswith(API_PREFIX):
            answer = json_handler(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        return render.page("error.html", status=exc.status, session=None,
                           title="Not found" if exc.status == 404 else "Error",
                           message=exc.message)

    app.add_exception_handler(ApiError, handler)


class ServerTiming:
    """`Server-Timing: app;dur=MS` on the dashboard's pages: the time the server spent making
    the answer, what `bench/dashboard.py` measures (event streams and the API are left alone)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path.startswith(("/api/", "/static/")) \
                or path.endswith("/events"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - started) * 1000
                message = {**message, "headers": [*message.get("headers", []), (
                    b"server-timing", f"app;dur={took:.2f}".encode())]}
            await send(message)

        await self.app(scope, receive, timed)


def install(app: FastAPI) -> None:
    """Add the dashboard to the control plane's app."""
    app.add_middleware(ServerTiming)
    app.add_exception_handler(SignInRequired, _sign_in)
    app.add_exception_handler(CsrfRefused, _csrf)
    _html_errors(app)
    for module in (live, actions, pages):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=render.STATIC), name="static")
