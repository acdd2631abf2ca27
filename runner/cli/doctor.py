"""`ferry doctor`: check this machine as a runner and print what to fix.

Checks: the runner config (readable, mode 0600), the control plane (reachable, the runner token
accepted, the clock within a few seconds of the server's), Docker and Podman (answering; each
`--image` present or pullable), the Codemod CLI, disk space and write access under FERRY_HOME,
and journals waiting for delivery.

Exit codes: 0 nothing failed (warnings may be printed), 1 at least one check failed.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add `doctor` to the `ferry` parser."""
    p = sub.add_parser("doctor", help="check this machine and say what to fix",
                       description="Check the runner config, the control plane (reachable, "
                                   "token, clock), Docker/Podman and images, the Codemod CLI, "
                                   "disk space and undelivered journals. Exit 0 when nothing "
                                   "failed, 1 otherwise.")
    p.add_argument("-c", "--config", metavar="CONFIG",
                   help="runner config (default: <config dir>/runner.yaml)")
    p.add_argument("--image", action="append", default=[], metavar="IMAGE",
                   help="also check that this image is present or pullable (repeatable)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    """Run every check, print them with their fixes; exit 1 if any failed."""
    import json
    import os
    from dataclasses import asdict
    from pathlib import Path

    from runner.cli import doctor_checks as dc
    from runner.exitcodes import ExitCode
    from runner.paths import Paths

    paths = Paths.from_env(os.environ)
    config_path = Path(args.config) if args.config else paths.runner_config
    checks, config = dc.check_config(config_path, os.environ)
    target = dc.server_of(config)
    if target is None:
        checks.append(dc.Check("server", dc.SKIP, "no control plane configured",
                               "ferry register --server URL --token REGISTRATION_TOKEN"))
    else:
        checks += dc.check_server(*target)
    checks += dc.check_engines(config, os.environ, args.image)
    checks += dc.check_codemod(os.environ, config.runner.tools.codemod if config else None)
    checks += dc.check_processes(config, os.environ)
    checks += dc.check_disk(paths)
    checks += dc.check_journals(paths)
    failed = [c for c in checks if c.status == dc.FAIL]
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        print("\n".join(render(checks)))
    return ExitCode.FAILED if failed else ExitCode.OK


def render(checks: list[Any]) -> list[str]:
    """One line per check, its fix below it, and a closing verdict."""
    width = max(len(c.name) for c in checks)
    lines = []
    for check in checks:
        lines.append(f"{check.status:4}  {check.name:{width}}  {check.detail}")
        if check.fix and check.status != "ok":
            lines.append(f"{'':4}  {'':{width}}  fix: {check.fix}")
    failed = sum(c.status == "FAIL" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    if failed:
        lines.append(f"{failed} check(s) failed, {warned} warning(s): fix the FAIL lines above.")
    elif warned:
        lines.append(f"No check failed; {warned} warning(s).")
    else:
        lines.append("Everything checked is fine.")
    return lines
