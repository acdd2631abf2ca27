"""The journal on real files: order, acks, compaction, checksums, torn tails, damage, the
owner's lock, crashes, and a real full disk (a small tmpfs)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import NoSpace, StateError
from runner.state import journal_lines
from runner.state.journal import COMPACT_AFTER, Journal, JournalBusy, journal_paths
from tests.helpers import wait_until
from tests.helpers.tmpfs import fill, free, small_disk


def _diff(seq: int, lease: str | None = None) -> dict[str, object]:
    op = {"op": "add", "path": f"/state/k{seq}", "value": seq}
    rec: dict[str, object] = {"kind": "diff", "diff": {"run_id": "r1", "writer": "w",
                                                       "seq": seq, "ops": [op]}}
    if lease:
        rec["lease"] = lease
    return rec


def _objects(path: Path) -> list[dict[str, object]]:
    return [journal_lines.decode(line) for line in path.read_bytes().splitlines()]


def _reopen(tmp_path: Path, j: Journal | None = None) -> Journal:
    if j is not None:
        j.close()
    return Journal.for_run(tmp_path, "r1")


def test_append_numbers_records_and_survives_reopen(tmp_path: Path) -> None:
    j = Journal.for_run(tmp_path, "r1")
    assert j.append([_diff(1, "L1"), _diff(2, "L1")]) == [1, 2]
    assert j.append([{"kind": "log", "task": "t", "offset": 0, "data": "aGk="}]) == [3]
    again = _reopen(tmp_path, j)
    assert [r.n for r in again.pending()] == [1, 2, 3]
    assert [r.kind for r in again.pending()] == ["diff", "diff", "log"]
    assert again.pending()[1].data["diff"]["seq"] == 2
    assert again.pending()[0].lease == "L1" and again.leases() == {"L1"}
    assert stat.S_IMODE(os.stat(tmp_path / "r1.jsonl").st_mode) == 0o600
    assert all(line.startswith(b'{"crc":"') for line in
               (tmp_path / "r1.jsonl").read_bytes().splitlines())


def test_a_lease_kept_inside_an_old_diff_record_is_still_found(tmp_path: Path) -> None:
    record = _diff(1)
    record["diff"]["lease"] = "old-style"  # type: ignore[index]
    j = Journal.for_run(tmp_path, "r1")
    j.append([record])
    assert _reopen(tmp_path, j).pending()[0].lease == "old-style"


def test_ack_survives_reopen_and_numbering_continues(tmp_path: Path) -> None:
    j = Journal.for_run(tmp_path, "r1")
    j.append([_diff(i) for i in range(1, 6)])
    j.ack(3)
    assert [r.n for r in j.pending()] == [4, 5]
    again = _reopen(tmp_path, j)
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
    objects = _objects(tmp_path / "r1.jsonl")
    assert objects[0] == {"kind": "ack", "upto": 7}
    assert [o["n"] for o in objects[1:]] == [8, 9, 10]
    assert not (tmp_path / "r1.jsonl.tmp").exists()
    assert Journal(tmp_path / "r1.jsonl", readonly=True).acked == 7
    assert j.append([_diff(11)]) == [11]  # appending after a rewrite goes to the new file
    assert [r.n for r in Journal(tmp_path / "r1.jsonl", readonly=True).pending()] == \
        [8, 9, 10, 11]
    j.ack(11)
    assert j.maybe_compact()
    assert not (tmp_path / "r1.jsonl").exists()
    assert list(journal_paths(tmp_path)) == []
    assert j.append([_diff(12)]) == [12]  # a new file after the deletion: no gap before 12
    again = Journal(tmp_path / "r1.jsonl", readonly=True)
    assert again.gap is None and [r.n for r in again.pending()] == [12]
    j.ack(12)
    j.maybe_compact()
    j.close()
    assert not (tmp_path / "r1.lock").exists()


def test_maybe_compact_waits_for_enough_acked_records(tmp_path: Path) -> None:
    j = Journal.for_run(tmp_path, "r1")
    j.append([_diff(i) for i in range(1, COMPACT_AFTER + 3)])
    j.ack(COMPACT_AFTER - 1)
    assert not j.maybe_compact()
    j.ack(COMPACT_AFTER)
    assert j.maybe_compact()
    assert len((tmp_path / "r1.jsonl").read_text().splitlines()) == 1 + 2


def test_one_owner_at_a_time(tmp_path: Path) -> None:
    j = Journal.for_run(tmp_path, "r1")
    j.append([_diff(1)])
    with pytest.raises(JournalBusy, match="in use by another ferry process"):
        Journal.for_run(tmp_path, "r1")
    snapshot = Journal(tmp_path / "r1.jsonl", readonly=True)  # a reader needs no ownership
    assert snapshot.backlog() == 1
    with pytest.raises(StateError, match="read-only"):
        snapshot.append([_diff(2)])
    j.close()
    assert Journal.for_run(tmp_path, "r1").backlog() == 1


def test_set_aside_moves_the_file_with_its_reason(tmp_path: Path) -> None:
    j = Journal.for_run(tmp_path, "r1")
    j.append([_diff(1, "L1"), _diff(2, "L1")])
    target = j.set_aside("superseded", "lease of attempt 1 was superseded by attempt 2")
    assert target.parent == tmp_path / "superseded" and target.name.startswith("r1.")
    assert not (tmp_path / "r1.jsonl").exists() and not (tmp_path / "r1.lock").exists()
    assert list(journal_paths(tmp_path)) == []
    objects = _objects(target)
    assert [o.get("n") for o in objects[:2]] == [1, 2]
    assert objects[-1] == {"kind": "aside", "why": "superseded",
                           "reason": "lease of attempt 1 was superseded by attempt 2"}
    with pytest.raises(StateError, match="closed"):
        j.append([_diff(3)])


@pytest.mark.parametrize("tail", [b'{"crc":"0badf00d","kind":"diff","n":3,"di',
                                  journal_lines.encode({"kind": "diff", "n": 3})[:-1],
                                  b"\0\0\0\0\0\0", b"garbage\n", b"\0\0\0\n\0\0\n"])
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
    assert again.torn == len(tail) and again.damage == [] and again.gap is None
    assert path.read_bytes() == good  # truncated away, appends start on a clean line
    assert again.append([_diff(3)]) == [3]
    assert [r.n for r in _reopen(tmp_path, again).pending()] == [1, 2, 3]


def test_a_damaged_record_in_the_middle_stops_delivery_at_it(tmp_path: Path) -> None:
    j = Journal.for_run(tmp_path, "r1")
    j.append([_diff(1), _diff(2), _diff(3)])
    j.close()
    path = tmp_path / "r1.jsonl"
    raw = path.read_bytes().split(b"\n")
    raw[1] = raw[1].replace(b'"value":2', b'"value":7')  # still JSON: only the checksum tells
    path.write_bytes(b"\n".join(raw))
    again = Journal.for_run(tmp_path, "r1")
    assert again.damage == ["line 2: checksum mismatch"]
    assert again.gap == 2
    assert [r.n for r in again.pending()] == [1]  # deliverable: what comes before the damage
    assert again.backlog() == 2  # record 3 is kept, not dropped
    with pytest.raises(StateError, match=r"damaged .*line 2"):
        again.append([_diff(4)])
    assert path.read_bytes() == b"\n".join(raw), "a damaged journal is never rewritten"


def test_damage_that_loses_nothing_unacknowledged_is_harmless(tmp_path: Path) -> None:
    j = Journal.for_run(tmp_path, "r1")
    j.append([_diff(1), _diff(2)])
    j.ack(1)
    j.append([_diff(3)])
    j.ack(2)
    j.close()
    path = tmp_path / "r1.jsonl"
    raw = path.read_bytes().split(b"\n")
    assert b'"upto":1' in raw[2]
    raw[2] = raw[2][:12] + b"#" + raw[2][13:]  # the first ack line
    raw[1] = b"\0" * len(raw[1])  # record 2: acknowledged by the ack after it
    path.write_bytes(b"\n".join(raw))
    again = Journal.for_run(tmp_path, "r1")
    assert len(again.damage) == 2 and again.gap is None
    assert [r.n for r in again.pending()] == [3]


def test_a_damaged_last_record_before_good_acks_is_a_gap(tmp_path: Path) -> None:
    j = Journal.for_run(tmp_path, "r1")
    j.append([_diff(1), _diff(2)])
    j.ack(1)
    j.close()
    path = tmp_path / "r1.jsonl"
    raw = path.read_bytes().split(b"\n")
    raw[1] = raw[1][:30] + b"\xff" + raw[1][31:]  # record 2; the ack of 1 after it is intact
    path.write_bytes(b"\n".join(raw))
    again = Journal.for_run(tmp_path, "r1")
    assert again.gap == 2 and again.pending() == []


def test_out_of_order_numbers_are_damage(tmp_path: Path) -> None:
    path = tmp_path / "r1.jsonl"
    path.write_bytes(b"".join(journal_lines.encode(o) for o in (
        {"kind": "diff", "n": 2, "diff": {}}, {"kind": "diff", "n": 1, "diff": {}},
        {"kind": "diff", "n": 3, "diff": {}})))
    j = Journal.for_run(tmp_path, "r1")
    assert j.damage == ["line 2: record number 1 after 2"] and j.gap == 1


def test_journals_written_before_checksums_are_read_and_extended(tmp_path: Path) -> None:
    path = tmp_path / "r1.jsonl"
    path.write_text('{"kind":"diff","n":1,"diff":{"writer":"w","seq":1,"ops":[],'
                    '"lease":"L0"}}\n{"kind":"ack","upto":1}\n'
                    '{"kind":"log","n":2,"task":"t","offset":0,"data":"aGk="}\n')
    j = Journal.for_run(tmp_path, "r1")
    assert [r.n for r in j.pending()] == [2] and j.damage == []
    j.append([_diff(2)])
    again = _reopen(tmp_path, j)
    assert [r.n for r in again.pending()] == [2, 3] and again.damage == []


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
    again = Journal.for_run(tmp_path, "r1")  # the dead writer's lock is gone with it
    numbers = [r.n for r in again.pending()]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 20
    assert all(r.data["offset"] == r.n for r in again.pending())
    assert path.read_bytes().endswith(b"\n") and again.damage == []
    assert again.append([{"kind": "finish", "status": "Failed"}]) == [len(numbers) + 1]


def test_a_full_disk_keeps_whole_records_only(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "1m") as disk:
        j = Journal.for_run(disk / "journal", "r1")
        written = 0
        with pytest.raises(NoSpace) as info:
            for i in range(1, 1000):
                # 100 KB records: the one that does not fit is cut short by the kernel
                j.append([{"kind": "log", "task": "t", "offset": i, "data": "y" * 100_000}])
                written = i
        assert str(info.value).startswith(f"no space left on device under {disk / 'journal'}")
        path = disk / "journal" / "r1.jsonl"
        assert path.read_bytes().endswith(b"\n"), "half a record was left behind"
        j.ack(2)  # an acknowledgement that cannot be written is kept in memory
        assert [r.n for r in j.pending()][:1] == [3]
        fill(disk)
        big = {"kind": "log", "task": "t", "offset": 0, "data": "z" * 20_000}
        with pytest.raises(NoSpace):
            j.append([big])  # (a few bytes might still fit in the last page of the file)
        free(disk)
        assert j.append([_diff(1)]) == [written + 1]  # after the failures, numbering goes on
        again = _reopen(disk / "journal", j)
        assert again.damage == [] and again.torn == 0
        assert [r.n for r in again.pending()] == list(range(1, written + 2)) or \
            [r.n for r in again.pending()] == list(range(3, written + 2))
        assert [r.data.get("offset") for r in again.pending()][-2:] == [written, None]
        again.close()


def test_compaction_on_a_full_disk_keeps_the_file_and_deletion_still_works(
        tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "1m") as disk:
        j = Journal.for_run(disk / "journal", "r1")
        j.append([_diff(i) for i in range(1, COMPACT_AFTER + 3)])
        fill(disk)
        j.ack(COMPACT_AFTER + 1)
        assert not j.maybe_compact()  # no room for the rewrite: the file stays as it was
        assert json.dumps(1) and (disk / "journal" / "r1.jsonl").exists()
        j.ack(COMPACT_AFTER + 2)
        assert j.maybe_compact()  # everything acknowledged: deleting needs no room
        assert list(journal_paths(disk / "journal")) == []
        j.close()
