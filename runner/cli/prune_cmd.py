"""`ferry prune`: remove the work dirs, task logs, lock files and delivered journals of finished
runs (`runner.state.retention` says what is never touched).

Exit codes: 0 done (also when there was nothing to remove), 2 bad usage, 5 some files could not
be removed (each named on stderr; the rest was removed).
"""

from __future__ import annotations

import argparse
from typing import Any

from runner.cli.args import age, non_negative_int

DEFAULT_AGE = "30d"


def register(sub: Any) -> None:
    """Add `prune` to the `ferry` parser."""
    p = sub.add_parser(
        "prune", help="remove what finished runs left on this machine",
        description="Remove the work dirs, task logs, lock files and delivered journals of "
                    "finished runs under FERRY_HOME. Never touches a run that is executing, "
                    "that is not finished, or whose journal holds undelivered records. Run "
                    f"records stay in the database. Default: --older-than {DEFAULT_AGE}.")
    p.add_argument("--older-than", type=age, metavar="AGE",
                   help="only runs finished longer ago than AGE (e.g. 30d, 12h, 2w; 0: any); "
                        f"default {DEFAULT_AGE}, or any age when only --keep is given")
    p.add_argument("--keep", type=non_negative_int, default=0, metavar="N",
                   help="always keep the N most recently finished runs")
    p.add_argument("--dry-run", action="store_true", help="only print what would be removed")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_prune)


def cmd_prune(args: argparse.Namespace) -> int:
    """Prune this FERRY_HOME; print what was removed and what was kept."""
    import json
    import os
    import sys
    import time

    from runner.ages import parse_age
    from runner.exitcodes import ExitCode
    from runner.paths import Paths
    from runner.state.retention import RetentionPolicy, local_runs, prune

    older = args.older_than
    if older is None and not args.keep:
        older = parse_age(DEFAULT_AGE)
    policy = RetentionPolicy(older_than=older, keep=args.keep)
    paths = Paths.from_env(os.environ)
    report = prune(paths, policy, now=time.time(), dry_run=args.dry_run, known=local_runs(paths))
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print("\n".join(report_lines(report)))
    for error in report.errors:
        print(f"ferry: error: {error}", file=sys.stderr)
    return ExitCode.STATE if report.errors else ExitCode.OK


def _what(path: Any) -> str:
    parent = path.parent.name
    return {"work": "work dir", "logs": "logs", "locks": "lock", "journal": "journal"}.get(
        parent, str(path))


def report_json(report: Any) -> dict[str, Any]:
    """The report as a JSON object: removed runs (paths, bytes), kept runs by reason, errors."""
    return {"dry_run": report.dry_run, "bytes": report.bytes,
            "removed": [{"run_id": r.run_id, "finished": r.finished, "bytes": r.bytes,
                         "paths": [str(p) for p in r.paths]} for r in report.removed],
            "kept": report.kept, "errors": report.errors}


def report_lines(report: Any) -> list[str]:
    """What `ferry prune` prints: one line per removed run, then the kept runs by reason."""
    from datetime import UTC, datetime

    verb = "Would remove" if report.dry_run else "Removed"
    if not report.removed:
        lines = ["Nothing to remove."]
    else:
        lines = [f"{verb} the files of {len(report.removed)} run(s), "
                 f"{human_bytes(report.bytes)}:"]
        for run in report.removed:
            when = datetime.fromtimestamp(run.finished, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            kinds = ", ".join(_what(p) for p in run.paths)
            lines.append(f"  - {run.run_id} (finished {when}): {kinds}")
    if report.kept:
        counts = ", ".join(f"{len(ids)} {reason}" for reason, ids in sorted(report.kept.items()))
        lines.append(f"Kept: {counts}")
    return lines


def human_bytes(size: int) -> str:
    """`512 B`, `1.5 KiB`, `12.3 MiB`, `2.0 GiB`."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
