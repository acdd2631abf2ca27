"""`scripts/demo-daemon` (the end of `scripts/demo`) ends by printing the dashboard's URL of the
run it made, after checking that a signed-in browser sees it Completed there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_demo_ends_with_the_dashboard_url_of_its_run(tmp_path: Path) -> None:
    env = {**os.environ, "FERRY_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "scripts/demo-daemon"], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    print("\n".join(lines[-4:]))
    run_id = re.search(r"^    run ([0-9a-f-]{36})$", done.stdout, re.M)
    assert run_id, done.stdout
    assert lines[-3] == "==> the dashboard"
    assert re.fullmatch(rf"    http://127\.0\.0\.1:\d+/runs/{run_id[1]}   \(the dashboard "
                        r"shows it Completed\)", lines[-2]), lines[-2]
    assert lines[-1].startswith("    sign in with the admin token: demo-admin-token-")
