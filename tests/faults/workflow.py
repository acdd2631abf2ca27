"""The fault matrix's workflow and what its steps leave behind.

Three tasks a -> b -> c. Every step appends `start|alive|end <pid> <time> <runner>` to
`<dir>/<node>.marks`, prints 48 numbered lines carrying its pid (about 6 KB: more than the slack
of a filesystem page, so a full disk is really hit) and appends to the state array `seen`. Step b
waits for `<dir>/gate`, saying `alive` every 0.1 s meanwhile (an orphaned attempt that is still
running shows up as alive after a new attempt started), then prints 48 lines more.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LINES = 48
PAD = "." * 90


def _step(node: str, wait: bool) -> str:
    # b prints as much again once through its gate: a full disk there is hit by the output
    # (the journal) before anything else
    hold = ('      while [ ! -f "${{params.dir}}/gate" ]; do mark alive; sleep 0.1; done\n'
            f"      i=0; while [ $i -lt {LINES} ]; do i=$((i+1)); "
            f"echo \"{node} more $i pid $$ {PAD}\"; done\n"
            if wait else "")
    return (
        "      mark() { echo \"$1 $$ $(date +%s.%N) ${FAULT_PROC:-none}\" >> "
        f"\"${{{{params.dir}}}}/{node}.marks\"; }}\n"
        "      mark start\n"
        f"      i=0; while [ $i -lt {LINES} ]; do i=$((i+1)); "
        f"echo \"{node} line $i pid $$ {PAD}\"; done\n"
        f"{hold}"
        f"      echo \"{node} after pid $$\"\n"
        f"      echo \"seen@={node}\" >> \"$STATE_OUTPUTS\"\n"
        "      mark end\n")


def workflow() -> str:
    """The workflow file's text."""
    parts = ['version: "1"', "nodes:"]
    for node, deps, wait in (("a", [], False), ("b", ["a"], True), ("c", ["b"], False)):
        parts.append(f"  - id: {node}")
        if deps:
            parts.append(f"    depends_on: [{', '.join(deps)}]")
        parts += ["    steps:", f"      - name: {node}", "        run: |"]
        parts += ["    " + line for line in _step(node, wait).splitlines()]
    return "\n".join(parts) + "\n"


def expected_lines(node: str, pid: int) -> list[str]:
    """Every line an attempt of `node` with `pid` prints when it runs to its end."""
    more = [f"{node} more {i} pid {pid} {PAD}" for i in range(1, LINES + 1)] if node == "b" \
        else []
    return [f"{node} line {i} pid {pid} {PAD}" for i in range(1, LINES + 1)] + more + \
        [f"{node} after pid {pid}"]


@dataclass(frozen=True)
class Mark:
    """One line of a marks file."""

    kind: str
    pid: int
    at: float
    runner: str


def marks(directory: Path, node: str) -> list[Mark]:
    """The marks one node's steps left (a torn last line is ignored)."""
    path = directory / f"{node}.marks"
    out: list[Mark] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[1].isdigit():
            try:
                out.append(Mark(parts[0], int(parts[1]), float(parts[2]), parts[3]))
            except ValueError:
                continue
    return out
