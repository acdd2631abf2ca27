"""Running a codemod step (`js-ast-grep`, `ast-grep`, `codemod`) through the task's runtime: on
the host or in the task's container, like a `run` step, its output going to the task's log
through the same (masked) sink.

The command is the Codemod CLI on a generated one-node workflow (`codemod.delegate`); its JSON
Lines are read as they come (`codemod.output`). Once the CLI has logged its run's end, the step
is over: the CLI is stopped (through the same path as a cancel) unless the codemod may still
print metrics. The step succeeds exactly when the CLI's run completed, as upstream's step does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.engine.codemod.delegate import CONTAINER_BINARY, CONTAINER_BUNDLE, Seen, prepare
from runner.engine.codemod.files import codeowners_text, eligible, owner_of
from runner.engine.codemod.output import CodemodOutput
from runner.engine.codemod.shard import directory_group, make_shards
from runner.runtimes.base import Mount, OutputSink, StepResult, StepSpec, TaskHandle
from runner.workflow.model import Node, Step, Template, Workflow

INSTALL_HINT = ("install it with `npm install --prefix /opt/codemod "
                "@codemod.com/cli-linux-x64-gnu@1.18.3` and put its `codemod` on PATH, or set "
                "FERRY_CODEMOD_BIN or runner.tools.codemod")
DELEGATED = ("js-ast-grep", "ast-grep", "codemod")


def missing_engine(kind: str) -> str:
    """The one line a codemod step fails with when no Codemod CLI was found."""
    return f"'{kind}' steps are run by the Codemod CLI, which is not installed: {INSTALL_HINT}"


def node_needs_engine(workflow: Workflow, node: Node) -> bool:
    """Whether the node's steps (its templates' too) include a kind the CLI runs."""
    templates: dict[str, Template] = {t.id: t for t in workflow.templates}
    steps: list[Step] = list(node.steps)
    for step in node.steps:
        if step.use is not None and step.use.template in templates:
            steps += templates[step.use.template].steps
    return any(s.kind in (*DELEGATED, "shard") for s in steps)


def task_mounts(binary: Path | None, bundle: Path, workspace: Path) -> list[Mount]:
    """What a container task of a codemod node needs: the CLI, and the workflow's directory
    when it is not inside the workspace."""
    mounts: list[Mount] = []
    if binary is not None:
        mounts.append(Mount(binary.resolve(), CONTAINER_BINARY))
    try:
        bundle.resolve().relative_to(workspace.resolve())
    except ValueError:
        mounts.append(Mount(bundle.resolve(), CONTAINER_BUNDLE))
    return mounts


class _Either(threading.Event):
    """Set when the task is canceled or when this event is set (the step's own end)."""

    def __init__(self, other: threading.Event) -> None:
        super().__init__()
        self._other = other

    def is_set(self) -> bool:
        """Either event."""
        return super().is_set() or self._other.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait on this event, returning at once when the other is set."""
        return self._other.is_set() or super().wait(timeout)


@dataclass
class CodemodRun:
    """What one codemod step did."""

    result: StepResult
    changed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CodemodContext:
    """What a codemod step needs from its task."""

    binary: Path | None
    handle: TaskHandle
    control: Path
    workspace: Path
    bundle: Path
    node: Node
    matrix: Mapping[str, Any] | None
    params: Mapping[str, Any]
    dry_run: bool
    cancel: threading.Event
    run_step: Callable[[StepSpec, OutputSink, threading.Event], StepResult]
    """Runs a step through the task's handle, announcing it (the task runner's `run_step`)."""


def run_codemod_step(ctx: CodemodContext, step: Step, config: Mapping[str, Any],
                     spec: StepSpec, sink: OutputSink) -> CodemodRun:
    """Run one delegated step; the result is a failed StepResult (one-line reason) when the
    CLI is missing or its run failed."""
    kind = step.kind
    if ctx.binary is None:
        return CodemodRun(StepResult(exit_code=None, reason=missing_engine(kind)))
    package = ctx.control / f"codemod-{spec.index}"
    handle = ctx.handle
    seen = Seen(binary=handle.path_for(ctx.binary.resolve()),
                workspace=handle.path_for(ctx.workspace),
                bundle=_bundle_seen(handle, ctx.bundle), package=handle.path_for(package))
    delegation = prepare(kind, config, host_package=package, host_bundle=ctx.bundle,
                         seen=seen, step_name=spec.name, step_id=step.id, node_id=ctx.node.id,
                         node_name=ctx.node.display_name, params=ctx.params,
                         matrix=ctx.matrix, dry_run=ctx.dry_run)
    stop = _Either(ctx.cancel)
    # the CLI's end stops the step, unless metrics (printed after its poll) may follow
    parser = CodemodOutput(sink, seen.workspace,
                           on_done=None if delegation.wait_for_exit else stop.set)
    result = ctx.run_step(StepSpec(spec.index, spec.name, delegation.argv,
                                   {**spec.env, **delegation.env}, spec.timeout), parser, stop)
    parser.flush()
    if ctx.cancel.is_set() or result.reason == "timeout":
        return CodemodRun(result, parser.changed)
    if parser.completed is True:
        return CodemodRun(StepResult(exit_code=0, duration=result.duration), parser.changed)
    if parser.completed is False:
        reason = parser.error or "the Codemod CLI's run failed"
        if kind == "codemod" and "resolve package" in reason:
            source = str(config.get("source"))
            if not (ctx.workspace / source).exists():
                reason = (f"codemod source '{source}' is a registry package and the Codemod "
                          f"CLI could not fetch it (offline, or no such package): {reason}")
        return CodemodRun(StepResult(exit_code=1, reason=reason, duration=result.duration),
                          parser.changed)
    if result.ok:  # exited 0 without logging its end: an older or newer CLI
        return CodemodRun(result, parser.changed)
    reason = parser.error or f"the Codemod CLI stopped ({result.describe()})"
    return CodemodRun(StepResult(exit_code=result.exit_code, signal=result.signal,
                                 reason=reason, duration=result.duration), parser.changed)


def _bundle_seen(handle: TaskHandle, bundle: Path) -> str:
    try:
        return handle.path_for(bundle.resolve())
    except ValueError:
        return CONTAINER_BUNDLE


@dataclass
class ShardRun:
    """What a shard step did: its result and the shards to write to state."""

    result: StepResult
    shards: list[dict[str, Any]] | None = None


def _failed(reason: str) -> ShardRun:
    return ShardRun(StepResult(exit_code=None, reason=reason))


def run_shard_step(ctx: CodemodContext, step: Step, config: Mapping[str, Any], spec: StepSpec,
                   sink: OutputSink, previous: list[dict[str, Any]]) -> ShardRun:
    """A `shard` step: built-in methods computed here (the eligible files found by the CLI's
    walker, or by a dry run of the `js-ast-grep` pre-filter through the CLI), a `function`
    method run by the CLI (its shards read back from the CLI's state)."""
    method = config.get("method") or {}
    if "function" in method:
        return _shard_by_function(ctx, step, config, spec, sink)
    target = str(config.get("target") or ".")
    try:
        max_files = int(str(method.get("max_files_per_shard")))
    except ValueError:
        return _failed(f"max_files_per_shard must be a number (got "
                       f"{method.get('max_files_per_shard')!r})")
    if config.get("js-ast-grep") is not None:
        pre = {**config["js-ast-grep"], "base_path": target, "dry_run": True}
        done = run_codemod_step(ctx, Step.model_validate({"name": spec.name,
                                                          "js-ast-grep": pre}),
                                pre, spec, sink)
        if not done.result.ok:
            return ShardRun(done.result)
        files = done.changed
    else:
        try:
            files = eligible(ctx.workspace, target, str(config.get("file_pattern")))
        except (OSError, ValueError) as exc:
            return _failed(str(exc))
    field = "team" if method.get("type") == "codeowner" else "directory"
    group_of = (owner_of(codeowners_text(ctx.workspace)) if field == "team"
                else directory_group(target))
    try:
        shards = make_shards(files, group_of, field=field, max_files=max_files,
                             min_size=method.get("min_shard_size"), previous=previous)
    except ValueError as exc:
        return _failed(str(exc))
    sink(f"Found {len(files)} eligible files for sharding\n"
         f"Evaluated {len(files)} files into {len(shards)} shards\n".encode())
    return ShardRun(StepResult(exit_code=0), shards)


def _shard_by_function(ctx: CodemodContext, step: Step, config: Mapping[str, Any],
                       spec: StepSpec, sink: OutputSink) -> ShardRun:
    done = run_codemod_step(ctx, step, config, spec, sink)
    if not done.result.ok:
        return ShardRun(done.result)
    key = str(config.get("output_state"))
    states = sorted((ctx.control / f"codemod-{spec.index}" / "data" / "butterflow" / "state")
                    .glob("*.json"))
    try:
        value = json.loads(states[-1].read_text(encoding="utf-8")).get(key) if states else None
    except (OSError, ValueError) as exc:
        return _failed(f"cannot read the shards the Codemod CLI wrote: {exc}")
    if not isinstance(value, list):
        return _failed(f"the shard function wrote no list to state key '{key}'")
    return ShardRun(StepResult(exit_code=0), value)
