"""The order a journal reaches the server in: a task's start before its output, its output
before its end (a runner dying in between must strand neither), and every request under the
size limits. A recording client stands in for the server: the order is the Syncer's own logic."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from runner.api.protocol import DiffAck, DiffBatch, LogAck, LogChunk
from runner.limits import MAX_OPS_PER_BATCH, MAX_REQUEST_BYTES, json_size
from runner.state.journal import Journal
from runner.state.sync import Syncer


class Recorder:
    """Takes every request and remembers it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def send_diffs(self, run_id: str, batch: DiffBatch) -> DiffAck:
        self.calls.append(("diffs", batch))
        return DiffAck(applied=len(batch.diffs), duplicates=0, next_seq={})

    def send_log(self, run_id: str, chunk: LogChunk) -> LogAck:
        self.calls.append(("log", chunk))
        return LogAck(offset=chunk.offset + len(base64.b64decode(chunk.data)))


def _diff(seq: int, *ops: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "diff", "lease": "L", "diff": {"writer": "w", "seq": seq, "ops": list(ops)}}


def _status(task: str, status: str) -> dict[str, Any]:
    return {"op": "replace", "path": f"/tasks/{task}/status", "value": status}


def _log(task: str, offset: int, text: str) -> dict[str, Any]:
    return {"kind": "log", "lease": "L", "task": task, "offset": offset,
            "data": base64.b64encode(text.encode()).decode()}


def _summary(calls: list[tuple[str, Any]]) -> list[str]:
    out = []
    for kind, body in calls:
        if kind == "log":
            out.append(f"log {body.task}")
        else:
            out.append("diffs " + ",".join(str(d.seq) for d in body.diffs))
    return out


def test_start_then_output_then_end(tmp_path: Path) -> None:
    journal = Journal.for_run(tmp_path, "r1")
    journal.append([_diff(1, _status("t1", "Running")), _diff(2, _status("t2", "Running")),
                    _log("t1", 0, "one\n"), _log("t2", 0, "two\n"),
                    _diff(3, _status("t1", "Completed")), _log("t2", 4, "more\n"),
                    _diff(4, _status("t2", "Failed")), _diff(5, _status("t3", "Completed"))])
    client = Recorder()
    assert Syncer(client, journal).deliver() == 8  # type: ignore[arg-type]
    assert _summary(client.calls) == [
        "diffs 1,2", "log t1", "log t2",       # the starts, then the output so far
        "diffs 3", "log t2",                   # t1 ends only after its output went
        "diffs 4,5"]                           # t3 had no output here: no reason to wait


def test_batches_stay_under_the_request_limits(tmp_path: Path) -> None:
    journal = Journal.for_run(tmp_path, "r1")
    big = "x" * (1024 * 1024)  # 1 MiB per diff: a batch of 500 would be 500 MiB
    journal.append([_diff(i, {"op": "add", "path": f"/state/k{i}", "value": big})
                    for i in range(1, 21)])
    many = [{"op": "add", "path": f"/state/n{j}", "value": j} for j in range(30_000)]
    journal.append([_diff(21 + i, *many) for i in range(5)])  # 150,000 operations
    client = Recorder()
    assert Syncer(client, journal).deliver() == 25  # type: ignore[arg-type]
    batches = [body for kind, body in client.calls if kind == "diffs"]
    assert [d.seq for b in batches for d in b.diffs] == list(range(1, 26))
    for batch in batches:
        assert json_size(batch.model_dump(mode="json")) <= MAX_REQUEST_BYTES
        assert sum(len(d.ops) for d in batch.diffs) <= MAX_OPS_PER_BATCH


def _wait(predicate: Any, timeout: float = 10.0) -> None:
    from tests.helpers import wait_until

    wait_until(predicate, timeout=timeout, interval=0.005)


def test_output_alone_lingers_and_goes_as_one_request(tmp_path: Path) -> None:
    """A background syncer with `log_linger`: chunks a step prints within the linger are one
    request; without it each kick is one (the daemon sent 20 requests per 100-file shard)."""
    rows = []
    for linger in (0.0, 0.5):
        journal = Journal.for_run(tmp_path / str(linger), "r1")
        client = Recorder()
        syncer = Syncer(client, journal, log_linger=linger)  # type: ignore[arg-type]
        syncer.start()
        try:
            offset = 0
            for n in range(5):
                text = f"line {n}\n"
                journal.append([_log("t1", offset, text)])
                offset += len(text)
                syncer.kick()
                if linger == 0.0:  # each chunk goes before the next is printed
                    _wait(lambda j=journal: j.backlog() == 0)
            _wait(lambda j=journal: j.backlog() == 0)
        finally:
            syncer.stop()
        rows.append((linger, len(client.calls)))
        sent = b"".join(base64.b64decode(body.data) for _, body in client.calls)
        assert sent == b"".join(f"line {n}\n".encode() for n in range(5))
    print("\nlinger  log requests for 5 chunks\n" + "\n".join(f"{a:6} {b:3}" for a, b in rows))
    assert rows == [(0.0, 5), (0.5, 1)]


def test_a_diff_or_a_flush_does_not_wait_for_the_linger(tmp_path: Path) -> None:
    import time

    journal = Journal.for_run(tmp_path, "r1")
    client = Recorder()
    syncer = Syncer(client, journal, log_linger=60.0)  # type: ignore[arg-type]
    syncer.start()
    try:
        journal.append([_log("t1", 0, "out\n")])
        syncer.kick()
        time.sleep(0.2)  # lingering: nothing may have gone yet
        assert client.calls == []
        started = time.monotonic()
        journal.append([_diff(1, _status("t2", "Running"))])  # a state change: sent at once
        syncer.kick()
        _wait(lambda: journal.backlog() == 0)
        assert _summary(client.calls) == ["diffs 1", "log t1"]
        journal.append([_log("t1", 4, "more\n")])
        assert syncer.flush(timeout=10)  # a flush (a run's end, a drain) does not linger
        assert time.monotonic() - started < 10
        assert _summary(client.calls)[-1] == "log t1"
    finally:
        syncer.stop()
