"""The seed workflows in examples/ are valid; each examples/invalid/ file gives exactly the errors
its `# expect:` header lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.workflow.validate import validate_source

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
SEED_EXAMPLES = ["simple.yaml", "matrix.yaml", "manual-approval.yaml", "templates.yaml"]
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))


@pytest.mark.parametrize("name", SEED_EXAMPLES)
def test_seed_examples_are_valid_without_warnings(name: str) -> None:
    path = EXAMPLES / name
    report = validate_source(path.read_bytes(), str(path), strict=True)
    assert report.ok and report.problems == [], [p.render() for p in report.problems]


def test_templates_example_summary() -> None:
    path = EXAMPLES / "templates.yaml"
    summary = validate_source(path.read_bytes(), str(path)).summary
    assert (summary.nodes, summary.dependencies, summary.templates, summary.template_refs,
            summary.matrix_nodes, summary.state_entries) == (2, 1, 1, 1, 1, 1)


def test_there_are_invalid_examples() -> None:
    assert len(INVALID) >= 5


@pytest.mark.parametrize("path", INVALID, ids=[p.name for p in INVALID])
def test_invalid_example_gives_exactly_its_expected_errors(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    expected = [line.removeprefix("# expect: ") for line in text.splitlines()
                if line.startswith("# expect: ")]
    assert expected, f"{path.name} has no '# expect:' lines"
    report = validate_source(text, str(path))
    assert not report.ok
    assert [p.render() for p in report.problems] == expected


def test_the_readme_language_example_is_valid_without_a_warning() -> None:
    import re

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The workflow language"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None
    report = validate_source(block.group(1), "README.md", strict=True, for_run=True)
    assert report.ok and not report.warnings, [p.render() for p in report.problems]
