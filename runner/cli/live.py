"""Printing engine events as a run goes: Butterflow's timestamped lines, task output prefixed with
its task, or JSON Lines with `--json`. Lines are flushed one by one so that a pipe (a test, `tee`,
a CI log) sees them as they happen. On a terminal, `LiveView` prints the same lines and keeps a
status footer below them, redrawn in place; it is erased at the end, so the final transcript on
the screen is the piped one.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from runner.cli.live_board import MAX_RUNNING_LINES, TaskBoard
from runner.cli.render import reason, stamp
from runner.engine.events import (
    Event,
    MatrixTasksCreated,
    OutputLine,
    RunStarted,
    StepFinished,
    StepSkipped,
    TaskRetrying,
    TaskStatusChanged,
    TaskTriggered,
)


def _matrix_title(matrix: dict[str, Any]) -> str:
    """`Team frontend` for {"team": "frontend"}, as Butterflow's matrix block writes it."""
    parts = []
    for key, value in matrix.items():
        if key == "_meta_files" and isinstance(value, list):  # a shard's files: how many
            parts.append(f"{len(value)} file{'s' if len(value) != 1 else ''}")
            continue
        if key.startswith("_meta_"):
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        parts.append(f"{key[:1].upper()}{key[1:]} {text}")
    return ", ".join(parts) or "Item"


def event_lines(event: Event) -> list[str]:
    """The plain-text lines of one event (possibly none)."""
    ts = stamp(event.ts)
    if isinstance(event, RunStarted):
        if event.resumed:
            return [f"{ts} Workflow resumed (ID: {event.run_id})"]
        return [f"{ts} Workflow started with ID: {event.run_id}"]
    if isinstance(event, TaskStatusChanged):
        return _status_lines(ts, event)
    if isinstance(event, MatrixTasksCreated):
        if not event.children:  # a from_state master before its state exists: said once, later
            return []
        lines = [f"{ts} Created matrix tasks for {event.node_id}:"]
        if event.master_id:
            lines.append(f"  - Master task: {event.master_id}")
        lines += [f"  - {_matrix_title(c.matrix)}: {c.task_id} ({c.status})"
                  for c in event.children]
        return lines
    if isinstance(event, OutputLine):
        return [f"  [{event.label}] {event.line}"]
    if isinstance(event, StepFinished):
        if event.ok or event.result == "canceled":  # the task's Canceled line says it
            return []
        return [f"{ts} Task {event.label} ({event.task_id}): step {event.index + 1} "
                f"'{event.name}' failed: {event.result}"]
    if isinstance(event, StepSkipped):
        return [f"{ts} Task {event.label} ({event.task_id}): step {event.index + 1} "
                f"'{event.name}' skipped: condition '{event.condition}' is false"]
    if isinstance(event, TaskRetrying):
        wait = f" in {event.backoff:g}s" if event.backoff else ""
        return [f"{ts} Task {event.label} ({event.task_id}): attempt {event.attempt}/"
                f"{event.attempts} failed ({event.error}); retrying{wait}"]
    if isinstance(event, TaskTriggered):
        return [f"{ts} Task {event.task_id} ({event.label}) triggered"]
    return []  # RunPaused / RunFinished: the command prints the closing block from the doc


def _status_lines(ts: str, event: TaskStatusChanged) -> list[str]:
    if event.previous is None and event.status == "Pending":
        return []  # creation; matrix children are listed by their own block
    if event.master and event.previous is None:
        return []
    name = f"{event.node_id} master" if event.master else event.label
    if event.interrupted:
        return [f"{ts} Task {name} ({event.task_id}): interrupted while Running "
                "(its runner stopped); running it again"]
    status = "Canceled" if event.canceled else event.status
    line = f"{ts} Task {name} ({event.task_id}): {status}"
    if event.error and event.status in {"Failed", "Blocked", "WontDo"}:
        line += f" ({reason(event.status, event.error)})"
    return [line]


class LinePrinter:
    """An `EventSink` printing plain lines (or JSON Lines) to a text stream."""

    def __init__(self, out: TextIO, *, json_lines: bool = False) -> None:
        self._out = out
        self._json = json_lines
        self.broken = False

    def emit(self, event: Event) -> None:
        """Print the event's lines; never raises (a closed pipe only stops the printing)."""
        if self._json:
            lines = [json.dumps(event.to_json(), ensure_ascii=False, default=str)]
        else:
            lines = event_lines(event)
        self.write(lines)

    def write(self, lines: list[str]) -> None:
        """Print lines and flush; a broken pipe silences the printer instead of failing."""
        if self.broken or not lines:
            return
        self._put("\n".join(lines) + "\n")

    def _put(self, text: str) -> None:
        try:
            self._out.write(text)
            self._out.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.broken = True

    def begin(self, doc: dict[str, Any]) -> None:
        """The run (as stored) is about to execute; plain lines need nothing."""

    def end(self) -> None:
        """Execution is over; plain lines need nothing."""


_OFF = {"0", "false", "no", "off"}


def live_wanted(out: TextIO, env: Mapping[str, str], *, json_lines: bool) -> bool:
    """Whether to draw the live footer: a terminal that can move the cursor, no `--json`,
    and not switched off with `FERRY_LIVE=0`."""
    if json_lines or env.get("FERRY_LIVE", "").strip().lower() in _OFF:
        return False
    if env.get("TERM", "dumb") in {"", "dumb"}:
        return False
    try:
        return out.isatty()
    except (ValueError, OSError):
        return False


def make_printer(out: TextIO, env: Mapping[str, str], *, json_lines: bool) -> LinePrinter:
    """A `LiveView` on a capable terminal, else plain lines (or JSON Lines)."""
    if live_wanted(out, env, json_lines=json_lines):
        return LiveView(out, color=not env.get("NO_COLOR"))
    return LinePrinter(out, json_lines=json_lines)


class LiveView(LinePrinter):
    """Plain lines above, a status footer below, redrawn in place at most every `interval` s.

    The footer is drawn without a final newline, the cursor left at its end; erasing it is a
    carriage return, a cursor-up over its other lines and erase-to-end-of-screen. All writes go
    through one lock: the executor's events and the ticker thread (elapsed times) both paint."""

    def __init__(self, out: TextIO, *, color: bool = True, interval: float = 0.1,
                 clock: Callable[[], float] = time.monotonic,
                 size: Callable[[], os.terminal_size] | None = None) -> None:
        super().__init__(out)
        self.board = TaskBoard()
        self._color = color
        self._interval = interval
        self._clock = clock
        self._size = size or self._terminal_size
        self._lock = threading.RLock()
        self._shown = 0
        self._dirty = False
        self._drawn = ""
        self._last_draw = float("-inf")
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def _terminal_size(self) -> os.terminal_size:
        try:
            size = os.get_terminal_size(self._out.fileno())
        except (ValueError, OSError):
            return os.terminal_size((80, 24))
        # A terminal that reports no size (a fresh pty) gets the classic 80x24.
        return os.terminal_size((size.columns or 80, size.lines or 24))

    def begin(self, doc: dict[str, Any]) -> None:
        """Seed the board from the stored run and start the ticker thread."""
        with self._lock:
            self.board.seed(doc, self._clock())
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="ferry-live", daemon=True)
            self._ticker.start()

    def end(self) -> None:
        """Stop the ticker and erase the footer: what stays on screen is the plain transcript.
        Later lines (the closing block) print plainly."""
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join(timeout=2)
        with self._lock:
            if self._shown and not self.broken:
                self._put(self._erase())
            self._shown = 0

    def emit(self, event: Event) -> None:
        """Print the event's lines above the footer; refresh the footer if it changed."""
        with self._lock:
            if self.board.update(event, self._clock()):
                self._dirty = True
            self._paint(event_lines(event))

    def write(self, lines: list[str]) -> None:
        """Print lines above the footer."""
        with self._lock:
            self._paint(lines)

    def _paint(self, lines: list[str]) -> None:
        if self.broken or (not lines and not self._dirty):
            return
        if self._stop.is_set():
            super().write(lines)
            return
        parts: list[str] = []
        if lines:
            parts += [self._erase(), "\n".join(lines) + "\n"]
            self._shown = 0
            self._dirty = True
        now = self._clock()
        if now - self._last_draw >= self._interval:
            parts.append(self._redraw(now))
        # else: the ticker redraws it once the interval has passed (at most 10 redraws/s)
        if any(parts):
            self._put("".join(parts))

    def _tick(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                if self._stop.is_set() or self.broken:
                    return
                text = self._redraw(self._clock())
                if text:
                    self._put(text)

    def _erase(self) -> str:
        if not self._shown:
            return ""
        up = f"\x1b[{self._shown - 1}A" if self._shown > 1 else ""
        return f"\r{up}\x1b[J"

    def _redraw(self, now: float) -> str:
        """Erase and draw the footer when it is stale or its text changed (elapsed seconds);
        '' when the screen already shows it."""
        size = self._size()
        lines = self.board.footer(now, size.columns, color=self._color,
                                  max_lines=min(MAX_RUNNING_LINES + 3, max(1, size.lines - 2)))
        text = "\n".join(lines)
        if not self._dirty and text == self._drawn:
            return ""
        erase = self._erase()
        self._shown = len(lines)
        self._drawn = text
        self._dirty = False
        self._last_draw = now
        return erase + text
