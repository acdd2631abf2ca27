"""Dashboard sign-in: the admin token is exchanged for a session cookie; every form carries a
CSRF token derived from the session.

- The session id is random (32 bytes), sent only as an `HttpOnly; SameSite=Strict` cookie
  (`Secure` when the request came over HTTPS, also through a trusted proxy's
  `X-Forwarded-Proto`), stored only as its sha256, and expires (`ServerConfig.session_ttl`).
- The CSRF token of a session is HMAC-SHA256(session id, "csrf"): the server recomputes it from
  the cookie, so it is never stored; a POST without it (form field `csrf` or header
  `X-CSRF-Token`) is refused with 403.
- The sign-in form itself is protected the same way by a short-lived pre-session cookie
  (double submit), so nobody can sign a browser in to their own session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from server_stub import admin_store
from server_stub.auth import ADMIN, hash_token
from server_stub.core import Core
from server_stub.errors import ApiError

COOKIE = "ferry_session"
SIGNIN_COOKIE = "ferry_signin"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Session:
    """A signed-in browser: who, from where, and the CSRF token its forms carry."""

    who: str
    csrf: str
    address: str

    @property
    def actor(self) -> str:
        """How the audit trail names an action taken in this session."""
        return f"{self.who} (dashboard, {self.address})"


class SignInRequired(Exception):
    """No live session: pages redirect to the sign-in form, live streams answer 401."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class CsrfRefused(Exception):
    """A POST without the session's CSRF token (403)."""


def csrf_for(session_id: str) -> str:
    """The CSRF token of a session."""
    return hmac.new(session_id.encode(), b"csrf", hashlib.sha256).hexdigest()


def client_address(request: Request) -> str:
    """The client's address (the proxy's `X-Forwarded-For` when it is trusted)."""
    return request.client.host if request.client else "unknown"


def secure(request: Request) -> bool:
    """Whether the browser reached us over HTTPS (directly or through a trusted proxy)."""
    return request.url.scheme == "https"


def local_path(value: str | None) -> str:
    """`value` if it is a path on this site (never another origin), else `/runs`."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/runs"


def set_cookie(response: Response, request: Request, name: str, value: str,
               max_age: int) -> None:
    """A cookie scripts cannot read, sent to this site only."""
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                        samesite="strict", secure=secure(request))


async def current(request: Request) -> Session:
    """The request's live session; `SignInRequired` otherwise."""
    core: Core = request.app.state.core
    session_id = request.cookies.get(COOKIE, "")
    if session_id:
        row = await run_in_threadpool(_find, core, hash_token(session_id))
        if row is not None:
            return Session(who=str(row["who"]), csrf=csrf_for(session_id),
                           address=str(row["address"] or client_address(request)))
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise SignInRequired(target)


def _find(core: Core, id_hash: str) -> dict[str, object] | None:
    with core.tx() as conn:
        return admin_store.find_session(conn, id_hash)


def check_csrf(session: Session, given: str | None) -> None:
    """Refuse a state change without the session's CSRF token."""
    if not given or not hmac.compare_digest(given, session.csrf):
        raise CsrfRefused()


def sign_in(core: Core, token: str, address: str) -> str:
    """A new session id for the admin token (`ApiError` 401 for any other token)."""
    caller = core.caller(token)
    if caller.kind != ADMIN:
        raise ApiError(401, "unauthorized", "the dashboard needs the admin token")
    session_id = secrets.token_urlsafe(32)
    with core.tx() as conn:
        admin_store.add_session(conn, hash_token(session_id), ADMIN, core.config.session_ttl,
                                address)
    return session_id


def sign_out(core: Core, session_id: str) -> None:
    """End the session (its cookie no longer opens anything)."""
    with core.tx() as conn:
        admin_store.drop_session(conn, hash_token(session_id))


def sign_in_url(next_url: str) -> str:
    """The sign-in form, coming back to `next_url` afterwards."""
    return "/sign-in?next=" + quote(local_path(next_url), safe="/")
