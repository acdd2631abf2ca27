"""The loader refuses hostile or broken input with the typed error and a located message."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import WorkflowInvalid
from runner.workflow import loader
from runner.workflow.loader import MAX_BYTES, load_text, read_source
from runner.workflow.validate import load_workflow, validate_source


def _refused(text: str | bytes, source: str = "wf.yaml") -> WorkflowInvalid:
    with pytest.raises(WorkflowInvalid) as info:
        load_text(text, source)
    assert len(info.value.problems) == 1
    report = validate_source(text, source)  # the validator reports the same, never raises
    assert not report.ok and report.problems == info.value.problems
    return info.value


def test_empty_and_whitespace_files() -> None:
    for text in ("", "  \n\n", b""):
        assert "empty" in _refused(text).problems[0].message


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- a\n- b\n", "a list"), ("just words\n", "a plain string"), ("42\n", "a int"),
     ("---\n...\n", "empty"), ("[1, 2]", "a list")],
)
def test_non_mapping_documents(text: str, kind: str) -> None:
    message = _refused(text).problems[0].message
    assert f"is {kind}, not a mapping" in message


def test_binary_junk_with_nul_bytes() -> None:
    problem = _refused(b"version: 1\nnodes:\n\x00\x01\x02\xff").problems[0]
    assert "binary data" in problem.message and problem.line == 3


def test_invalid_utf8_names_offset_and_line() -> None:
    problem = _refused(b"version: 1\nname: caf\xe9\n").problems[0]
    assert "not valid UTF-8" in problem.message and "0xe9" in problem.message
    assert problem.line == 2


def test_tab_indentation_is_located_with_hint() -> None:
    problem = _refused("version: '1'\nnodes:\n\t- id: a\n").problems[0]
    assert problem.message.startswith("YAML syntax error")
    assert "tabs are not allowed" in problem.message
    assert (problem.line, problem.column) == (3, 1)


def test_billion_laughs_refused_without_expanding() -> None:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        refs = ", ".join([f"*l{i - 1}"] * 10)
        lines.append(f"l{i}: &l{i} [{refs}]")
    problem = _refused("\n".join(lines) + "\n").problems[0]
    assert "alias bomb" in problem.message
    assert problem.line is not None and problem.line <= 10


def test_recursive_alias_refused() -> None:
    assert "own enclosing anchor" in _refused("a: &a [1, *a]\n").problems[0].message


def test_hundred_level_nesting_refused_block_and_flow() -> None:
    block = "a:\n" + "".join(" " * (i + 1) + "a:\n" for i in range(100))
    flow = "a: " + "[" * 100 + "]" * 100 + "\n"
    for text in (block, flow):
        assert f"deeper than {loader.MAX_DEPTH}" in _refused(text).problems[0].message


def test_extremely_deep_flow_nesting_does_not_crash_the_parser() -> None:
    # libyaml's C composer recurses and segfaults near 200k levels; the event loop must not.
    text = "[" * 300_000 + "]" * 300_000
    assert "deeper than" in _refused(text).problems[0].message


def test_deep_json_refused() -> None:
    text = "[" * 50_000 + "]" * 50_000
    assert "deeper than" in _refused(text, "wf.json").problems[0].message


def test_oversize_text_refused_by_size() -> None:
    problem = _refused("#" * (MAX_BYTES + 1)).problems[0]
    assert "larger than the 5 MB limit" in problem.message


def test_oversize_file_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:  # sparse 50 MB file: cheap to make, must not be read
        handle.seek(50 * 1024 * 1024)
        handle.write(b"\n")
    with pytest.raises(WorkflowInvalid) as info:
        read_source(big)
    assert "larger than the 5 MB limit" in info.value.problems[0].message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(tmp_path / "nope.yaml")
    assert "No such file" in info.value.problems[0].message
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(tmp_path)
    assert "directory" in info.value.problems[0].message


def test_multi_document_yaml_refused() -> None:
    problem = _refused("version: '1'\n---\nnodes: []\n").problems[0]
    assert "more than one YAML document" in problem.message and problem.line == 2


def test_custom_tags_refused() -> None:
    assert "unsupported YAML tag '!Ref'" in _refused("a: !Ref x\n").problems[0].message


def test_json_syntax_error_located() -> None:
    problem = _refused('{"version": "1",\n "nodes": [}', "wf.json").problems[0]
    assert problem.message.startswith("JSON syntax error") and problem.line == 2


def test_unknown_extension_tries_yaml_and_json() -> None:
    doc = load_text('{"version": "1", "nodes": [{"id": "a", "steps": []}]}', "wf.txt")
    assert doc.fmt == "json"
    doc = load_text("version: '1'\nnodes: []\n", "wf")
    assert doc.fmt == "yaml"


def test_positions_and_aliases_and_merge_keys() -> None:
    text = ("version: '1'\n"
            "defaults: &d\n"
            "  env: {A: '1'}\n"
            "nodes:\n"
            "  - id: a\n"
            "    <<: *d\n"
            "    steps:\n"
            "      - run: echo\n")
    doc = load_text(text, "wf.yaml")
    assert doc.data["nodes"][0]["env"] == {"A": "1"}
    assert doc.positions[("nodes", 0, "steps", 0)] == (8, 9)
    assert doc.locate(("nodes", 0, "steps", 0, "run", "missing")) == (8, 9)


def test_yaml_scalars_keep_json_types() -> None:
    doc = load_text("a: 2024-01-02\nb: 1.5\nc: yes\nd: null\ne: '007'\n1: x\nf: off\ng: true\n"
                    "h: False\n", "x.yaml")
    # booleans as YAML 1.2 reads them (Butterflow's parser): yes/no/on/off are strings
    assert doc.data == {"a": "2024-01-02", "b": 1.5, "c": "yes", "d": None, "e": "007", "1": "x",
                        "f": "off", "g": True, "h": False}


def test_duplicate_keys_are_errors_with_both_lines() -> None:
    report = validate_source("version: '1'\nnodes: []\nnodes:\n  - {id: a, steps: []}\n",
                             "wf.yaml")
    [dup] = [p for p in report.problems if "duplicate key" in p.message]
    assert dup.path == "nodes" and dup.line == 3 and "first at line 2" in dup.message
    assert not report.ok
