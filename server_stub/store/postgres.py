"""PostgreSQL: a connection pool (psycopg 3, psycopg_pool), one transaction per store operation,
row locks instead of a process lock, and LISTEN/NOTIFY so that every server on the database
wakes its long-polling claimers when any of them queues a run.

Several server processes may share one database: every rule that must hold across them is a
transaction with row locks (`FOR UPDATE`, claims `FOR UPDATE SKIP LOCKED`) or a constraint.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from server_stub.store.base import POSTGRESQL, Cursor, Dialect
from server_stub.store.migrate import migrate
from server_stub.store.schema import POSTGRESQL as MIGRATIONS

log = logging.getLogger("ferry.server")
DEFAULT_POOL_SIZE = 16


def redacted(url: str) -> str:
    """The database's address without its password (for logs and errors)."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    host = parts.get("host") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


@lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (a literal `%` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgConn:
    """A transaction's connection (`base.Conn`)."""

    __slots__ = ("_conn", "dialect")

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self.dialect: Dialect = POSTGRESQL

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement."""
        return self._conn.execute(_placeholders(sql), tuple(params))


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database (`base.Database`)."""

    dialect = POSTGRESQL

    def __init__(self, url: str, *, pool_size: int = DEFAULT_POOL_SIZE,
                 connect_timeout: float = 30.0) -> None:
        self._conninfo = url
        self.url = redacted(url)
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        # one direct connection first: a wrong URL fails now with the server's own words,
        # instead of as a pool timeout
        psycopg.connect(url, connect_timeout=max(1, int(connect_timeout))).close()
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url, min_size=1, max_size=pool_size, open=False, name="ferry",
            kwargs={"row_factory": dict_row}, timeout=connect_timeout)
        self._pool.open(wait=True, timeout=connect_timeout)
        try:
            migrate(self, MIGRATIONS)
        except BaseException:
            self._pool.close()
            raise

    @contextmanager
    def transaction(self) -> Iterator[PgConn]:
        """A pooled connection in a transaction (READ COMMITTED; rules that need more take row
        locks): committed at the end, rolled back on any exception."""
        with self._pool.connection() as conn, conn.transaction():
            yield PgConn(conn)

    def publish(self, channel: str) -> None:
        """NOTIFY every server listening on this database (this one too)."""
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_notify(%s, '')", (channel,))

    def listen(self, wakes: Mapping[str, Callable[[], None]]) -> None:
        """Start the listener thread: `wakes[channel]()` on every notification, and each once
        after every (re)connection, since notifications sent while it was away are lost."""
        if self._listener is not None:
            return
        self._listener = threading.Thread(target=self._listen, args=(dict(wakes),),
                                          name="ferry-listen", daemon=True)
        self._listener.start()

    def _listen(self, wakes: dict[str, Callable[[], None]]) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    for channel in wakes:  # our own names: plain identifiers
                        conn.execute(f"LISTEN {channel}")
                    for wake in wakes.values():
                        wake()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            woken = wakes.get(note.channel)
                            if woken is not None:
                                woken()
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                log.error("LISTEN on %s lost: %s; reconnecting in 1 s (meanwhile a claimer waits"
                          " for its hold to end or a run queued on this server)",
                          self.url, str(exc).strip() or type(exc).__name__)
                self._stop.wait(1.0)

    def close(self) -> None:
        """Stop listening and close the pool."""
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
        self._pool.close()
