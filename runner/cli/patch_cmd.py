"""`ferry patch -i RUN [-t TASK] [-o FILE]`: what a run changed in its workspace, as one patch
that `git apply` applies (the tasks' patches in the order they ended), locally or from a
control plane (`--server`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from runner.document import patch_log_id, patch_order
from runner.exitcodes import ExitCode

RUN_HELP = "run id or a unique prefix (4+ characters)"


def register(sub: Any) -> None:
    """Add `ferry patch`."""
    from runner.cli.remote import add_server_options

    p = sub.add_parser("patch", help="print what a run changed, as a patch for git apply",
                       description="Print the change a run made to its workspace: the patches "
                                   "of its tasks in the order they ended (git apply applies "
                                   "it to the workspace as it was when the run started).")
    p.add_argument("-i", "--id", required=True, metavar="RUN", help=RUN_HELP)
    p.add_argument("-t", "--task", metavar="TASK", help="only this task's change")
    p.add_argument("-o", "--output", metavar="FILE", help="write the patch to FILE")
    p.add_argument("-c", "--config", metavar="CONFIG", help="config file")
    add_server_options(p)
    p.set_defaults(func=cmd_patch)


def _write(data: bytes, output: str | None) -> int:
    if output:
        Path(output).write_bytes(data)
        print(f"Wrote {len(data)} bytes to {output}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    if not data:
        print("The run changed nothing (an empty patch).", file=sys.stderr)
    return ExitCode.OK


def cmd_patch(args: argparse.Namespace) -> int:
    """`ferry patch`."""
    import os

    from runner.cli.remote import _client, _load, server_target

    target = server_target(args, os.environ)
    if target is not None:
        client = _client(*target)
        doc = _load(client, args.id)
        return _write(client.get_patch(doc["id"], _task(doc, args.task)), args.output)
    from runner.cli.backends import open_backend

    backend, _ = open_backend(args)
    try:
        run_id = backend.resolve_run_id(args.id)
        doc = backend.load(run_id)
        data = b"".join(backend.read_log(run_id, patch_log_id(tid))
                        for tid in patch_order(doc, _task(doc, args.task)))
    finally:
        backend.close()
    return _write(data, args.output)


def _task(doc: dict[str, Any], ref: str | None) -> str | None:
    if not ref:
        return None
    from runner.cli.backends import resolve_task

    return str(resolve_task(doc, ref)["id"])
