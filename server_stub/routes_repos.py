"""HTTP routes serving repository contents to runners and users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from fastapi.concurrency import run_in_threadpool

from runner.api.protocol import REF_PATTERN, REPO_PATH_PATTERN, REPO_PATTERN
from server_stub.deps import CoreDep, ReaderDep, errors

router = APIRouter()

Repo = Annotated[str, Path(pattern=REPO_PATTERN)]
Commit = Annotated[str, Path(pattern=REF_PATTERN, description="a commit SHA or any ref")]
FilePath = Annotated[str, Path(pattern=REPO_PATH_PATTERN, max_length=1000)]


@router.get("/repos/{repo}/blob/{commit}/{path:path}",
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "the file's bytes"}, **errors(400, 403, 404)})
async def blob(repo: Repo, commit: Commit, path: FilePath, core: CoreDep, _: ReaderDep) -> Response:
    """A file of the repository at a commit (or any ref)."""
    data = await run_in_threadpool(core.repos.blob, repo, commit, path)
    return Response(data, media_type="application/octet-stream")


@router.get("/repos/{repo}/archive/{commit}",
            responses={200: {"content": {"application/gzip": {}},
                             "description": "tar.gz of the tree"}, **errors(400, 403, 404)})
async def archive(repo: Repo, commit: Commit, core: CoreDep, _: ReaderDep) -> Response:
    """The repository's tree at a commit as tar.gz (the runner's workspace)."""
    data = await run_in_threadpool(core.repos.archive, repo, commit)
    return Response(data, media_type="application/gzip")
