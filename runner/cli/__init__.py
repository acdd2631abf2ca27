"""The `ferry` command. The cli package is the only place that prints, reads flags or reads the
environment for settings; everything below it takes its configuration through constructors.

Each module in `COMMAND_MODULES` adds its subcommands with `register(subparsers)` and keeps its
top-level imports light (argparse only) so that start-up stays fast: the work is imported inside
the command function.

Exit codes (documented in the README):
    0 ok / run Completed   1 run Failed   2 invalid input or usage   3 run AwaitingTrigger
    4 run Canceled         5 state store error   6 control plane error   130 interrupted
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from runner import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AWAITING = 3
EXIT_CANCELED = 4
EXIT_STATE = 5
EXIT_CONTROL = 6
EXIT_INTERRUPTED = 130

COMMAND_MODULES = (
    "runner.cli.validate",   # validate, graph, schema
    "runner.cli.local",      # run, resume, status, list, cancel, logs
    "runner.cli.remote",     # submit (and --server variants of the local commands)
    "runner.cli.daemon",     # register, daemon
    "runner.cli.sync_cmd",   # sync
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available subcommand."""
    parser = _Parser(prog="ferry", description="Ferry: a self-hosted workflow runner.")
    parser.add_argument("--version", action="version", version=f"ferry {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # not built yet
            raise
        module.register(sub)
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
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
