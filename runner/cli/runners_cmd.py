"""`ferry runners list|revoke|drain`: the runners of a control plane (admin token).

    ferry runners list [--json]
    ferry runners revoke RUNNER        its token answers 401 from now on; its daemon exits 6
    ferry runners drain RUNNER [--undo]  it claims no more runs (its daemon finishes, exits 0)

RUNNER is a runner id, a unique id prefix (4 characters at least) or a unique name.
`--server`/`--token` default to FERRY_SERVER/FERRY_TOKEN. Exit codes: 0 ok, 2 unknown or
ambiguous runner, 6 the control plane refused or is unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from runner.cli.remote import ENV_SERVER, add_server_options


def register(sub: Any) -> None:
    """Add `runners` and its subcommands to the `ferry` parser."""
    p = sub.add_parser("runners", help="list, revoke and drain a control plane's runners",
                       description="The runners registered with a control plane (admin "
                                   "token): list them, revoke a token, drain one.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    s = actions.add_parser("list", help="name, id, labels, online, version, drain, runs",
                           description="List the runners: name, id, state (online/offline, "
                                       "draining, revoked), version, labels, current runs, "
                                       "last contact.")
    s.add_argument("--json", action="store_true", help="print the list as JSON")
    add_server_options(s, local=False)
    s.set_defaults(func=cmd_list)
    s = actions.add_parser("revoke", help="revoke a runner's token (its daemon exits 6)",
                           description="Revoke a runner's token at once: its runs go back to "
                                       "the queue and its daemon exits 6.")
    s.add_argument("runner", metavar="RUNNER", help="id, unique id prefix or unique name")
    add_server_options(s, local=False)
    s.set_defaults(func=cmd_revoke)
    s = actions.add_parser("drain", help="stop a runner claiming runs (--undo: claim again)",
                           description="Stop a runner claiming runs: its daemon finishes what "
                                       "it runs and exits 0. --undo lets it claim again.")
    s.add_argument("runner", metavar="RUNNER", help="id, unique id prefix or unique name")
    s.add_argument("--undo", action="store_true", help="let a drained runner claim again")
    add_server_options(s, local=False)
    s.set_defaults(func=cmd_drain)


def _client(args: argparse.Namespace) -> Any:
    from runner.api.client import ControlClient
    from runner.cli.remote import server_target
    from runner.errors import UsageError

    target = server_target(args, os.environ)
    if target is None:
        raise UsageError(f"runners needs --server URL (or {ENV_SERVER})")
    return ControlClient(*target)


def _resolve(client: Any, key: str) -> Any:
    """The one runner `key` names (id, id prefix of 4+ characters, or name)."""
    from runner.errors import UsageError

    found = client.list_runners()
    exact = [r for r in found if key in (r.id, r.name)]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        raise UsageError(f"runner '{key}' is ambiguous: {len(exact)} runners are named so "
                         "(use the id)")
    if len(key) < 4:
        raise UsageError(f"unknown runner '{key}' (an id prefix needs 4 characters at least)")
    prefixed = [r for r in found if r.id.startswith(key)]
    if len(prefixed) == 1:
        return prefixed[0]
    if prefixed:
        raise UsageError(f"runner '{key}' is ambiguous: {len(prefixed)} ids start with it")
    raise UsageError(f"unknown runner '{key}'")


def _state(r: Any) -> str:
    if r.revoked_at:
        return "revoked"
    state = "online" if r.online else "offline"
    return state + (", draining" if r.draining else "")


def cmd_list(args: argparse.Namespace) -> int:
    """`ferry runners list`: one runner per line."""
    found = _client(args).list_runners()
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in found], indent=2))
        return 0
    if not found:
        print("no runners registered")
        return 0
    rows = [("NAME", "ID", "STATE", "VERSION", "LABELS", "RUNS", "LAST CONTACT")]
    rows += [(r.name, r.id, _state(r), r.version or "-", ",".join(r.labels) or "-",
              str(len(r.current_runs)), r.last_seen or "-") for r in found]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    """`ferry runners revoke RUNNER`."""
    client = _client(args)
    target = _resolve(client, args.runner)
    info = client.revoke_runner(target.id)
    print(f"runner {info.name} ({info.id}) revoked at {info.revoked_at}: its next request "
          "answers 401")
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    """`ferry runners drain RUNNER [--undo]`."""
    client = _client(args)
    target = _resolve(client, args.runner)
    info = client.drain_runner(target.id, drain=not args.undo)
    if info.draining:
        print(f"runner {info.name} ({info.id}) drains: it claims no more runs "
              f"({len(info.current_runs)} running)")
    else:
        print(f"runner {info.name} ({info.id}) claims runs again")
    return 0
