"""Workflows for the daemon tests. Every step records its side effect in counter files under
`params.dir` (one line per execution) and appends to a state array (`seen@=`), so a task run
twice or a diff applied twice shows up as a second line or a second array item."""

from __future__ import annotations

from pathlib import Path


def two_tasks(gate: bool = True) -> str:
    """`first` prints and records; `second` records its start, waits for `dir/gate`, ends."""
    wait = 'while [ ! -f "${{params.dir}}/gate" ]; do sleep 0.05; done' if gate else "true"
    return f"""\
version: "1"
nodes:
  - id: first
    steps:
      - name: one
        run: |
          echo "first $FERRY_RUN_ID" >> "${{{{params.dir}}}}/first"
          for i in 1 2 3 4 5; do echo "first line $i"; done
          echo "seen@=first" >> "$STATE_OUTPUTS"
  - id: second
    depends_on: [first]
    steps:
      - name: two
        run: |
          echo $$ > "${{{{params.dir}}}}/second.pid"
          echo "second $FERRY_RUN_ID" >> "${{{{params.dir}}}}/second-start"
          echo "second started"
          {wait}
          echo "second done"
          echo "second $FERRY_RUN_ID" >> "${{{{params.dir}}}}/second-done"
          echo "seen@=second" >> "$STATE_OUTPUTS"
"""


TRIVIAL = """\
version: "1"
nodes:
  - id: only
    steps:
      - name: mark
        run: echo "$FERRY_RUN_ID" >> "${{params.dir}}/runs"
"""

APPROVAL = """\
version: "1"
nodes:
  - id: build
    steps:
      - name: build
        run: echo build >> "${{params.dir}}/build"
  - id: approve
    type: manual
    depends_on: [build]
    steps:
      - name: approve
        run: echo approve >> "${{params.dir}}/approve"
  - id: deploy
    depends_on: [approve]
    steps:
      - name: deploy
        run: echo deploy >> "${{params.dir}}/deploy"
"""


def lines(path: Path) -> list[str]:
    """The lines of a counter file ([] when missing)."""
    return path.read_text().splitlines() if path.exists() else []
