"""Runs that cannot be run end, and a full disk is a clean failure, over real processes: an
archive the daemon refuses ends the run Failed with the reason (not claimed again and again);
a FERRY_HOME on a real full disk (a small tmpfs) fails the run with "no space left on device
under DIR" on the server, and the daemon's last line says its real exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import wait_until
from tests.helpers.gitrepo import Symlink
from tests.helpers.tmpfs import fill, free, small_disk
from tests.integration.daemon.conftest import DaemonProc, Server
from tests.integration.daemon.flows import TRIVIAL, lines, two_tasks


def test_a_run_whose_archive_is_refused_ends_failed_with_the_reason(
        server: Server, make_daemon: Any, tmp_path: Path) -> None:
    side = tmp_path / "side"
    side.mkdir()
    server.repo("evil", {"wf.yaml": TRIVIAL, "escape": Symlink("../../../../etc/passwd")})
    run_id = server.submit("evil", "wf.yaml", params={"dir": str(side)})
    daemon = make_daemon(server)
    daemon.register()
    daemon.start("--once")
    assert daemon.wait(60) == 1, daemon.log()[-3000:]
    doc = server.run(run_id)
    assert doc["status"] == "Failed"
    assert doc["error"].startswith("the run could not be prepared: archive link 'escape'")
    assert "points outside the workspace" in doc["error"]
    assert server.info(run_id)["queue"] == "done", "finished: it is never claimed again"
    assert not lines(side / "runs"), "nothing of it ran"
    assert daemon.logged("daemon stopped")[-1]["exit"] == 1
    assert not list((daemon.home / "data" / "journal").glob("*.jsonl"))


def test_a_full_disk_fails_the_run_with_the_reason_and_the_real_exit_code(
        server: Server, make_daemon: Any, tmp_path: Path) -> None:
    side = tmp_path / "side"
    side.mkdir()
    big_output = ('for i in $(seq 1 2000); do echo "line $i of a step that fills the disk '
                  '............................................................"; done')
    server.repo("full", {"wf.yaml": two_tasks().replace('echo "second done"', big_output)})
    run_id = server.submit("full", "wf.yaml", params={"dir": str(side)})
    with small_disk(tmp_path / "disk", "16m") as disk:
        daemon = DaemonProc(disk / "home", server, "full")
        daemon.home.mkdir()
        daemon.stderr_path = tmp_path / "daemon.log"  # the log is not on the full disk
        daemon.register()
        try:
            daemon.start("--once")
            wait_until(lambda: lines(side / "second-start"), timeout=60,
                       message="second task started")
            fill(disk)
            (side / "gate").touch()
            code = daemon.wait(90)
        finally:
            daemon.kill()
        free(disk)
        assert code == 1, daemon.log()[-3000:]
        assert daemon.logged("daemon stopped")[-1]["exit"] == 1, "the log says the real code"
        doc = server.run(run_id)
        assert doc["status"] == "Failed", doc["status"]
        journal_dir = disk / "home" / "data" / "journal"
        assert doc["error"].startswith(f"no space left on device under {journal_dir}"), \
            doc["error"]
        assert server.info(run_id)["queue"] == "done"
        tasks = {t["node_id"]: t for t in doc["tasks"].values()}
        assert tasks["first"]["status"] == "Completed"
        assert "Traceback" not in daemon.log()
        assert not lines(side / "second-done"), "the step was stopped"
