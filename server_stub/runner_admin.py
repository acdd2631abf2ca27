"""What the admin does with runners: list them, revoke a token, drain one (it claims no more),
let it claim again; each action is audited. Shared by the API and the dashboard."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

from runner.api.protocol import AuditEntry, RunnerInfo
from server_stub import admin_store
from server_stub.auth import hash_token
from server_stub.core import Core
from server_stub.errors import ApiError, not_found
from server_stub.runs import now_iso


def online_window(core: Core) -> float:
    """Seconds since its last request within which a runner counts as online: a claim is
    held up to `max_claim_wait`, so an idle runner's requests come that far apart."""
    return max(60.0, 2 * core.config.max_claim_wait)


def iso(ts: float | None) -> str | None:
    """A Unix time as the documents write times."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def info(core: Core, row: admin_store.RunnerRow, now: float | None = None) -> RunnerInfo:
    """The API's view of a runner row."""
    now = time.time() if now is None else now
    online = (row.last_seen is not None and row.revoked_at is None
              and now - row.last_seen <= online_window(core))
    return RunnerInfo(id=row.id, name=row.name, labels=row.labels, created_at=row.created_at,
                      last_seen=iso(row.last_seen), online=online, version=row.version,
                      draining=row.draining, revoked_at=row.revoked_at,
                      current_runs=row.current_runs)


def list_runners(core: Core) -> list[RunnerInfo]:
    """Every registered runner."""
    with core.tx() as conn:
        rows = admin_store.runners(conn)
    return [info(core, r) for r in rows]


def get_runner(core: Core, runner_id: str) -> RunnerInfo:
    """One runner; 404 when unknown."""
    with core.tx() as conn:
        row = admin_store.runner(conn, runner_id)
    if row is None:
        raise not_found("runner", runner_id)
    return info(core, row)


def revoke(core: Core, runner_id: str, who: str) -> RunnerInfo:
    """Revoke the runner's token: its next request answers 401; the runs it held are given
    back to the queue at once (their lease ends now)."""
    with core.tx() as conn:
        row = admin_store.runner(conn, runner_id)
        if row is None:
            raise not_found("runner", runner_id)
        if row.revoked_at:
            raise ApiError(409, "already_revoked", f"runner {runner_id} was revoked at "
                           f"{row.revoked_at}")
        at = now_iso()
        held = admin_store.revoke(conn, runner_id, "revoked:" + hash_token(
            secrets.token_urlsafe(32)), at)
        admin_store.audit(conn, who, "revoke", runner_id=runner_id, at=at,
                          detail=f"runner {row.name}" + (
                              f"; its runs back to the queue: {', '.join(held)}" if held else ""))
        row = admin_store.runner(conn, runner_id)
    assert row is not None
    return info(core, row)


def drain(core: Core, runner_id: str, who: str, draining: bool = True) -> RunnerInfo:
    """Drain a runner (its claims answer 409 `runner_draining`; its running runs go on) or let
    it claim again."""
    with core.tx() as conn:
        row = admin_store.runner(conn, runner_id)
        if row is None:
            raise not_found("runner", runner_id)
        if row.revoked_at:
            raise ApiError(409, "already_revoked", f"runner {runner_id} was revoked at "
                           f"{row.revoked_at}")
        if row.draining != draining:
            admin_store.set_draining(conn, runner_id, draining)
            admin_store.audit(conn, who, "drain" if draining else "undrain",
                              runner_id=runner_id, at=now_iso(), detail=f"runner {row.name}")
        row = admin_store.runner(conn, runner_id)
    assert row is not None
    return info(core, row)


def audit_entries(core: Core, *, run_id: str | None = None,
                  runner_id: str | None = None) -> list[AuditEntry]:
    """The audit trail of a run or of a runner (404 when it does not exist)."""
    with core.tx() as conn:
        if run_id is not None:
            if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise not_found("run", run_id)
        elif admin_store.runner(conn, str(runner_id)) is None:
            raise not_found("runner", str(runner_id))
        rows = admin_store.audit_of(conn, run_id=run_id, runner_id=runner_id)
    return [AuditEntry(**r) for r in rows]
