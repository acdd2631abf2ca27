"""Local commands: run, resume, status, list, cancel, logs (on the local state database).

Exit codes: 0 Completed, 1 Failed, 2 invalid input/usage, 3 AwaitingTrigger, 4 Canceled,
5 state database error.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from runner.cli.args import positive_int

if TYPE_CHECKING:
    from runner.paths import Paths
    from runner.state.backend import StateBackend

STATUS_EXIT = {"Completed": 0, "Failed": 1, "AwaitingTrigger": 3, "Canceled": 4}
CANCEL_WAIT_SECONDS = 30.0
GRACE_SECONDS = 5.0



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
                   help="print the final run document as JSON on stdout (progress on stderr)")
    p.add_argument("--workdir", metavar="DIR",
                   help="working directory of the steps (default: the current directory)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="continue a paused or interrupted run",
                       description="Trigger waiting tasks and continue a run.")
    p.add_argument("-i", "--id", required=True, metavar="RUN", help="run id (or unique prefix)")
    p.add_argument("-t", "--task", action="append", default=[], metavar="TASK",
                   help="trigger this AwaitingTrigger task (id, prefix or node id); repeatable")
    p.add_argument("--trigger-all", action="store_true", help="trigger every waiting task")
    p.add_argument("-c", "--config", metavar="CONFIG", help="config file")
    p.add_argument("--max-parallel", type=positive_int, metavar="N")
    p.add_argument("--json", action="store_true", help="print the final run document as JSON")
    p.add_argument("--workdir", metavar="DIR", help="working directory of the steps")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("status", help="show a run's status",
                       description="Show a run: status, task tree, manual triggers.")
    p.add_argument("-i", "--id", required=True, metavar="RUN")
    p.add_argument("--json", action="store_true", help="the run document as JSON")
    p.add_argument("--history", action="store_true", help="also show every recorded change")
    p.add_argument("-c", "--config", metavar="CONFIG", help="config file")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("list", help="list recent runs", description="List recent runs.")
    p.add_argument("--limit", type=positive_int, default=20, metavar="N")
    p.add_argument("--status", metavar="S", help="only runs with this status")
    p.add_argument("--json", action="store_true")
    p.add_argument("-c", "--config", metavar="CONFIG", help="config file")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("cancel", help="cancel a run",
                       description="Cancel a run; a running `ferry run` stops within 2 s.")
    p.add_argument("-i", "--id", required=True, metavar="RUN")
    p.add_argument("-c", "--config", metavar="CONFIG", help="config file")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("logs", help="print a run's task output",
                       description="Print task output, each line prefixed with its task.")
    p.add_argument("-i", "--id", required=True, metavar="RUN")
    p.add_argument("-t", "--task", metavar="TASK", help="only this task (raw output)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    p.add_argument("-c", "--config", metavar="CONFIG", help="config file")
    p.set_defaults(func=cmd_logs)


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

    from runner.cli.render import render_status

    backend, _ = open_backend(args)
    run_id = backend_resolve(backend, args.id)
    doc = backend.load(run_id)
    history = backend.history(run_id) if args.history else None
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
    from runner.engine.document import RunStatus
    from runner.errors import UsageError

    status = None
    if args.status:
        known = {s.value.lower(): s.value for s in RunStatus}
        status = known.get(args.status.lower())
        if status is None:
            raise UsageError(f"unknown status '{args.status}' (one of "
                             f"{', '.join(s.value for s in RunStatus)})")
    backend, _ = open_backend(args)
    runs = backend.list_runs(limit=args.limit, status=status)
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


# -- shared helpers ---------------------------------------------------------------------------

def load_config(path: str | None) -> dict[str, Any]:
    """The parsed config file (empty without `-c`); `ConfigError` naming the file otherwise."""
    if not path:
        return {}
    from pathlib import Path

    import yaml

    from runner.errors import ConfigError

    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {file}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read the config file: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the config file must be a mapping")
    return data


def build_backend(config: dict[str, Any], paths: Paths, source: str = "config") -> StateBackend:
    """The state backend the config asks for: the hook where `backend: api` plugs in."""
    from runner.errors import ConfigError
    from runner.state.local import LocalBackend

    section = config.get("stateManagement") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: stateManagement must be a mapping")
    kind = str(section.get("backend") or "local").lower()
    if kind == "local":
        paths.ensure()
        return LocalBackend(paths.db_path, paths.logs_dir)
    if kind == "api":
        try:
            from runner.state import api
        except ModuleNotFoundError:
            raise ConfigError(f"{source}: stateManagement.backend 'api' is not available in "
                              "this build; use 'local'") from None
        factory = getattr(api, "backend_from_config", None)
        if factory is None:
            raise ConfigError(f"{source}: stateManagement.backend 'api' is not available in "
                              "this build; use 'local'")
        import os

        backend: StateBackend = factory(config, paths, environ=os.environ, source=source)
        return backend
    raise ConfigError(f"{source}: stateManagement.backend '{kind}' is not supported "
                      "(use 'local' or 'api')")


def open_backend(args: argparse.Namespace) -> tuple[StateBackend, Paths]:
    """Paths from the environment and the backend from `-c` (local by default)."""
    import os

    from runner.paths import Paths

    paths = Paths.from_env(os.environ)
    config_path = getattr(args, "config", None)
    backend = build_backend(load_config(config_path), paths, config_path or "config")
    return backend, paths


def backend_resolve(backend: StateBackend, ref: str) -> str:
    """A full run id from an id or unique prefix (backends without prefixes: as given)."""
    resolve = getattr(backend, "resolve_run_id", None)
    if resolve is None:
        return ref
    full: str = resolve(ref)
    return full
