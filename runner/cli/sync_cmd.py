"""`ferry sync`: deliver every journal left behind (offline runs, a daemon that stopped early)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add the `sync` subcommand."""
    p = sub.add_parser("sync", help="deliver unsent journals to the control plane")
    p.add_argument("-c", "--config", metavar="CONFIG",
                   help="config file (stateManagement.apiConfig); default: the runner config")
    p.add_argument("--server", help="control plane URL (env FERRY_SERVER)")
    p.add_argument("--token", help="runner token (env FERRY_TOKEN)")
    p.set_defaults(func=cmd_sync)


def cmd_sync(args: argparse.Namespace) -> int:
    """Deliver every journal under the data dir; exit 0 when nothing is left, 6 otherwise."""
    import os
    import sys

    from runner.api.client import ControlClient
    from runner.api.retry import RetryPolicy
    from runner.config import load_config
    from runner.errors import ConfigError
    from runner.exitcodes import ExitCode
    from runner.paths import Paths
    from runner.state.sync import sync_all

    paths = Paths.from_env(os.environ)
    server = args.server or os.environ.get("FERRY_SERVER")
    token = args.token or os.environ.get("FERRY_TOKEN")
    policy = RetryPolicy()
    cfg_path = args.config or (str(paths.runner_config) if paths.runner_config.exists() else None)
    if cfg_path:
        from pathlib import Path

        cfg = load_config(Path(cfg_path), environ=os.environ)
        api = cfg.state_management.api_config
        server = server or (api.endpoint if api else None) or cfg.runner.server
        token = token or (api.auth_token if api else None) or cfg.runner.token
        retry = cfg.state_management.retry_config
        policy = RetryPolicy.from_config(retry.max_retries, retry.backoff_factor)
    if not server or not token:
        raise ConfigError("ferry sync: no control plane configured (give -c CONFIG, "
                          "--server/--token, or run `ferry register` first)")
    client = ControlClient(server, token)
    report = sync_all(paths.journal_dir, client, policy=policy)
    for result in report.results:
        state = ("lease lost, kept" if result.lost else f"error: {result.error}" if result.error
                 else "done")
        print(f"{result.run_id}: {result.delivered} delivered, {result.remaining} left ({state})")
    left = report.remaining
    print(f"Synced {len(report.results)} journal(s): {report.delivered} record(s) delivered, "
          f"{left} left" + (" (control plane unreachable)" if report.unreachable else ""))
    if not report.ok:
        print("ferry: error: not everything was delivered; run `ferry sync` again later",
              file=sys.stderr)
        return ExitCode.CONTROL
    return ExitCode.OK
