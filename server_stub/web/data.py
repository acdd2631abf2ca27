"""What each page reads from the store, in one transaction each (through `admin_store` and the
run rows), returned as plain values the templates render."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from runner.document import RunStatus
from server_stub import admin_store, runner_admin, runs
from server_stub.core import Core
from server_stub.errors import not_found

PAGE_SIZE = 50
HISTORY_SHOWN = 200
STATUSES = [s.value for s in RunStatus]


@dataclass
class RunsPage:
    """One page of the runs list with its filters."""

    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    status: str
    repo: str
    repos: list[str]
    runner_names: dict[str, str]
    marks: tuple[int, int, int] = (0, 0, 0)

    def query(self, page: int) -> str:
        """The list's query string for another page with the same filters."""
        from urllib.parse import urlencode

        args = {k: v for k, v in (("status", self.status), ("repo", self.repo)) if v}
        if page > 1:
            args["page"] = str(page)
        return ("?" + urlencode(args)) if args else ""


def runs_page(core: Core, status: str, repo: str, page: int) -> RunsPage:
    """The runs matching the filters, most recent first, `PAGE_SIZE` a page."""
    status = status if status in STATUSES else ""
    with core.tx() as conn:
        total = admin_store.count_runs(conn, status=status or None, repo=repo or None)
        pages = max(1, -(-total // PAGE_SIZE))
        page = min(max(1, page), pages)
        rows = admin_store.page_runs(conn, status=status or None, repo=repo or None,
                                     limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        names = admin_store.runner_names(conn, [r["runner_id"] for r in rows if r["runner_id"]])
        repos = admin_store.repos_with_runs(conn)
        marks = admin_store.list_marks(conn)
    return RunsPage(rows=rows, total=total, page=page, pages=pages, status=status, repo=repo,
                    repos=repos, runner_names=names, marks=marks)


def list_marks(core: Core) -> tuple[int, int, int]:
    """The list's change marks (newest run, newest diff)."""
    with core.tx() as conn:
        return admin_store.list_marks(conn)


@dataclass
class RunView:
    """A run's page: its row, its document, history, audit and its runner's name."""

    row: dict[str, Any]
    doc: dict[str, Any]
    history: list[dict[str, Any]]
    history_total: int
    audit: list[dict[str, Any]]
    runner_name: str
    marks: tuple[int, int]
    task_runners: dict[str, str] = field(default_factory=dict)
    """Distributed runs: the name of the runner that took each task."""


def run_view(core: Core, run_id: str) -> RunView:
    """Everything the run page shows; 404 for an unknown run."""
    with core.tx() as conn:
        row = runs.get_row(conn, run_id, lock=False)
        history = admin_store.diff_rows(conn, run_id, HISTORY_SHOWN)
        marks = admin_store.run_marks(conn, run_id)
        audit = admin_store.audit_of(conn, run_id=run_id)
        by_task = admin_store.task_runners(conn, run_id) if row.get("distributed") else {}
        names = admin_store.runner_names(conn, [row["runner_id"] or "", *by_task.values()])
    doc = json.loads(row["doc"])  # a private copy: the cached one changes under other requests
    return RunView(row=dict(row), doc=doc, history=history, history_total=marks[1], audit=audit,
                   runner_name=names.get(row["runner_id"] or "", ""), marks=marks,
                   task_runners={t: names.get(r, r[:8]) for t, r in by_task.items()})


def run_marks(core: Core, run_id: str) -> tuple[int, int]:
    """The run's change marks (last diff cursor, diff count)."""
    with core.tx() as conn:
        return admin_store.run_marks(conn, run_id)


def runners(core: Core) -> list[dict[str, Any]]:
    """Every runner as the list shows it."""
    now = time.time()
    with core.tx() as conn:
        rows = admin_store.runners(conn)
    return [{"row": r, "info": runner_admin.info(core, r, now)} for r in rows]


def runner(core: Core, runner_id: str) -> dict[str, Any]:
    """One runner's page: its row, API view and audit; 404 when unknown."""
    with core.tx() as conn:
        row = admin_store.runner(conn, runner_id)
        if row is None:
            raise not_found("runner", runner_id)
        audit = admin_store.audit_of(conn, runner_id=runner_id)
    return {"row": row, "info": runner_admin.info(core, row), "audit": audit}


def repositories(core: Core) -> list[str]:
    """The repositories the server serves (the new-run form's choices)."""
    root = core.repos.root
    names = []
    try:
        for entry in sorted(root.iterdir()):
            if (entry / "HEAD").is_file():
                names.append(entry.name.removesuffix(".git"))
    except OSError:
        return []
    return names


def run_view_row(core: Core, run_id: str) -> dict[str, Any]:
    """The run's status and queue."""
    with core.tx() as conn:
        return admin_store.run_state(conn, run_id)
