"""`ferry submit` and the `--server URL --token T` variants of status, list, logs, cancel and
resume (also `FERRY_SERVER` / `FERRY_TOKEN`): the users' side of the control plane.

`register` adds `submit` and, for the local commands already registered by `runner.cli.local`,
the `--server/--token` options plus a dispatcher: with a server the remote function here runs,
otherwise the local command does, unchanged.

Exit codes: 0 ok, 2 usage or an invalid workflow (the validator's errors on stderr), 6 the
control plane failed or refused (unreachable, bad token, unknown run...).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from runner.cli.args import parse_params
from runner.state.backend import MIN_PREFIX

if TYPE_CHECKING:
    from runner.api.client import ControlClient

ENV_SERVER = "FERRY_SERVER"
ENV_TOKEN = "FERRY_TOKEN"
REMOTE_COMMANDS = ("status", "list", "logs", "cancel", "resume")
FOLLOW_SECONDS = 0.5
"""A run id prefix shorter than this is not looked up (as in the local database)."""


def add_server_options(p: argparse.ArgumentParser, *, local: bool = True) -> None:
    """`--server URL --token T` on a command (`local`: without one it works on local state)."""
    otherwise = "; without one, the local state" if local else ""
    p.add_argument("--server", metavar="URL",
                   help=f"a Ferry control plane (default ${ENV_SERVER}){otherwise}")
    p.add_argument("--token", metavar="TOKEN", help=f"its admin token (default ${ENV_TOKEN})")


def register(sub: Any) -> None:
    """Add `submit`, and `--server/--token` to the local commands that have a remote form."""
    p = sub.add_parser("submit", help="queue a run on a control plane",
                       description="Queue a run of a workflow file at a ref of a repository on "
                                   "the control plane; prints the run id.")
    p.add_argument("--repo", required=True, help="repository name on the server")
    p.add_argument("--ref", default="HEAD", help="branch, tag or commit (default HEAD)")
    p.add_argument("-w", "--workflow", required=True, metavar="PATH",
                   help="workflow file path inside the repository")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter (${{ params.KEY }}); repeatable")
    p.add_argument("--label", action="append", default=[], metavar="LABEL",
                   help="only runners with this label may run it (repeatable)")
    p.add_argument("--strict", action="store_true",
                   help="refuse the workflow on any warning of 'ferry validate' (unknown keys, "
                        "duplicates, empty matrix values...)")
    p.add_argument("--distributed", action="store_true",
                   help="hand the run's ready tasks one by one to any runner with its labels "
                        "(many runners work one run), instead of the whole run to one")
    add_server_options(p, local=False)
    p.set_defaults(func=cmd_submit)
    for name in REMOTE_COMMANDS:
        parser = sub.choices.get(name)
        if parser is None:
            continue
        add_server_options(parser)
        parser.set_defaults(func=_dispatch(parser.get_default("func"), REMOTE[name]))


def _dispatch(local: Callable[[argparse.Namespace], int] | None,
              remote: Callable[[argparse.Namespace, ControlClient], int]
              ) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        target = server_target(args, os.environ)
        if target is not None:
            return remote(args, _client(*target))
        if local is None:
            from runner.errors import UsageError

            raise UsageError("this command needs --server (or FERRY_SERVER)")
        return local(args)

    return run


def server_target(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, str] | None:
    """(url, token) from the flags, else the environment; None for local state."""
    from runner.errors import UsageError

    url = getattr(args, "server", None) or env.get(ENV_SERVER)
    if not url:
        return None
    token = getattr(args, "token", None) or env.get(ENV_TOKEN)
    if not token:
        raise UsageError(f"--server {url} needs --token (or {ENV_TOKEN})")
    return url.rstrip("/"), token


def _client(url: str, token: str) -> ControlClient:
    from runner.api.client import ControlClient

    return ControlClient(url, token)


def cmd_submit(args: argparse.Namespace) -> int:
    """`ferry submit`: queue a run and print its id."""
    from pydantic import ValidationError

    from runner.api.protocol import CreateRunRequest
    from runner.errors import PermanentError, UsageError
    from runner.exitcodes import ExitCode

    target = server_target(args, os.environ)
    if target is None:
        raise UsageError(f"submit needs --server URL (or {ENV_SERVER})")
    try:
        request = CreateRunRequest(repo=args.repo, ref=args.ref, workflow_path=args.workflow,
                                   params=parse_params(args.param), labels=args.label,
                                   strict=bool(getattr(args, "strict", False)),
                                   distributed=True if args.distributed else None)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = {"repo": "--repo", "ref": "--ref", "workflow_path": "--workflow"}.get(
            str(first["loc"][0]) if first["loc"] else "", "submit")
        raise UsageError(f"{where}: {first['msg']}") from None
    client = _client(*target)
    try:
        info = client.create_run(request)
    except PermanentError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        if exc.status == 422 and body.get("error") == "invalid_workflow":
            for problem in body.get("problems") or []:
                print(problem.get("rendered") or problem.get("message"), file=sys.stderr)
            print(f"ferry: error: {args.workflow} at {args.ref} is not a valid workflow",
                  file=sys.stderr)
            return ExitCode.USAGE
        if exc.status == 422 and body.get("error") == "invalid_params":
            for problem in body.get("problems") or []:
                print(f"ferry: error: {problem.get('message')}", file=sys.stderr)
            return ExitCode.USAGE
        if exc.status in (400, 404, 422):
            # an unknown repository, ref or path is a typo, not an outage (exit 6)
            reason = body.get("message") if isinstance(body.get("message"), str) else str(exc)
            raise UsageError(f"{reason} (on {target[0]})") from exc
        raise
    # what `ferry validate` warns about, as `ferry run` prints it (kept with the run)
    for warning in client.get_run(info.id).get("warnings") or []:
        print(f"ferry: {warning}", file=sys.stderr)
    print(info.id)
    return 0


def _load(client: ControlClient, ref: str) -> dict[str, Any]:
    """The run by id, or by a unique id prefix among the server's recent runs."""
    import re

    from runner.api.protocol import RUN_ID_PATTERN
    from runner.errors import PermanentError, UsageError

    if re.fullmatch(RUN_ID_PATTERN, ref):  # a whole id; anything else routes nowhere (404)
        try:
            doc: dict[str, Any] = client.get_run(ref)
            return doc
        except PermanentError as exc:
            if exc.status != 404:
                raise
    if len(ref) < MIN_PREFIX:
        raise UsageError(f"no run '{ref}' on the server (a run id prefix needs at least "
                         f"{MIN_PREFIX} characters)")
    matches = [r.id for r in client.list_runs(limit=1000) if r.id.startswith(ref)]
    if len(matches) != 1:
        raise UsageError(f"no run '{ref}' on the server" if not matches
                         else f"run id prefix '{ref}' is ambiguous")
    found: dict[str, Any] = client.get_run(matches[0])
    return found


def remote_status(args: argparse.Namespace, client: ControlClient) -> int:
    """`ferry status --server`."""
    import json

    from runner.cli.render import render_status
    from runner.diff import Diff

    doc = _load(client, args.id)
    history = None
    if getattr(args, "history", False):
        doc = client.get_run(doc["id"], history=True)  # the document and its diffs at once
        raw = doc.pop("history")
        history = [Diff(run_id=doc["id"], writer=d["writer"], seq=d["seq"], ops=d["ops"],
                        ts=d.get("ts"), meta={"ignored": True} if d.get("ignored") else {})
                   for d in raw]
    if args.json:
        body: Any = doc if history is None else {"run": doc, "history": raw}
        print(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        print("\n".join(render_status(doc, history)))
    return 0


def remote_list(args: argparse.Namespace, client: ControlClient) -> int:
    """`ferry list --server`."""
    import json

    from runner.cli.render import render_runs
    from runner.state.backend import RunSummary

    runs = client.list_runs(status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in runs], indent=2))
        return 0
    print("\n".join(render_runs([RunSummary(id=r.id, name=r.name, status=r.status,
                                            created_at=r.created_at, started_at=r.started_at,
                                            ended_at=r.ended_at) for r in runs])))
    return 0


def remote_cancel(args: argparse.Namespace, client: ControlClient) -> int:
    """`ferry cancel --server`: a queued or paused run ends at once, a running one is told
    through its runner's next heartbeat."""
    from runner.errors import Conflict, UsageError

    doc = _load(client, args.id)
    try:
        info = client.cancel(doc["id"])
    except Conflict as exc:
        raise UsageError(f"run {doc['id']} is already {doc['status']}: nothing to cancel") \
            from exc
    if info.queue == "done":
        print(f"Workflow run {info.id} canceled.")
    else:
        print(f"Cancel requested for workflow run {info.id}; its runner stops it at its next "
              "heartbeat.")
    return 0


def remote_resume(args: argparse.Namespace, client: ControlClient) -> int:
    """`ferry resume --server`: trigger tasks, or re-run a Failed run's failed ones
    (`--retry-failed`); the server re-queues the run for a runner."""
    from runner.cli.backends import resolve_task
    from runner.errors import Conflict, UsageError

    if args.task and args.trigger_all:
        raise UsageError("give either -t TASK or --trigger-all, not both")
    retry = bool(getattr(args, "retry_failed", False))
    if retry and (args.task or args.trigger_all):
        raise UsageError("--retry-failed re-runs a Failed run; it takes no -t or --trigger-all")
    doc = _load(client, args.id)
    try:
        if retry:
            info = client.retry_failed(doc["id"])
        elif args.trigger_all or not args.task:
            info = client.trigger_all(doc["id"])
        else:
            for ref in args.task:
                info = client.trigger(doc["id"], resolve_task(doc, ref)["id"])
    except Conflict as exc:
        raise UsageError(str(exc)) from exc
    state = "queued for a runner" if info.queue == "queued" else f"{info.queue}"
    what = "Failed tasks reset" if retry else "Triggered"
    print(f"{what}; workflow run {info.id} is {state}.")
    return 0


def remote_logs(args: argparse.Namespace, client: ControlClient) -> int:
    """`ferry logs --server`: every task's output prefixed with its label, or one task raw."""
    from runner.cli.backends import resolve_task
    from runner.cli.render import ordered_tasks
    from runner.document import TERMINAL_RUN, RunStatus, task_label

    doc = _load(client, args.id)
    run_id = doc["id"]
    offsets: dict[str, int] = {}
    stop = threading.Event()
    if not args.task:  # what validation warned about, kept with the run
        sys.stdout.write("".join(f"[run] {w}\n" for w in doc.get("warnings") or []))
    while True:
        if args.task:
            tasks = [resolve_task(doc, args.task)]
        else:
            tasks = [t for top, kids in ordered_tasks(doc) for t in [top, *kids]
                     if not t.get("master")]
        for task in tasks:
            data = client.read_log(run_id, task["id"], offsets.get(task["id"], 0))
            offsets[task["id"]] = offsets.get(task["id"], 0) + len(data)
            text = data.decode("utf-8", "replace")
            if args.task or not text:
                sys.stdout.write(text)
            else:
                prefix = f"[{task_label(doc, task)}] "
                sys.stdout.write("".join(prefix + line + "\n"
                                         for line in text.rstrip("\n").split("\n")))
        sys.stdout.flush()
        if not args.follow or RunStatus(doc["status"]) in TERMINAL_RUN:
            return 0
        stop.wait(FOLLOW_SECONDS)
        doc = client.get_run(run_id)


REMOTE: dict[str, Callable[[argparse.Namespace, ControlClient], int]] = {
    "status": remote_status, "list": remote_list, "logs": remote_logs,
    "cancel": remote_cancel, "resume": remote_resume,
}
