"""The fault matrix: every cell of `cells.CELLS` over real processes, real kills, a real fault
proxy and a real small disk, judged by `checks.judge` on what the server has. Prints the matrix
(cell -> result, seconds); with `FERRY_FAULT_RESULTS=1`, when every cell ran, it also writes
`bench/results/fault_matrix.md` (not by default: running the suite must not change the tree).

Cells run in parallel (`FERRY_FAULT_WORKERS`, default 4): each has its own server, proxy, daemon
homes and directories, and nothing else is shared. `FERRY_FAULT_CELLS=daemon_kill,disk_full/mid`
runs the cells whose name contains one of the given parts (then no file is written).

A cell whose guarantee rests on work another change delivers (`Cell.needs`) is judged with the
same checks and shown as it is, but while it fails it does not fail this test: the output says
which cells and why. `FERRY_FAULT_STRICT=1` makes every cell count.
"""

from __future__ import annotations

import os
import platform
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.faults.cell import Cell
from tests.faults.cells import CELLS, WHEN
from tests.faults.checks import judge, summary
from tests.faults.scenario import Scenario

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "fault_matrix.md"


@dataclass
class Outcome:
    """One cell's verdict."""

    cell: Cell
    seconds: float
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The cell holds."""
        return not self.problems


def _run_cell(cell: Cell, root: Path) -> Outcome:
    began = time.monotonic()
    scenario = Scenario(cell, root / cell.name.replace("/", "-"))
    try:
        evidence = scenario.run()
    except Exception as exc:
        lines = traceback.format_exception_only(exc)
        return Outcome(cell, time.monotonic() - began, [f"crashed: {''.join(lines).strip()}"],
                       scenario.ev.notes)
    return Outcome(cell, time.monotonic() - began, judge(cell, evidence), evidence.notes,
                   summary(evidence))


def _selected() -> tuple[list[Cell], bool]:
    wanted = [w for w in os.environ.get("FERRY_FAULT_CELLS", "").split(",") if w]
    if not wanted:
        return list(CELLS), True
    return [c for c in CELLS if any(w in c.name for w in wanted)], False


def _table(outcomes: list[Outcome]) -> list[str]:
    rows = ["| fault | " + " | ".join(WHEN) + " |", "|---" * (len(WHEN) + 1) + "|"]
    by_row: dict[str, dict[str, list[Outcome]]] = {}
    for o in outcomes:
        by_row.setdefault(o.cell.row, {}).setdefault(o.cell.when, []).append(o)
    for row, cols in by_row.items():
        cells = []
        for when in WHEN:
            marks = [f"{'ok' if o.ok else 'FAIL'} {o.cell.recovery} {o.seconds:.0f}s"
                     for o in cols.get(when, [])]
            cells.append("<br>".join(marks) or "—")
        rows.append(f"| {row} | " + " | ".join(cells) + " |")
    return rows


def _details(outcomes: list[Outcome]) -> list[str]:
    out = ["| cell | expected | result | seconds | attempts a/b/c | notes |",
           "|---|---|---|---|---|---|"]
    for o in outcomes:
        attempts = o.facts.get("attempts") or {}
        assert isinstance(attempts, dict)
        tries = "/".join(str(attempts.get(n, 0)) for n in ("a", "b", "c"))
        result = "ok" if o.ok else "FAIL: " + "; ".join(o.problems)
        if not o.ok and o.cell.needs:
            result += f" (needs {o.cell.needs})"
        aside = o.facts.get("set_aside") or []
        notes = "; ".join([*o.notes, *(f"set aside: {k}" for k in aside)])  # type: ignore[union-attr]
        out.append(f"| {o.cell.name} | {o.cell.expect} | {result} | {o.seconds:.1f} | {tries} "
                   f"| {notes} |")
    return out


def test_fault_matrix(tmp_path: Path) -> None:
    cells, complete = _selected()
    workers = int(os.environ.get("FERRY_FAULT_WORKERS", "4"))
    strict = os.environ.get("FERRY_FAULT_STRICT", "") not in ("", "0")
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(lambda c: _run_cell(c, tmp_path), cells))
    took = time.monotonic() - began
    table, details = _table(outcomes), _details(outcomes)
    failed = [o for o in outcomes if not o.ok]
    waiting = [o for o in failed if o.cell.needs and not strict]
    print("\n" + "\n".join(table) + "\n\n" + "\n".join(details))
    print(f"\n{len(outcomes) - len(failed)}/{len(outcomes)} cells hold; {took:.0f}s with "
          f"{workers} workers")
    for o in waiting:
        print(f"waiting for {o.cell.needs}: {o.cell.name}: {'; '.join(o.problems)}")
    for o in outcomes:
        if o.ok and o.cell.needs:
            print(f"holds although marked as needing {o.cell.needs}: {o.cell.name}")
    if complete and os.environ.get("FERRY_FAULT_RESULTS", "") not in ("", "0"):
        load = os.getloadavg()
        RESULTS.write_text(
            "# Fault matrix\n\n"
            f"`pytest tests/faults` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
            f"{platform.system()} {platform.release()}, {os.cpu_count()} cores, load average "
            f"{load[0]:.1f} / {load[1]:.1f}; {len(outcomes)} cells, {workers} at a time, "
            f"{took:.0f} s in all. Each cell: its own stub server behind a fault proxy, "
            "`ferry daemon` processes, a three-task workflow (a -> b -> c) whose steps mark "
            "their pid and times; one fault at one moment, one recovery (see "
            "`tests/faults/cells.py`), then the checks of `tests/faults/checks.py` on what the "
            "server has: final status, no task re-run after the server had it Completed, "
            "every output line at most once (all of them for attempts that ended), no two "
            "attempts of a step at once, no journal left.\n\n"
            f"{len(outcomes) - len(failed)} of {len(outcomes)} cells hold"
            + (f"; {len(waiting)} of the others rest on work not landed yet (their `needs`)"
               if waiting else "") + ".\n\n"
            + "\n".join(table) + "\n\n" + "\n".join(details) + "\n")
    broken = [o for o in failed if o not in waiting]
    assert not broken, "\n".join(f"{o.cell.name}: {'; '.join(o.problems)}" for o in broken)
