"""The `ferry` command. The cli package is the only place that prints, reads flags or reads the
environment for settings; everything below it takes its configuration through constructors.

Each module in `COMMAND_MODULES` adds its subcommands with `register(subparsers)` and keeps its
top-level imports light (argparse only) so that start-up stays fast: the work is imported inside
the command function.

Exit codes: `runner.exitcodes` (the README's table).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from runner import __version__
from runner.exitcodes import ExitCode

COMMAND_MODULES = (
    "runner.cli.validate",   # validate, graph, schema
    "runner.cli.local",      # run, resume, status, list, cancel, logs
    "runner.cli.remote",     # submit (and --server variants of the local commands)
    "runner.cli.daemon",     # register, daemon
    "runner.cli.patch_cmd",  # patch
    "runner.cli.sync_cmd",   # sync
    "runner.cli.prune_cmd",  # prune
    "runner.cli.doctor",     # doctor
    "runner.cli.completion", # completion
    "runner.cli.secret_cmd",  # secret set|list|rm
    "runner.cli.runners_cmd",  # runners list|revoke|drain
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available subcommand."""
    parser = _Parser(prog="ferry", description="Ferry: a self-hosted workflow runner.")
    parser.add_argument("--version", action="version", version=f"ferry {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ferry` console script; returns the process exit code."""
    from runner.errors import FerryError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except FerryError as exc:
        print(f"ferry: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ferry: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return ExitCode.OK
