"""What every cell of the fault matrix must show on the server, whatever path its recovery took:

    status        the run's final status (and for a Failed one, the reason in its error)
    done          the run is handed back (queue `done`): nobody holds it any more
    no re-run     no task starts again after the server acknowledged it Completed
    lines once    no line of output is on the server twice; every line of the attempt that
                  finished a task is there (output of interrupted attempts: at most once)
    never twice   no two attempts of one step ran at the same time (marks: start, alive, end)
    no journal    nothing is left in any runner's journal directory (journals the server will
                  never take are moved aside, and that is said)
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.faults.cell import Cell, Evidence
from tests.faults.workflow import Mark, expected_lines

_EPSILON = 0.005  # seconds: marks come from `date` in different processes (one clock)


def judge(cell: Cell, ev: Evidence) -> list[str]:
    """Every way the evidence breaks a guarantee (empty: the cell holds)."""
    problems: list[str] = []
    doc = ev.doc
    want, _, reason = cell.expect.partition(": ")
    if doc.get("status") != want:
        problems.append(f"status {doc.get('status')} ({doc.get('error')}), expected {want}")
    elif reason and reason not in str(doc.get("error") or ""):
        problems.append(f"error {doc.get('error')!r} does not say {reason!r}")
    if ev.queue != "done":
        problems.append(f"queue is {ev.queue!r}, not done")
    tasks = {tid: t for tid, t in (doc.get("tasks") or {}).items() if not t.get("master")}
    by_node = {t["node_id"]: tid for tid, t in tasks.items()}
    problems += _no_rerun(ev, by_node)
    problems += _lines_once(ev, by_node, completed=want == "Completed")
    problems += _never_twice(ev.marks)
    problems += ev.concurrent
    if ev.journals_left:
        problems.append(f"journal left: {', '.join(p.name for p in ev.journals_left)}")
    return problems


def _no_rerun(ev: Evidence, by_node: dict[str, str]) -> list[str]:
    out = []
    for node, task_id in by_node.items():
        done = ev.completed_at.get(task_id)
        if done is None:
            continue
        late = [m for m in ev.marks.get(node, []) if m.kind == "start" and m.at > done + _EPSILON]
        if late:
            out.append(f"{node} started again (pid {late[0].pid}) after the server had it "
                       "Completed")
    return out


def _lines_once(ev: Evidence, by_node: dict[str, str], *, completed: bool) -> list[str]:
    out = []
    for node, task_id in by_node.items():
        lines = ev.logs.get(task_id, b"").decode("utf-8", "replace").splitlines()
        twice = [line for line, n in Counter(lines).items() if n > 1]
        if twice:
            out.append(f"{node}: {len(twice)} line(s) twice on the server, e.g. {twice[0][:40]!r}")
        if not completed:
            continue
        # The attempt whose end the server took is the last one that ended (an earlier one
        # that ended too was interrupted before its end was delivered, and done again).
        ends = [m for m in ev.marks.get(node, []) if m.kind == "end"]
        if not ends:
            out.append(f"{node}: no attempt ran to its end")
            continue
        pid = max(ends, key=lambda m: m.at).pid
        present = set(lines)
        missing = [line for line in expected_lines(node, pid) if line not in present]
        if missing:
            out.append(f"{node}: {len(missing)} line(s) of the attempt that finished it (pid "
                       f"{pid}) missing on the server, e.g. {missing[0][:40]!r}")
    return out


def _never_twice(marks: dict[str, list[Mark]]) -> list[str]:
    out = []
    for node, seen in marks.items():
        spans: dict[int, list[float]] = {}
        for mark in seen:
            span = spans.setdefault(mark.pid, [mark.at, mark.at])
            span[0], span[1] = min(span[0], mark.at), max(span[1], mark.at)
        ordered = sorted(spans.items(), key=lambda kv: kv[1][0])
        for i, (pid1, (_, end1)) in enumerate(ordered):
            for pid2, (start2, _) in ordered[i + 1:]:
                if start2 < end1 - _EPSILON:
                    out.append(f"{node}: attempt pid {pid2} started while pid {pid1} still "
                               f"ran ({end1 - start2:.2f}s overlap)")
    return out


def summary(ev: Evidence) -> dict[str, Any]:
    """A few facts for the report line of a cell."""
    starts = {node: len({m.pid for m in seen if m.kind == "start"})
              for node, seen in ev.marks.items()}
    return {"status": ev.doc.get("status"), "attempts": starts,
            "set_aside": [p.parent.name for p in ev.set_aside]}
