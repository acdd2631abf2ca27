"""Parsing $STATE_OUTPUTS / $TASK_OUTPUTS files into entries and diff operations."""

from __future__ import annotations

from typing import Any

import pytest

from runner.diff import apply_ops
from runner.engine.outputs import Entry, OutputsError, entries_to_ops, parse_outputs


def values(text: str) -> list[tuple[str, Any, bool]]:
    return [(e.key, e.value, e.append) for e in parse_outputs(text)]


@pytest.mark.parametrize("line, expected", [
    ("env=123", ("env", 123, False)),
    ("asdf=Hello=there", ("asdf", "Hello=there", False)),
    ('q="there"', ("q", "there", False)),
    ("flag=true", ("flag", True, False)),
    ('obj={"a": [1, 2]}', ("obj", {"a": [1, 2]}, False)),
    ("empty=", ("empty", "", False)),
    ("spaced=  hello world ", ("spaced", "  hello world ", False)),
    ('shards@={"team":"core","shardId":"1"}', ("shards", {"team": "core", "shardId": "1"}, True)),
    ("a.b-c_d=x", ("a.b-c_d", "x", False)),
])
def test_single_lines(line: str, expected: tuple[str, Any, bool]) -> None:
    assert values(line + "\n") == [expected]


def test_blank_lines_ignored_and_crlf_accepted() -> None:
    assert values("\n\na=1\r\n\n  \nb=2") == [("a", 1, False), ("b", 2, False)]


def test_heredoc_multiline_value() -> None:
    text = "body<<EOF\nline one\nline=two\n\nEOF\nafter=1\nlist@<<END\n{\"x\": 1}\nEND\n"
    assert values(text) == [("body", "line one\nline=two\n", False), ("after", 1, False),
                            ("list", {"x": 1}, True)]


@pytest.mark.parametrize("text, fragment", [
    ("ok=1\njust some words\n", "line 2"),
    ("bad key=1\n", "key may hold only"),
    ("=value\n", "line 1"),
    ("x<<EOF\nno end\n", "no closing 'EOF'"),
])
def test_malformed_lines_name_the_line(text: str, fragment: str) -> None:
    with pytest.raises(OutputsError) as info:
        parse_outputs(text, "step 2 STATE_OUTPUTS")
    assert fragment in str(info.value) and "step 2 STATE_OUTPUTS" in str(info.value)


def test_ops_set_and_append_apply_to_a_document() -> None:
    doc: dict[str, Any] = {"state": {"old": [1], "keep": "x"}}
    entries = parse_outputs("new@=a\nnew@=b\nold@=2\nk.ey=3\n")
    apply_ops(doc, entries_to_ops(entries, doc["state"], "/state"))
    assert doc["state"] == {"old": [1, 2], "keep": "x", "new": ["a", "b"], "k.ey": 3}


def test_append_to_scalar_is_an_error_naming_the_key() -> None:
    with pytest.raises(OutputsError, match="cannot append to 'keep'"):
        entries_to_ops([Entry("keep", 1, True, 4)], {"keep": "x"}, "/state")


def test_step_outputs_fixture_sequence_gives_the_expected_state() -> None:
    """examples__step_outputs_workflow.yaml, step by step, as the executor applies it."""
    doc: dict[str, Any] = {"state": {}}
    for text in ("env=123\nasdf=Hello=there\n", "Hello=there\n", "", "done=there\n"):
        apply_ops(doc, entries_to_ops(parse_outputs(text), doc["state"], "/state"))
    assert doc["state"] == {"env": 123, "asdf": "Hello=there", "Hello": "there", "done": "there"}
