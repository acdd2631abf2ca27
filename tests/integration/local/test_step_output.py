"""Step output of any shape reaches the task log complete and in order, in bounded memory.

Each row is a real `ferry run` whose step `cat`s a 20 MiB file: one line without a newline,
`\\r` progress updates, 1 MiB lines, short lines. The peak RSS of the `ferry` process is taken
from `getrusage(RUSAGE_CHILDREN)` in a small wrapper process (so nothing else this test session
started counts), and compared with the same run printing a few bytes. Before step output was
split at `MAX_LINE`, the line without a newline was held (and copied) whole: its run peaked
over 60 MiB above the small one, and took seconds per 20 MiB (quadratic).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.engine.step_output import MAX_LINE
from tests.integration.local.conftest import Ferry

SIZE = 20 * 1024 * 1024
BOUND = 16 * 1024 * 1024
"""Extra peak memory allowed for 20 MiB of output over a run printing a few bytes."""

WORKFLOW = """\
version: "1"
nodes:
  - id: out
    steps:
      - name: print
        run: cat payload
"""

MEASURE = """\
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"code": proc.returncode, "maxrss_kib": peak}))
"""


def _payload(kind: str) -> bytes:
    """SIZE bytes (about) of one output shape."""
    if kind == "tiny":
        return b"hello\n"
    if kind == "no-newline":
        return bytes(range(32, 127)) * (SIZE // 95)
    if kind == "cr-progress":
        return b"".join(b"downloading %8d of %d bytes\r" % (i, SIZE)
                        for i in range(SIZE // 38))
    if kind == "1mib-lines":
        return (b"y" * (1024 * 1024 - 1) + b"\n") * (SIZE // (1024 * 1024))
    if kind == "short-lines":
        return b"".join(b"line %07d\n" % i for i in range(SIZE // 13))
    raise AssertionError(kind)


def _run(ferry: Ferry, tmp_path: Path, kind: str) -> tuple[int, bytes]:
    """Peak RSS (bytes) of `ferry run` printing `kind`, and the task's log."""
    data = _payload(kind)
    (ferry.workdir / "payload").write_bytes(data)
    wf = tmp_path / "out.yaml"
    wf.write_text(WORKFLOW)
    proc = subprocess.run([sys.executable, "-c", MEASURE, *ferry.argv("run", "-w", str(wf))],
                          env=ferry.env, cwd=ferry.workdir, capture_output=True, timeout=300)
    result = json.loads(proc.stdout)
    assert result["code"] == 0, proc.stderr.decode(errors="replace")[-2000:]
    logs = list((ferry.home / "data" / "logs").glob("*/*.log"))
    log = max(logs, key=lambda p: p.stat().st_mtime)
    content = log.read_bytes()
    for old in logs:
        old.unlink()
    return int(result["maxrss_kib"]) * 1024, content


def test_large_outputs_complete_and_bounded(ferry: Ferry, tmp_path: Path) -> None:
    base, _ = _run(ferry, tmp_path, "tiny")
    rows = []
    failures = []
    for kind in ("no-newline", "cr-progress", "1mib-lines", "short-lines"):
        peak, content = _run(ferry, tmp_path, kind)
        expected = _payload(kind)
        complete = hashlib.sha256(content).digest() == hashlib.sha256(expected).digest()
        extra = peak - base
        rows.append(f"| {kind:<12} | {len(expected) / 2**20:6.1f} MiB | {extra / 2**20:7.1f} MiB"
                    f" | {'yes' if complete else 'NO'} |")
        if not complete:
            failures.append(f"{kind}: log differs from the output ({len(content)} bytes of "
                            f"{len(expected)})")
        if extra > BOUND:
            failures.append(f"{kind}: peak RSS {extra / 2**20:.1f} MiB above a tiny run's "
                            f"(bound {BOUND / 2**20:.0f} MiB)")
    print(f"\nbaseline peak RSS {base / 2**20:.1f} MiB; MAX_LINE {MAX_LINE} bytes")
    print("| output       | size       | extra peak | log complete |")
    print("\n".join(rows))
    assert not failures, failures


@pytest.mark.parametrize("kind", ["no-newline", "cr-progress"])
def test_long_lines_are_split_at_max_line(ferry: Ferry, tmp_path: Path, kind: str) -> None:
    """What the console shows: pieces of at most MAX_LINE bytes that rebuild the output."""
    data = _payload(kind)[: 3 * MAX_LINE + 123]
    (ferry.workdir / "payload").write_bytes(data)
    wf = tmp_path / "out.yaml"
    wf.write_text(WORKFLOW)
    proc = ferry("run", "-w", str(wf), "--json")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(ln) for ln in proc.stdout.splitlines()]
    shown = [e["line"] for e in lines if e.get("kind") == "output"]
    assert [len(s.encode()) for s in shown] == [MAX_LINE, MAX_LINE, MAX_LINE, 123]
    assert "".join(shown).encode() == data
