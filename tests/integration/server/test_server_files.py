"""The server's files are private whatever existed before: data dir 0700, database (and its WAL
and shared-memory files), tokens and logs 0600, also when an older start left them open."""

from __future__ import annotations

import base64
import os
import stat
import uuid
from pathlib import Path

import pytest
import requests

from runner.document import new_run
from server_stub.testing import StubProcess


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _every_file(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): _mode(p) for p in sorted(root.rglob("*"))
            if p.name not in ("server.log", "port")}


@pytest.mark.parametrize("before", ["fresh", "left open by an older start"])
def test_data_dir_and_files_are_private(tmp_path: Path, before: str) -> None:
    data = tmp_path / "data"
    if before != "fresh":
        data.mkdir(mode=0o755)
        os.chmod(data, 0o755)
        (data / "logs").mkdir(mode=0o755)
        os.chmod(data / "logs", 0o755)
        for name in ("server.db", "admin.token", "registration.token"):
            (data / name).write_text("" if name == "server.db" else "fa_old\n")
            os.chmod(data / name, 0o644)
    old = os.umask(0o022)  # what a default shell gives the server
    try:
        with StubProcess.start(data, tmp_path / "repos") as stub:
            reg = {"Authorization": f"Bearer {stub.registration_token}"}
            token = requests.post(stub.url + "/api/v1/runners/register", headers=reg,
                                  json={"name": "x"}, timeout=30).json()["token"]
            hdr = {"Authorization": f"Bearer {token}"}
            doc = new_run({"version": "1", "nodes": []}, name="x", params={"KEY": "secret"},
                          created_at="2024-01-01T00:00:00Z", run_id=str(uuid.uuid4()))
            assert requests.post(stub.url + "/api/v1/runs/report", headers=hdr,
                                 json={"run": doc}, timeout=30).status_code == 201
            chunk = {"task": "t", "offset": 0, "data": base64.b64encode(b"out\n").decode()}
            assert requests.post(f"{stub.url}/api/v1/runs/{doc['id']}/logs", headers=hdr,
                                 json=chunk, timeout=30).status_code == 200
            modes = _every_file(data)
    finally:
        os.umask(old)
    print("\n" + "\n".join(f"{oct(m)} {p}" for p, m in modes.items()))
    assert _mode(data) == 0o700
    assert modes["server.db"] == 0o600 and modes["server.db-wal"] == 0o600, modes
    assert modes.get("server.db-shm", 0o600) == 0o600
    for token in ("admin.token", "registration.token"):
        assert modes.get(token, 0o600) == 0o600, modes
    assert modes["logs"] == 0o700 and modes[f"logs/{doc['id']}"] == 0o700
    assert modes[f"logs/{doc['id']}/t.log"] == 0o600
    leaky = {p: oct(m) for p, m in modes.items() if m & 0o077}
    assert leaky == {}, leaky


def test_generated_tokens_are_0600_in_a_0700_dir(tmp_path: Path) -> None:
    from server_stub.auth import load_secret

    data = tmp_path / "fresh"
    secret = load_secret(data, "admin", None)
    assert secret.generated and _mode(data) == 0o700
    assert _mode(data / "admin.token") == 0o600
    os.chmod(data / "admin.token", 0o644)
    assert load_secret(data, "admin", None).hash == secret.hash
    assert _mode(data / "admin.token") == 0o600
