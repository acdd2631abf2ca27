"""What a task runner is given for a run (`TaskSetup`) and how one attempt ends (`Outcome`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.engine import events as ev
from runner.engine.patches import PatchKeeper
from runner.engine.runstore import RunStore
from runner.runtimes.base import Runtime
from runner.secrets.masker import Masker
from runner.workflow.model import Workflow


@dataclass(frozen=True)
class Outcome:
    """How one attempt of a task ended."""

    ok: bool
    error: str | None = None
    step: int | None = None
    canceled: bool = False
    state_changed: bool = False


@dataclass(frozen=True)
class TaskSetup:
    """Everything a task runner needs that does not change during a run."""

    workflow: Workflow
    store: RunStore
    runtimes: Mapping[str, Runtime]
    workspace: Path
    control_root: Path
    host_env: Mapping[str, str]
    ancestors: Mapping[str, frozenset[str]]
    emit: Callable[[ev.Event], None]
    clock: Callable[[], str]
    cancel: threading.Event
    runner_id: str = "local"
    secrets: Mapping[str, str] = field(default_factory=dict)
    """`${{ secrets.NAME }}`: the run's secrets (never stored, masked in every output)."""
    secret_params: Mapping[str, str] = field(default_factory=dict)
    """Values of the params declared secret (the document holds `***` for them)."""
    masker: Masker = field(default_factory=Masker)
    """Built from every value of `secrets` and `secret_params`."""
    bundle_path: str | None = None
    """The workflow file's directory, given to steps as CODEMOD_PATH (None: not set)."""
    state_schema: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The declared state keys (`engine.state_schema`); empty: writes are not checked."""
    step_traverse: bool = False
    """Control dirs 0711: a step user other than ours reaches its files, cannot add any."""
    codemod_bin: Path | None = None
    """The Codemod CLI on this machine (None: codemod steps fail saying how to install it)."""
    patches: PatchKeeper | None = None
    """Keeps each task's change to the workspace as a patch (runs with codemod steps)."""
