"""Versioned schema migrations, applied at start: a `schema_migrations` table records each
version applied; a start applies the missing ones in order, each in its own transaction.

Several servers may start at once on one PostgreSQL: the migration transaction takes an advisory
lock first, so one applies and the others find the versions recorded. A database migrated by a
newer server (a version this one does not know) is refused rather than half-understood.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from server_stub.store.base import Conn, Database

ADVISORY_KEY = 0x46455252  # "FERR": serializes migrations of servers starting together


class SchemaTooNew(RuntimeError):
    """The database holds migrations this server does not know (it was upgraded since)."""


@dataclass(frozen=True)
class Migration:
    """One schema version: statements, or a function for steps SQL alone cannot say."""

    version: int
    name: str
    statements: tuple[str, ...] = ()
    run: Callable[[Conn], None] | None = None

    def apply(self, conn: Conn) -> None:
        """Run this version's changes inside the caller's transaction."""
        for statement in self.statements:
            conn.execute(statement)
        if self.run is not None:
            self.run(conn)


def statements(script: str) -> tuple[str, ...]:
    """A script's statements (split at ';', none of ours holds one in a literal)."""
    return tuple(s.strip() for s in script.split(";") if s.strip())


def migrate(db: Database, migrations: list[Migration]) -> list[int]:
    """Apply the versions `db` lacks; returns those applied now."""
    known = {m.version for m in migrations}
    done: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        with db.transaction() as conn:
            if db.dialect.name == "postgresql":
                conn.execute("SELECT pg_advisory_xact_lock(?)", (ADVISORY_KEY,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY"
                         " KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
            applied = {int(r["version"]) for r in
                       conn.execute("SELECT version FROM schema_migrations").fetchall()}
            unknown = sorted(applied - known)
            if unknown:
                raise SchemaTooNew(f"{db.url}: the database has schema version(s) "
                                   f"{', '.join(map(str, unknown))}, newer than this server "
                                   f"knows (up to {max(known)}); run a newer ferry-server")
            if migration.version in applied:
                continue
            migration.apply(conn)
            conn.execute("INSERT INTO schema_migrations (version, name, applied_at)"
                         " VALUES (?,?,?)", (migration.version, migration.name, time.time()))
            done.append(migration.version)
    return done


def applied_versions(db: Database) -> list[int]:
    """The versions recorded in `db` (for tests and `--version` style checks)."""
    with db.transaction() as conn:
        return [int(r["version"]) for r in conn.execute(
            "SELECT version FROM schema_migrations ORDER BY version").fetchall()]
