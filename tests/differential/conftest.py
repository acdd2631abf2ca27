"""Run every differential case through both engines once per session, concurrently: the
reference engine polls once a second and stays up after a failed task with dependents or a
manual node, so cases run side by side (and such runs are stopped after a few seconds)."""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.differential.cases import CASES, Case
from tests.differential.harness import Ferry, Outcome, Reference
from tests.helpers.codemod import codemod_cli

WORKERS = int(os.environ.get("FERRY_DIFF_WORKERS", "8"))
TIMEOUT = 60.0


def _run_case(case: Case, engine: str, root: Path, binary: Path) -> tuple[Outcome, float]:
    base = root / case.name / engine
    work = base / "work"
    home = base / "home"
    work.mkdir(parents=True)
    home.mkdir()
    workflow = work / "workflow.yaml"
    workflow.write_text(case.workflow)
    for name, text in case.files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if name.endswith(".sh"):
            path.chmod(0o755)
    started = time.monotonic()
    if engine == "reference":
        out = Reference(binary, home).run(workflow, work, list(case.steps),
                                          case.hang_after if case.hangs else TIMEOUT)
    else:
        out = Ferry(home).run(workflow, work, list(case.steps), TIMEOUT)
    return out, time.monotonic() - started


@pytest.fixture(scope="session")
def outcomes(tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[dict[tuple[str, str], tuple[Outcome, float]]]:
    """(case name, 'reference' | 'ferry') -> (outcome, seconds), every case run once."""
    binary = codemod_cli().path
    root = tmp_path_factory.mktemp("differential")
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        futures = {(case.name, engine): pool.submit(_run_case, case, engine, root, binary)
                   for case in CASES for engine in ("reference", "ferry")}
        results = {key: future.result() for key, future in futures.items()}
    took = time.monotonic() - started
    print(f"\ndifferential: {len(CASES)} cases through both engines in {took:.1f}s "
          f"({WORKERS} at a time)")
    yield results
