"""Typed API errors and the exception handlers that turn every failure into a JSON `ErrorBody`."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("ferry.server")


class ApiError(Exception):
    """An answer with a 4xx status and an `ErrorBody` (code, message and where to go on)."""

    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.extra = {k: v for k, v in extra.items() if v is not None}

    def body(self) -> dict[str, Any]:
        """The JSON body of the answer."""
        return {"error": self.error, "message": self.message, **self.extra}


def not_found(what: str, ident: str) -> ApiError:
    """404 for an unknown id or name."""
    return ApiError(404, "not_found", f"unknown {what} '{ident}'")


def bad_request(message: str, error: str = "bad_request") -> ApiError:
    """400 for a request that is well-formed JSON but names something unacceptable."""
    return ApiError(400, error, message)


def lease_lost(run_id: str, why: str) -> ApiError:
    """409: the caller's lease on the run is no longer valid (fencing)."""
    return ApiError(409, "lease_lost", f"run {run_id}: {why}")


def error_response(status: int, error: str, message: str, **extra: Any) -> JSONResponse:
    """A JSON error answer outside the exception path (middleware)."""
    return JSONResponse(ApiError(status, error, message, **extra).body(), status_code=status)


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        ctx = first.get("ctx") or {}
        return error_response(400, "malformed_json",
                              f"request body is not valid JSON: {ctx.get('error', 'parse error')}")
    problems = [{"path": _where(e.get("loc", ())), "message": str(e.get("msg", ""))}
                for e in errors]
    first = problems[0] if problems else {"path": "body", "message": "invalid"}
    return error_response(422, "invalid_request",
                          f"{first['path']}: {first['message']}"
                          + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                          problems=problems)


def _path_regex(template: str, item: dict[str, Any]) -> re.Pattern[str]:
    """A regex for an OpenAPI path template, each parameter by its declared pattern."""
    patterns: dict[str, str] = {}
    for op in item.values():
        for param in op.get("parameters", []):
            if param.get("in") == "path":
                declared = str(param.get("schema", {}).get("pattern") or "[^/]+")
                patterns[param["name"]] = declared.removeprefix("^").removesuffix("$")
    parts = re.split(r"\{([^}]+)\}", template)
    regex = "".join(re.escape(part) if i % 2 == 0 else f"(?:{patterns.get(part, '[^/]+')})"
                    for i, part in enumerate(parts))
    return re.compile(regex)


def _allowed(request: Request) -> str:
    """The methods the OpenAPI document declares for this path (the router names only the
    first route it matched, and matches '/runs/claim' as '/runs/{run_id}')."""
    state = request.app.state
    table = getattr(state, "allow_table", None)
    if table is None:
        paths = request.app.openapi().get("paths", {})
        table = [(_path_regex(t, item), sorted(m.upper() for m in item))
                 for t, item in paths.items()]
        state.allow_table = table
    path = request.scope.get("path", "")
    return ", ".join(sorted({m for regex, methods in table if regex.fullmatch(path)
                             for m in methods}))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
    response = error_response(exc.status_code, codes.get(exc.status_code, "http_error"),
                              str(exc.detail))
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:
        response.headers["Allow"] = _allowed(request)
    return response


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("internal error: %s: %s", type(exc).__name__, exc)
    return error_response(500, "internal", "internal server error")


def install(app: FastAPI) -> None:
    """Register the handlers: every error the app produces is an `ErrorBody`."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
