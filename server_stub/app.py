"""The FastAPI application: routes under /api/v1, JSON errors, body limit, lease reaper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from runner import __version__
from runner.api.protocol import API_PREFIX
from server_stub import (
    errors,
    routes_admin,
    routes_repos,
    routes_runners,
    routes_secrets,
    routes_users,
    runners,
)
from server_stub.auth import ADMIN, REGISTRATION, Secret, load_secret
from server_stub.config import ServerConfig
from server_stub.core import Core
from server_stub.limits import BodyLimit
from server_stub.notifier import Notifier
from server_stub.store.base import CHANGES, QUEUE

log = logging.getLogger("ferry.server")


async def _reap(core: Core, notifier: Notifier, changes: Notifier) -> None:
    """Re-queue runs whose lease deadline passed and wake the claimers."""
    while True:
        await asyncio.sleep(core.config.reaper_period)
        try:
            expired = await run_in_threadpool(runners.expire_leases, core)
        except Exception as exc:  # keep reaping; the claim path re-checks deadlines anyway
            log.error("lease reaper: %s: %s", type(exc).__name__, exc)
            continue
        if expired:
            log.info("re-queued %d run(s) whose lease expired", expired)
            await notifier.notify()
            await changes.notify()


def _prune_once(core: Core, older_than: float) -> None:
    """One retention pass; each run's removal and each failure is a log line."""
    import time

    with core.db.transaction() as conn:
        expired = core.logs.expired(conn, older_than=older_than, now=time.time())
    # one run at a time: nothing writes to a finished run's logs
    for run_id, ended, size in expired:
        with core.db.transaction() as conn:
            errors = core.logs.remove(conn, run_id)
        for error in errors:
            log.error("log retention: %s", error)
        if not errors:
            log.info("log retention: removed the logs of run %s (ended %s, %d bytes)", run_id,
                     ended, size)


async def _retain(core: Core, older_than: float) -> None:
    """Remove finished runs' logs older than `--log-retention`, at start and then every hour."""
    while True:
        try:
            await run_in_threadpool(_prune_once, core, older_than)
        except Exception as exc:  # keep the server up; the next pass tries again
            log.error("log retention: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(core.config.retention_interval)


def create_app(config: ServerConfig, *, admin: Secret | None = None,
               registration: Secret | None = None) -> FastAPI:
    """The ASGI app for `config`; secrets are loaded (or generated) from the data dir unless
    given."""
    admin = admin or load_secret(config.data_dir, ADMIN, config.admin_token)
    registration = registration or load_secret(config.data_dir, REGISTRATION,
                                               config.registration_token)
    core = Core.open(config, admin, registration)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        notifier: Notifier = app.state.notifier
        changes: Notifier = app.state.changes
        for each in (notifier, changes):
            each.bind(asyncio.get_running_loop())
        # other servers on the same database: claimers, and the dashboard's live pages
        core.db.listen({QUEUE: notifier.wake_threadsafe, CHANGES: changes.wake_threadsafe})
        tasks = [asyncio.create_task(_reap(core, notifier, changes))]
        if config.log_retention is not None:
            tasks.append(asyncio.create_task(_retain(core, config.log_retention)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            core.db.close()

    app = FastAPI(title="Ferry control plane", version=__version__, lifespan=lifespan,
                  summary="Protocol v1 between Ferry runners and their control plane.",
                  openapi_url=f"{API_PREFIX}/openapi.json", docs_url=None, redoc_url=None)
    app.state.core = core
    app.state.notifier = Notifier(publish=lambda: core.db.publish(QUEUE))
    # the dashboard's live pages: any run or runner changed (on any server on the database)
    app.state.changes = Notifier(publish=lambda: core.db.publish(CHANGES), coalesce=0.2)
    errors.install(app)
    for module in (routes_runners, routes_users, routes_repos, routes_secrets, routes_admin):
        app.include_router(module.router, prefix=API_PREFIX)
    from server_stub import web

    web.install(app)
    app.add_middleware(BodyLimit, limit=config.max_body)
    return app


def openapi_document(app: FastAPI) -> dict[str, object]:
    """The app's OpenAPI document (what `server_stub/openapi.json` holds)."""
    return app.openapi()
