"""Bearer tokens: the admin and registration secrets, runner tokens, and who is calling.

Tokens are random (secrets.token_urlsafe), so one sha256 is enough to store them; comparisons of
the fixed secrets are constant-time, runner tokens are looked up by their hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from server_stub import admin_store
from server_stub.errors import ApiError
from server_stub.store.base import Conn

ADMIN = "admin"
REGISTRATION = "registration"
RUNNER = "runner"


def new_token(prefix: str) -> str:
    """A fresh random token; the prefix tells humans what kind it is."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Secret:
    """A fixed secret's hash, and the token itself when this start generated it (print once)."""

    name: str
    hash: str
    generated: str | None = None


def load_secret(data_dir: Path, name: str, given: str | None) -> Secret:
    """The secret `name`: `given` (from the environment) if set, else the token kept in
    `<data_dir>/<name>.token` (mode 0600), else a new one written there."""
    if given:
        return Secret(name, hash_token(given))
    path = data_dir / f"{name}.token"
    if path.exists():
        os.chmod(path, 0o600)  # a copy restored or made by hand may be readable by others
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return Secret(name, hash_token(token))
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    token = new_token("fa" if name == ADMIN else "fr")
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    os.replace(tmp, path)
    return Secret(name, hash_token(token), generated=token)


@dataclass(frozen=True)
class Caller:
    """Who sent the request: the admin (users), a would-be runner, or a registered runner."""

    kind: str
    runner_id: str | None = None
    labels: frozenset[str] = field(default_factory=frozenset)
    last_seen: float | None = field(default=None, compare=False)

    def require(self, *kinds: str) -> Caller:
        """Refuse (403) a caller of another kind."""
        if self.kind not in kinds:
            raise ApiError(403, "forbidden",
                           f"this endpoint needs a {' or '.join(kinds)} token, not a {self.kind}"
                           " token")
        return self


def bearer(header: str | None) -> str:
    """The token of an `Authorization: Bearer` header; 401 when missing or malformed."""
    if not header:
        raise ApiError(401, "unauthorized", "missing Authorization: Bearer token")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "the Authorization header must be 'Bearer <token>'")
    return token


def identify(conn: Conn, token: str, admin: Secret, registration: Secret) -> Caller:
    """The caller owning `token`; 401 for a token nobody owns."""
    digest = hash_token(token)
    if hmac.compare_digest(digest, admin.hash):
        return Caller(ADMIN)
    if hmac.compare_digest(digest, registration.hash):
        return Caller(REGISTRATION)
    row = conn.execute("SELECT id, labels, last_seen FROM runners WHERE token_hash = ?",
                       (digest,)).fetchone()
    if row is None:
        gone = admin_store.revoked(conn, digest)
        if gone is not None:
            raise ApiError(401, "unauthorized", f"the token of runner '{gone['name']}' was "
                           f"revoked at {gone['revoked_at']}; register the runner again")
        raise ApiError(401, "unauthorized", "unknown token")
    return Caller(RUNNER, row["id"], frozenset(json.loads(row["labels"])), row["last_seen"])
