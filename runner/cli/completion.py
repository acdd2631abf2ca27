"""`ferry completion bash|zsh`: the shell completion script of the `ferry` command, generated
from its argument parser by shtab (so it never drifts from the real options).

    eval "$(ferry completion bash)"                        # this shell only
    ferry completion bash > /etc/bash_completion.d/ferry   # every bash
    ferry completion zsh > "${fpath[1]}/_ferry"            # zsh (then: compinit)
"""

from __future__ import annotations

import argparse
from typing import Any

SHELLS = ("bash", "zsh")
_FILE_DESTS = {"workflow", "config", "output", "secrets_file"}
_DIR_DESTS = {"workdir"}


def register(sub: Any) -> None:
    """Add `completion` to the `ferry` parser."""
    p = sub.add_parser("completion", help="print the shell completion script (bash, zsh)",
                       description="Print a completion script for bash or zsh. bash: "
                                   "eval \"$(ferry completion bash)\", or save it as "
                                   "/etc/bash_completion.d/ferry. zsh: save it as _ferry in a "
                                   "directory of $fpath, then run compinit.")
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    p.set_defaults(func=cmd_completion)


def _mark_paths(parser: argparse.ArgumentParser, shtab: Any) -> None:
    """Options that take a file or a directory complete paths."""
    for action in parser._actions:
        if action.dest in _FILE_DESTS:
            action.complete = shtab.FILE  # type: ignore[attr-defined]
        elif action.dest in _DIR_DESTS:
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _mark_paths(child, shtab)


def cmd_completion(args: argparse.Namespace) -> int:
    """Print the completion script for `args.shell`."""
    import shtab

    from runner.cli import build_parser

    parser = build_parser()
    _mark_paths(parser, shtab)
    print(shtab.complete(parser, shell=args.shell))
    return 0
