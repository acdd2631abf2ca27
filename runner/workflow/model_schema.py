"""The typed-value models of a workflow: upstream's SimpleSchema, read by `params.schema` and
`state.schema`.

A SimpleSchema property is `{type, default?, description?, name?}` plus, by type: `items`
(array), `properties` (object), `oneOf: [{type: string, enum: [...]}]`, `multi_line` and `secret`
(string). Ferry also reads `integer`. `state.schema` comes in two shapes: upstream's current map
(`schema: {files: {type: array}}`) and the older list (`schema: [{name: files, type: array}]`);
both are read, `StateSection.entries()` gives the map either way.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class BaseWorkflowModel(BaseModel):
    """Base of every workflow model: unknown keys are reported by the validator, not here."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class SchemaType(StrEnum):
    """Types a schema property or a template input may declare."""

    ARRAY = "array"
    OBJECT = "object"
    STRING = "string"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"


class EnumVariant(BaseWorkflowModel):
    """One `oneOf` alternative of a string: the values it allows."""

    type: SchemaType = SchemaType.STRING
    enum: list[str] | None = None


class SchemaProperty(BaseWorkflowModel):
    """The type of a param or of a value in the state (recursively: items, properties)."""

    type: SchemaType
    name: str | None = Field(default=None, description="display name (descriptive)")
    description: str | None = None
    default: Any = None
    items: SchemaProperty | None = None
    properties: dict[str, SchemaProperty] | None = None
    one_of: list[EnumVariant] | None = Field(default=None, alias="oneOf")
    multi_line: bool | None = None
    secret: bool | None = None

    def allowed(self) -> list[str] | None:
        """The values a string may take (the union of its `oneOf` enums), None for any."""
        if not self.one_of:
            return None
        values: list[str] = []
        for variant in self.one_of:
            values += [v for v in variant.enum or [] if v not in values]
        return values


class StateSchemaEntry(SchemaProperty):
    """One key of the state in the list form of `state.schema` (`- name: files`)."""

    name: str = Field(min_length=1)


class StateSection(BaseWorkflowModel):
    """`state:`: the declared schema of the workflow state, in either shape."""

    schema_: list[StateSchemaEntry] | dict[str, SchemaProperty] = Field(
        default_factory=dict, alias="schema")

    def entries(self) -> dict[str, SchemaProperty]:
        """The declared keys and their types (the first entry wins for a duplicate name)."""
        if isinstance(self.schema_, dict):
            return dict(self.schema_)
        out: dict[str, SchemaProperty] = {}
        for entry in self.schema_:
            out.setdefault(entry.name, entry)
        return out


class ParamsSection(BaseWorkflowModel):
    """`params:`: the params a run takes, their types and defaults."""

    schema_: dict[str, SchemaProperty] = Field(default_factory=dict, alias="schema")
