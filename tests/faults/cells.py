"""The fault matrix as a table: every fault (row) at every moment (column), each with a recovery.

Recoveries:
    live            the same daemon goes on; the server comes back after an outage
    restart_before  the daemon is stopped during the outage (SIGTERM: the run ends, delivery gives
                    up after the drain timeout); the server comes back, then the daemon starts
    restart_after   the same, but the daemon starts again while the server is still away
    sync            the daemon is stopped (or dead); the server comes back; `ferry sync` delivers
                    (and a daemon on that home finishes the run if the journal did not)
    restart         a killed daemon starts again on its home: replays, and claims the run again
                    once the lease expired
    reclaim         a killed daemon never comes back: the lease expires, another runner claims
                    the run and finishes it; `ferry sync` on the dead runner's home afterwards
    drain, flaky    nothing to do: the daemon drains (SIGTERM) or gets through the 5xx itself
    repeat          the runner of the run dies again and again (the control plane's lost-lease cap)
"""

from __future__ import annotations

from tests.faults.cell import Cell

WHEN = ("before_confirm", "mid_task", "between_tasks", "after_last_task", "during_delivery")

NOSPACE = "Failed: no space left on device under"
DAMAGED = "Failed: is damaged"

_RECOVERY = {
    "server_kill": ("live", "restart_before", "restart_after", "sync", "live"),
    "proxy_down": ("restart_before", "live", "sync", "restart_after", "restart_before"),
    "flaky_5xx": ("flaky",) * 5,
    "daemon_kill": ("restart", "reclaim", "sync", "restart", "reclaim"),
    "daemon_term": ("drain",) * 5,
    "disk_full": ("live",) * 5,
    "journal_torn": ("restart", "restart", "sync", "restart", "restart"),
    "journal_damaged": ("restart", "restart", "sync", "restart", "restart"),
}

_EXPECT = {
    ("disk_full", "before_confirm"): NOSPACE,
    ("disk_full", "mid_task"): NOSPACE,
    ("disk_full", "between_tasks"): NOSPACE,
    ("journal_damaged", "mid_task"): DAMAGED,
    ("journal_damaged", "between_tasks"): DAMAGED,
    ("journal_damaged", "after_last_task"): DAMAGED,
    ("journal_damaged", "during_delivery"): DAMAGED,
}

# A daemon killed while a step runs leaves nothing of it running: its reaper ends the step
# (`runner.cli.reaper`) before the lease expires, so neither the same runner starting again
# (restart, sync then restart) nor a runner of another FERRY_HOME, as another machine would be
# (reclaim), starts it beside its orphan. Between tasks, b may or may not have started when the
# kill lands.
CELLS: tuple[Cell, ...] = (
    *(Cell(row, when, recovery, _EXPECT.get((row, when), "Completed"))
      for row, recoveries in _RECOVERY.items()
      for when, recovery in zip(WHEN, recoveries, strict=True)),
    # the recoveries the table above gives one column only, once more elsewhere
    Cell("server_kill", "mid_task", "sync"),
    Cell("proxy_down", "between_tasks", "restart_after"),
    Cell("daemon_kill", "between_tasks", "reclaim"),
    Cell("daemon_kill", "before_confirm", "repeat", "Failed: runner lost"),
)
