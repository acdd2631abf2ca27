"""The models of the step kinds Ferry hands to the reference engine (the Codemod CLI) and of the
git options around them, with upstream's shapes (codemod 1.18.3's serde structs).

`js-ast-grep`, `ast-grep` and `codemod` steps are run by the Codemod CLI itself
(`runner.engine.codemod`); `shard` is computed by Ferry (its `function` method and its
`js-ast-grep` pre-filter go to the CLI); `commit` (step) and `pull_request`/`branch_name` (node)
are done by Ferry with git. Unknown keys inside these mappings are ignored by upstream; the
validator warns about them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from runner.workflow.model_schema import BaseWorkflowModel

_Model = BaseWorkflowModel


class JsAstGrep(_Model):
    """`js-ast-grep`: a jssg (JavaScript/TypeScript) codemod run over files of the target."""

    js_file: str = Field(min_length=1, description="the codemod script, relative to the "
                         "workflow file's directory")
    include: list[str] | None = None
    exclude: list[str] | None = None
    base_path: str | None = None
    max_threads: int | None = Field(default=None, ge=1)
    dry_run: bool = False
    language: str | None = None
    capabilities: list[str] | None = None
    semantic_analysis: str | dict[str, Any] | None = None


class AstGrep(_Model):
    """`ast-grep`: ast-grep YAML rules (with `fix`) applied to files of the target."""

    config_file: str = Field(min_length=1, description="the rule file, relative to the "
                             "workflow file's directory")
    include: list[str] | None = None
    exclude: list[str] | None = None
    base_path: str | None = None
    max_threads: int | None = Field(default=None, ge=1)
    allow_dirty: bool = False


class CodemodStep(_Model):
    """`codemod`: another codemod package, a local directory holding `codemod.yaml` or a
    registry package (`@scope/name[@version]`, fetched by the CLI)."""

    source: str = Field(min_length=1)
    args: list[str] | None = None
    env: dict[str, Any] | None = None
    working_dir: str | None = None


class ShardBuiltin(_Model):
    """A built-in shard method: by first directory below the target, or by CODEOWNERS team."""

    type: Literal["directory", "codeowner"]
    max_files_per_shard: int | str = Field(description="an integer, or a ${{ }} expression")
    min_shard_size: int | None = Field(default=None, ge=0)


class ShardFunction(_Model):
    """A custom shard method: a jssg script returning the shards (run by the Codemod CLI)."""

    function: str = Field(min_length=1)


class Shard(_Model):
    """`shard`: split the eligible files into shards written to state for a matrix node."""

    method: ShardBuiltin | ShardFunction
    target: str | None = None
    output_state: str = Field(min_length=1)
    file_pattern: str | None = None
    js_ast_grep: JsAstGrep | None = Field(default=None, alias="js-ast-grep")


class Commit(_Model):
    """Step `commit`: a git commit checkpoint in the workspace after the step succeeds."""

    message: str = Field(min_length=1)
    add: list[str] | None = None
    allow_empty: bool = True


class PullRequest(_Model):
    """Node `pull_request`: the task's changes pushed as a branch to the control plane's
    repository and recorded on the run (no forge pull request is opened)."""

    title: str = Field(min_length=1)
    body: str | None = None
    draft: bool = False
    base: str | None = None


DELEGATED_KINDS = ("js-ast-grep", "ast-grep", "codemod")
"""Step kinds the Codemod CLI runs (YAML keys)."""
CODEMOD_KINDS = (*DELEGATED_KINDS, "shard")
"""Step kinds that make a run need the Codemod CLI (a `shard` may need it for its pre-filter or
function; the `codemod` runner label is required for all of them)."""
