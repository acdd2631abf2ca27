"""One cell of the fault matrix, over real parts: a stub server (subprocess) behind a fault proxy,
`ferry daemon` subprocesses registered through the proxy, the three-task workflow whose steps mark
their pid and times, one fault at one moment, one recovery. `Scenario.run()` returns the evidence
`checks.judge` rules on.

Moments (`when`), each caught where it happens:
    before_confirm    the daemon's POST /runs/{id}/start reaches the proxy (held meanwhile)
    mid_task          step b has started (its first mark)
    between_tasks     the diff batch that carries a task's Completed status reaches the proxy
    after_last_task   the finish request reaches the proxy (or, while nothing is delivered, the
                      finish record is in the journal)
    during_delivery   the run ended while the server was unreachable; the first delivery
                      request once it is back
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.faults.cell import Cell, Evidence, alive, completed_tasks, sets_completed
from tests.faults.workflow import Mark, marks, workflow
from tests.helpers.faultproxy import FaultProxy
from tests.helpers.tmpfs import fill, free, small_disk
from tests.integration.daemon.conftest import REPO_ROOT, DaemonProc, Server

NODES = ("a", "b", "c")
OUTAGE = 1.5  # seconds the server stays away in the "live" recovery


class Scenario:
    """Runs one cell in its own directory; every process it starts is gone when it returns."""

    def __init__(self, cell: Cell, root: Path) -> None:
        self.cell = cell
        self.root = root
        short = cell.row in ("daemon_kill", "journal_torn", "journal_damaged", "lease_cap")
        ttl, grace = (1, 1) if short else (2, 15)
        self.server = Server(root / "server", lease_ttl=ttl, offline_grace=grace)
        self.side = root / "side"
        self.side.mkdir(parents=True)
        self.daemons: list[DaemonProc] = []
        self.ev = Evidence()
        self.injected = threading.Event()
        self.proxy: FaultProxy
        self.d1: DaemonProc
        self.run_id = ""
        self.disk: Path | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one injection
        self._seen = threading.Lock()  # completed_at

    # -- the whole cell ----------------------------------------------------------------------
    def run(self) -> Evidence:
        """Set up, inject, recover, collect; never leaves a process behind."""
        with ExitStack() as stack:
            self.server.start()
            stack.callback(self.server.kill)
            self.proxy = stack.enter_context(FaultProxy(("127.0.0.1", self.server.port), rate=0))
            self.proxy.answered.append(self._watch_completed)
            home = self.root / "home-1"
            if self.cell.row == "disk_full":
                self.disk = stack.enter_context(small_disk(self.root / "disk", "16m"))
                home = self.disk / "home-1"
            stack.callback(self._cleanup)
            self.server.repo("flow", {"wf.yaml": workflow()})
            self.run_id = self.server.submit("flow", "wf.yaml", params={"dir": str(self.side)})
            self.d1 = self._daemon("d1", home)
            self._arm()
            # not --once: its delivery is not bounded by the drain timeout until it is told
            # to stop, as a daemon's in service
            self._start(self.d1, "--idle-timeout", "300s")
            if not self.injected.wait(60):
                raise AssertionError(f"the fault was never injected ({self.cell.when})")
            self._recover()
            self._settle()
            self._collect()
        return self.ev

    # -- processes ---------------------------------------------------------------------------
    def _daemon(self, name: str, home: Path) -> DaemonProc:
        home.mkdir(parents=True, exist_ok=True)
        daemon = DaemonProc(home, self.server, name)
        daemon.stderr_path = self.root / f"{name}.log"  # never on the (full) disk under test
        daemon.register(url=self.proxy.url)
        config = home / "config" / "runner.yaml"
        # short long-polls: an idle daemon drains (SIGTERM) within a second
        config.write_text(config.read_text() + "  poll_wait: 1\n")
        self.daemons.append(daemon)
        return daemon

    def _start(self, daemon: DaemonProc, *args: str) -> None:
        """Start and wait until it is ready (its start-up replay is over)."""
        ready = len(daemon.logged("daemon ready"))
        daemon.start("--drain-timeout", "3s", "--log-level", "debug", *args,
                     env={"FAULT_PROC": f"{daemon.name}-{len(daemon.logged('daemon starting'))}"})
        self._wait(lambda: len(daemon.logged("daemon ready")) > ready or
                   (daemon.proc is not None and daemon.proc.poll() is not None), 60,
                   f"{daemon.name} to be ready")

    def _sync(self, daemon: DaemonProc) -> None:
        result = subprocess.run([sys.executable, "-m", "runner", "sync"], cwd=REPO_ROOT,
                                env=daemon.env, capture_output=True, text=True, timeout=120)
        self.ev.notes.append(f"ferry sync ({daemon.name}): exit {result.returncode}: "
                             + " | ".join(result.stdout.strip().splitlines()[-2:]))

    def _stop_daemon(self, daemon: DaemonProc, timeout: float = 60) -> None:
        if daemon.proc is None or daemon.proc.poll() is not None:
            return
        daemon.signal(signal.SIGTERM)
        try:
            daemon.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            daemon.kill()
            self.ev.notes.append(f"{daemon.name} did not stop within {timeout:g}s of SIGTERM")

    def _wait_exit(self, daemon: DaemonProc, timeout: float = 90) -> int | None:
        assert daemon.proc is not None
        try:
            return daemon.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.ev.notes.append(f"{daemon.name} still running after {timeout:g}s")
            self._stop_daemon(daemon)
            return None

    # -- the fault -----------------------------------------------------------------------------
    def _arm(self) -> None:
        """Catch the moment of the cell's column and inject the row's fault there."""
        when = self.cell.when
        journal_row = self.cell.row.startswith("journal_")
        if journal_row:  # nothing is acknowledged from the first change on: the journal grows
            self.proxy.hooks.append(self._down_at_first_diff)
        if when == "after_last_task":
            self._open_gate()  # b must get through for the run to reach its end
        if when == "before_confirm":
            self._hook_once(lambda m, p, b: p == f"/api/v1/runs/{self.run_id}/start")
        elif when == "between_tasks" and not journal_row:
            self._hook_once(lambda m, p, b: p.endswith("/diffs") and sets_completed(b))
        elif when == "between_tasks":  # nothing reaches the server: the journal says it
            self._watch(lambda: b'"value":"Completed"' in self._journal_bytes(self.d1),
                        self._inject)
        elif when == "after_last_task" and not journal_row:
            self._hook_once(lambda m, p, b: p == f"/api/v1/runs/{self.run_id}/finish")
        elif when == "after_last_task":
            self._watch(lambda: b'"kind":"finish"' in self._journal_bytes(self.d1), self._inject)
        elif when == "mid_task":
            self._watch(lambda: self._starts("b"), self._inject)
        elif when == "during_delivery":
            self._watch(lambda: self._starts("b"), self._go_offline_then_inject)
        else:
            raise ValueError(f"unknown moment {when}")

    def _down_at_first_diff(self, method: str, path: str, body: bytes) -> None:
        if (path.endswith("/diffs") or path.endswith("/logs")) and \
                not self.injected.is_set() and self.cell.when != "during_delivery":
            self.proxy.down = True

    def _go_offline_then_inject(self) -> None:
        self.proxy.down = True
        self._open_gate()
        self._wait(lambda: b'"kind":"finish"' in self._journal_bytes(self.d1), 60,
                   "the run to end offline")
        self._hook_once(lambda m, p, b: m == "POST" and any(
            p.endswith(s) for s in ("/diffs", "/logs", "/finish")))
        self.proxy.down = False

    def _hook_once(self, matches: Callable[[str, str, bytes], bool]) -> None:
        def hook(method: str, path: str, body: bytes) -> None:
            if not self.injected.is_set() and matches(method, path, body):
                self._inject()
        self.proxy.hooks.append(hook)

    def _watch(self, condition: Callable[[], Any], then: Callable[[], None]) -> None:
        def loop() -> None:
            deadline = time.monotonic() + 90
            while not self._stop.is_set() and time.monotonic() < deadline:
                if condition():
                    then()
                    return
                time.sleep(0.02)
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _inject(self) -> None:
        """The row's fault, once (on the proxy's thread for a held request, or a watcher's)."""
        with self._lock:
            if not self.injected.is_set():
                self._fault()
                self.injected.set()

    def _fault(self) -> None:
        row = self.cell.row
        self.ev.injected_at = time.time()
        if row == "server_kill":
            self.server.kill()
        elif row == "proxy_down":
            self.proxy.down = True
        elif row == "flaky_5xx":
            self.proxy.rate = 0.3
        elif row in ("daemon_kill", "lease_cap", "journal_torn", "journal_damaged"):
            self._kill(self.d1)
            if row.startswith("journal_"):
                self._damage(row == "journal_torn")
        elif row == "daemon_term":
            self.d1.signal(signal.SIGTERM)
        elif row == "disk_full":
            assert self.disk is not None
            fill(self.disk)
        else:
            raise ValueError(f"unknown fault {row}")

    def _kill(self, daemon: DaemonProc) -> None:
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(10)

    def _damage(self, torn: bool) -> None:
        path = self._journal(self.d1)
        if not path.exists():
            self.ev.notes.append("no journal to damage yet")
            return
        raw = path.read_bytes()
        if torn:  # a crash in the middle of an append: half a line at the end
            path.write_bytes(raw + b'{"crc":"0badc0de","kind":"log","n":')
            return
        lines = raw.split(b"\n")
        records = [i for i, line in enumerate(lines) if b'"n":' in line]
        if len(records) < 3:
            self.ev.notes.append(f"only {len(records)} record(s) in the journal: not damaged")
            return
        index = records[len(records) // 2]
        line = bytearray(lines[index])
        at = len(line) // 2
        line[at] = ord("#") if line[at] != ord("#") else ord("%")
        lines[index] = bytes(line)
        path.write_bytes(b"\n".join(lines))
        self.ev.notes.append(f"damaged journal line {index + 1} of {len(lines) - 1}")

    # -- recovery ------------------------------------------------------------------------------
    def _recover(self) -> None:
        recovery, row = self.cell.recovery, self.cell.row
        killed = row in ("daemon_kill", "journal_torn", "journal_damaged", "lease_cap")
        if not killed:
            self._open_gate()
        else:
            self._gate_when_b_restarts()
        if recovery == "live":
            time.sleep(OUTAGE)  # the server stays away a while as the run goes on
            self._heal()
            self._wait_done()
        elif recovery == "flaky":  # the daemon gets through the failing requests by itself
            self._wait_done()
            self._heal()
        elif recovery == "drain":  # SIGTERM: the run finishes, is delivered, the daemon exits
            self._wait_exit(self.d1)
        elif recovery in ("restart", "restart_before", "restart_after"):
            if not killed:
                self._stop_daemon(self.d1)
            if recovery != "restart_after":
                self._heal()
            self._start(self.d1, "--idle-timeout", "120s")
            if recovery == "restart_after":
                time.sleep(2.0)
                self._heal()
            self._wait_done()
            self._stop_daemon(self.d1)
        elif recovery == "sync":
            if not killed:
                self._stop_daemon(self.d1)
            self._heal()
            self._sync(self.d1)
            if not self._done():  # what the journal held did not finish the run: run it again
                self._start(self.d1, "--idle-timeout", "120s")
                self._wait_done()
                self._stop_daemon(self.d1)
        elif recovery == "reclaim":
            self._heal()
            other = self._daemon("d2", self.root / "home-2")
            self._start(other, "--once")
            self._wait_exit(other, 120)
            self._sync(self.d1)  # the first runner's journal, late: superseded or delivered
        elif recovery == "repeat":  # the run's runner dies again and again (lease cap)
            for n in range(2, 7):
                if self._done():
                    break
                daemon = self._daemon(f"d{n}", self.root / f"home-{n}")
                self._start(daemon, "--once", "--idle-timeout", "20s")
                self._wait(lambda d=daemon: d.logged("run claimed") or self._done(), 30,
                           "a claim or the end of the run")
                self._kill(daemon)
            if not self._done():  # no cap: let a runner finish it (the check says what)
                last = self._daemon("dz", self.root / "home-z")
                self._start(last, "--once")
                self._wait_exit(last, 120)
        else:
            raise ValueError(f"unknown recovery {recovery}")

    def _heal(self) -> None:
        if self.cell.row == "server_kill" and not self.server.process.running:
            self.server.start()
        self.proxy.down = False
        self.proxy.rate = 0
        if self.disk is not None:
            free(self.disk)

    def _gate_when_b_restarts(self) -> None:
        """After a runner died: keep an orphaned b waiting until b runs again (so two attempts
        running at once would show), or open when b's first start came after the kill."""
        killed_at = self.ev.injected_at or time.time()

        def ready() -> bool:
            starts = {m.pid: m.at for m in self._marks("b") if m.kind == "start"}
            if len(starts) >= 2:  # a new attempt of b started: is an older one still there?
                newest = max(starts, key=lambda pid: starts[pid])
                self.ev.concurrent += [f"b: pid {pid} was still running when pid {newest} "
                                       "started" for pid in starts
                                       if pid != newest and alive(pid)]
                return True
            return any(at > killed_at for at in starts.values())
        self._watch(ready, self._open_gate)

    def _settle(self) -> None:
        if not self._done():
            self._heal()
            self._wait_done(required=False)
        for daemon in self.daemons:
            self._stop_daemon(daemon)
        self._open_gate()
        self._wait(self._steps_ended, 20, "every step process to end", required=False)

    # -- evidence --------------------------------------------------------------------------
    def _collect(self) -> None:
        if not self.server.process.running:
            self.server.start()
        self.ev.doc = self.server.run(self.run_id)
        self.ev.queue = self.server.info(self.run_id)["queue"]
        for task_id in self.ev.doc.get("tasks", {}):
            self.ev.logs[task_id] = self.server.task_log(self.run_id, task_id)
        self.ev.marks = {node: self._marks(node) for node in NODES}
        for daemon in self.daemons:
            journal = daemon.home / "data" / "journal"
            self.ev.journals_left += sorted(journal.glob("*.jsonl"))
            self.ev.set_aside += sorted(journal.glob("*/*.jsonl"))

    def _watch_completed(self, method: str, path: str, body: bytes, status: int) -> None:
        if status >= 300 or not path.endswith("/diffs"):
            return
        now = time.time()
        for task_id in completed_tasks(body):
            with self._seen:
                self.ev.completed_at.setdefault(task_id, now)

    def _cleanup(self) -> None:
        self._stop.set()
        for daemon in self.daemons:
            daemon.kill()
        for node in NODES:  # whatever step process is left (an orphan nobody killed)
            for pid in {m.pid for m in self._marks(node)}:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    # -- small helpers -----------------------------------------------------------------------
    def _open_gate(self) -> None:
        (self.side / "gate").touch()

    def _marks(self, node: str) -> list[Mark]:
        return marks(self.side, node)

    def _starts(self, node: str) -> bool:
        return any(m.kind == "start" for m in self._marks(node))

    def _steps_ended(self) -> bool:
        for node in NODES:
            for pid in {m.pid for m in self._marks(node)}:
                if alive(pid):
                    return False
        return True

    def _journal(self, daemon: DaemonProc) -> Path:
        return daemon.home / "data" / "journal" / f"{self.run_id}.jsonl"

    def _journal_bytes(self, daemon: DaemonProc) -> bytes:
        try:
            return self._journal(daemon).read_bytes()
        except FileNotFoundError:
            return b""

    def _done(self) -> bool:
        try:
            return bool(self.server.info(self.run_id)["queue"] == "done")
        except Exception:  # the server is down: not done yet
            return False

    def _wait_done(self, required: bool = True) -> None:
        self._wait(self._done, 120, "the run to be done on the server", required=required)

    def _wait(self, condition: Callable[[], Any], timeout: float, what: str,
              required: bool = True) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.05)
        if required:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        self.ev.notes.append(f"timed out waiting for {what}")
        return False
