"""Every exit code a Ferry command returns, in one place (the README's table is this one).

    0    ok; the run Completed
    1    the run Failed
    2    invalid input or usage: a bad workflow, flag, config, id or state transition
    3    the run is AwaitingTrigger (paused for manual triggers)
    4    the run was Canceled
    5    the state store is unusable (torn, locked, full disk)
    6    the control plane is unreachable or refused the token
    7    `ferry daemon --once`: the run ended but records of it wait in the journal (the
         control plane did not take them within the drain timeout); the next `ferry daemon`
         start or `ferry sync` delivers them
    130  the command itself was interrupted (SIGINT, or a second SIGTERM for the daemon)
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """A process exit code of `ferry` and `ferry-server`."""

    OK = 0
    FAILED = 1
    USAGE = 2
    AWAITING = 3
    CANCELED = 4
    STATE = 5
    CONTROL = 6
    UNDELIVERED = 7
    INTERRUPTED = 130


_BY_STATUS = {"Completed": ExitCode.OK, "Failed": ExitCode.FAILED,
              "AwaitingTrigger": ExitCode.AWAITING, "Canceled": ExitCode.CANCELED}


def for_status(status: str) -> ExitCode:
    """The exit code of a command that ran a run to `status` (FAILED for anything unknown)."""
    return _BY_STATUS.get(str(status), ExitCode.FAILED)
