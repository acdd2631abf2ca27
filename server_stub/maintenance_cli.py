"""`ferry-server prune` and `ferry-server backup`: the operator's commands on a data dir, usable
while the server runs (`server_stub.maintenance`).

Exit codes: 0 done, 2 bad usage (no database in the data dir, an unwritable output),
5 some logs could not be removed (each named) or the backup failed.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.exitcodes import ExitCode


def add_maintenance_commands(sub: Any, age: Callable[[str], float]) -> None:
    """Add `prune` and `backup` to the `ferry-server` parser."""
    p = sub.add_parser("prune", help="remove the logs of runs that ended long ago",
                       description="Remove logs/<run>/ of runs that ended (Completed, Failed, "
                                   "Canceled) longer ago than --older-than; run records and "
                                   "their history stay. Safe while the server runs.")
    p.add_argument("--data-dir", type=Path, metavar="DIR", required=True,
                   help="the server's data dir")
    p.add_argument("--older-than", type=age, default=age("30d"), metavar="AGE",
                   help="e.g. 90d, 12h, 2w; 0: every finished run (default 30d)")
    p.add_argument("--dry-run", action="store_true", help="only print what would be removed")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("backup", help="copy the database with SQLite's online backup",
                       description="Write a consistent copy of DIR/server.db to FILE (mode "
                                   "0600) while the server keeps running. Logs, tokens and "
                                   "secrets.key are plain files: copy them as they are "
                                   "(README, Backups).")
    p.add_argument("--data-dir", type=Path, metavar="DIR", required=True,
                   help="the server's data dir")
    p.add_argument("--output", type=Path, metavar="FILE", required=True,
                   help="where to write the copy (replaced atomically)")
    p.set_defaults(func=cmd_backup)


def _fail(message: str, code: int = ExitCode.USAGE) -> int:
    print(f"ferry-server: error: {message}", file=sys.stderr)
    return code


def cmd_prune(args: argparse.Namespace) -> int:
    """Prune finished runs' logs in a data dir."""
    from server_stub.maintenance import open_readonly, prune_logs

    try:
        conn = open_readonly(args.data_dir)
    except FileNotFoundError as exc:
        return _fail(str(exc))
    try:
        report = prune_logs(conn, args.data_dir / "logs", older_than=args.older_than,
                            now=time.time(), dry_run=args.dry_run)
    except sqlite3.Error as exc:
        return _fail(f"{args.data_dir}: cannot read the server database: {exc}", ExitCode.STATE)
    finally:
        conn.close()
    print("\n".join(prune_lines(report)))
    for error in report.errors:
        print(f"ferry-server: error: {error}", file=sys.stderr)
    return ExitCode.STATE if report.errors else ExitCode.OK


def prune_lines(report: Any) -> list[str]:
    """One line per run whose logs go, and a total."""
    if not report.removed:
        return ["No finished run's logs to remove."]
    verb = "Would remove" if report.dry_run else "Removed"
    lines = [f"{verb} the logs of {len(report.removed)} finished run(s), "
             f"{report.bytes} bytes:"]
    lines += [f"  - {run} (ended {ended}): {size} bytes" for run, ended, size in report.removed]
    return lines


def cmd_backup(args: argparse.Namespace) -> int:
    """Back up the server database."""
    from server_stub.maintenance import backup_database

    if not args.output.parent.is_dir():
        return _fail(f"--output {args.output}: {args.output.parent} is not a directory")
    try:
        runs = backup_database(args.data_dir, args.output)
    except FileNotFoundError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"--output {args.output}: {exc.strerror or exc}")
    except sqlite3.Error as exc:
        return _fail(f"backup of {args.data_dir} failed: {exc}", ExitCode.STATE)
    print(f"backed up {args.data_dir / 'server.db'} ({runs} runs) to {args.output}")
    return ExitCode.OK
