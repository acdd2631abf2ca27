"""Removing containers that dead local runs left behind (`ferry run`/`resume`/`cancel` start).

A `ferry run` killed mid-task leaves its task containers (labelled `ferry.runner=local`) behind.
Which runs are dead is told by the per-run `flock` (`runner.state.runlock`): the kernel drops it
when its holder dies, so a run of this FERRY_HOME whose lock can be taken is executed by nobody.
Only such runs' containers are removed, and their locks are held while the runtime removes them,
so a run cannot come back to life (a `ferry resume` elsewhere) meanwhile. Containers of runs
this home never executed (another FERRY_HOME or user on the same engine, no lock file here) are
left alone: their owner reaps them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from runner.errors import RuntimeUnavailable
from runner.state.runlock import RunLock

LOCAL_RUNNER = "local"
"""The `ferry.runner` label of containers started by local commands."""


class _LiveRuns(set[str]):
    """The `active_run_ids` handed to `Runtime.reap`: every run counts as live except the
    proven-dead ones. A plain set of the live ids we saw would miss a container created after
    our listing (a run starting right now, another home) and let `reap` remove it."""

    def __init__(self, seen: Iterable[str], dead: Iterable[str]) -> None:
        self._dead = frozenset(dead)
        super().__init__(r for r in seen if r not in self._dead)

    def __contains__(self, run_id: object) -> bool:
        return run_id not in self._dead


def _labelled_runs(api: Any) -> set[str]:
    """Run ids on the engine's containers labelled as local ones."""
    found = api.containers(all=True, filters={"label": f"ferry.runner={LOCAL_RUNNER}"})
    return {str((item.get("Labels") or {}).get("ferry.run", "")) for item in found} - {""}


def _take_dead(run_ids: Iterable[str], locks_dir: Path, own: str | None) -> dict[str, RunLock]:
    """Lock the runs of this home that no live process executes; the caller releases them."""
    held: dict[str, RunLock] = {}
    for run_id in sorted(run_ids):
        if run_id == own:
            continue
        try:
            lock = RunLock(locks_dir, run_id)
        except ValueError:  # a label that is no run id of ours
            continue
        if lock.path.exists() and lock.acquire():
            held[run_id] = lock
    return held


def reap_leftovers(runtimes: Mapping[str, Any], locks_dir: Path, *, own_run: str | None,
                   warn: Callable[[str], None]) -> int:
    """Remove dead local runs' containers from every container runtime in `runtimes`; the
    number removed. `own_run` is the run this process holds the lock of and has not started:
    its containers are leftovers of the process that ran it before. An engine that is down
    is skipped quietly; any other engine trouble is one `warn` line, never fatal."""
    removed = 0
    for kind, runtime in runtimes.items():
        if kind == "direct" or not hasattr(runtime, "reap"):
            continue
        try:
            api = runtime.client().api
        except RuntimeUnavailable:
            continue  # engine not installed or not running: nothing to reap
        held: dict[str, RunLock] = {}
        try:
            seen = _labelled_runs(api)
            held = _take_dead(seen, locks_dir, own_run)
            dead = [*held, *([own_run] if own_run in seen else [])]
            if dead:
                removed += int(runtime.reap(_LiveRuns(seen, dead)))
        except Exception as exc:  # the engine answered oddly: the run still goes on
            text = str(exc).strip().splitlines()
            warn(f"could not remove leftover {kind} containers: "
                 f"{text[0] if text else type(exc).__name__}")
        finally:
            for lock in held.values():
                with contextlib.suppress(OSError):
                    lock.release()
    return removed
