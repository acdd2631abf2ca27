"""Unit tests of the stub's pure parts: OpenAPI file, secrets, paths, log offsets, notifier."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from server_stub.auth import hash_token, load_secret
from server_stub.cli import OPENAPI_FILE, main, openapi_text
from server_stub.errors import ApiError
from server_stub.logs import LogStore
from server_stub.notifier import Notifier
from server_stub.repos import check_path


def test_checked_in_openapi_is_current() -> None:
    assert OPENAPI_FILE.read_text(encoding="utf-8") == openapi_text(), \
        "run 'python -m server_stub openapi'"
    assert main(["openapi", "--check"]) == 0


def test_openapi_documents_every_protocol_endpoint() -> None:
    import json

    paths = json.loads(openapi_text())["paths"]
    for path in ("/api/v1/runs/claim", "/api/v1/runs/{run_id}/diffs", "/api/v1/runs/report",
                 "/api/v1/repos/{repo}/archive/{commit}", "/api/v1/runners/register"):
        assert path in paths


def test_generated_secret_is_0600_and_survives_restarts(tmp_path: Path) -> None:
    first = load_secret(tmp_path, "admin", None)
    assert first.generated is not None
    path = tmp_path / "admin.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_secret(tmp_path, "admin", None)
    assert again.generated is None and again.hash == first.hash
    given = load_secret(tmp_path, "admin", "from-env")
    assert given.hash == hash_token("from-env") and given.generated is None


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a\\b",
                                 "a\x00b"])
def test_check_path_refuses(bad: str) -> None:
    with pytest.raises(ApiError) as info:
        check_path(bad)
    assert info.value.status == 400


def test_log_store_offsets(tmp_path: Path) -> None:
    logs = LogStore(tmp_path)
    r = "00000000-0000-4000-8000-000000000001"
    assert logs.append(None, r, "t", 0, b"abc") == 3
    assert logs.append(None, r, "t", 1, b"bcde") == 5  # overlap matches: only "de" written
    assert logs.read(None, r, "t") == b"abcde"
    with pytest.raises(ApiError) as info:
        logs.append(None, r, "t", 2, b"XX")
    assert info.value.status == 409 and info.value.extra["offset"] == 5
    with pytest.raises(ApiError):
        logs.append(None, r, "t", 9, b"x")
    assert logs.read(None, r, "t", 3) == b"de"
    for offset in (5, 2**62, 2**70):  # at or past the end: nothing, not EINVAL or an overflow
        assert logs.read(None, r, "t", offset) == b""


@pytest.mark.parametrize(("run_id", "task"), [
    ("..", "t"), ("../x", "t"), ("r", "t"), ("00000000-0000-4000-8000-000000000001\n", "t"),
    ("00000000-0000-4000-8000-000000000001", ".."), ("00000000-0000-4000-8000-000000000001", "a/b"),
    ("00000000-0000-4000-8000-000000000001", "t\x00"),
])
def test_log_store_checks_both_ids_itself(tmp_path: Path, run_id: str, task: str) -> None:
    logs = LogStore(tmp_path / "logs")
    for call in (lambda: logs.append(None, run_id, task, 0, b"x"),
                 lambda: logs.read(None, run_id, task)):
        with pytest.raises(ApiError) as info:
            call()
        assert info.value.status == 400 and info.value.error == "bad_id"
    assert not (tmp_path / "logs").exists() and list(tmp_path.iterdir()) == []


def test_notifier_never_misses_a_notification() -> None:
    async def scenario() -> tuple[bool, bool]:
        notifier = Notifier()
        seen = notifier.version
        await notifier.notify()  # between looking at the queue and waiting
        missed = await notifier.wait(seen, 5)
        timed_out = await notifier.wait(notifier.version, 0.05)
        return missed, timed_out

    assert asyncio.run(scenario()) == (True, False)
