"""Ending the step processes a killed runner left running, before their tasks run again.

A `ferry run` or `ferry daemon` killed with SIGKILL leaves its steps running (re-parented to
init). Each task wrote what it started to its ledger (`runner.runtimes.ledger`); `ferry resume`
and `ferry cancel` end the ledgers of their run, `ferry daemon` at start ends every ledger of
its FERRY_HOME whose writer is dead. The task's next attempt checks its own ledger again in any
case (`Runtime.open`), so a task never runs while an earlier attempt of it still runs here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from runner.errors import ConfigError
from runner.runtimes.ledger import describe, sweep
from runner.runtimes.tracking import Tracking

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
