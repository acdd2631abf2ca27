"""HTTP routes of secrets (admin token): set, list (names only), remove. Values are never
answered; a run gets its repository's secrets in its claim."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from fastapi.concurrency import run_in_threadpool

from runner.api.protocol import REPO_PATTERN, SecretInfo, SecretList, SecretValue
from server_stub.core import Core
from server_stub.deps import AdminDep, CoreDep, errors
from server_stub.errors import bad_request

router = APIRouter()

_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_NAME = re.compile(_NAME_PATTERN)
# The patterns are declared in the OpenAPI document, and checked by `_check` (answering 400
# bad_name / bad_repo, as the other routes taking names do), not by FastAPI's validation (422).
Name = Annotated[str, Path(min_length=1, max_length=128,
                           json_schema_extra={"pattern": _NAME_PATTERN})]
Repo = Annotated[str | None, Query(min_length=1, max_length=200,
                                   description="the repository; none: a global secret",
                                   json_schema_extra={"pattern": REPO_PATTERN})]


def _check(core: Core, name: str | None, repo: str | None) -> None:
    if name is not None and not _NAME.match(name):
        raise bad_request(f"'{name[:60]}' is not a valid secret name (letters, digits and '_',"
                          " not starting with a digit)", "bad_name")
    if repo is not None:
        core.repos.locate(repo)  # 400 for a bad name, 404 for an unknown repository


def _put(core: Core, name: str, repo: str | None, value: str) -> SecretInfo:
    _check(core, name, repo)
    if len(value.strip()) < 4:
        raise bad_request("a secret value shorter than 4 characters is refused (it would mask "
                          "ordinary text)", "too_short")
    with core.tx() as conn:
        updated = core.secrets.put(conn, repo, name, value)
    return SecretInfo(name=name, repo=repo, updated_at=updated)


def _list(core: Core, repo: str | None) -> SecretList:
    _check(core, None, repo)
    with core.tx() as conn:
        names = core.secrets.names(conn, repo)
    return SecretList(secrets=[SecretInfo(name=n, repo=repo, updated_at=u) for n, u in names])


def _delete(core: Core, name: str, repo: str | None) -> None:
    _check(core, name, repo)
    with core.tx() as conn:
        core.secrets.delete(conn, repo, name)


@router.put("/secrets/{name}", response_model=SecretInfo,
            responses=errors(400, 403, 404, body=True))
async def put_secret(name: Name, body: SecretValue, core: CoreDep, _: AdminDep,
                     repo: Repo = None) -> SecretInfo:
    """Create or replace a secret of a repository (`?repo=`) or a global one; stored
    encrypted, never answered."""
    return await run_in_threadpool(_put, core, name, repo, body.value)


@router.get("/secrets", response_model=SecretList, responses=errors(400, 403, 404))
async def list_secrets(core: CoreDep, _: AdminDep, repo: Repo = None) -> SecretList:
    """The names of a repository's (or the global) secrets; never their values."""
    return await run_in_threadpool(_list, core, repo)


@router.delete("/secrets/{name}", status_code=204, responses=errors(400, 403, 404))
async def delete_secret(name: Name, core: CoreDep, _: AdminDep, repo: Repo = None) -> Response:
    """Remove a secret."""
    await run_in_threadpool(_delete, core, name, repo)
    return Response(status_code=204)
