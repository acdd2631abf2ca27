"""Reading the Codemod CLI's JSON Lines while it runs: what goes to the task's log, which files
changed, and when the run is over.

Events (`--format jsonl`, codemod 1.18.3): `{"level", "event": "log"|"step_start"|"step_end",
"msg", "outcome"?}`; the first and last lines (`Workflow started <id>`, `Workflow completed in
…`) and error reports on stderr are plain text. The log keeps:
- the files the step changed: `Modified file: src/a.ts` (paths relative to the workspace),
  `Would modify file (dry run): …`, ast-grep's `Found N matches in …`;
- what the codemod printed (`console.log`, grouped under the file's name), warnings and errors,
  the shard step's summary, metrics, and whatever the CLI printed as plain text;
and drops the CLI's own bookkeeping (tasks, matrix recompilation, "Executing ...").
`Workflow run <id> completed|failed` ends the run: `done` is set so the caller can stop the
CLI at once instead of waiting for its completion poll (about a second).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable

_ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")
_END = re.compile(r"^Workflow run \S+ (completed|failed)$")
_FILE_EVENTS = ("Modified file: ", "Would modify file (dry run): ")
_FOUND = re.compile(r"^Found (\d+) matches in (.+)$")
_NOISE = re.compile(r"^(Starting workflow run |Executing task |Task \S+ \(.*\) completed$|"
                    r"Step '.*' finished successfully for task |Updating matrix master |"
                    r"Notifying task |State changed, triggering |Starting matrix task |"
                    r"Finished matrix task |Completed matrix task |Task \S+ finished all steps|"
                    r"Executing codemod step: |Workflow started |Workflow (completed|failed) "
                    r"(in|after) )")
_FAILED = re.compile(r"^Task \S+ \(.*\) step (.+?) failed: (.*)$", re.S)

Sink = Callable[[bytes], None]


class CodemodOutput:
    """A runtime output sink: parses the CLI's lines and passes readable ones to `sink`."""

    def __init__(self, sink: Sink, workspace: str,
                 on_done: Callable[[], None] | None = None) -> None:
        self._sink = sink
        self._on_done = on_done
        self._root = workspace.rstrip("/") + "/"
        self._buf = b""
        self._out: list[bytes] = []
        self.done = threading.Event()
        """Set when the CLI has logged the end of its run."""
        self.completed: bool | None = None
        """True/False once the run's end was logged; None before."""
        self.error: str | None = None
        """The first failure the CLI reported (one line)."""
        self.changed: list[str] = []
        """Files the step changed (or would change in a dry run), relative to the workspace."""

    def __call__(self, data: bytes) -> None:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            self._line(line)
        self._pass_on()

    def flush(self) -> None:
        """Handle a last line that did not end with a newline."""
        if self._buf:
            line, self._buf = self._buf, b""
            self._line(line)
        self._pass_on()

    def _pass_on(self) -> None:
        # what one chunk of the CLI's output gave, passed on as one chunk: each chunk is a
        # journal record (fsynced) on a control plane's runner, 100 changed files are 1, not 100
        if self._out:
            out, self._out = b"".join(self._out), []
            self._sink(out)

    def relative(self, path: str) -> str:
        """A path the CLI printed, relative to the workspace (its `/./` removed)."""
        path = path.replace("/./", "/")
        return path[len(self._root):] if path.startswith(self._root) else path

    def _say(self, text: str) -> None:
        self._out.append(text.encode("utf-8", "replace") + b"\n")

    def _line(self, raw: bytes) -> None:
        raw = _ANSI.sub(b"", raw.rstrip(b"\r"))
        text = raw.decode("utf-8", "replace")
        if not text.startswith("{"):
            if text.strip() and not _NOISE.match(text):
                self._say(text)
            return
        try:
            event = json.loads(text)
        except ValueError:
            self._say(text)
            return
        if not isinstance(event, dict):
            self._say(text)
            return
        if event.get("event") == "step_end":
            if event.get("outcome") not in (None, "success") and self.error is None:
                self.error = f"step '{event.get('step_name')}' ended with {event.get('outcome')}"
            return
        if event.get("event") != "log":
            return
        self._log(str(event.get("level") or "info"), str(event.get("msg") or ""))

    def _log(self, level: str, msg: str) -> None:
        end = _END.match(msg)
        if end:
            self.completed = end.group(1) == "completed"
            self.done.set()
            self._pass_on()  # everything before the end, before the CLI is stopped
            if self._on_done is not None:
                self._on_done()
            return
        for prefix in _FILE_EVENTS:
            if msg.startswith(prefix):
                path = self.relative(msg[len(prefix):])
                if path not in self.changed:
                    self.changed.append(path)
                self._say(f"{prefix}{path}")
                return
        found = _FOUND.match(msg)
        if found:
            self._say(f"Found {found.group(1)} matches in {self.relative(found.group(2))}")
            return
        failed = _FAILED.match(msg)
        if failed:
            self.error = f"{failed.group(2).strip().splitlines()[0]}"
            self._say(f"error: {failed.group(2).strip()}")
            return
        if level == "debug" or _NOISE.match(msg):
            return
        prefix = {"warn": "warning: ", "error": "error: "}.get(level, "")
        self._say(prefix + msg)
