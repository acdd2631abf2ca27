"""A container step's output is held in bounded memory when its sink is slower than the engine.

The engine streams an exec's output at tens of MB/s; the daemon's sink journals each chunk (an
fsync), far slower. Before the queue between the stream and the sink was bounded, the whole
difference piled up in the runner's memory. Here a real Docker step prints 40 MiB into a sink
that takes 0.3 ms per chunk, in a child process whose peak RSS is compared with the same step
printing a few bytes; the sink must still receive every byte, in order.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.docker

BOUND = 16 * 1024 * 1024

CHILD = """\
import hashlib, json, resource, sys, threading, time, uuid
from pathlib import Path
import docker
from runner.runtimes.base import StepSpec, TaskSpec
from runner.runtimes.docker import DockerRuntime
from runner.workflow.model import Runtime, RuntimeType

size, image, root = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
(root / "ws").mkdir(); (root / "ctl").mkdir()
runtime = DockerRuntime(docker.from_env, runner_id=f"test-{uuid.uuid4().hex[:10]}",
                        grace_seconds=1.0)
spec = TaskSpec(run_id="run-out", task_id="task-out", node_id="out",
                options=Runtime(type=RuntimeType.DOCKER, image=image),
                workspace=root / "ws", control_dir=root / "ctl")
digest, received = hashlib.sha256(), 0

def sink(chunk):
    global received
    digest.update(chunk)
    received += len(chunk)
    time.sleep(0.0003)  # a journal's fsync, scaled down

handle = runtime.open(spec)
try:
    script = f"head -c {size} /dev/zero | tr '\\\\0' x"
    result = handle.run_step(StepSpec(0, "out", ["/bin/sh", "-c", script], {}), sink,
                             threading.Event())
finally:
    handle.close()
print(json.dumps({"ok": result.ok, "received": received, "sha": digest.hexdigest(),
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _run(tmp_path: Path, image: str, size: int) -> dict[str, Any]:
    root = tmp_path / f"out-{size}"
    root.mkdir()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(size), image, str(root)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_slow_sink_keeps_memory_bounded(tmp_path: Path, docker_image: str) -> None:
    size = 40 * 1024 * 1024
    small = _run(tmp_path, docker_image, 10)
    big = _run(tmp_path, docker_image, size)
    extra = (big["maxrss_kib"] - small["maxrss_kib"]) * 1024
    print(f"\npeak RSS: {small['maxrss_kib'] // 1024} MiB for 10 bytes, "
          f"{big['maxrss_kib'] // 1024} MiB for {size // 2**20} MiB")
    assert big["ok"] and big["received"] == size
    assert big["sha"] == hashlib.sha256(b"x" * size).hexdigest()
    assert extra < BOUND, f"{extra / 2**20:.1f} MiB more than a 10-byte step's peak"
