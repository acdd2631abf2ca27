"""The secrets key file: created once, whole, 0600; servers starting together share one key."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from server_stub.secrets import load_key


def _start_together(path: Path, starts: int) -> list[bytes | BaseException]:
    """`load_key(path)` from `starts` threads released at once; what each got."""
    barrier = threading.Barrier(starts)
    got: list[bytes | BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            got.append(load_key(path))
        except BaseException as exc:
            got.append(exc)

    threads = [threading.Thread(target=start) for _ in range(starts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return got


def test_servers_starting_together_read_one_whole_key(tmp_path: Path) -> None:
    """Eight starts at once, 30 times: every one gets the same 32-byte key (with an O_EXCL
    create followed by a write, a start could read the empty file in between)."""
    for round_no in range(30):
        path = tmp_path / f"r{round_no}" / "secrets.key"
        keys = _start_together(path, 8)
        assert all(isinstance(k, bytes) and len(k) == 32 for k in keys), keys
        assert len(set(keys)) == 1, f"round {round_no}: {len(set(keys))} keys"
        assert path.read_bytes() == keys[0]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [p.name for p in path.parent.iterdir()] == ["secrets.key"], "a temp file left"
