"""The JSON Schema (draft 2020-12) of a workflow file, generated from the pydantic models."""

from __future__ import annotations

import json
from typing import Any

from runner.workflow.model import Workflow

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_VERSION = {
    "description": "Language version: \"1\" (1, \"1.0\" and \"1.0.0\" mean the same).",
    "anyOf": [{"type": "string", "pattern": "^\\s*1(\\.0){0,2}\\s*$"}, {"enum": [1, 1.0]}],
}
_ENV_VALUE = {"type": ["string", "number", "boolean"]}


def workflow_json_schema() -> dict[str, Any]:
    """The schema as a dict: `$schema` first, then pydantic's output by alias."""
    generated = Workflow.model_json_schema(by_alias=True, mode="validation")
    generated["title"] = "Ferry / Butterflow v1 workflow"
    generated["description"] = (
        "A Butterflow v1 workflow as Ferry reads it. Unknown keys are allowed here (Ferry "
        "warns about them); `ferry validate` also checks ids, dependencies, cycles, template "
        "references, matrix strategies and ${{ }} expressions.")
    # what the validators accept beyond the plain annotation
    generated["properties"]["version"] = _VERSION
    for definition in generated.get("$defs", {}).values():
        env = definition.get("properties", {}).get("env")
        if env is not None:
            env["additionalProperties"] = _ENV_VALUE
    return {"$schema": DIALECT, **generated}


def workflow_json_schema_text() -> str:
    """The schema as the exact text of `schemas/workflow.schema.json` (and `ferry schema`)."""
    return json.dumps(workflow_json_schema(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


if __name__ == "__main__":
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    (root / "schemas" / "workflow.schema.json").write_text(workflow_json_schema_text(),
                                                           encoding="utf-8")
    print("wrote schemas/workflow.schema.json")
