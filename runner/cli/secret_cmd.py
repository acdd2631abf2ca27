"""`ferry secret set|list|rm`: the secrets of a control plane (admin token).

    ferry secret set NAME [--repo R] [--from-file F]   (else the value is read from stdin)
    ferry secret list [--repo R]                       (names only: values never come back)
    ferry secret rm NAME [--repo R]

Without `--repo` a secret is global (every run gets it; a repository's own secret of the same
name wins). `--server`/`--token` default to FERRY_SERVER/FERRY_TOKEN. Exit codes: 0 ok, 2 bad
usage or value (too short, unreadable file), 6 the control plane refused or is unreachable.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from runner.cli.remote import ENV_SERVER, add_server_options


def register(sub: Any) -> None:
    """Add `secret` and its subcommands to the `ferry` parser."""
    p = sub.add_parser("secret", help="manage a control plane's secrets",
                       description="Set, list and remove the secrets runs read as "
                                   "${{ secrets.NAME }} (admin token).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    s = actions.add_parser("set", help="create or replace a secret",
                           description="Create or replace a secret, global or a repository's. "
                                       "The value comes from --from-file, else stdin (a "
                                       "single trailing newline is dropped).")
    s.add_argument("name", metavar="NAME", help="the name runs read as ${{ secrets.NAME }}")
    s.add_argument("--from-file", metavar="FILE", help="read the value from this file")
    _common(s)
    s.set_defaults(func=cmd_set)
    s = actions.add_parser("list", help="list secret names (never values)",
                           description="List the secrets' names, repositories and change times "
                                       "(never values); with --repo, that repository's and the "
                                       "global ones.")
    _common(s)
    s.set_defaults(func=cmd_list)
    s = actions.add_parser("rm", help="remove a secret",
                           description="Remove a secret, global or (--repo) a repository's.")
    s.add_argument("name", metavar="NAME", help="the secret's name")
    _common(s)
    s.set_defaults(func=cmd_rm)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", metavar="REPO", help="a repository's secret (default: global)")
    add_server_options(p, local=False)


def _client(args: argparse.Namespace) -> Any:
    from runner.api.client import ControlClient
    from runner.cli.remote import server_target
    from runner.errors import UsageError

    target = server_target(args, os.environ)
    if target is None:
        raise UsageError(f"secret needs --server URL (or {ENV_SERVER})")
    return ControlClient(*target)


def _value(args: argparse.Namespace) -> str:
    from runner.errors import SecretInvalid

    if args.from_file:
        try:
            with open(args.from_file, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretInvalid(f"--from-file {args.from_file}: cannot read it: "
                                f"{getattr(exc, 'strerror', None) or type(exc).__name__}"
                                ) from None
    else:
        if sys.stdin.isatty():
            print(f"value of {args.name} (end with Ctrl-D):", file=sys.stderr, flush=True)
        text = sys.stdin.read()
    return text[:-1] if text.endswith("\n") else text


def cmd_set(args: argparse.Namespace) -> int:
    """`ferry secret set`."""
    from runner.secrets.values import check_name, check_value

    name = check_name(args.name, "secret")
    value = check_value(name, _value(args), "secret")
    info = _client(args).set_secret(name, value, args.repo)
    scope = f"repository {info.repo}" if info.repo else "global"
    print(f"secret {info.name} set ({scope})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """`ferry secret list`: one name per line with its scope and when it was set."""
    for info in _client(args).list_secrets(args.repo):
        print(f"{info.name}\t{info.repo or '(global)'}\t{info.updated_at}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    """`ferry secret rm`."""
    from runner.secrets.values import check_name

    _client(args).delete_secret(check_name(args.name, "secret"), args.repo)
    print(f"secret {args.name} removed")
    return 0
