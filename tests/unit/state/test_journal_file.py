"""The journal on real files: order, acks, compaction, torn tails, damaged lines, crashes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import StateError
from runner.state.journal import COMPACT_AFTER, Journal, journal_paths
from tests.helpers import wait_until


def _diff(seq: int) -> dict[str, object]:
    op = {"op": "add", "path": f"/state/k{seq}", "value": seq}
    return {"kind": "diff", "diff": {"run_id": "r1", "writer": "w", "seq": seq, "ops": [op]}}


def test_append_numbers_records_and_survives_reopen(tmp_path: Path) -> None:
    j = Journal.for_run(tmp_path, "r1")
    assert j.append([_diff(1), _diff(2)]) == [1, 2]
    assert j.append([{"kind": "log", "task": "t", "offset": 0, "data": "aGk="}]) == [3]
    j.close()
    again = Journal.for_run(tmp_path, "r1")
    assert [r.n for r in again.pending()] == [1, 2, 3]
    assert [r.kind for r in again.pending()] == ["diff", "diff", "log"]
    assert again.pending()[1].data["diff"]["seq"] == 2
    assert stat.S_IMODE(os.stat(tmp_path / "r1.jsonl").st_mode) == 0o600


def test_ack_survives_reopen_and_numbering_continues(tmp_path: Path) -> None:
    j = Journal.for_run(tmp_path, "r1")
    j.append([_diff(i) for i in range(1, 6)])
    j.ack(3)
    assert [r.n for r in j.pending()] == [4, 5]
    j.close()
    again = Journal.for_run(tmp_path, "r1")
    assert again.acked == 3 and [r.n for r in again.pending()] == [4, 5]
    assert again.append([_diff(6)]) == [6]


def test_ack_beyond_last_record_is_refused(tmp_path: Path) -> None:
    j = Journal.for_run(tmp_path, "r1")
    j.append([_diff(1)])
    with pytest.raises(StateError, match="beyond"):
        j.ack(2)


def test_compaction_keeps_only_unacked_and_deletes_when_all_acked(tmp_path: Path) -> None:
    j = Journal.for_run(tmp_path, "r1")
    j.append([_diff(i) for i in range(1, 11)])
    j.ack(7)
    j.compact()
    lines = (tmp_path / "r1.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"kind": "ack", "upto": 7}
    assert [json.loads(x)["n"] for x in lines[1:]] == [8, 9, 10]
    assert not (tmp_path / "r1.jsonl.tmp").exists()
    assert Journal.for_run(tmp_path, "r1").acked == 7
    assert j.append([_diff(11)]) == [11]  # appending after a rewrite goes to the new file
    assert [r.n for r in Journal.for_run(tmp_path, "r1").pending()] == [8, 9, 10, 11]
    j.ack(11)
    assert j.maybe_compact()
    assert not (tmp_path / "r1.jsonl").exists()
    assert list(journal_paths(tmp_path)) == []


def test_maybe_compact_waits_for_enough_acked_records(tmp_path: Path) -> None:
    j = Journal.for_run(tmp_path, "r1")
    j.append([_diff(i) for i in range(1, COMPACT_AFTER + 3)])
    j.ack(COMPACT_AFTER - 1)
    assert not j.maybe_compact()
    j.ack(COMPACT_AFTER)
    assert j.maybe_compact()
    assert len((tmp_path / "r1.jsonl").read_text().splitlines()) == 1 + 2


def test_lost_journal_is_kept(tmp_path: Path) -> None:
    j = Journal.for_run(tmp_path, "r1")
    j.append([_diff(1)])
    j.ack(1)
    j.mark_lost("lease superseded")
    assert not j.maybe_compact()
    j.compact()
    assert (tmp_path / "r1.jsonl").exists()
    assert Journal.for_run(tmp_path, "r1").lost == "lease superseded"


@pytest.mark.parametrize("tail", [b'{"kind":"diff","n":3,"di', b'{"kind":"diff","n":3}',
                                  b"\0\0\0\0\0\0", b"garbage\n"])
def test_torn_tail_is_truncated_not_fatal(tmp_path: Path, tail: bytes) -> None:
    j = Journal.for_run(tmp_path, "r1")
    j.append([_diff(1), _diff(2)])
    j.close()
    path = tmp_path / "r1.jsonl"
    good = path.read_bytes()
    with open(path, "ab") as fh:
        fh.write(tail)
    again = Journal.for_run(tmp_path, "r1")
    assert [r.n for r in again.pending()] == [1, 2]
    assert path.read_bytes() == good  # truncated away, appends start on a clean line
    assert again.append([_diff(3)]) == [3]
    assert [r.n for r in Journal.for_run(tmp_path, "r1").pending()] == [1, 2, 3]


def test_damaged_middle_line_is_a_clear_error(tmp_path: Path) -> None:
    j = Journal.for_run(tmp_path, "r1")
    j.append([_diff(1), _diff(2), _diff(3)])
    j.close()
    path = tmp_path / "r1.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1][:10] + b"#" + lines[1][11:]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(StateError, match=r"r1\.jsonl:2: damaged journal line"):
        Journal.for_run(tmp_path, "r1")


def test_out_of_order_numbers_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "r1.jsonl"
    path.write_text('{"kind":"diff","n":2,"diff":{}}\n{"kind":"diff","n":1,"diff":{}}\n'
                    '{"kind":"diff","n":3,"diff":{}}\n')
    with pytest.raises(StateError, match=":2:"):
        Journal.for_run(tmp_path, "r1")


_WRITER = r"""
import sys
from pathlib import Path
from runner.state.journal import Journal
j = Journal.for_run(Path(sys.argv[1]), "r1")
i = 0
while True:
    i += 1
    # big records make a kill in the middle of a write likely
    j.append([{"kind": "log", "task": "t", "offset": i, "data": "x" * 200_000}])
    if i == 3:
        print("ready", flush=True)
"""


def test_sigkilled_writer_leaves_a_readable_journal(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], cwd=repo,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        path = tmp_path / "r1.jsonl"
        wait_until(lambda: path.stat().st_size > 20 * 200_000, message="journal growth")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    again = Journal.for_run(tmp_path, "r1")
    numbers = [r.n for r in again.pending()]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 20
    assert all(r.data["offset"] == r.n for r in again.pending())
    assert path.read_bytes().endswith(b"\n")
    assert again.append([{"kind": "finish", "status": "Failed"}]) == [len(numbers) + 1]
