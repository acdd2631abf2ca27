"""`ReportingBackend`: the journal-first backend of `ferry run -c` with `backend: api`.

The run is reported to the control plane (`/runs/report`) before anything is written: a token
the server refuses, or an endpoint where no Ferry control plane answers (a 404, e.g. a base URL
with a path nothing serves), is one clear `ControlPlaneError` at start and nothing runs. A server
that does not answer is no reason to stop: the run goes on offline, mirrored to the local SQLite
backend (`ferry status`/`logs` work), and its records wait in the journal.

On `close` each run's end is journaled (from its document's status) and delivery is tried under
the config's retry policy. What does not get through stays in the journal (`ferry sync` delivers
it later) and `close` raises `ControlPlaneError` saying how many records wait, where, and why;
a journal the server will never take is settled (see `runner.state.replay`) and said so.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from runner.document import TERMINAL_RUN
from runner.errors import (
    AuthError,
    ControlPlaneError,
    FerryError,
    LeaseLost,
    PermanentError,
    TransientError,
)
from runner.state.api import ApiBackend
from runner.state.replay import SyncResult, report_failed, settle
from runner.state.sync import JournalDamaged, RecordRefused

_HANDBACK = frozenset({"Completed", "Failed", "Canceled", "AwaitingTrigger"})


@dataclass(frozen=True)
class Undelivered:
    """Records of one run left in its journal when the backend closed."""

    run_id: str
    records: int
    journal: str
    why: str


class ReportingBackend(ApiBackend):
    """`ApiBackend` for runs this process executes itself and reports to a control plane."""

    offline: str | None = None
    """Why the control plane did not answer when the run was reported (it went on offline)."""

    def create_run(self, doc: dict[str, Any]) -> None:
        """Report the run (nothing is written when the server refuses), then journal it."""
        url = self.client.display_url
        try:
            self.client.report_run(doc)
        except TransientError as exc:
            self.offline = str(exc)
        except AuthError as exc:
            raise ControlPlaneError(f"the control plane at {url} refused the token: {exc}") \
                from exc
        except PermanentError as exc:
            hint = (" (stateManagement.apiConfig.endpoint must be the base URL of a Ferry "
                    f"control plane, whose API is under {url}/api/v1)"
                    if exc.status in (404, 405) else "")
            raise ControlPlaneError(f"the run could not be reported to {url}: {exc}{hint}") \
                from exc
        super().create_run(doc)

    def fail_open_runs(self, reason: str) -> list[str]:
        """The run cannot go on through the journal (a full disk): deliver what it holds, then
        tell the server directly that every run not ended yet failed, and why. Returns a line
        per run the server could not be told about."""
        with self._lock:
            runs = [(rid, r) for rid, r in self._runs.items()
                    if r.doc.get("status") not in TERMINAL_RUN]
        problems = []
        for run_id, run in runs:
            run.syncer.stop(1.0)
            run.syncer.stop_event.clear()
            with contextlib.suppress(FerryError):  # what is left stays in the journal
                run.syncer.sync(self.policy)
            writer = next(iter(run.next_seq), run_id)
            try:
                why = report_failed(self.client, run_id, run.lease, writer, reason,
                                    policy=self.policy)
            except FerryError as exc:
                why = str(exc)
            if why is not None:
                problems.append(f"run {run_id} could not be reported failed ({why})")
        return problems

    def close(self, timeout: float = 10.0) -> None:
        """Journal finish records, try to deliver, stop the syncers, close the mirror; then
        `ControlPlaneError` if records are left (they stay in the journal)."""
        with self._lock:
            runs = list(self._runs.items())
        for run_id, run in runs:
            status = str(run.doc.get("status"))
            journaled = any(r.kind == "finish" for r in run.journal.pending())
            if status in _HANDBACK and not journaled and run.journal.last > 0:
                self.finish(run_id, status)
        left: list[Undelivered] = []
        for run_id, run in runs:
            run.syncer.stop(timeout)
            run.syncer.stop_event.clear()
            why = self._deliver(run_id)
            if why is not None:
                left.append(Undelivered(run_id, run.journal.backlog(), str(run.journal.path),
                                        why))
            run.journal.close()
        if self.mirror is not None:
            self.mirror.close()
        if left:
            first = left[0]
            raise ControlPlaneError(
                f"{first.records} record(s) of run {first.run_id} could not be delivered "
                f"({first.why}); they wait in {first.journal}: `ferry sync` delivers them"
                + (f" (and those of {len(left) - 1} other run(s))" if len(left) > 1 else ""))

    def _deliver(self, run_id: str) -> str | None:
        """Deliver what the run's journal holds; None when everything went, else why not."""
        run = self._runs[run_id]
        try:
            run.syncer.sync(self.policy)
        except (LeaseLost, JournalDamaged, RecordRefused) as exc:
            result = SyncResult(run_id, remaining=run.journal.backlog())
            try:
                settle(run.journal, self.client, exc, result, policy=self.policy)
            except FerryError as again:
                return f"{exc}; {again}"
            raise ControlPlaneError(f"the control plane will never take the records of run "
                                    f"{run_id}: {result.describe()}") from exc
        except FerryError as exc:
            return str(exc)
        return None
