"""Request dependencies: the shared state and the authenticated caller."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from runner.api.protocol import ErrorBody
from server_stub.auth import ADMIN, REGISTRATION, RUNNER, Caller, bearer
from server_stub.core import Core
from server_stub.notifier import Notifier

_scheme = HTTPBearer(auto_error=False, description="admin, registration or runner token")


def core_of(request: Request) -> Core:
    """The server's state."""
    core: Core = request.app.state.core
    return core


def notifier_of(request: Request) -> Notifier:
    """The claimers' wake-up."""
    notifier: Notifier = request.app.state.notifier
    return notifier


def changes_of(request: Request) -> Notifier:
    """Wakes the dashboard's live pages whenever a run or a runner changed."""
    changes: Notifier = request.app.state.changes
    return changes


async def caller(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None,
                                                    Depends(_scheme)]) -> Caller:
    """Who is calling; 401 without a valid bearer token."""
    token = creds.credentials if creds else bearer(request.headers.get("authorization"))
    return await run_in_threadpool(core_of(request).caller, token,
                                   request.headers.get("user-agent"))


async def admin(who: Annotated[Caller, Depends(caller)]) -> Caller:
    """Users' endpoints."""
    return who.require(ADMIN)


async def runner(who: Annotated[Caller, Depends(caller)]) -> Caller:
    """Runners' endpoints."""
    return who.require(RUNNER)


async def reader(who: Annotated[Caller, Depends(caller)]) -> Caller:
    """Read endpoints: users and runners."""
    return who.require(ADMIN, RUNNER)


async def registrar(who: Annotated[Caller, Depends(caller)]) -> Caller:
    """Registering runners: the registration token (or the admin's)."""
    return who.require(REGISTRATION, ADMIN)


def errors(*codes: int, body: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for error statuses: 401 and 422 always; with a request `body`
    also 400 (`malformed_json`) and 413 (a body, document or value over its limit)."""
    extra = {400, 413} if body else set()
    return {c: {"model": ErrorBody} for c in sorted({401, 422, *codes, *extra})}


CoreDep = Annotated[Core, Depends(core_of)]
NotifierDep = Annotated[Notifier, Depends(notifier_of)]
ChangesDep = Annotated[Notifier, Depends(changes_of)]
AdminDep = Annotated[Caller, Depends(admin)]
RunnerDep = Annotated[Caller, Depends(runner)]
ReaderDep = Annotated[Caller, Depends(reader)]
RegistrarDep = Annotated[Caller, Depends(registrar)]

