"""`ferry validate` against the reference engine's `workflow validate` on every workflow file of
the Butterflow fixtures and of `examples/`: the same verdict (valid or not), except where Ferry
deliberately differs (listed here, each with its README key)."""

from __future__ import annotations

import concurrent.futures
import subprocess
from pathlib import Path

import pytest

from tests.helpers.codemod import codemod_cli

REPO = Path(__file__).resolve().parents[2]
FILES = sorted([*(REPO / "tests/fixtures/butterflow").rglob("*.yaml"),
                *(REPO / "tests/fixtures/butterflow").rglob("*.json"),
                *(REPO / "examples").rglob("*.yaml")])
# file -> (reference valid, Ferry valid, README key of the difference)
DIFFERENT = {
    "tests/fixtures/butterflow/coretest-utils_test_parse_workflow_file_complex__complex.yaml":
        (False, True, "state-list-form"),
    "tests/fixtures/butterflow/doc-docs-workflows_orchestration-matrix-manual.yaml":
        (False, True, "state-list-form"),
    "tests/fixtures/butterflow/examples__node_step_workflow.yaml":
        (False, True, "state-list-form"),
    "tests/fixtures/butterflow/derived/engine_create_matrix_from_state_workflow.yaml":
        (False, True, "state-list-form"),
    "examples/invalid/unsupported-steps.yaml": (True, False, "unsupported-kinds"),
}


def _reference_valid(binary: Path, path: Path, home: Path) -> bool:
    # relative to the file's directory: the bundle that js_file/config_file are resolved in
    done = subprocess.run([str(binary), "--disable-analytics", "workflow", "validate", "-w",
                           path.name], cwd=path.parent, capture_output=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(home)})
    return done.returncode == 0


def _ferry_valid(path: Path) -> bool:
    """What `ferry validate` decides (its exit status is 0 exactly when the report is ok)."""
    from runner.errors import WorkflowInvalid
    from runner.workflow.loader import read_source
    from runner.workflow.validate import validate_source

    try:
        text = read_source(path)
    except WorkflowInvalid:
        return False
    from runner.workflow.validate import bundle_files

    return validate_source(text, str(path), files=bundle_files(path.parent)).ok


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bool, bool]]:
    """file -> (reference valid, Ferry valid), every file checked concurrently."""
    binary = codemod_cli().path
    home = tmp_path_factory.mktemp("validate-home")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        refs = {p: pool.submit(_reference_valid, binary, p, home) for p in FILES}
        return {str(p.relative_to(REPO)): (refs[p].result(), _ferry_valid(p)) for p in FILES}


def test_every_file_is_checked(verdicts: dict[str, tuple[bool, bool]]) -> None:
    assert len(verdicts) >= 60
    assert set(DIFFERENT) <= set(verdicts)


@pytest.mark.parametrize("name", [str(p.relative_to(REPO)) for p in FILES])
def test_same_verdict_unless_documented(name: str,
                                        verdicts: dict[str, tuple[bool, bool]]) -> None:
    reference, ferry = verdicts[name]
    if name in DIFFERENT:
        want_ref, want_ferry, key = DIFFERENT[name]
        assert (reference, ferry) == (want_ref, want_ferry), f"difference '{key}' changed"
    else:
        assert ferry == reference, (f"reference says {'valid' if reference else 'invalid'}, "
                                    f"ferry says {'valid' if ferry else 'invalid'}")


def test_validate_differences_are_in_the_readme() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text[text.index("### Where Ferry differs"):]
    for _, _, key in DIFFERENT.values():
        assert f"| `{key}` |" in table, key
