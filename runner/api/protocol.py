"""Control-plane protocol v1: the request and response bodies, shared by the runner's client and
the reference server (`server_stub`), which derives its OpenAPI document from them.

All endpoints live under `/api/v1` and take `Authorization: Bearer <token>`:

    POST /runners/register            RegisterRequest -> RegisterResponse   (registration token)
    POST /runs                        CreateRunRequest -> RunInfo (201)      (admin token)
    GET  /runs?status=&repo=&limit=   -> RunList
    GET  /runs/{id}                   -> the materialized run document (JSON object)
    POST /runs/claim                  ClaimRequest -> ClaimResponse (200) | 204 (runner token)
    POST /runs/{id}/start             LeaseRequest -> HeartbeatResponse     confirm a claim
    POST /runs/{id}/heartbeat         LeaseRequest -> HeartbeatResponse
    POST /runs/{id}/diffs             DiffBatch -> DiffAck
    POST /runs/{id}/logs              LogChunk -> LogAck
    POST /runs/{id}/finish            FinishRequest -> RunInfo
    POST /runs/{id}/cancel            -> RunInfo
    POST /runs/{id}/tasks/{task}/trigger  -> RunInfo
    POST /runs/{id}/trigger-all       -> RunInfo
    GET  /runs/{id}/logs/{task}?offset=   -> bytes (text/plain)
    GET  /repos/{repo}/blob/{commit}/{path}  -> bytes
    GET  /repos/{repo}/archive/{commit}      -> tar.gz
    POST /runs/report                 ReportRunRequest -> RunInfo (201, 200 if known) (runner token)

Distributed runs (`CreateRunRequest.distributed`): the server plans the run itself (the engine's
pure scheduler) and leases its ready tasks one by one to runners that claim with `tasks: true`;
the claim then names the task (`ClaimResponse.task`) and its lease is the task's: start,
heartbeat, diffs (touching only that task and the workflow state), logs and finish (the task's
end) carry it. Queue `distributed` while its tasks are handed out.
    PUT  /secrets/{name}?repo=        SecretValue -> SecretInfo              (admin token)
    GET  /secrets?repo=               -> SecretList (names only, never values)
    DELETE /secrets/{name}?repo=      -> 204
    GET  /runners                     -> RunnerList                          (admin token)
    POST /runners/{id}/revoke         -> RunnerInfo   its token answers 401 from now on
    POST /runners/{id}/drain          -> RunnerInfo   its claims answer 409 runner_draining
    DELETE /runners/{id}/drain        -> RunnerInfo   it may claim again
    GET  /runs/{id}/audit, /runners/{id}/audit  -> AuditList   who did what, when

`POST /runs/report` creates a run that a runner executes outside the queue (`ferry run` with the
`api` backend): queue `external`, owned by that runner; its diffs, logs and finish need that
runner's token and no lease. Additions since the first draft (compatible, server owner):
`ReportRunRequest`, queue `external`, `RunInfo.name`, `ErrorBody.applied`, `FinishRequest.lease`
optional (external runs have none).

Run ids are UUIDs (`RUN_ID_PATTERN`), task ids match `TASK_ID_PATTERN`, on every route and in
every body; sizes are bounded by `runner.limits` (413 naming the limit).

Errors are JSON `ErrorBody` with a 4xx/5xx status. 409 bodies say how to continue:
`lease_lost` (stop the run's work, keep the journal), `seq_gap` (`expected_seq`),
`offset_mismatch` (`offset`), `runner_draining` (stop claiming: finish the running runs, then
exit).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    field_serializer,
)

from runner.limits import MAX_DIFFS_PER_BATCH, MAX_LOG_OFFSET

API_PREFIX = "/api/v1"
MAX_CLAIM_WAIT = 30.0
RUN_ID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
"""Run ids: a UUID in its canonical lower-case form (what `runner.document.new_id` makes)."""
TASK_ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
"""Task ids (UUIDs in run documents; the protocol accepts this wider, path-safe pattern)."""
REPO_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
"""Repository names (a directory under the server's `--repos`)."""
REF_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._/^~-]{0,399}$"
"""Refs: a branch, tag or commit SHA (no spaces, no '@{', no ':')."""
_SEGMENT = r"(?:[^/\\\x00.][^/\\\x00]*|\.[^/\\\x00.][^/\\\x00]*|\.\.[^/\\\x00]+)"
REPO_PATH_PATTERN = f"^{_SEGMENT}(?:/{_SEGMENT})*$"
"""A file path inside a repository: relative, '/'-separated, no '.', '..' or empty parts, no
backslash or NUL."""
BASE64_PATTERN = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
"""Standard base64 with padding, as `LogChunk.data` carries it."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _json_number(value: Any) -> Any:
    """Numbers must be JSON numbers, as the schema says: `false` is not 0, "5" is not 5 (pydantic
    would take both); 5.0 is the integer 5 (JSON Schema agrees)."""
    if isinstance(value, (bool, str, bytes)):
        raise ValueError("must be a JSON number")
    return value


JsonInt = Annotated[int, BeforeValidator(_json_number)]
JsonFloat = Annotated[float, BeforeValidator(_json_number)]
JsonBool = StrictBool
"""A JSON boolean: `0` and `"yes"` are refused (pydantic would take them for false and true)."""


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str = Field(description="machine-readable code, e.g. 'lease_lost', 'seq_gap'")
    message: str
    expected_seq: int | None = None
    offset: int | None = None
    problems: list[dict[str, Any]] | None = None
    applied: int | None = Field(default=None,
                                description="diffs of the batch applied before the refusal")
    limit: int | None = Field(default=None, description="the limit a 413 refusal names")


class RegisterRequest(_Body):
    """Register a runner with the registration token."""

    name: str = Field(min_length=1, max_length=200)
    labels: list[str] = Field(default_factory=list, max_length=100)


class RegisterResponse(BaseModel):
    """The runner's id and its own token (shown once; the server stores a hash)."""

    runner_id: str
    token: str


class CreateRunRequest(_Body):
    """Queue a run of a workflow file at a ref of a repository."""

    repo: str = Field(pattern=REPO_PATTERN)
    ref: str = Field(pattern=REF_PATTERN)
    workflow_path: str = Field(pattern=REPO_PATH_PATTERN, max_length=1000)
    params: dict[str, str] = Field(default_factory=dict)
    labels: list[str] = Field(default_factory=list, max_length=100)
    strict: JsonBool = Field(default=False, description="refuse the workflow on any warning")
    distributed: JsonBool | None = Field(default=None, description="true: lease the run's ready "
                                     "tasks one by one to any runner with its labels, instead "
                                     "of the whole run to one (absent: false)")


class RunInfo(BaseModel):
    """A run as the queue sees it."""

    id: str
    repo: str
    commit: str
    workflow_path: str
    params: dict[str, Any] = Field(description="typed by the workflow's params.schema; secret "
                                               "values are ***")
    labels: list[str]
    status: str = Field(description="the run document's status")
    queue: Literal["queued", "leased", "paused", "done", "external", "distributed"]
    attempt: int
    runner_id: str | None = None
    cancel_requested: bool = False
    created_at: str
    name: str = ""
    started_at: str | None = Field(default=None, description="the run document's started_at")
    ended_at: str | None = Field(default=None, description="the run document's ended_at")
    distributed: bool = Field(default=False, description="its tasks are leased one by one")


class RunList(BaseModel):
    """Answer of GET /runs."""

    runs: list[RunInfo]


class ClaimRequest(_Body):
    """Long-poll for a run whose labels are a subset of these."""

    labels: list[str] = Field(default_factory=list, max_length=100)
    capacity: JsonInt = Field(default=1, ge=1, le=1000)
    wait: JsonFloat = Field(default=MAX_CLAIM_WAIT, ge=0, le=MAX_CLAIM_WAIT)
    tasks: JsonBool | None = Field(default=None, description="true: this runner also executes "
                               "single tasks of distributed runs (the answer's `task` names one;"
                               " absent: false)")


class Lease(BaseModel):
    """Proof that a runner holds a run; every write carries its token."""

    token: str
    ttl: float = Field(description="seconds the lease lasts unless renewed by a heartbeat")


class ClaimedRun(BaseModel):
    """What a runner needs to execute a claimed run."""

    id: str
    repo: str
    commit: str
    workflow_path: str
    params: dict[str, Any] = Field(description="typed by the workflow's params.schema; secret "
                                               "values are ***")
    labels: list[str]
    attempt: int


class ClaimResponse(BaseModel):
    """A claimed run and its lease; the run's secrets travel only here (never logged: SecretStr
    shows `**********` in a repr)."""

    run: ClaimedRun
    lease: Lease
    task: str | None = Field(default=None, description="for a distributed run: the one task "
                             "to execute (the lease is that task's)")
    secrets: dict[str, SecretStr] = Field(
        default_factory=dict, description="values of ${{ secrets.NAME }}: the run repository's "
        "secrets over the global ones")
    secret_params: dict[str, SecretStr] = Field(
        default_factory=dict, description="values of the run's params declared secret (the "
        "run document holds *** for them)")

    @field_serializer("secrets", "secret_params", when_used="json")
    def _reveal(self, values: dict[str, SecretStr]) -> dict[str, str]:
        return {k: v.get_secret_value() for k, v in values.items()}


class LeaseRequest(_Body):
    """Start (confirm) or heartbeat a lease."""

    lease: str


class HeartbeatResponse(BaseModel):
    """Lease renewed; `cancel_requested` tells the runner to stop the run's tasks."""

    ttl: float
    cancel_requested: bool


_POINTER = "^(/([^/~]|~[01])*)*$"
_PATCH_OP: dict[str, Any] = {
    "type": "object", "required": ["op", "path"],
    "properties": {"op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]},
                   "path": {"type": "string", "pattern": _POINTER},
                   "from": {"type": "string", "pattern": _POINTER}, "value": {}},
    "description": "an RFC 6902 operation (checked, with its place, when the diff is applied)"}


class WireDiff(_Body):
    """One diff: RFC 6902 operations, its writer and the writer's seq (from 1, no gaps)."""

    writer: str = Field(min_length=1, max_length=200)
    seq: JsonInt = Field(ge=1)
    ops: list[dict[str, Any]] = Field(json_schema_extra={"items": _PATCH_OP})
    ts: str | None = None


class DiffBatch(_Body):
    """Diffs in order; applied one by one, each atomically; stops at the first refusal."""

    lease: str | None = Field(default=None, description="required from runners")
    diffs: list[WireDiff] = Field(min_length=1, max_length=MAX_DIFFS_PER_BATCH)


class DiffAck(BaseModel):
    """How many diffs of the batch are now applied (new or already seen)."""

    applied: int
    duplicates: int
    next_seq: dict[str, int] = Field(description="per writer: the seq the server expects next")


class LogChunk(_Body):
    """Bytes of a task's log at `offset`, base64-encoded in `data`."""

    lease: str | None = None
    task: str = Field(pattern=TASK_ID_PATTERN)
    offset: JsonInt = Field(ge=0, le=MAX_LOG_OFFSET)
    data: str = Field(pattern=BASE64_PATTERN, description="base64 of the raw bytes")


class LogAck(BaseModel):
    """The server's log length for the task after this chunk."""

    offset: int


class FinishRequest(_Body):
    """The runner is done with the run: its final status, or released for manual triggers."""

    lease: str | None = Field(default=None, description="required for queued runs")
    status: Literal["Completed", "Failed", "Canceled", "AwaitingTrigger"]


REPORTED_RUN_SCHEMA: dict[str, Any] = {
    "required": ["id", "workflow", "status", "tasks", "params"],
    "properties": {"id": {"type": "string", "pattern": RUN_ID_PATTERN},
                   "workflow": {"type": "object"}, "status": {"type": "string"},
                   "tasks": {"type": "object"},
                   "params": {"type": "object"}},
}
"""What the server checks in a reported document (kept a plain dict on the wire: the document
goes to the server exactly as the runner has it, `null` fields included)."""


class ReportRunRequest(_Body):
    """A run executed outside the queue, reported with its full initial document."""

    run: dict[str, Any] = Field(json_schema_extra=REPORTED_RUN_SCHEMA)


class SecretValue(_Body):
    """The value of a secret being set (at least 4 characters: shorter ones would mask too
    much)."""

    value: str = Field(min_length=4, max_length=65536)


class SecretInfo(BaseModel):
    """A secret as listed: its name and scope, never its value."""

    name: str
    repo: str | None = Field(default=None, description="None: a global secret")
    updated_at: str


class SecretList(BaseModel):
    """Answer of GET /secrets."""

    secrets: list[SecretInfo]


class RunnerInfo(BaseModel):
    """A registered runner as the admin sees it (never its token)."""

    id: str
    name: str
    labels: list[str]
    created_at: str
    last_seen: str | None = Field(default=None, description="its last request to the server")
    online: bool = Field(description="it made a request within the server's online window")
    version: str | None = Field(default=None, description="from its User-Agent (ferry/VERSION)")
    draining: bool = Field(default=False, description="the admin drains it: it claims no more")
    revoked_at: str | None = Field(default=None, description="its token was revoked then")
    current_runs: list[str] = Field(default_factory=list, description="runs leased to it now")


class RunnerList(BaseModel):
    """Answer of GET /runners."""

    runners: list[RunnerInfo]


class AuditEntry(BaseModel):
    """One operator action: who did what, when."""

    at: str
    who: str
    action: str = Field(description="create, cancel, trigger, trigger-all, retry-failed, "
                                    "revoke, drain, undrain")
    run_id: str | None = None
    runner_id: str | None = None
    detail: str = ""


class AuditList(BaseModel):
    """Answer of GET /runs/{id}/audit and GET /runners/{id}/audit."""

    entries: list[AuditEntry]
