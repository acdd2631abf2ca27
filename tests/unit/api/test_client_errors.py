"""The client's typed answers and typed errors, against canned HTTP answers (`responses`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import responses

from runner.api.client import ControlClient
from runner.api.protocol import DiffBatch, LogChunk, WireDiff
from runner.api.retry import is_transient
from runner.errors import AuthError, Conflict, LeaseLost, PermanentError, TransientError

BASE = "http://cp.test"
API = BASE + "/api/v1"
TOKEN = "s3cret-runner-token"


@pytest.fixture
def client() -> ControlClient:
    return ControlClient(BASE + "/", TOKEN, timeout=2)


def _err(code: str, message: str = "no", **extra: object) -> dict[str, object]:
    return {"error": code, "message": message, **extra}


@responses.activate
def test_claim_parses_the_run_and_sends_the_token(client: ControlClient) -> None:
    responses.post(API + "/runs/claim", json={
        "run": {"id": "r1", "repo": "demo", "commit": "abc", "workflow_path": "wf.yaml",
                "params": {}, "labels": ["linux"], "attempt": 1},
        "lease": {"token": "L1", "ttl": 30}})
    got = client.claim(["linux"], wait=0.5)
    assert got is not None and got.run.id == "r1" and got.lease.token == "L1"
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(sent.body) == {"labels": ["linux"], "capacity": 1, "wait": 0.5}


@responses.activate
def test_claim_204_is_none(client: ControlClient) -> None:
    responses.post(API + "/runs/claim", status=204)
    assert client.claim([], wait=0) is None


@pytest.mark.parametrize("status", [500, 502, 503, 429])
@responses.activate
def test_5xx_and_429_are_transient(client: ControlClient, status: int) -> None:
    responses.get(API + "/runs/r1", status=status, body="busy")
    with pytest.raises(TransientError) as info:
        client.get_run("r1")
    assert is_transient(info.value)


@responses.activate
def test_connection_error_is_transient_and_hides_the_token(client: ControlClient) -> None:
    responses.get(API + "/runs/r1", body=requests.ConnectionError("Connection refused"))
    with pytest.raises(TransientError) as info:
        client.get_run("r1")
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)
    assert TOKEN not in repr(client)


@responses.activate
def test_timeout_is_transient(client: ControlClient) -> None:
    responses.post(API + "/runs/r1/heartbeat", body=requests.ReadTimeout("slow"))
    with pytest.raises(TransientError, match=r"http://cp\.test did not answer within 2s"):
        client.heartbeat("r1", "L1")


def test_cannot_connect_names_the_url_without_credentials(tmp_path: Path) -> None:
    # a real refused connection: nothing listens on a port we bound and closed
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ControlClient(f"http://user:pa55word@127.0.0.1:{port}/prefix", TOKEN, timeout=2)
    with pytest.raises(TransientError) as info:
        client.claim([], wait=0)
    text = str(info.value)
    assert f"cannot connect to the control plane at http://127.0.0.1:{port}/prefix" in text
    assert "pa55word" not in text and "user" not in text and TOKEN not in text


@pytest.mark.parametrize("status", [401, 403])
@responses.activate
def test_auth_errors(client: ControlClient, status: int) -> None:
    responses.get(API + "/runs", status=status, json=_err("unauthorized", "bad token"))
    with pytest.raises(AuthError) as info:
        client.list_runs()
    assert info.value.status == status and not is_transient(info.value)
    assert "bad token" in str(info.value)


@responses.activate
def test_lease_lost(client: ControlClient) -> None:
    responses.post(API + "/runs/r1/diffs", status=409, json=_err("lease_lost", "superseded"))
    batch = DiffBatch(lease="L1", diffs=[WireDiff(writer="w", seq=1, ops=[])])
    with pytest.raises(LeaseLost):
        client.send_diffs("r1", batch)


@responses.activate
def test_seq_gap_carries_expected_seq(client: ControlClient) -> None:
    responses.post(API + "/runs/r1/diffs", status=409, json=_err("seq_gap", "gap", expected_seq=4))
    batch = DiffBatch(diffs=[WireDiff(writer="w", seq=7, ops=[])])
    with pytest.raises(Conflict) as info:
        client.send_diffs("r1", batch)
    assert info.value.code == "seq_gap" and info.value.expected_seq == 4
    assert not is_transient(info.value)


@responses.activate
def test_offset_mismatch_carries_offset(client: ControlClient) -> None:
    responses.post(API + "/runs/r1/logs", status=409,
                   json=_err("offset_mismatch", "offset", offset=12))
    with pytest.raises(Conflict) as info:
        client.send_log("r1", LogChunk(task="t", offset=20, data=""))
    assert info.value.code == "offset_mismatch" and info.value.offset == 12


@responses.activate
def test_other_4xx_is_permanent_with_status_and_body(client: ControlClient) -> None:
    responses.get(API + "/runs/nope", status=404, json=_err("not_found", "no run nope"))
    with pytest.raises(PermanentError) as info:
        client.get_run("nope")
    assert info.value.status == 404 and isinstance(info.value.body, dict)
    assert "no run nope" in str(info.value)
    assert type(info.value) is PermanentError


@responses.activate
def test_bad_answer_shape_is_permanent(client: ControlClient) -> None:
    responses.post(API + "/runs/r1/heartbeat", json={"unexpected": True})
    with pytest.raises(PermanentError, match="unexpected answer"):
        client.heartbeat("r1", "L1")


@responses.activate
def test_archive_streams_to_file(client: ControlClient, tmp_path: Path) -> None:
    blob = bytes(range(256)) * 1000
    responses.get(API + "/repos/demo/archive/abc", body=blob)
    dest = tmp_path / "a.tgz"
    assert client.get_archive("demo", "abc", dest) == len(blob)
    assert dest.read_bytes() == blob


@responses.activate
def test_blob_path_is_quoted(client: ControlClient) -> None:
    responses.get(API + "/repos/my%2Frepo/blob/abc/dir/wf%20x.yaml", body=b"version: 1")
    assert client.get_blob("my/repo", "abc", "dir/wf x.yaml") == b"version: 1"
