"""`ferry sync`: deliver every journal left behind (offline runs, a daemon that stopped early)."""

from __future__ import annotations

import argparse
from typing import Any

ENV_RUNNER_TOKEN = "FERRY_RUNNER_TOKEN"
ENV_OLD_TOKEN = "FERRY_TOKEN"
"""What `sync` read before FERRY_RUNNER_TOKEN existed; everywhere else it is the admin token."""


def register(sub: Any) -> None:
    """Add the `sync` subcommand."""
    p = sub.add_parser(
        "sync", help="deliver unsent journals to the control plane",
        description="Deliver every journal under FERRY_HOME that still holds records (runs "
                    "reported while the control plane was down, a daemon stopped before it "
                    "delivered): in order, exactly once. Exit 0 when nothing is left, 6 when "
                    "the control plane is unreachable or refused a record, 2 for bad config.")
    p.add_argument("-c", "--config", metavar="CONFIG",
                   help="config file (stateManagement.apiConfig); default: the runner config")
    p.add_argument("--server", metavar="URL",
                   help="control plane URL (default $FERRY_SERVER, else the config's)")
    p.add_argument("--token", metavar="TOKEN",
                   help=f"runner token (default ${ENV_RUNNER_TOKEN}, else the config's)")
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
    from runner.state.replay import sync_all

    paths = Paths.from_env(os.environ)
    server = args.server or os.environ.get("FERRY_SERVER")
    token = args.token or os.environ.get(ENV_RUNNER_TOKEN)
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
    if not token and os.environ.get(ENV_OLD_TOKEN):
        # the old name, last: FERRY_TOKEN is the admin token for every other command
        token = os.environ[ENV_OLD_TOKEN]
        print(f"ferry: warning: {ENV_OLD_TOKEN} as the runner token of `ferry sync` is "
              f"deprecated; set {ENV_RUNNER_TOKEN} (FERRY_TOKEN is the admin token)",
              file=sys.stderr)
    if not server or not token:
        raise ConfigError("ferry sync: no control plane configured (give -c CONFIG, "
                          "--server/--token, or run `ferry register` first)")
    client = ControlClient(server, token)
    report = sync_all(paths.journal_dir, client, policy=policy)
    for result in report.results:
        for damage in result.damage:
            print(f"ferry: error: run {result.run_id}: damaged journal line ({damage})",
                  file=sys.stderr)
        print(result.describe())
    left = report.remaining
    aside = sum(1 for r in report.results if r.aside is not None)
    print(f"Synced {len(report.results)} journal(s): {report.delivered} record(s) delivered, "
          f"{left} left" + (f", {aside} set aside" if aside else "")
          + (f" (control plane at {client.display_url} unreachable)" if report.unreachable
             else ""))
    if not report.ok:
        print("ferry: error: not everything was delivered; run `ferry sync` again later",
              file=sys.stderr)
        return ExitCode.CONTROL
    return ExitCode.OK
