"""Pydantic models of a Butterflow v1 workflow, with Ferry's documented extensions.

The models accept unknown keys silently (`extra="ignore"`): the validator walks the raw document
and reports them with a "did you mean" hint: warnings for `ferry validate`, errors under
`--strict` and, for a key that is not purely descriptive, when a run is created (Ferry does not
run a workflow whose meaning it does not know).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from runner.workflow.model_codemod import (
    AstGrep,
    CodemodStep,
    Commit,
    JsAstGrep,
    PullRequest,
    Shard,
)

# re-exported: these lived here first and other modules import them from here
from runner.workflow.model_schema import BaseWorkflowModel
from runner.workflow.model_schema import EnumVariant as EnumVariant
from runner.workflow.model_schema import ParamsSection as ParamsSection
from runner.workflow.model_schema import SchemaProperty as SchemaProperty
from runner.workflow.model_schema import SchemaType as SchemaType
from runner.workflow.model_schema import StateSchemaEntry as StateSchemaEntry
from runner.workflow.model_schema import StateSection as StateSection
from runner.workflow.spec import UNSUPPORTED_STEP_KINDS as UNSUPPORTED_STEP_KINDS
from runner.workflow.spec import parse_duration as parse_duration


def _stringify(value: Any) -> Any:
    """Env values may be written as YAML numbers or booleans; processes only see strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


_VERSION = re.compile(r"^1(\.0){0,2}$")


def _version(value: Any) -> Any:
    """`1`, `"1"`, `"1.0"` and `"1.0.0"` all mean version 1 of the language."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and _VERSION.match(value.strip()):
        return "1"
    return value


def _env_name(value: str) -> str:
    if not value or "=" in value or "\0" in value:
        raise ValueError("an environment variable name cannot be empty or hold '=' or a NUL byte")
    return value


def _env_value(value: str) -> str:
    if "\0" in value:
        raise ValueError("an environment variable value cannot hold a NUL byte")
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]
EnvValue = Annotated[str, BeforeValidator(_stringify), AfterValidator(_env_value)]
Duration = Annotated[str | float, Field(description="e.g. '30s', '10m', '2h', or seconds")]


_Model = BaseWorkflowModel


class RuntimeType(StrEnum):
    """Where a task's steps run."""

    DIRECT = "direct"
    DOCKER = "docker"
    PODMAN = "podman"


class PullPolicy(StrEnum):
    """When a container runtime pulls the image."""

    IF_NOT_PRESENT = "if-not-present"
    ALWAYS = "always"
    NEVER = "never"


class Runtime(_Model):
    """Runtime of a node or template. Container options are Ferry extensions."""

    type: RuntimeType = RuntimeType.DIRECT
    image: str | None = None
    pull: PullPolicy | None = None
    network: str | None = None
    memory: str | int | None = None
    cpus: float | None = None
    pids: int | None = None
    user: str | None = None
    working_dir: str | None = Field(default=None, description="the steps' working directory "
                                    "(relative: inside the workspace)")
    options: list[str] = Field(default_factory=list, description="extra container options "
                               "(docker/podman; an allow-list)")
    privileged: bool = False
    mounts: list[str] = Field(default_factory=list, description="host:container[:ro] bind mounts")


class NodeType(StrEnum):
    """Automatic nodes run when their dependencies are done; manual ones wait for a trigger."""

    AUTOMATIC = "automatic"
    MANUAL = "manual"


class Trigger(_Model):
    """`trigger: {type: manual}` makes an automatic node wait for a trigger."""

    type: NodeType = NodeType.AUTOMATIC


class Strategy(_Model):
    """A matrix: one task per item of `values`, or per item of the state array `from_state`."""

    type: Literal["matrix"] = "matrix"
    values: list[dict[str, Any]] | None = None
    from_state: str | None = None


class Retry(_Model):
    """Ferry extension: run a failed task again, up to `attempts` times in all."""

    attempts: int = Field(default=1, ge=1, le=100)
    backoff: Duration = 0.0


class UseTemplate(_Model):
    """`use:` expands a template's steps with these inputs."""

    template: str = Field(min_length=1)
    inputs: dict[str, Any] = Field(default_factory=dict)


def _condition(value: Any) -> Any:
    """`if: false` (a YAML boolean) is the condition `false`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


class Step(_Model):
    """One step: `run` a script, `use` a template, a codemod kind run by the Codemod CLI
    (`js-ast-grep`, `ast-grep`, `codemod`) or a `shard`. `ai` and `install-skill` are recognised
    only so that validation can say they are not supported."""

    id: str | None = None
    name: str | None = None
    description: str | None = None
    if_: Annotated[str | None, BeforeValidator(_condition)] = Field(
        default=None, alias="if", description="run the step only when this condition holds")
    run: str | None = None
    use: UseTemplate | None = None
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    timeout: Duration | None = None
    ast_grep: AstGrep | None = Field(default=None, alias="ast-grep")
    js_ast_grep: JsAstGrep | None = Field(default=None, alias="js-ast-grep")
    codemod: CodemodStep | None = None
    ai: dict[str, Any] | None = None
    install_skill: dict[str, Any] | None = Field(default=None, alias="install-skill")
    shard: Shard | None = None
    commit: Commit | None = None

    @property
    def kind(self) -> str:
        """The step's action as its YAML key: `run`, `use`, `js-ast-grep`, `ast-grep`,
        `codemod`, `shard`, `ai` or `install-skill` (validation makes it exactly one)."""
        for key, attr in _KINDS:
            if getattr(self, attr) is not None:
                return key
        return "run"

    def display_name(self, index: int) -> str:
        """The step's name, else its id, else a default name (`default_name`)."""
        return self.name or self.id or self.default_name(index)

    def default_name(self, index: int) -> str:
        """The name of a step without `name` or `id`: its script's first line (whole, as
        written: never cut, never resolved), `use <template>`, or `step <n>`."""
        if self.run:
            for line in self.run.splitlines():
                if line.strip():
                    return line.strip()
        if self.use:
            return f"use {self.use.template}"
        if self.kind != "run":
            return self.kind
        return f"step {index + 1}"


_KINDS = (("run", "run"), ("use", "use"), ("js-ast-grep", "js_ast_grep"),
          ("ast-grep", "ast_grep"), ("codemod", "codemod"), ("shard", "shard"), ("ai", "ai"),
          ("install-skill", "install_skill"))


class TemplateInput(_Model):
    """A declared input of a template."""

    name: str = Field(min_length=1)
    type: SchemaType = SchemaType.STRING
    required: bool = False
    description: str | None = None
    default: Any = None


class TemplateOutput(_Model):
    """A declared output of a template."""

    name: str = Field(min_length=1)
    value: str | None = None
    description: str | None = None


class Template(_Model):
    """A reusable list of steps with inputs."""

    id: str = Field(min_length=1)
    name: str | None = None
    description: str | None = None
    runtime: Runtime | None = None
    inputs: list[TemplateInput] = Field(default_factory=list)
    steps: list[Step]
    outputs: list[TemplateOutput] = Field(default_factory=list)
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)


class Node(_Model):
    """A node of the DAG; at run time it becomes one task, or a master and one task per item."""

    id: str = Field(min_length=1)
    name: str | None = None
    description: str | None = None
    type: NodeType = NodeType.AUTOMATIC
    trigger: Trigger | None = None
    depends_on: list[str] = Field(default_factory=list)
    runtime: Runtime | None = None
    strategy: Strategy | None = None
    steps: list[Step]
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    timeout: Duration | None = None
    retry: Retry | None = None
    branch_name: str | None = None
    pull_request: PullRequest | None = None

    @property
    def display_name(self) -> str:
        """The node's name, else its id."""
        return self.name or self.id

    @property
    def is_manual(self) -> bool:
        """A manual node, or an automatic one with a manual trigger."""
        trig = self.trigger is not None and self.trigger.type == NodeType.MANUAL
        return self.type == NodeType.MANUAL or trig

    @property
    def is_matrix(self) -> bool:
        """The node has a matrix strategy."""
        return self.strategy is not None


class Workflow(_Model):
    """A Butterflow v1 workflow document."""

    version: Annotated[Literal["1"], BeforeValidator(_version)]
    name: str | None = None
    description: str | None = None
    state: StateSection | None = None
    params: ParamsSection | None = None
    templates: list[Template] = Field(default_factory=list)
    nodes: list[Node] = Field(min_length=1)

    def node(self, node_id: str) -> Node:
        """The node with this id; KeyError if there is none."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def template(self, template_id: str) -> Template:
        """The template with this id; KeyError if there is none."""
        for tpl in self.templates:
            if tpl.id == template_id:
                return tpl
        raise KeyError(template_id)
