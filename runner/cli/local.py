"""Local commands: run, resume, status, list, cancel, logs (on the local state database).

Exit codes (`runner.exitcodes`): 0 Completed, 1 Failed, 2 invalid input/usage,
3 AwaitingTrigger, 4 Canceled, 5 state database error.
"""

from __future__ import annotations

import argparse
from typing import Any

from runner.cli.args import positive_int

RUN_HELP = "run id, or a unique prefix of at least 4 characters"


def register(sub: Any) -> None:
    """Add the local subcommands to the `ferry` parser."""
    p = sub.add_parser("run", help="run a workflow on this machine",
                       description="Run a workflow locally until it completes, fails, is "
                                   "canceled or waits for manual triggers.")
    p.add_argument("-w", "--workflow", required=True, metavar="FILE",
                   help="workflow file (YAML or JSON)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter (${{ params.KEY }}); repeatable")
    p.add_argument("-c", "--config", metavar="CONFIG", help="config file (stateManagement...)")
    p.add_argument("--max-parallel", type=positive_int, metavar="N",
                   help="tasks running at once (default: CPU count)")
    p.add_argument("--json", action="store_true",
                   help="print JSON Lines on stdout instead of text: one object per engine "
                        "event, the last one {\"kind\": \"run\", \"run\": <the run "
                        "document>}")
    p.add_argument("--strict", action="store_true",
                   help="refuse the workflow on any warning of 'ferry validate' (unknown keys, "
                        "duplicates, empty matrix values...)")
    p.add_argument("--workdir", metavar="DIR",
                   help="working directory of the steps (default: the current directory)")
    p.add_argument("--dry-run", action="store_true",
                   help="codemod steps (js-ast-grep, ast-grep, codemod) report what they would "
                        "change and write nothing (the Codemod CLI's --dry-run); run steps run")
    add_secret_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="continue a paused or interrupted run",
                       description="Trigger waiting tasks and continue a run.")
    p.add_argument("-i", "--id", required=True, metavar="RUN", help=RUN_HELP)
    p.add_argument("-t", "--task", action="append", default=[], metavar="TASK",
                   help="trigger this AwaitingTrigger task (id, prefix or node id); repeatable")
    p.add_argument("--trigger-all", action="store_true", help="trigger every waiting task")
    p.add_argument("--retry-failed", action="store_true",
                   help="run a Failed run's failed and blocked tasks again (completed tasks "
                        "are kept)")
    p.add_argument("-c", "--config", metavar="CONFIG", help="config file")
    p.add_argument("--max-parallel", type=positive_int, metavar="N",
                   help="tasks running at once (default: CPU count)")
    p.add_argument("--json", action="store_true",
                   help="print JSON Lines of engine events on stdout, the last one the run "
                        "document (as ferry run --json)")
    p.add_argument("--workdir", metavar="DIR",
                   help="working directory of the steps (default: the current directory)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="the value of a param declared secret (the run document holds ***)")
    add_secret_options(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("status", help="show a run's status",
                       description="Show a run: status, task tree, manual triggers.")
    p.add_argument("-i", "--id", required=True, metavar="RUN", help=RUN_HELP)
    p.add_argument("--json", action="store_true", help="the run document as JSON")
    p.add_argument("--history", action="store_true", help="also show every recorded change")
    p.add_argument("-c", "--config", metavar="CONFIG", help="config file")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("list", help="list recent runs", description="List recent runs.")
    p.add_argument("--limit", type=positive_int, default=20, metavar="N",
                   help="at most N runs, newest first (default 20)")
    p.add_argument("--status", metavar="S", help="only runs with this status")
    p.add_argument("--json", action="store_true", help="the runs as a JSON array")
    p.add_argument("-c", "--config", metavar="CONFIG", help="config file")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("cancel", help="cancel a run",
                       description="Cancel a run. A `ferry run` executing it notices within "
                                   "a fraction of a second and terminates its tasks (SIGTERM, "
                                   "SIGKILL after 5 s); the run ends Canceled. With --server, "
                                   "the run's runner stops it at its next heartbeat (about "
                                   "2 s).")
    p.add_argument("-i", "--id", required=True, metavar="RUN", help=RUN_HELP)
    p.add_argument("-c", "--config", metavar="CONFIG", help="config file")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("logs", help="print a run's task output",
                       description="Print task output, each line prefixed with its task.")
    p.add_argument("-i", "--id", required=True, metavar="RUN", help=RUN_HELP)
    p.add_argument("-t", "--task", metavar="TASK", help="only this task (raw output)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    p.add_argument("-c", "--config", metavar="CONFIG", help="config file")
    p.set_defaults(func=cmd_logs)


def add_secret_options(p: argparse.ArgumentParser) -> None:
    """`--secret NAME=VALUE` and `--secrets-file F` (read by `${{ secrets.NAME }}`)."""
    p.add_argument("--secret", action="append", default=[], metavar="NAME=VALUE",
                   help="a secret for ${{ secrets.NAME }} (masked in all output); repeatable")
    p.add_argument("--secrets-file", metavar="FILE",
                   help="secrets from a dotenv file (NAME=VALUE lines); --secret wins")


def cmd_run(args: argparse.Namespace) -> int:
    """`ferry run`."""
    from runner.cli.local_run import run_workflow

    return run_workflow(args)


def cmd_resume(args: argparse.Namespace) -> int:
    """`ferry resume`."""
    from runner.cli.local_run import resume_run

    return resume_run(args)


def cmd_status(args: argparse.Namespace) -> int:
    """`ferry status`."""
    import json

    from runner.cli.backends import open_backend
    from runner.cli.render import render_status

    backend, _ = open_backend(args)
    try:
        run_id = backend.resolve_run_id(args.id)
        doc = backend.load(run_id)
        history = backend.history(run_id) if args.history else None
    finally:
        backend.close()
    if args.json:
        body: Any = doc
        if history is not None:
            body = {"run": doc, "history": [d.to_json() for d in history]}
        print(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        print("\n".join(render_status(doc, history)))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """`ferry list`."""
    import json
    from dataclasses import asdict

    from runner.cli.render import render_runs
    from runner.document import RunStatus
    from runner.errors import UsageError

    status = None
    if args.status:
        known = {s.value.lower(): s.value for s in RunStatus}
        status = known.get(args.status.lower())
        if status is None:
            raise UsageError(f"unknown status '{args.status}' (one of "
                             f"{', '.join(s.value for s in RunStatus)})")
    from runner.cli.backends import open_backend

    backend, _ = open_backend(args)
    try:
        runs = backend.list_runs(limit=args.limit, status=status)
    finally:
        backend.close()
    if args.json:
        print(json.dumps([asdict(r) for r in runs], indent=2))
    else:
        print("\n".join(render_runs(runs)))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """`ferry cancel`."""
    from runner.cli.local_run import cancel_run

    return cancel_run(args)


def cmd_logs(args: argparse.Namespace) -> int:
    """`ferry logs`."""
    from runner.cli.local_logs import show_logs

    return show_logs(args)
