"""Ferry's reference control plane: protocol v1 over HTTP (FastAPI), SQLite store, git repos.

Run it with `ferry-server` or `python -m server_stub`; `create_app(ServerConfig(...))` builds the
ASGI app for embedding and tests.
"""

from __future__ import annotations

__all__ = ["ServerConfig", "create_app"]

from server_stub.app import create_app
from server_stub.config import ServerConfig
