"""The live status footer of `ferry run`/`resume`, on a real pseudo-terminal.

The child's stdout and stderr are the slave side of `os.openpty()`; the test reads the master
side. A tiny terminal model (carriage return, line feed, cursor up, erase to end of screen, SGR
colors) replays the bytes so the test can compare what stays on the screen with the piped
transcript of the same workflow.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import struct
import subprocess
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.integration.local.conftest import Ferry

COLUMNS, ROWS = 120, 40

GATED = """\
version: "1"
nodes:
  - id: gate
    name: Gate
    type: automatic
    steps:
      - name: wait
        run: |
          echo waiting
          while [ ! -e "{go}" ]; do sleep 0.05; done
          echo through
  - id: after
    name: After
    type: automatic
    depends_on: [gate]
    steps:
      - name: done
        # Lasts past the redraw interval: the footer is on screen when the run ends, so the
        # final erase is what removes it.
        run: echo finished; sleep 0.3
"""

APPROVAL = """\
version: "1"
nodes:
  - id: prepare
    name: Prepare
    type: automatic
    steps:
      - name: prep
        run: echo prepared
  - id: deploy
    name: Deploy
    type: automatic
    depends_on: [prepare]
    trigger:
      type: manual
    steps:
      - name: go
        run: |
          while [ ! -e "{go}" ]; do sleep 0.05; done
          echo deployed
"""

_CSI = re.compile(r"\x1b\[([0-9;]*)([A-Za-z])")


def screen(raw: str) -> list[str]:
    """The lines left on a terminal after `raw` (no automatic wrapping: footer lines are kept
    narrower than the terminal)."""
    lines: list[str] = [""]
    row = col = 0
    pos = 0
    while pos < len(raw):
        match = _CSI.match(raw, pos)
        if match:
            arg, op = match.group(1), match.group(2)
            if op == "A":
                row = max(0, row - int(arg or 1))
            elif op == "J":
                lines[row] = lines[row][:col]
                del lines[row + 1:]
            elif op == "K":
                lines[row] = lines[row][:col]
            elif op != "m":
                raise AssertionError(f"unexpected escape sequence {match.group(0)!r}")
            pos = match.end()
            continue
        char = raw[pos]
        pos += 1
        if char == "\r":
            col = 0
        elif char == "\n":
            row += 1
            while len(lines) <= row:
                lines.append("")
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + char + line[col + 1:]
            col += 1
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.rstrip() for line in lines]


def normalized(lines: list[str]) -> list[str]:
    """Transcript lines without what differs from run to run (times, ids, durations)."""
    out = []
    for line in lines:
        line = re.sub(r"\[\d{4}-\d\d-\d\dT[\d:]+Z\]", "[TS]", line)
        line = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "ID", line)
        out.append(re.sub(r"\b\d\d:\d\d:\d\d\b", "HH:MM:SS", line))
    return out


class PtyRun:
    """`ferry ARGS` with a pseudo-terminal as stdout/stderr; output collected by a thread."""

    def __init__(self, ferry: Ferry, *args: str, env: dict[str, str] | None = None,
                 columns: int = COLUMNS) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, columns, 0, 0))
        child_env = {**ferry.env, "TERM": "xterm", **(env or {})}
        for name in ("NO_COLOR", "FERRY_LIVE"):
            if env is None or name not in env:
                child_env.pop(name, None)
        self.proc = subprocess.Popen(ferry.argv(*args), env=child_env, cwd=ferry.workdir,
                                     stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                                     start_new_session=True)
        os.close(slave)
        self._master = master
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: every slave descriptor is closed (the child exited)
                return
            if not data:
                return
            with self._lock:
                self._chunks.append(data)

    @property
    def raw(self) -> str:
        """Everything the child wrote so far."""
        with self._lock:
            return b"".join(self._chunks).decode("utf-8", "replace")

    def finish(self, timeout: float = 60) -> int:
        """Wait for exit and for the last bytes; the exit code."""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        """Stop a run a failed test left behind: SIGTERM makes ferry cancel the run and kill its
        steps (which run in sessions of their own: killing ferry's group would orphan them);
        SIGKILL only if it does not exit."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(timeout=10)
        os.close(self._master)


@pytest.fixture
def pty_runs() -> Iterator[list[PtyRun]]:
    """Collects the pty runs of a test and kills leftovers at the end."""
    runs: list[PtyRun] = []
    yield runs
    for run in runs:
        run.kill()


def _gated(ferry: Ferry, text: str = GATED) -> tuple[Path, Path]:
    go = ferry.workdir / "go"
    wf = ferry.workdir / "wf.yaml"
    wf.write_text(text.format(go=go))
    return wf, go


def test_footer_shows_running_task_ticks_and_is_erased(ferry: Ferry,
                                                       pty_runs: list[PtyRun]) -> None:
    wf, go = _gated(ferry)
    run = PtyRun(ferry, "run", "-w", str(wf))
    pty_runs.append(run)
    wait_until(lambda: "> gate (00:00:00)" in run.raw, timeout=30, message="footer")
    footer = run.raw[run.raw.rindex("Running 1"):]
    assert "Completed 0" in footer and "Pending 1" in footer and "Failed 0" in footer
    assert "AwaitingTrigger 0" in footer and "Blocked 0" in footer
    assert "\x1b[" in run.raw  # drawn with escapes, on top of the plain lines
    # The elapsed time ticks without any event (the ticker thread redraws it).
    wait_until(lambda: "> gate (00:00:01)" in run.raw, timeout=30, message="elapsed tick")
    assert "  [gate] through" not in run.raw
    go.touch()
    assert run.finish() == 0
    shown = screen(run.raw)
    assert not [line for line in shown if "Running " in line and " | " in line], shown
    assert not [line for line in shown if line.startswith("  > ")], shown
    # What stays on the screen is exactly the piped transcript of the same workflow.
    piped = ferry("run", "-w", str(wf))
    assert piped.returncode == 0, piped.stderr
    assert "\x1b" not in piped.stdout
    assert normalized(shown) == normalized(piped.stdout.splitlines())
    assert any(line.endswith("Workflow completed") for line in shown)
    assert "  [gate] waiting" in shown and "  [after] finished" in shown


def test_resume_footer_counts_tasks_done_before(ferry: Ferry, pty_runs: list[PtyRun]) -> None:
    wf, go = _gated(ferry, APPROVAL)
    first = ferry("run", "-w", str(wf))
    assert first.returncode == 3, first.stdout + first.stderr
    run_id = ferry.run_id(first.stdout)
    run = PtyRun(ferry, "resume", "-i", run_id, "--trigger-all")
    pty_runs.append(run)
    wait_until(lambda: "> deploy (" in run.raw, timeout=30, message="resume footer")
    footer = run.raw[run.raw.rindex("Running 1"):]
    # `prepare` completed in the first process: the board starts from the stored run.
    assert "Completed 1" in footer and "Pending 0" in footer
    go.touch()
    assert run.finish() == 0
    shown = screen(run.raw)
    assert not [line for line in shown if line.startswith("  > ") or " | Completed" in line]
    assert "  [deploy] deployed" in shown
    assert shown[-1].endswith("Workflow completed")


def test_no_color_keeps_the_footer_without_colors(ferry: Ferry,
                                                  pty_runs: list[PtyRun]) -> None:
    wf, go = _gated(ferry)
    run = PtyRun(ferry, "run", "-w", str(wf), env={"NO_COLOR": "1"})
    pty_runs.append(run)
    wait_until(lambda: "> gate (" in run.raw, timeout=30, message="footer")
    go.touch()
    assert run.finish() == 0
    assert "Running 1 | Completed 0" in run.raw
    assert not re.search(r"\x1b\[[0-9;]*m", run.raw)


@pytest.mark.parametrize("how", ["dumb-terminal", "json", "switched-off"])
def test_plain_output_on_a_terminal_when_asked(ferry: Ferry, pty_runs: list[PtyRun],
                                               how: str) -> None:
    wf, go = _gated(ferry)
    go.touch()
    args = ["run", "-w", str(wf)] + (["--json"] if how == "json" else [])
    env = {"dumb-terminal": {"TERM": "dumb"}, "json": {},
           "switched-off": {"FERRY_LIVE": "0"}}[how]
    run = PtyRun(ferry, *args, env=env)
    pty_runs.append(run)
    assert run.finish() == 0
    assert "\x1b" not in run.raw
    lines = run.raw.replace("\r\n", "\n").splitlines()
    if how == "json":
        assert all(isinstance(json.loads(line), dict) for line in lines)
    else:
        assert "  [gate] through" in lines and lines[-1].endswith("Workflow completed")


def test_screen_model_replays_erase_and_redraw() -> None:
    raw = "a\r\nfoot1\r\nfoot2\r\x1b[1A\x1b[Jb\r\n\x1b[36mfoot\x1b[0m\r\x1b[J"
    assert screen(raw) == ["a", "b"]


def test_board_wraps_at_the_width_and_folds_extra_running_tasks() -> None:
    from runner.cli.live_board import TaskBoard
    from runner.engine.events import RunStarted, TaskStatusChanged

    board = TaskBoard()
    board.seed({"workflow": {"nodes": [{"id": "n"}, {"id": "late", "depends_on": ["n"]}]},
                "tasks": {}}, now=0.0)
    board.update(RunStarted("r", "ts"), now=0.0)
    for i in range(12):
        board.update(TaskStatusChanged("r", "ts", f"t{i}", "n", f"n{i:02d}", "Running",
                                       "Pending"), now=float(i))
    lines = board.footer(75.0, 60, color=False, max_lines=6)
    print("\n".join(lines))
    assert all(len(line) <= 59 for line in lines)
    # every count is there, wrapped at a separator rather than cut off
    counts = " | ".join(lines[:2])
    assert lines[0].startswith("Running 12 | Completed 0 | Failed 0 | AwaitingTrigger 0")
    for part in ("Blocked 0", "Queued 0", "Pending 1", "00:01:15"):
        assert part in counts, counts
    # oldest first, then a count of the ones that did not fit
    assert lines[2:] == ["  > n00 (00:01:15)", "  > n01 (00:01:14)", "  > n02 (00:01:13)",
                         "  ... and 9 more running"]
    long = TaskBoard()
    long.seed({"tasks": {}}, now=0.0)
    long.update(TaskStatusChanged("r", "ts", "x", "n", "n, shard: " + "x" * 80, "Running",
                                  "Pending"), now=0.0)
    wrapped = long.footer(5.0, 40, color=False, max_lines=8)
    assert all(len(line) <= 39 for line in wrapped)
    assert "".join(w.strip() for w in wrapped).endswith("x" * 10 + " (00:00:05)")
    board.update(TaskStatusChanged("r", "ts", "t0", "n", "n00", "Failed", "Running"), now=80.0)
    wide = board.footer(80.0, 200, color=True, max_lines=5)[0]
    assert "\x1b[31mFailed 1\x1b[0m" in wide and "Pending 1" in wide and "00:01:20" in wide


def test_board_counts_tasks_waiting_for_a_slot_apart_from_pending_ones() -> None:
    from runner.cli.live_board import TaskBoard
    from runner.engine.events import MatrixTasksCreated, TaskStatusChanged

    wf = {"nodes": [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d", "depends_on": ["a"]},
                    {"id": "m", "strategy": {"type": "matrix", "values": [{"k": 1}]}},
                    {"id": "e", "depends_on": ["m"]}]}
    tasks = {n: {"id": n, "node_id": n, "status": "Pending"} for n in "abcde"}
    board = TaskBoard()
    board.seed({"workflow": wf, "tasks": tasks}, now=0.0)
    board.update(MatrixTasksCreated("r", "ts", "m", "mm", []), now=0.0)
    board.update(TaskStatusChanged("r", "ts", "a", "a", "a", "Running", "Pending"), now=0.0)
    counts = board.counts()
    # b and c could run but --max-parallel is full; d waits for a, e for the matrix node m
    assert (counts["Running"], counts["Queued"], counts["Pending"]) == (1, 2, 2), counts
    board.update(TaskStatusChanged("r", "ts", "a", "a", "a", "Completed", "Running"), now=1.0)
    assert board.counts()["Queued"] == 3  # d is ready now
    board.update(TaskStatusChanged("r", "ts", "mm", "m", "m", "Completed", "Running",
                                   master=True), now=2.0)
    assert (board.counts()["Queued"], board.counts()["Pending"]) == (4, 0)
    board.update(TaskStatusChanged("r", "ts", "b", "b", "b", "Failed", "Running",
                                   error="stopped during step 'x'", canceled=True), now=3.0)
    assert board.counts()["Canceled"] == 1 and board.counts()["Failed"] == 0


def test_a_narrow_terminal_wraps_the_footer_and_shows_queued_tasks(
        ferry: Ferry, pty_runs: list[PtyRun]) -> None:
    go = ferry.workdir / "go"
    wf = ferry.workdir / "wf.yaml"
    wf.write_text('version: "1"\nnodes:\n' + "".join(
        f"  - id: {n}\n    steps:\n      - run: while [ ! -e {go} ]; do sleep 0.05; done\n"
        for n in ("one", "two", "three")) +
        "  - id: last\n    depends_on: [one, two, three]\n    steps:\n      - run: echo done\n")
    run = PtyRun(ferry, "run", "-w", str(wf), "--max-parallel", "1", columns=60)
    pty_runs.append(run)
    wait_until(lambda: "Queued 2" in run.raw and "Pending 1" in run.raw, timeout=30,
               message="a footer with Queued 2 and Pending 1")
    raw = run.raw
    drawn = raw[raw.rindex("Running 1"):]
    footer_lines = [re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", ln) for ln in drawn.split("\n")]
    assert all(len(ln.rstrip("\r")) <= 59 for ln in footer_lines), footer_lines
    go.touch()
    assert run.finish() == 0
    shown = screen(run.raw)
    assert not [line for line in shown if " | " in line or line.startswith("  > ")], shown
    assert shown[-1].endswith("Workflow completed")


def test_a_skipped_step_is_shown_in_the_live_view(ferry: Ferry,
                                                 pty_runs: list[PtyRun]) -> None:
    wf = ferry.workdir / "skip.yaml"
    wf.write_text('version: "1"\nnodes:\n  - id: a\n    steps:\n'
                  '      - {name: first, run: echo first}\n'
                  '      - {name: deploy, if: "false", run: echo deployed}\n')
    run = PtyRun(ferry, "run", "-w", str(wf))
    pty_runs.append(run)
    assert run.finish() == 0
    shown = screen(run.raw)
    assert any(line.endswith("step 2 'deploy' skipped: condition 'false' is false")
               for line in shown), shown
    assert "  [a] deployed" not in shown
