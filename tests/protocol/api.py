"""A thin raw-HTTP client for the conformance suite: it checks status codes and bodies as the
protocol defines them, so it deliberately does not use the runner's typed client."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

PREFIX = "/api/v1"
WORKFLOW_OK = """\
version: "1"
name: conformance
nodes:
  - id: build
    name: Build
    steps:
      - name: hello
        run: echo hello
"""
WORKFLOW_MANUAL = """\
version: "1"
nodes:
  - id: prepare
    steps:
      - run: echo prepare
  - id: approve
    type: manual
    depends_on: [prepare]
    steps:
      - run: echo approved
"""
WORKFLOW_DISTRIBUTED = """\
version: "1"
nodes:
  - id: discover
    steps:
      - run: echo 'items=["a","b","c"]' >> "$STATE_OUTPUTS"
  - id: fan
    depends_on: [discover]
    strategy:
      type: matrix
      from_state: items
    steps:
      - run: echo "$item"
  - id: approve
    type: manual
    depends_on: [fan]
    steps:
      - run: echo approved
"""
WORKFLOW_BAD = """\
version: "1"
nodes:
  - name: no id and no steps
"""


@dataclass
class Api:
    """Requests against one server with one token."""

    url: str
    token: str | None
    session: requests.Session = field(default_factory=requests.Session)
    timeout: float = 40.0

    def call(self, method: str, path: str, *, json: Any = None, data: bytes | None = None,
             headers: dict[str, str] | None = None, **kw: Any) -> requests.Response:
        """One request; `path` is below /api/v1."""
        hdrs = dict(headers or {})
        if self.token is not None:
            hdrs.setdefault("Authorization", f"Bearer {self.token}")
        return self.session.request(method, self.url + PREFIX + path, json=json, data=data,
                                    headers=hdrs, timeout=kw.pop("timeout", self.timeout), **kw)

    def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        """A request that must answer `status`; its JSON body."""
        resp = self.call(method, path, **kw)
        assert resp.status_code == status, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json() if resp.content else None

    def error(self, method: str, path: str, status: int, code: str | None = None,
              **kw: Any) -> dict[str, Any]:
        """A request that must fail with `status` and a JSON ErrorBody (`code` if given)."""
        resp = self.call(method, path, **kw)
        assert resp.status_code == status, f"{method} {path}: {resp.status_code} {resp.text}"
        body = resp.json()
        assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
        if code is not None:
            assert body["error"] == code, body
        return dict(body)


@dataclass
class Server:
    """What the suite needs to know about the server under test."""

    url: str
    admin_token: str
    registration_token: str
    repos_dir: Any  # Path | None: where the suite may create repositories

    @property
    def admin(self) -> Api:
        """A client with the admin token."""
        return Api(self.url, self.admin_token)

    def register(self, labels: list[str] | None = None, name: str = "conformance") -> Runner:
        """A freshly registered runner."""
        body = Api(self.url, self.registration_token).ok(
            "POST", "/runners/register", json={"name": name, "labels": labels or []})
        return Runner(Api(self.url, body["token"]), body["runner_id"], labels or [])

    def leased_run(self, repo: str, workflow: str = "ok.yaml", *,
                   params: dict[str, str] | None = None,
                   distributed: bool = False) -> LeasedRun:
        """A run of `workflow` at `repo`'s main, queued under a fresh label and claimed by a
        runner registered with just that label (`distributed`: its first task is claimed, and
        the lease is that task's)."""
        lab = label()
        body: dict[str, Any] = {"repo": repo, "ref": "main", "workflow_path": workflow,
                                "labels": [lab]}
        if params is not None:
            body["params"] = params
        if distributed:
            body["distributed"] = True
        created = dict(self.admin.ok("POST", "/runs", 201, json=body))
        runner = self.register([lab])
        claimed = runner.claim(tasks=distributed)
        assert claimed is not None, "the run just queued under a fresh label was not handed out"
        assert claimed["run"]["id"] == created["id"], (created["id"], claimed["run"]["id"])
        return LeasedRun(created, runner, claimed)


@dataclass
class Runner:
    """A registered runner and its client."""

    api: Api
    id: str
    labels: list[str]

    def claim(self, wait: float = 0, labels: list[str] | None = None,
              tasks: bool = False) -> dict[str, Any] | None:
        """One claim (`tasks`: tasks of distributed runs too); None on 204."""
        resp = self.api.call("POST", "/runs/claim", timeout=wait + 20,
                             json={"labels": self.labels if labels is None else labels,
                                   "wait": wait, "tasks": tasks})
        if resp.status_code == 204:
            return None
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def diffs(self, run_id: str, lease: str | None, diffs: list[dict[str, Any]]
              ) -> requests.Response:
        """POST a diff batch."""
        return self.api.call("POST", f"/runs/{run_id}/diffs",
                             json={"lease": lease, "diffs": diffs})

    def log(self, run_id: str, lease: str | None, task: str, offset: int, data: bytes
            ) -> requests.Response:
        """POST a log chunk."""
        return self.api.call("POST", f"/runs/{run_id}/logs",
                             json={"lease": lease, "task": task, "offset": offset,
                                   "data": base64.b64encode(data).decode()})


@dataclass
class LeasedRun:
    """A queued run held by its runner: the create answer, the runner, the claim answer."""

    created: dict[str, Any]
    runner: Runner
    claimed: dict[str, Any]

    @property
    def id(self) -> str:
        """The run's id."""
        return str(self.created["id"])

    @property
    def lease(self) -> str:
        """The lease token the claim handed out."""
        return str(self.claimed["lease"]["token"])

    @property
    def labels(self) -> list[str]:
        """The run's labels (one fresh label): a runner registered with them may claim it."""
        return list(self.created["labels"])

    @property
    def writer(self) -> str:
        """The diff writer id of this attempt, `<runner id>/a<attempt>` (a task's:
        `<runner id>/<task>/a<attempt>`)."""
        task = self.claimed.get("task")
        return f"{self.runner.id}/{task + '/' if task else ''}a{self.claimed['run']['attempt']}"


def label() -> str:
    """A label no other test uses: keeps tests on a shared server from claiming each other's
    runs."""
    return f"t-{uuid.uuid4().hex[:12]}"


def op_state(key: str, value: Any) -> dict[str, Any]:
    """A diff operation setting one state key."""
    return {"op": "add", "path": f"/state/{key}", "value": value}
