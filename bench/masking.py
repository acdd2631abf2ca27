"""Masking cost: a step printing 100 MB of log lines through the executor (LocalBackend on a
real SQLite file and log file, DirectRuntime), with 20 secrets registered against none.

    python bench/masking.py [--mb 100] [--secrets 20] [--repeat 3]

The output holds every secret now and then (one line in 2,000), raw and base64'd, so the
replacements are exercised too. A second table times the Masker alone on the same bytes in
64 KiB chunks (what the pipe hands the runtime). Prints the tables and writes
bench/results/masking.md. Goal (issue 13): Ferry with 20 secrets < 1.5x Ferry with none.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import add_quiet_options, load_note, publish, wait_for_quiet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.engine.executor import Executor, ExecutorSettings
from runner.paths import Paths
from runner.runtimes.direct import DirectRuntime
from runner.secrets.masker import Masker
from runner.state.local import LocalBackend
from runner.workflow.model import Workflow

RESULTS = Path(__file__).resolve().parent / "results" / "masking.md"
WORDS = ("compiling", "linking", "module", "test", "passed", "warning", "cache", "hit", "miss",
         "fetching", "resolved", "artifact", "upload", "deploy", "step", "ok", "done", "retry",
         "timeout", "info", "debug")


def make_output(path: Path, size: int, values: list[str], rng: random.Random) -> int:
    """Write `size` bytes of log lines to `path`; returns how many lines hold a secret."""
    hits = 0
    with path.open("wb") as out:
        written, n = 0, 0
        while written < size:
            n += 1
            words = " ".join(rng.choice(WORDS) for _ in range(10))
            line = f"{n:09d} [{rng.randint(0, 99):02d}] {words} {rng.random():.6f}"
            if n % 2000 == 0:
                value = values[n // 2000 % len(values)]
                shown = value if n % 4000 else base64.b64encode(value.encode()).decode()
                line += f" token={shown}"
                hits += 1
            data = (line + "\n").encode()
            out.write(data)
            written += len(data)
    return hits


def ferry(source: Path, root: Path, values: list[str]) -> float:
    """One task, one step `cat SOURCE`, end to end; wall seconds."""
    workflow = Workflow.model_validate({"version": "1", "name": "mask", "nodes": [
        {"id": "print", "steps": [{"name": "cat", "run": f"cat {source}"}]}]})
    paths = Paths.under(root).ensure()
    backend = LocalBackend(paths.db_path, paths.logs_dir)
    try:
        settings = ExecutorSettings(workspace=root, control_root=paths.work_dir,
                                    env={"PATH": os.environ["PATH"]},
                                    secrets={f"S{i}": v for i, v in enumerate(values)})
        executor = Executor(backend, {"direct": DirectRuntime({"PATH": os.environ["PATH"]})},
                            settings)
        run_id = executor.create_run(workflow)
        start = time.perf_counter()
        status = executor.execute(run_id, threading.Event())
        took = time.perf_counter() - start
        assert str(status) == "Completed", status
        log = next((paths.logs_dir / run_id).iterdir()).read_bytes()
        assert len(log) > 0 and all(v.encode() not in log for v in values)
        return took
    finally:
        backend.close()


def masker_alone(source: Path, values: list[str]) -> float:
    """The Masker over the same bytes in 64 KiB chunks; wall seconds."""
    stream = Masker(values).stream()
    data = source.read_bytes()
    start = time.perf_counter()
    for i in range(0, len(data), 65536):
        stream.feed(data[i:i + 65536])
    stream.flush()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--secrets", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    add_quiet_options(parser)
    args = parser.parse_args()
    rng = random.Random(13)
    values = [secrets.token_urlsafe(rng.randint(12, 32)) for _ in range(args.secrets)]
    size = args.mb * 1_000_000
    with tempfile.TemporaryDirectory(prefix="ferry-bench-mask-") as tmp:
        source = Path(tmp) / "output.log"
        hits = make_output(source, size, values, rng)
        load, waited = wait_for_quiet(args.max_load, args.quiet_wait)
        plain, masked, alone = [], [], []
        for r in range(args.repeat):
            # alternate the order so that neither side always runs on a warmer cache
            for which in ((False, True) if r % 2 == 0 else (True, False)):
                root = Path(tmp) / f"r{r}-{int(which)}"
                root.mkdir()
                took = ferry(source, root, values if which else [])
                (masked if which else plain).append(took)
            alone.append(masker_alone(source, values))
        note = load_note(load, waited, args.max_load)
    mb = size / 1e6
    best_ratio = min(masked) / min(plain)
    med_ratio = statistics.median(masked) / statistics.median(plain)
    patterns = Masker(values).pattern_count
    verdict = "met" if best_ratio < 1.5 else "MISSED"
    text = (
        f"# Masking cost (bench/masking.py)\n\n"
        f"{mb:.0f} MB of step output (`cat` of {mb:.0f} MB of log lines, {hits} of them holding "
        f"one of the secrets, raw or base64'd), one task through the executor: LocalBackend "
        f"(SQLite + log file), DirectRuntime, output lines as events. {args.secrets} secrets "
        f"registered ({patterns} patterns with their encodings) against none; {args.repeat} "
        f"rounds, order alternated.\n\n"
        f"| | best | median | throughput (best) |\n|---|---|---|---|\n"
        f"| Ferry, no secrets | {min(plain):.2f} s | {statistics.median(plain):.2f} s | "
        f"{mb / min(plain):.0f} MB/s |\n"
        f"| Ferry, {args.secrets} secrets | {min(masked):.2f} s | "
        f"{statistics.median(masked):.2f} s | {mb / min(masked):.0f} MB/s |\n"
        f"| **ratio** | **{best_ratio:.2f}x** | **{med_ratio:.2f}x** | goal < 1.5x: {verdict} |\n"
        f"| Masker alone, 64 KiB chunks | {min(alone):.2f} s | {statistics.median(alone):.2f} s"
        f" | {mb / min(alone):.0f} MB/s |\n"
        f"| bound: (no secrets + masker alone) / no secrets | "
        f"{(min(plain) + min(alone)) / min(plain):.2f}x | "
        f"{(statistics.median(plain) + statistics.median(alone)) / statistics.median(plain):.2f}x"
        f" | what masking can add at most, less sensitive to the load than the ratio |\n\n"
        f"Machine: {platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs.\n{note}\n")
    publish(text, RESULTS)


if __name__ == "__main__":
    main()
