"""The labels a runner offers and registers: its configured ones and its tools' capabilities,
never a label its registration does not allow (the server refuses such a claim 403)."""

from __future__ import annotations

import pytest

from runner.cli.labels import offered_labels, registration_labels

CASES = [
    # configured, registered, has CLI -> offered, warns
    ((), (), True, ("codemod",), False),
    (("linux",), ("linux",), True, ("linux",), True),
    (("linux",), ("linux", "codemod"), True, ("linux", "codemod"), False),
    (("linux", "codemod"), ("linux", "codemod"), True, ("linux", "codemod"), False),
    (("linux", "codemod"), ("linux", "codemod"), False, ("linux",), True),
    (("linux",), ("linux",), False, ("linux",), False),
    ((), (), False, (), False),
    (("gpu",), (), True, ("gpu", "codemod"), False),
]


@pytest.mark.parametrize(("configured", "registered", "cli", "offered", "warns"), CASES)
def test_offered_labels(configured: tuple[str, ...], registered: tuple[str, ...], cli: bool,
                        offered: tuple[str, ...], warns: bool) -> None:
    labels, warnings = offered_labels(configured, registered, cli)
    print(f"{configured!s:22} registered {registered!s:22} cli={cli!s:5} -> {labels} "
          f"{'(warns)' if warnings else ''}")
    assert labels == offered
    assert bool(warnings) == warns
    assert not registered or set(labels) <= set(registered), "the server would refuse it"


def test_registration_records_the_capability_with_requested_labels() -> None:
    assert registration_labels(["linux"], True) == ["linux", "codemod"]
    assert registration_labels(["linux"], False) == ["linux"]
    assert registration_labels([], True) == []  # no labels: any label may be offered
    assert registration_labels(["codemod", "linux"], True) == ["codemod", "linux"]
