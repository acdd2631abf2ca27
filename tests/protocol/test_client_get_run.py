"""`ControlClient.get_run` against the server under test: the document, and with
`history=True` the same document plus every diff in order (what `ferry status --history
--server` shows)."""

from __future__ import annotations

import pytest

from runner.api.client import ControlClient
from runner.api.protocol import DiffBatch, WireDiff
from runner.document import new_run, run_field_op, state_set_op
from runner.errors import PermanentError
from tests.protocol.api import Server


def test_get_run_with_and_without_history(server: Server) -> None:
    runner = server.register()
    assert runner.api.token is not None
    reporter = ControlClient(server.url, runner.api.token, timeout=20)
    admin = ControlClient(server.url, server.admin_token, timeout=20)
    try:
        doc = new_run({"version": "1", "nodes": []}, name="get-run", params={},
                      created_at="2026-01-01T00:00:00Z")
        run_id = str(doc["id"])
        reporter.report_run(doc)
        diffs = [WireDiff(writer="local", seq=1, ops=[run_field_op("status", "Running")]),
                 WireDiff(writer="local", seq=2, ops=[state_set_op("k", [1, "two"])])]
        assert reporter.send_diffs(run_id, DiffBatch(diffs=diffs)).applied == 2

        plain = admin.get_run(run_id)
        assert "history" not in plain
        assert plain["status"] == "Running" and plain["state"] == {"k": [1, "two"]}

        full = admin.get_run(run_id, history=True)
        history = full.pop("history")
        assert full == plain
        assert [(d["writer"], d["seq"]) for d in history] == [("local", 1), ("local", 2)]
        assert history[1]["ops"] == [state_set_op("k", [1, "two"])]

        with pytest.raises(PermanentError) as info:
            admin.get_run("00000000-0000-4000-8000-0000000000ff", history=True)
        assert info.value.status == 404
    finally:
        reporter.close()
        admin.close()
