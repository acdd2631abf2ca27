"""Ending the step processes a killed runner left running, before their tasks run again.

A `ferry run` or `ferry daemon` killed with SIGKILL leaves its steps running (re-parented to
init). Each task wrote what it started to its ledger (`runner.runtimes.ledger`); `ferry resume`
and `ferry cancel` end the ledgers of their run, `ferry daemon` at start ends every ledger of
its FERRY_HOME whose writer is dead. The task's next attempt checks its own ledger again in any
case (`Runtime.open`), so a task never runs while an earlier attempt of it still runs here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import ConfigError
from runner.runtimes.ledger import describe, sweep
from runner.runtimes.tracking import Tracking

if TYPE_CHECKING:
    from runner.paths import Paths
    from runner.runtimes.base import Runtime

TRACKING_VAR = "FERRY_PROCESS_TRACKING"


def tracking_from(environ: Mapping[str, str], configured: str = "auto") -> Tracking:
    """`FERRY_PROCESS_TRACKING` if set, else the config's `runner.process_tracking`."""
    value = environ.get(TRACKING_VAR, "").strip() or configured
    try:
        return Tracking(value)
    except ValueError:
        choices = ", ".join(t.value for t in Tracking)
        raise ConfigError(f"{TRACKING_VAR}={value!r}: expected one of {choices}") from None


def end_leftover_processes(ledgers: list[Path], grace: float, *, say: Callable[[str], None],
                           warn: Callable[[str], None]) -> tuple[int, int]:
    """End what the ledgers of dead runners record: (tasks whose processes were ended, tasks
    where some survived). One `say` line per task ended, one `warn` line per failure."""
    ended = failed = 0
    for result in sweep(ledgers, grace):
        task = result.path.name.removesuffix(".procs")
        run = result.path.parent.parent.name
        if not result.clean:
            failed += 1
            warn(f"processes of interrupted task {task} (run {run}) could not be stopped: "
                 f"{describe(result)}; the task will not run again on this host until they "
                 "are gone")
        elif result.stopped:
            ended += 1
            say(f"stopped {result.stopped} leftover process{'es' if result.stopped > 1 else ''}"
                f" of interrupted task {task} (run {run})")
    return ended, failed


def daemon_start_sweep(runtimes: Mapping[str, Runtime], paths: Paths, grace: float,
                       log: logging.Logger) -> None:
    """Say how host steps are tracked (a required cgroup that is missing stops the start),
    then end the step processes a killed daemon of this home left running."""
    from runner.control.logs import fields
    from runner.errors import RuntimeUnavailable
    from runner.paths import ledger_files
    from runner.runtimes.direct import DirectRuntime

    direct = runtimes.get("direct")
    if isinstance(direct, DirectRuntime):
        try:
            direct.cgroups.parent()
        except RuntimeUnavailable as exc:
            raise ConfigError(str(exc)) from exc
        log.info("host steps tracked by %s", direct.cgroups.describe())
    end_leftover_processes(
        ledger_files(paths.work_dir), grace,
        say=lambda text: log.info("%s", text, extra=fields(event="leftovers_stopped")),
        warn=lambda text: log.error("%s", text, extra=fields(event="leftovers_survived")))


def reap_daemon_containers(runtimes: Mapping[str, Runtime], log: logging.Logger) -> None:
    """Remove containers this runner left behind when it was killed: no run is active yet."""
    from runner.control.logs import fields
    from runner.errors import RuntimeUnavailable

    for kind, runtime in runtimes.items():
        if kind == "direct":
            continue
        try:
            removed = runtime.reap(set())
        except RuntimeUnavailable as exc:  # engine not installed or not running: nothing to reap
            log.debug("no leftovers reaped", extra=fields(runtime=kind, reason=str(exc)))
            continue
        except Exception as exc:  # the engine answered oddly: log it, the daemon still starts
            log.warning("reaping leftover containers failed",
                        extra=fields(runtime=kind, reason=str(exc)))
            continue
        if removed:
            log.info("removed leftover containers", extra=fields(runtime=kind, count=removed))
