"""What every store operation shares: the database, the document cache, logs, repos, timings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from server_stub import admin_store
from server_stub.auth import RUNNER, Caller, Secret, identify
from server_stub.bounds import Limits
from server_stub.config import ServerConfig
from server_stub.leases import LeaseTimes
from server_stub.logs import Logs, LogStore
from server_stub.repos import Repos
from server_stub.runs import Documents
from server_stub.secrets import KEY_FILE, SecretStore, load_key
from server_stub.store.base import Conn, Database


def private_dir(path: Path) -> None:
    """Create `path` 0700, or tighten it to 0700 if it exists (whatever made it before)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


@dataclass
class Core:
    """The server's state, shared by the users' and the runners' operations."""

    config: ServerConfig
    db: Database
    docs: Documents
    logs: Logs
    repos: Repos
    admin: Secret
    registration: Secret
    secrets: SecretStore

    @classmethod
    def open(cls, config: ServerConfig, admin: Secret, registration: Secret) -> Core:
        """Open (creating when needed, migrating to this version's schema) the database and the
        log store: `config.database` (PostgreSQL, logs in it) or the data dir's SQLite file
        (logs under `logs/`)."""
        private_dir(config.data_dir)
        for token_file in config.data_dir.glob("*.token"):  # also when the env gives tokens
            os.chmod(token_file, 0o600)
        db: Database
        logs: Logs
        if config.database:
            from server_stub.logrows import RowLogs
            from server_stub.store.postgres import PostgresDatabase

            db, logs = PostgresDatabase(config.database, pool_size=config.pool_size), RowLogs()
        else:
            from server_stub.store.sqlite import SqliteDatabase

            private_dir(config.data_dir / "logs")
            db = SqliteDatabase(config.data_dir / "server.db")
            logs = LogStore(config.data_dir / "logs")
        secrets = SecretStore(load_key(config.secrets_key or config.data_dir / KEY_FILE))
        secrets.check_key(db)
        return cls(config=config, db=db, docs=Documents(), logs=logs,
                   repos=Repos(config.repos_dir), admin=admin, registration=registration,
                   secrets=secrets)

    @property
    def times(self) -> LeaseTimes:
        """Lease TTL and give-away deadline."""
        return LeaseTimes(ttl=self.config.lease_ttl, deadline=self.config.lease_deadline,
                          max_lost=self.config.max_lost_leases)

    @property
    def limits(self) -> Limits:
        """Size limits of what runners write."""
        return Limits(max_document=self.config.max_document, max_value=self.config.max_value,
                      max_ops=self.config.max_ops)

    @contextmanager
    def tx(self, run_id: str | None = None) -> Iterator[Conn]:
        """One transaction; the run's cached document is dropped if it fails (it may have been
        patched in memory before the rollback)."""
        try:
            with self.db.transaction() as conn:
                yield conn
        except BaseException:
            if run_id is not None:
                self.docs.drop(run_id)
            raise

    def read_log(self, run_id: str, task: str, offset: int = 0) -> bytes:
        """A task's log from `offset` (its own transaction; callers checked who may read)."""
        with self.db.transaction() as conn:
            return self.logs.read(conn, run_id, task, offset)

    def log_size(self, run_id: str, task: str) -> int:
        """Bytes stored for a task's log."""
        with self.db.transaction() as conn:
            return self.logs.size(conn, run_id, task)

    def caller(self, token: str, user_agent: str | None = None) -> Caller:
        """Who owns this bearer token (401 if nobody); a runner's request is its last contact,
        and its `User-Agent` (`ferry/VERSION`) says which version it runs."""
        with self.db.transaction() as conn:
            who = identify(conn, token, self.admin, self.registration)
            if who.kind == RUNNER and who.runner_id is not None:
                admin_store.touch_runner(conn, who.runner_id, runner_version(user_agent),
                                         who.last_seen)
            return who


def runner_version(user_agent: str | None) -> str | None:
    """`1.2.3` from a `ferry/1.2.3 ...` User-Agent (None for other clients)."""
    if not user_agent or not user_agent.startswith("ferry/"):
        return None
    version = user_agent.split()[0].removeprefix("ferry/")
    return version[:40] or None
