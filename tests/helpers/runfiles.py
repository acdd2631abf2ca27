"""What a daemon's run leaves under FERRY_HOME (work dir, task log, journal, no database row),
made by hand and aged, for the retention tests."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from runner.state.journal import Journal

DAY = 86400.0


def daemon_run_files(home: Path, journal: str, days: float) -> str:
    """Files of a daemon's run last touched `days` ago; its journal fully acknowledged
    ('acked'), holding an unsent record ('pending'), or stranded by a lost lease ('lost').
    Returns the run id."""
    run_id = str(uuid.uuid4())
    data = home / "data"
    task = data / "work" / run_id / "tasks" / str(uuid.uuid4())
    task.mkdir(parents=True)
    (task / "outputs").write_text("x=1\n")
    log = data / "logs" / run_id / f"{uuid.uuid4()}.log"
    log.parent.mkdir(parents=True)
    log.write_text("hello\n")
    j = Journal.for_run(data / "journal", run_id)
    numbers = j.append([{"kind": "log", "task": "t", "offset": 0, "data": "aGVsbG8K"}])
    if journal == "acked":
        j.ack(numbers[-1])
    elif journal == "lost":
        j.mark_lost("lease superseded")
    j.close()
    when = time.time() - days * DAY
    for path in [task, task.parent, task.parent.parent, task / "outputs", log, log.parent,
                 data / "journal" / f"{run_id}.jsonl"]:
        os.utime(path, (when, when))
    return run_id
