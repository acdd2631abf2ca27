"""Bench: a task of 10 `true` steps in Docker through DockerRuntime vs the SDK floor and naive.

(a) floor: one `containers.run(detach=True)` + 10 `exec_run` through the SDK, then remove;
(b) naive: 10 `containers.run(remove=True)`, one container per step.
Also the time from `open` (task start) to the first step running. Median of N repetitions.
Targets: DockerRuntime <= 1.2x the floor, >= 3x faster than naive.
Usage: python bench/docker_steps.py [--reps N] [--steps N] [--image IMAGE]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import add_quiet_options, load_note, wait_for_quiet

from runner.runtimes.base import StepSpec, TaskSpec
from runner.runtimes.docker import IDLE_COMMAND, DockerRuntime
from runner.workflow.model import Runtime as RuntimeOptions
from runner.workflow.model import RuntimeType

RESULTS = Path(__file__).resolve().parent / "results" / "docker_steps.md"


def ferry_task(runtime: DockerRuntime, image: str, steps: int, first: list[float]) -> None:
    """One task through DockerRuntime: open, `steps` x `true`, close."""
    root = Path(tempfile.mkdtemp(prefix="ferry-bench-"))
    (root / "ws").mkdir()
    (root / "ctl").mkdir()
    spec = TaskSpec(run_id="bench", task_id="bench-task", node_id="bench",
                    options=RuntimeOptions(type=RuntimeType.DOCKER, image=image),
                    workspace=root / "ws", control_dir=root / "ctl", runner_id="bench")
    cancel = threading.Event()
    started = time.perf_counter()
    handle = runtime.open(spec)
    try:
        for index in range(steps):
            step = StepSpec(index=index, name="true", argv=["true"], env={})
            if index == 0:
                # time to the first step running: open + the first exec reaching its process
                seen = handle.run_step(step, lambda _: None, cancel)
                first.append(time.perf_counter() - started)
            else:
                seen = handle.run_step(step, lambda _: None, cancel)
            assert seen.ok, seen.describe()
    finally:
        handle.close()
        shutil.rmtree(root, ignore_errors=True)


def floor_task(client: docker.DockerClient, image: str, steps: int) -> None:
    """The least the SDK can do: one detached container, `steps` exec_run, remove."""
    container = client.containers.run(image, IDLE_COMMAND, detach=True, init=True)
    try:
        for _ in range(steps):
            code, _ = container.exec_run(["true"])
            assert code == 0
    finally:
        container.remove(force=True)


def naive_task(client: docker.DockerClient, image: str, steps: int) -> None:
    """One container per step."""
    for _ in range(steps):
        client.containers.run(image, ["true"], remove=True)


def main() -> int:
    """Run the three variants, print the table, write bench/results/docker_steps.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--image", default="ferry-test/busybox:1")
    add_quiet_options(parser)
    args = parser.parse_args()
    load, waited = wait_for_quiet(args.max_load, args.quiet_wait)
    client = docker.from_env()
    runtime = DockerRuntime(docker.from_env, runner_id="bench", grace_seconds=1.0)
    first: list[float] = []
    # Interleave the variants so drift in the machine affects all of them alike.
    floor: list[float] = []
    ferry: list[float] = []
    naive: list[float] = []
    floor_task(client, args.image, args.steps)
    ferry_task(runtime, args.image, args.steps, [])
    for _ in range(args.reps):
        for bucket, fn in ((floor, lambda: floor_task(client, args.image, args.steps)),
                           (ferry, lambda: ferry_task(runtime, args.image, args.steps, first)),
                           (naive, lambda: naive_task(client, args.image, args.steps))):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    f, d, n = (statistics.median(x) for x in (floor, ferry, naive))
    first_med = statistics.median(first)
    rows = [
        ("floor: run -d + exec_run x N (SDK)", f, 1.0),
        ("Ferry DockerRuntime (open, N steps, close)", d, d / f),
        ("naive: run --rm x N", n, n / f),
    ]
    lines = [
        f"# docker_steps: a task of {args.steps} `true` steps",
        "",
        f"Machine: {platform.system()} {platform.release()}, {_cpus()} cores, Docker "
        f"{client.version().get('Version', '?')}, image {args.image}; median of {args.reps} "
        "interleaved repetitions (after one warm-up each). "
        f"{load_note(load, waited, args.max_load)}",
        "",
        "| variant | median s | per step ms | vs floor |",
        "|---|---:|---:|---:|",
    ]
    for name, value, ratio in rows:
        lines.append(f"| {name} | {value:.3f} | {value / args.steps * 1000:.1f} | "
                     f"{ratio:.2f}x |")
    lines += [
        "",
        f"- Ferry / floor: **{d / f:.2f}x** (target <= 1.2x) -> "
        f"{'met' if d / f <= 1.2 else 'NOT met'}",
        f"- naive / Ferry: **{n / d:.2f}x faster** (target >= 3x) -> "
        f"{'met' if n / d >= 3 else 'NOT met'}",
        f"- task start (open) to first step done: median **{first_med * 1000:.0f} ms**",
        "",
        "Run: `python bench/docker_steps.py [--reps N] [--steps N]`",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    return 0


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    raise SystemExit(main())
