"""Every Butterflow fixture against its INDEX.md row, with Ferry's documented decisions:
codemod steps (ast-grep, js-ast-grep, codemod) are valid when the files they name exist in the
workflow's directory (as the Codemod CLI checks; the fixtures ship none of those files, so such
files fail naming the missing file), legacy syntax (`uses:` lists, `commands:`) fails,
non-workflows and empty files fail with the typed error.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from runner.errors import WorkflowInvalid
from runner.workflow.loader import load_text
from runner.workflow.validate import bundle_files, load_workflow, validate_source

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "butterflow"
SCHEMA = Path(__file__).resolve().parents[3] / "schemas" / "workflow.schema.json"

VALID = "valid"
INVALID = "invalid"
MISSING = "missing"
"""Invalid only because a file the codemod step names is not in the workflow's directory."""

# file -> (outcome, substrings every one of which must appear in the errors)
TABLE: dict[str, tuple[str, tuple[str, ...]]] = {
    # verbatim files (INDEX.md rows 1-29)
    "examples__test-workflow.yaml": (VALID, ()),
    "examples__manual-workflow.yaml": (VALID, ()),
    "examples__matrix-workflow.yaml": (VALID, ()),
    "examples__simple-workflow.yaml": (VALID, ()),
    "examples__command-workflow.yaml": (VALID, ()),
    "examples__script-workflow.yaml": (VALID, ()),
    "examples__node_step_workflow.yaml": (VALID, ()),
    "examples__step_outputs_workflow.yaml": (VALID, ()),
    "examples__i18n-codemod.yaml": (
        INVALID, ("nodes[0].steps[1].use.template: Referenced template 'evaluate-codeowners' "
                  "does not exist",)),
    "examples__ast-grep-workflow.yaml": (MISSING, ("AST file referenced in workflow not found: "
                                                   "examples/ast-grep-config.yaml",)),
    "examples__ast-grep-config.yaml": (INVALID, ("more than one YAML document",)),
    "examples__js-ast-grep-workflow.yaml": (MISSING, ("JS file referenced in workflow not "
                                                      "found: codemods/var-to-const.js",)),
    "clitpl-shell__workflow.yaml": (VALID, ()),
    "clitpl-astgrep-yaml__workflow.yaml": (MISSING, ("AST file referenced in workflow not "
                                                     "found: rules/config.yml",)),
    "clitpl-js-astgrep__workflow.yaml": (MISSING, ("JS file referenced in workflow not found: "
                                                   "scripts/codemod.ts",)),
    "schemas__workflow.json": (INVALID, ("missing required property 'version'",
                                         "missing required property 'nodes'")),
    "coretest-utils_test_parse_workflow_file_yaml__workflow.yaml": (VALID, ()),
    "coretest-utils_test_parse_workflow_file_json__workflow.json": (VALID, ()),
    "coretest-utils_test_parse_workflow_file_invalid__workflow.yaml": (
        INVALID, ("is a plain string, not a mapping",)),
    "coretest-utils_test_parse_workflow_file_empty__empty.yaml": (INVALID, ("the file is empty",)),
    "coretest-utils_test_parse_workflow_file_complex__complex.yaml": (VALID, ()),
    "doc-core-readme_yaml-format.yaml": (
        INVALID, ("nodes[0].steps[0].uses: 'uses' is not Butterflow v1 syntax",
                  "AST file referenced in workflow not found: rules/console-log.yaml")),
    "doc-core-readme_matrix-manual-trigger.yaml": (
        INVALID, ("missing required property 'version'",
                  "nodes[0]: missing required property 'steps'", "a node has no 'run'")),
    "doc-core-readme_basic-codemod-step.yaml": (VALID, ()),
    "doc-core-readme_complex-codemod-deps.yaml": (VALID, ()),
    "doc-docs-workflows_orchestration-matrix-manual.yaml": (VALID, ()),
    "doc-docs-workflows_cyclic-fragment.yaml": (
        INVALID, ("missing required property 'version'", "Cyclic dependency detected: a → b → a")),
    "hist-1d31b56f7_test-codemod__workflow.yaml": (MISSING, ("AST file referenced in workflow "
                                                            "not found: rules/config.yml",)),
    "hist-0f9c88210_examples__matrix-workflow.yaml": (
        INVALID, ("nodes[0].steps[0].commands: 'commands' is legacy",)),
    # derived/ (translated from Rust test structs)
    "derived/engine_create_test_workflow.yaml": (VALID, ()),
    "derived/engine_create_manual_trigger_workflow.yaml": (VALID, ()),
    "derived/engine_create_manual_node_workflow.yaml": (VALID, ()),
    "derived/engine_create_matrix_workflow.yaml": (VALID, ()),
    "derived/engine_create_template_workflow.yaml": (VALID, ()),
    "derived/engine_create_matrix_from_state_workflow.yaml": (VALID, ()),
    "derived/engine_create_env_var_workflow.yaml": (VALID, ()),
    "derived/engine_create_variable_resolution_workflow.yaml": (VALID, ()),
    "derived/engine_create_env_vars_test_workflow.yaml": (VALID, ()),
    "derived/engine_matrix_env_vars.yaml": (VALID, ()),
    "derived/engine_cyclic_dependency.yaml": (INVALID, ("Cyclic dependency detected: node1 → "
                                                        "node2 → node1",)),
    "derived/engine_invalid_template_reference.yaml": (
        INVALID, ("Referenced template 'non-existent-template' does not exist",)),
    "derived/engine_js_ast_grep_workflow.yaml": (MISSING, ("JS file referenced in workflow not "
                                                          "found: codemod.js",)),
    "derived/utils_duplicate_node_id.yaml": (INVALID, ("Duplicate node ID",)),
    "derived/utils_nonexistent_dependency.yaml": (INVALID, ("Referenced node 'nonexistent' "
                                                            "does not exist",)),
    "derived/utils_self_dependency.yaml": (INVALID, ("Cyclic dependency detected: node1 → "
                                                     "node1",)),
    "derived/utils_complex_cycle.yaml": (INVALID, ("Cyclic dependency detected: node_a → node_c "
                                                   "→ node_b → node_a",)),
    "derived/utils_duplicate_template_id.yaml": (INVALID, ("Duplicate template ID",)),
    "derived/utils_nonexistent_template_reference.yaml": (
        INVALID, ("Referenced template 'nonexistent' does not exist",)),
    "derived/utils_invalid_matrix_strategy.yaml": (
        INVALID, ("Matrix strategy requires 'values' or 'from_state' property",)),
    "derived/utils_invalid_ast_grep_config_path.yaml": (
        MISSING, ("AST file referenced in workflow not found: config.yaml",)),
}


def test_table_covers_every_fixture_file() -> None:
    files = {str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*")
             if p.is_file() and p.suffix in (".yaml", ".yml", ".json")}
    assert files == set(TABLE)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_fixture_outcome(name: str) -> None:
    outcome, fragments = TABLE[name]
    path = FIXTURES / name
    report = validate_source(path.read_bytes(), str(path), files=bundle_files(path.parent))
    rendered = "\n".join(p.render() for p in report.errors)
    if outcome == VALID:
        assert report.ok, rendered
        assert load_workflow(path) is report.workflow or load_workflow(path) == report.workflow
        return
    assert not report.ok
    for fragment in fragments:
        assert fragment in rendered
    if outcome == MISSING:
        # one error per missing file, nothing else wrong with these files; without the
        # directory to look in (a document on its own) they are valid
        assert all("referenced in workflow not found" in p.message for p in report.errors)
        assert validate_source(path.read_bytes(), str(path)).ok
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(path)
    # loading for a run reports the same errors, plus unknown keys that are not descriptive
    loaded = [p.render() for p in info.value.problems]
    assert all(p.render() in loaded for p in report.errors)
    assert all(p in [q.render() for q in report.errors] or "unknown key" in p for p in loaded)


def test_schema_file_is_current() -> None:
    from runner.workflow.schema import workflow_json_schema_text

    assert SCHEMA.read_text(encoding="utf-8") == workflow_json_schema_text(), (
        "schemas/workflow.schema.json is stale: run `ferry schema > schemas/workflow.schema.json`")


def test_schema_is_draft_2020_12_and_accepts_every_valid_fixture() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    checked = 0
    for name, (outcome, _) in TABLE.items():
        if outcome != VALID:
            continue
        path = FIXTURES / name
        document = load_text(path.read_bytes(), str(path)).data
        errors = [e.message for e in validator.iter_errors(document)]
        assert errors == [], (name, errors)
        checked += 1
    assert checked >= 20


def test_schema_rejects_what_the_model_rejects() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    assert not validator.is_valid({"version": "2", "nodes": [{"id": "a", "steps": []}]})
    assert not validator.is_valid({"version": "1", "nodes": []})
    assert not validator.is_valid({"version": "1", "nodes": [{"id": "a", "type": "often",
                                                               "steps": []}]})
    assert validator.is_valid({"version": 1, "nodes": [{"id": "a", "steps": [],
                                                        "env": {"PORT": 8080}}]})
