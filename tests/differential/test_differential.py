"""The same workflows through the reference engine (upstream Butterflow, the Codemod CLI) and
Ferry: exit status, every task's final status, each task's step output and the final state
agree, except for the deliberate differences a case pins (`differences.py`), which README's
"Where Ferry differs" table lists with their reasons."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.differential.cases import CASES, Case
from tests.differential.harness import HANG, Outcome

README = Path(__file__).resolve().parents[2] / "README.md"
REQUIRED_COVERAGE = {
    "dag", "failure", "matrix-values", "from_state", "manual", "trigger", "templates", "inputs",
    "defaults", "outputs", "conditions", "params", "env", "state", "state-schema",
    "params-namespace", "state-namespace", "matrix-namespace", "inputs-namespace",
    "tasks-namespace", "env-namespace", "engine-variables",
}


def _comparable(out: Outcome) -> dict[str, object]:
    body = asdict(out)
    body.pop("run_id")
    return body


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_both_engines_agree(case: Case,
                            outcomes: dict[tuple[str, str], tuple[Outcome, float]]) -> None:
    reference, ref_seconds = outcomes[(case.name, "reference")]
    ferry, ferry_seconds = outcomes[(case.name, "ferry")]
    print(f"{case.name}: reference {ref_seconds:.1f}s, ferry {ferry_seconds:.1f}s")
    if case.hangs:
        assert reference.exit[0] == HANG, "the reference engine exits here now: drop `hangs`"
    expected = reference
    for difference in case.differences:
        changed = difference.fix(expected)
        assert _comparable(changed) != _comparable(expected), (
            f"difference '{difference.key}' no longer shows in case {case.name}: unpin it")
        expected = changed
    assert _comparable(ferry) == _comparable(expected)


def test_cases_cover_the_language() -> None:
    covered = {tag for case in CASES for tag in case.covers}
    assert len(CASES) >= 30
    assert covered >= REQUIRED_COVERAGE, REQUIRED_COVERAGE - covered
    assert len({c.name for c in CASES}) == len(CASES)


def test_every_pinned_difference_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("### Where Ferry differs"):]
    listed = set(re.findall(r"^\| `([a-z0-9-]+)` \|", table, re.MULTILINE))
    pinned = {diff.key for case in CASES for diff in case.differences}
    assert pinned <= listed, f"pinned but not in README: {sorted(pinned - listed)}"
