"""What the benchmark scripts share: waiting for a quiet machine, percentiles, publishing."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def wait_for_quiet(max_load: float, limit: float, poll: float = 30.0) -> tuple[float, float]:
    """Poll the 1-minute load average every `poll` s, up to `limit` s, until it is below
    `max_load`; returns (the load average seen last, seconds waited)."""
    start = time.monotonic()
    while True:
        load = os.getloadavg()[0]
        waited = time.monotonic() - start
        if load < max_load or waited >= limit:
            return load, waited
        print(f"load average {load:.2f} >= {max_load:g}; waiting for a quiet machine",
              file=sys.stderr, flush=True)
        time.sleep(min(poll, limit - waited))


def load_note(load: float, waited: float, max_load: float) -> str:
    """One sentence for the results file: the load before and after measuring."""
    end = os.getloadavg()
    quiet = "" if load < max_load else f" (NOT below {max_load:g} after waiting: figures loaded)"
    return (f"1-minute load average before measuring {load:.2f}{quiet}, waited {waited:.0f} s; "
            f"at the end {end[0]:.2f} / {end[1]:.2f} / {end[2]:.2f} (1/5/15 min).")


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def publish(text: str, path: Path) -> None:
    """Print a results table and write it to `bench/results/<name>.md`."""
    print(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def add_quiet_options(parser: argparse.ArgumentParser) -> None:
    """`--max-load` and `--quiet-wait`: how quiet the machine must be before measuring."""
    parser.add_argument("--max-load", type=float, default=1.5,
                        help="wait until the 1-minute load average is below this")
    parser.add_argument("--quiet-wait", type=float, default=600.0,
                        help="wait at most this many seconds for it")
