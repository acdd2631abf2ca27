"""Secrets at rest: per repository and global, encrypted with AES-256-GCM under a key file.

The key is 32 random bytes in `<data-dir>/secrets.key`, created mode 0600 at the first start.
Each value is sealed with a fresh 96-bit nonce and, as associated data, the slot it belongs to
(`scope`, `name`): a ciphertext copied to another row does not open. Values leave the server
only in the claim of a run of their repository (`claim_secrets`); listing shows names only.
A run's params declared secret are kept the same way (`run_secrets`), never in its document.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from server_stub.errors import ApiError, not_found
from server_stub.store.base import Conn, Database

KEY_FILE = "secrets.key"
_GLOBAL = ""

_KEY_CHECK = "secrets_key_check"  # meta row: which key sealed this database's secrets


class KeyMismatch(RuntimeError):
    """This server's secrets key is not the one the database's secrets were sealed with."""


def load_key(path: Path) -> bytes:
    """The key in `path` (`<data-dir>/secrets.key` unless `--secrets-key` says otherwise),
    created (0600, never replaced) when there is none."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = AESGCM.generate_key(bit_length=256)
        # Written whole under a private name, then linked in place (link never replaces): a
        # server starting at the same moment sees no key or the whole key, never an empty
        # file that an O_EXCL create would show it before the write.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(key)
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, path)
        except FileExistsError:  # another start won the race: use its key
            return load_key(path)
        finally:
            tmp.unlink(missing_ok=True)
        return key
    if len(key) != 32:
        raise OSError(f"{path}: not a 32-byte key; refusing to start (restore it from backup)")
    return key


def scope_of(repo: str | None) -> str:
    """The storage scope of a repository's secrets ('' for the global ones)."""
    return f"repo:{repo}" if repo else _GLOBAL


class SecretStore:
    """Sealing and opening secret values; every method runs inside the caller's transaction."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._check = hmac.new(key, b"ferry secrets key check", hashlib.sha256).hexdigest()

    def check_key(self, db: Database) -> None:
        """Record which key seals this database's secrets (first start), or refuse a different
        one while the database holds secrets sealed with the recorded key: replicas on one
        PostgreSQL must share the key, or one's secrets would not open on the others."""
        with db.transaction() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
                         " DO NOTHING", (_KEY_CHECK, self._check))
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (_KEY_CHECK,)).fetchone()
            same = hmac.compare_digest(str(row["value"]), self._check)
            sealed = not same and (
                conn.execute("SELECT 1 FROM secrets LIMIT 1").fetchone() is not None
                or conn.execute("SELECT 1 FROM run_secrets LIMIT 1").fetchone() is not None)
            if not same and not sealed:  # nothing sealed with the old key: this one takes over
                conn.execute("UPDATE meta SET value = ? WHERE key = ?", (self._check, _KEY_CHECK))
        if sealed:
            raise KeyMismatch(f"{db.url}: its secrets were sealed with another secrets key than "
                              "this server's; give every server on the database the same key "
                              "(--secrets-key FILE)")

    def _seal(self, slot: str, value: str) -> tuple[bytes, bytes]:
        nonce = os.urandom(12)
        return nonce, self._aead.encrypt(nonce, value.encode("utf-8"), slot.encode())

    def _open(self, slot: str, nonce: bytes, sealed: bytes) -> str:
        try:
            return self._aead.decrypt(nonce, sealed, slot.encode()).decode("utf-8")
        except InvalidTag:
            raise ApiError(500, "secret_unreadable", f"secret {slot.rsplit(chr(0), 1)[-1]} "
                           "cannot be decrypted with this server's key") from None

    def put(self, conn: Conn, repo: str | None, name: str, value: str) -> str:
        """Create or replace; returns the time it was stored."""
        scope = scope_of(repo)
        nonce, sealed = self._seal(f"{scope}\0{name}", value)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        conn.execute("INSERT INTO secrets (scope, name, nonce, sealed, updated_at)"
                     " VALUES (?,?,?,?,?) ON CONFLICT (scope, name) DO UPDATE SET"
                     " nonce = excluded.nonce, sealed = excluded.sealed,"
                     " updated_at = excluded.updated_at", (scope, name, nonce, sealed, now))
        return now

    def names(self, conn: Conn, repo: str | None) -> list[tuple[str, str]]:
        """(name, updated_at) of one scope, by name."""
        rows = conn.execute("SELECT name, updated_at FROM secrets WHERE scope = ? ORDER BY name",
                            (scope_of(repo),))
        return [(r["name"], r["updated_at"]) for r in rows]

    def delete(self, conn: Conn, repo: str | None, name: str) -> None:
        """Remove one; 404 when there is none."""
        cur = conn.execute("DELETE FROM secrets WHERE scope = ? AND name = ?",
                           (scope_of(repo), name))
        if cur.rowcount == 0:
            raise not_found("secret", name)

    def for_repo(self, conn: Conn, repo: str) -> dict[str, str]:
        """What a run of `repo` gets: the global secrets, its repository's over them."""
        out: dict[str, str] = {}
        for scope in (_GLOBAL, scope_of(repo)):
            for row in conn.execute("SELECT name, nonce, sealed FROM secrets WHERE scope = ?",
                                    (scope,)):
                out[row["name"]] = self._open(f"{scope}\0{row['name']}", bytes(row["nonce"]),
                                              bytes(row["sealed"]))
        return out

    def put_run(self, conn: Conn, run_id: str, values: dict[str, str]) -> None:
        """Keep a run's secret params (its document holds `***`)."""
        for name, value in values.items():
            nonce, sealed = self._seal(f"run:{run_id}\0{name}", value)
            conn.execute("INSERT INTO run_secrets (run_id, name, nonce, sealed) VALUES (?,?,?,?)"
                         " ON CONFLICT (run_id, name) DO UPDATE SET nonce = excluded.nonce,"
                         " sealed = excluded.sealed", (run_id, name, nonce, sealed))

    def for_run(self, conn: Conn, run_id: str) -> dict[str, str]:
        """A run's secret params."""
        return {row["name"]: self._open(f"run:{run_id}\0{row['name']}", bytes(row["nonce"]),
                                        bytes(row["sealed"]))
                for row in conn.execute("SELECT name, nonce, sealed FROM run_secrets"
                                        " WHERE run_id = ?", (run_id,))}
