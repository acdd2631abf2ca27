"""Authorization by role, from the table in README ("Who may call what"): every endpoint is
tried with every token, and a runner's "own runs" cells also with another runner's run."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runner.document import new_run
from tests.protocol.api import Api, LeasedRun, Server, op_state

README = Path(__file__).resolve().parents[2] / "README.md"
ROLES = ("admin", "runner", "registration")
VERDICTS = ("yes", "no", "own runs")


def role_table() -> list[tuple[str, str, dict[str, str]]]:
    """(method, path, {role: verdict}) for each row of README's role table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Who may call what", 1)[1]
    rows = []
    for line in section.splitlines():
        found = re.fullmatch(r"\| `(GET|POST|PUT|DELETE) (/\S*)` \| (.+) \| (.+) \| (.+) \|",
                             line.strip())
        if found:
            verdicts = dict(zip(ROLES, (found[3], found[4], found[5]), strict=True))
            assert set(verdicts.values()) <= set(VERDICTS), line
            rows.append((found[1], found[2], verdicts))
        elif rows and not line.startswith("|"):
            break
    return rows


TABLE = role_table()


@dataclass
class World:
    """A run of the runner under test, a run of another runner, and a repository."""

    server: Server
    repo: str
    mine: LeasedRun
    other: LeasedRun


def _request(method: str, template: str, world: World, run: LeasedRun
             ) -> tuple[str, dict[str, Any] | None]:
    """The concrete path and a body of the right shape for one endpoint on `run`."""
    path = (template.replace("{id}", run.id).replace("{task}", "t")
            .replace("{repo}", world.repo).replace("{commit}", "main")
            .replace("{path}", "ok.yaml").replace("{name}", "ROLES_TEST")
            .replace("{runner}", run.runner.id))
    lease = run.lease
    bodies: dict[str, dict[str, Any]] = {
        "/runners/register": {"name": "roles"},
        "/runs": {"repo": world.repo, "ref": "main", "workflow_path": "ok.yaml",
                  "labels": ["never-claimed"]},
        "/runs/claim": {"wait": 0, "labels": run.labels,  # its one run (task) is claimed: 204
                        "tasks": bool(run.claimed.get("task"))},
        "/runs/report": {"run": new_run({"version": "1", "nodes": []}, name="r", params={},
                                        created_at="2024-01-01T00:00:00Z",
                                        run_id=str(uuid.uuid4()))},
        "start": {"lease": lease}, "heartbeat": {"lease": lease},
        "diffs": {"lease": lease, "diffs": [{"writer": run.writer, "seq": 1,
                                             "ops": [op_state("k", 1)]}]},
        # a task's lease appends only to its own task's logs
        "logs": {"lease": lease, "task": run.claimed.get("task") or "t", "offset": 0,
                 "data": "eA=="},
        "finish": {"lease": lease, "status": "Completed"},
        "/secrets/{name}": {"value": "roles-test-value"},
    }
    last = template.rsplit("/", 1)[-1]
    body = bodies.get(template) or (bodies.get(last) if method == "POST" else None)
    return path, body


def _fresh(server: Server, repo: str, lease: str) -> World:
    """Two runs, each held by its own runner: whole runs, or (`lease` "task") the first task of
    a distributed run, whose lease is that task's."""
    if lease == "task":
        return World(server, repo, server.leased_run(repo, "distributed.yaml", distributed=True),
                     server.leased_run(repo, "distributed.yaml", distributed=True))
    return World(server, repo, server.leased_run(repo), server.leased_run(repo))


@pytest.mark.parametrize("lease", ["run", "task"])
@pytest.mark.parametrize(("method", "template", "verdicts"), TABLE,
                         ids=[f"{m} {p}" for m, p, _ in TABLE])
def test_every_endpoint_with_every_token(server: Server, repo: dict[str, str], method: str,
                                         template: str, verdicts: dict[str, str],
                                         lease: str) -> None:
    lines = []
    for role in ROLES:
        world = _fresh(server, repo["name"], lease)
        api = {"admin": server.admin, "registration": Api(server.url, server.registration_token),
               "runner": world.mine.runner.api}[role]
        verdict = verdicts[role]
        path, body = _request(method, template, world, world.mine)
        if template == "/openapi.json":
            resp = api.call(method, path)
        else:
            resp = api.call(method, path, json=body)
        lines.append(f"{method} {template:40} {role:12} {verdict:8} -> {resp.status_code}")
        if verdict == "no":
            assert resp.status_code == 403, lines[-1] + " " + resp.text
            assert resp.json()["error"] == "forbidden"
            continue
        assert resp.status_code not in (401, 403), lines[-1] + " " + resp.text
        if verdict == "own runs":
            if template == "/runs":
                ids = {r["id"] for r in resp.json()["runs"]}
                assert world.mine.id in ids and world.other.id not in ids, ids
                continue
            path, body = _request(method, template, world, world.other)
            resp = api.call(method, path, json=body)
            lines.append(f"{method} {template:40} {role:12} {'other run':8} -> "
                         f"{resp.status_code}")
            assert resp.status_code == 403, lines[-1] + " " + resp.text
    print("\n" + "\n".join(lines))


def test_no_token_is_401_except_the_openapi_document(server: Server) -> None:
    anonymous = Api(server.url, None)
    for method, template, _ in TABLE:
        path = template.replace("{id}", "00000000-0000-4000-8000-000000000000")
        path = path.replace("{task}", "t").replace("{repo}", "r").replace("{commit}", "main")
        path = path.replace("{path}", "x").replace("{name}", "X")
        path = path.replace("{runner}", "00000000-0000-4000-8000-000000000000")
        resp = anonymous.call(method, path, json={})
        want = 200 if template == "/openapi.json" else 401
        assert resp.status_code == want, (method, template, resp.status_code)


def test_the_table_covers_every_route_of_the_openapi_document() -> None:
    import json

    from server_stub.cli import openapi_text

    paths = json.loads(openapi_text())["paths"]
    documented = set()
    for path, item in paths.items():
        for method in item:
            plain = re.sub(r"\{run_id\}", "{id}", path.removeprefix("/api/v1"))
            plain = plain.replace("{task_id}", "{task}").replace("{runner_id}", "{runner}")
            documented.add((method.upper(), plain))
    in_table = {(m, p) for m, p, _ in TABLE}
    assert documented - in_table == set(), "routes missing from README's role table"
    assert in_table - documented <= {("GET", "/openapi.json")}
