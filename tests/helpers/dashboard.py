"""The dashboard over real HTTP: a signed-in `requests` session (sign-in form, nonce, cookie)
and the CSRF token pages carry."""

from __future__ import annotations

import re

import requests

_NONCE = re.compile(r'name="nonce" value="([^"]+)"')
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def sign_in(url: str, token: str) -> requests.Session:
    """A browser-like session signed in with `token` (fails the test if refused)."""
    session = requests.Session()
    form = session.get(url + "/sign-in", timeout=30)
    nonce = _NONCE.search(form.text)
    assert nonce, form.text
    resp = session.post(url + "/sign-in", data={"nonce": nonce[1], "token": token,
                                                 "next": "/runs"},
                        allow_redirects=False, timeout=30)
    assert resp.status_code == 303, resp.text
    return session


def csrf_of(html: str) -> str:
    """The CSRF token in a page's forms."""
    found = _CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found[1]
