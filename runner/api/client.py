"""The control-plane HTTP client: one method per endpoint, typed answers, typed errors.

The client never sleeps and never retries: callers decide, through the one rule `is_transient`
and the `retrying` helper in `runner.api.retry`.
The bearer token lives in the session headers only; it never appears in a message or a repr.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from pydantic import BaseModel, ValidationError

from runner import __version__
from runner.api.protocol import (
    API_PREFIX,
    MAX_CLAIM_WAIT,
    AuditEntry,
    AuditList,
    ClaimRequest,
    ClaimResponse,
    CreateRunRequest,
    DiffAck,
    DiffBatch,
    ErrorBody,
    FinishRequest,
    HeartbeatResponse,
    LeaseRequest,
    LogAck,
    LogChunk,
    RegisterRequest,
    RegisterResponse,
    ReportRunRequest,
    RunInfo,
    RunList,
    RunnerInfo,
    RunnerList,
    SecretInfo,
    SecretList,
    SecretValue,
)
from runner.errors import (
    AuthError,
    Conflict,
    ControlPlaneError,
    LeaseLost,
    PermanentError,
    TransientError,
)

M = TypeVar("M", bound=BaseModel)

DEFAULT_TIMEOUT = 30.0
USER_AGENT = f"ferry/{__version__}"
"""What every request says it is: the server shows runners' versions from it."""
_CLAIM_MARGIN = 10.0  # the server holds a claim up to `wait` seconds; allow for the answer


class ControlClient:
    """Talks protocol v1 to one control plane with one token."""

    def __init__(self, base_url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT,
                 session: requests.Session | None = None) -> None:
        base = base_url.rstrip("/")
        if base.endswith(API_PREFIX):
            base = base[: -len(API_PREFIX)]
        self.base_url = base
        self.display_url = display_url(base)
        self.timeout = timeout
        self._session = session or requests.Session()
        self._auth = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}

    def __repr__(self) -> str:
        return f"ControlClient({self.display_url!r})"

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._session.close()

    # -- runners and runs -------------------------------------------------------------------

    def register(self, name: str, labels: Sequence[str] = ()) -> RegisterResponse:
        """Register a runner (the client's token is the registration token)."""
        body = RegisterRequest(name=name, labels=list(labels))
        return self._model("POST", "/runners/register", RegisterResponse, body)

    def create_run(self, request: CreateRunRequest) -> RunInfo:
        """Queue a run of a workflow at a ref (admin token)."""
        return self._model("POST", "/runs", RunInfo, request)

    def report_run(self, document: dict[str, Any]) -> RunInfo:
        """Create on the server a run executed outside the queue (`ferry run` with backend api);
        idempotent by the document's id (200 when the server already has it)."""
        return self._model("POST", "/runs/report", RunInfo, ReportRunRequest(run=document))

    def list_runs(self, *, status: str | None = None, repo: str | None = None,
                  limit: int | None = None) -> list[RunInfo]:
        """Runs the server knows, most recent first."""
        params = {k: v for k, v in (("status", status), ("repo", repo), ("limit", limit))
                  if v is not None}
        return self._model("GET", "/runs", RunList, params=params).runs

    def get_run(self, run_id: str, *, history: bool = False) -> dict[str, Any]:
        """The materialized run document; with `history`, plus a `history` key: every diff
        applied, in order (`writer`, `seq`, `ops`, `ts`)."""
        params = {"history": "true"} if history else None
        data = self._json("GET", f"/runs/{_seg(run_id)}", params=params)
        if not isinstance(data, dict):
            raise PermanentError(f"GET /runs/{run_id}: answer is not a JSON object")
        if history and not isinstance(data.get("history"), list):
            raise PermanentError(f"GET /runs/{run_id}?history=true: answer has no history list")
        return data

    def claim(self, labels: Sequence[str] = (), *, capacity: int = 1,
              wait: float = MAX_CLAIM_WAIT, tasks: bool = False) -> ClaimResponse | None:
        """Long-poll for a run (with `tasks`, also single tasks of distributed runs); None when
        nothing matched before the server's hold ended."""
        # `tasks` only when asked: a server from before distributed runs refuses unknown fields
        body = ClaimRequest(labels=list(labels), capacity=capacity, wait=wait,
                            tasks=True if tasks else None)
        resp = self._send("POST", "/runs/claim", body, timeout=wait + _CLAIM_MARGIN)
        if resp.status_code == 204:
            return None
        return _parse(ClaimResponse, resp, "POST /runs/claim")

    def start(self, run_id: str, lease: str) -> HeartbeatResponse:
        """Confirm a claim."""
        return self._model("POST", f"/runs/{_seg(run_id)}/start", HeartbeatResponse,
                           LeaseRequest(lease=lease))

    def heartbeat(self, run_id: str, lease: str) -> HeartbeatResponse:
        """Renew a lease; the answer says whether a cancel was requested."""
        return self._model("POST", f"/runs/{_seg(run_id)}/heartbeat", HeartbeatResponse,
                           LeaseRequest(lease=lease))

    def send_diffs(self, run_id: str, batch: DiffBatch) -> DiffAck:
        """Deliver diffs in order (idempotent per writer and seq)."""
        return self._model("POST", f"/runs/{_seg(run_id)}/diffs", DiffAck, batch)

    def send_log(self, run_id: str, chunk: LogChunk) -> LogAck:
        """Deliver log bytes of a task at an offset (idempotent)."""
        return self._model("POST", f"/runs/{_seg(run_id)}/logs", LogAck, chunk)

    def finish(self, run_id: str, lease: str | None, status: str) -> RunInfo:
        """Hand a run back: its final status, or AwaitingTrigger to release it (external runs
        reported with `report_run` have no lease)."""
        body = FinishRequest.model_validate({"lease": lease, "status": status})
        return self._model("POST", f"/runs/{_seg(run_id)}/finish", RunInfo, body)

    def cancel(self, run_id: str) -> RunInfo:
        """Request cancellation of a run."""
        return self._model("POST", f"/runs/{_seg(run_id)}/cancel", RunInfo)

    def trigger(self, run_id: str, task_id: str) -> RunInfo:
        """Trigger one AwaitingTrigger task (re-queues the run)."""
        return self._model("POST", f"/runs/{_seg(run_id)}/tasks/{_seg(task_id)}/trigger",
                           RunInfo)

    def trigger_all(self, run_id: str) -> RunInfo:
        """Trigger every AwaitingTrigger task of a run."""
        return self._model("POST", f"/runs/{_seg(run_id)}/trigger-all", RunInfo)

    def retry_failed(self, run_id: str) -> RunInfo:
        """Re-run a Failed run's failed and blocked tasks (re-queues it)."""
        return self._model("POST", f"/runs/{_seg(run_id)}/retry-failed", RunInfo)

    # -- bytes -------------------------------------------------------------------------------

    def read_log(self, run_id: str, task_id: str, offset: int = 0) -> bytes:
        """A task's log from byte `offset` on."""
        resp = self._send("GET", f"/runs/{_seg(run_id)}/logs/{_seg(task_id)}",
                          params={"offset": offset})
        return resp.content

    def get_patch(self, run_id: str, task_id: str | None = None) -> bytes:
        """The change the run (or one task of it) made to its workspace, as a patch."""
        params = {"task": task_id} if task_id else None
        return self._send("GET", f"/runs/{_seg(run_id)}/patch", params=params).content

    def get_blob(self, repo: str, commit: str, path: str) -> bytes:
        """A file of a repository at a commit."""
        url = f"/repos/{_seg(repo)}/blob/{_seg(commit)}/{quote(path.lstrip('/'), safe='/')}"
        return self._send("GET", url).content

    def get_archive(self, repo: str, commit: str, dest: Path) -> int:
        """Stream the tree at a commit (tar.gz) into `dest`; returns the byte count."""
        resp = self._send("GET", f"/repos/{_seg(repo)}/archive/{_seg(commit)}", stream=True)
        where = f"GET /repos/{repo}/archive/{commit}"
        total = 0
        try:
            with open(dest, "wb") as out:
                for block in resp.iter_content(chunk_size=1 << 16):
                    out.write(block)
                    total += len(block)
        except requests.RequestException as exc:
            raise TransientError(f"{where}: download interrupted: {type(exc).__name__}") from exc
        finally:
            resp.close()
        return total

    # -- runners and the audit trail (admin token) -------------------------------------------

    def list_runners(self) -> list[RunnerInfo]:
        """Every registered runner."""
        return self._model("GET", "/runners", RunnerList).runners

    def revoke_runner(self, runner_id: str) -> RunnerInfo:
        """Revoke a runner's token (its next request answers 401)."""
        return self._model("POST", f"/runners/{_seg(runner_id)}/revoke", RunnerInfo)

    def drain_runner(self, runner_id: str, drain: bool = True) -> RunnerInfo:
        """Drain a runner (it claims no more), or with `drain=False` let it claim again."""
        return self._model("POST" if drain else "DELETE", f"/runners/{_seg(runner_id)}/drain",
                           RunnerInfo)

    def run_audit(self, run_id: str) -> list[AuditEntry]:
        """Who did what to a run, and when."""
        return self._model("GET", f"/runs/{_seg(run_id)}/audit", AuditList).entries

    # -- secrets (admin token) ---------------------------------------------------------------

    def set_secret(self, name: str, value: str, repo: str | None = None) -> SecretInfo:
        """Create or replace a secret of `repo` (None: a global one)."""
        params = {"repo": repo} if repo else None
        return self._model("PUT", f"/secrets/{_seg(name)}", SecretInfo, SecretValue(value=value),
                           params=params)

    def list_secrets(self, repo: str | None = None) -> list[SecretInfo]:
        """The names of the secrets of `repo` (None: the global ones)."""
        params = {"repo": repo} if repo else None
        return self._model("GET", "/secrets", SecretList, params=params).secrets

    def delete_secret(self, name: str, repo: str | None = None) -> None:
        """Remove a secret; PermanentError 404 when there is none."""
        params = {"repo": repo} if repo else None
        self._send("DELETE", f"/secrets/{_seg(name)}", params=params).close()

    def _model(self, method: str, path: str, model: type[M], body: BaseModel | dict[str, Any]
               | None = None, params: dict[str, Any] | None = None) -> M:
        resp = self._send(method, path, body, params=params)
        return _parse(model, resp, f"{method} {path}")

    def _json(self, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
        resp = self._send(method, path, params=params)
        try:
            return resp.json()
        except ValueError as exc:
            raise PermanentError(f"{method} {path}: answer is not JSON", resp.status_code) from exc

    def _send(self, method: str, path: str, body: BaseModel | dict[str, Any] | None = None, *,
              params: dict[str, Any] | None = None, timeout: float | None = None,
              stream: bool = False) -> requests.Response:
        where = f"{method} {path}"
        data: bytes | None = None
        headers = dict(self._auth)
        if body is not None:
            payload = (body.model_dump(mode="json", exclude_none=True)
                       if isinstance(body, BaseModel) else body)
            data = json.dumps(payload, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        try:
            resp = self._session.request(method, self.base_url + API_PREFIX + path, data=data,
                                         params=params, headers=headers, stream=stream,
                                         timeout=timeout or self.timeout)
        except requests.Timeout as exc:
            raise TransientError(f"{where}: the control plane at {self.display_url} did not "
                                 f"answer within {timeout or self.timeout:g}s") from exc
        except requests.RequestException as exc:
            raise TransientError(f"{where}: {_describe(exc, self.display_url)}") from exc
        if resp.status_code >= 400:
            try:
                raise error_for(resp.status_code, resp.content, where)
            finally:
                resp.close()
        return resp


def error_for(status: int, content: bytes, where: str) -> ControlPlaneError:
    """The typed error for an HTTP error answer."""
    body: Any = None
    code, message = "", ""
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = content[:500].decode("utf-8", "replace")
    parsed: ErrorBody | None = None
    if isinstance(body, dict):
        try:
            parsed = ErrorBody.model_validate(body)
        except ValidationError:
            parsed = None
    if parsed is not None:
        code, message = parsed.error, parsed.message
    elif isinstance(body, dict) and isinstance(body.get("detail"), str):
        message = body["detail"]
    elif isinstance(body, str):
        message = body.strip().splitlines()[0] if body.strip() else ""
    text = f"{where}: HTTP {status}" + (f" {code}" if code else "") + (
        f": {message}" if message else "")
    if status >= 500 or status == 429:
        return TransientError(text)
    if status in (401, 403):
        return AuthError(text, status, body)
    if status == 409:
        if code == "lease_lost":
            return LeaseLost(text)
        return Conflict(text, status, body, code=code,
                        expected_seq=parsed.expected_seq if parsed else None,
                        offset=parsed.offset if parsed else None)
    return PermanentError(text, status, body)


def _parse(model: type[M], resp: requests.Response, where: str) -> M:
    try:
        return model.model_validate_json(resp.content)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise PermanentError(f"{where}: unexpected answer ({loc}: {first.get('msg')})",
                             resp.status_code) from exc


def _seg(value: str) -> str:
    return quote(value, safe="")


def display_url(url: str) -> str:
    """`url` without a user or password (what messages and logs may show)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _describe(exc: requests.RequestException, url: str) -> str:
    if isinstance(exc, requests.ConnectionError):
        why = "connection refused" if "Connection refused" in str(exc) else type(exc).__name__
        return f"cannot connect to the control plane at {url} ({why})"
    return f"{type(exc).__name__} talking to the control plane at {url}"
